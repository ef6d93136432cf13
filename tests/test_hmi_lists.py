"""Events, Comms and Runs: filters (run id prefix, agent part in any case), paging back
by id, readable names with full timestamps, bad input answered 400 in place; the
header's search box."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import reverse

from pas_core import config
from pas_core.models import Agent, Event
from tests.factories import CommsMessageFactory, EventFactory, JobFactory, RunFactory

pytestmark = pytest.mark.django_db


def _ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-event-id="(\d+)"', html)]


def test_events_page_back_past_the_first_page_by_id(viewer: Any) -> None:
    config.document_save({"hmi_display": {"events_page_size": 100}})
    ids = [EventFactory(event_type="job_started", data={"n": n}).id for n in range(130)]
    first = viewer.get(reverse("hmi:events")).content.decode()
    assert _ids(first) == ids[::-1][:100]  # The newest 100, newest first.
    assert 'id="events-rows"' in first  # The first page is the live tail.
    older = re.search(r'href="\?before=(\d+)" data-page="older"', first)
    assert older is not None and int(older.group(1)) == ids[30]
    second = viewer.get(reverse("hmi:events"), {"before": older.group(1)}).content.decode()
    assert _ids(second) == ids[::-1][100:]  # The 30 oldest.
    assert 'id="events-rows"' not in second  # An older page stays put: not live.
    assert "The oldest rows." in second and 'data-page="newest"' in second
    newer = re.search(r'href="\?after=(\d+)" data-page="newer"', second)
    assert newer is not None
    back = viewer.get(reverse("hmi:events"), {"after": newer.group(1)}).content.decode()
    assert _ids(back) == ids[::-1][:100]


def test_the_run_filter_takes_the_prefix_every_job_id_shows(viewer: Any) -> None:
    mine = "3f2a1b4c-1111-4222-8333-444455556666"
    EventFactory(event_type="job_started", run_id=mine, data={"message": "mine"})
    EventFactory(
        event_type="job_started",
        run_id="99999999-1111-4222-8333-444455556666",
        data={"message": "other"},
    )
    for run in ("3f2a1b4c", "3F2A1B4C", mine, "jc-3f2a1b4c-Code-1"):
        html = viewer.get(reverse("hmi:events"), {"run": run}).content.decode()
        assert "mine" in html and "other" not in html, run


def test_the_agent_filter_is_partial_and_ignores_case(viewer: Any) -> None:
    EventFactory(event_type="job_started", agent_id="Dir-Code", data={"message": "code"})
    EventFactory(event_type="job_started", agent_id="Mgr-Code-01", data={"message": "mgr"})
    EventFactory(event_type="job_started", agent_id="Dir-Data", data={"message": "data"})
    html = viewer.get(reverse("hmi:events"), {"agent": "code"}).content.decode()
    assert "code" in html and "mgr" in html and ">data<" not in html
    CommsMessageFactory(sender="Architect", recipient="Dir-Code", message="to code")
    CommsMessageFactory(sender="Architect", recipient="Dir-Data", message="to data")
    html = viewer.get(reverse("hmi:comms"), {"agent": "dir-c"}).content.decode()
    assert "to code" in html and "to data" not in html


def test_event_rows_read_as_words_with_dates_and_open_up(viewer: Any) -> None:
    event = EventFactory(
        event_type="hhmrs_timeout",
        agent_id="Dir-Code",
        data={"message": "Dir-Code missed heartbeats for 2.4s", "restart_count": 1},
    )
    html = viewer.get(reverse("hmi:events")).content.decode()
    assert '<span class="etype" title="hhmrs_timeout">Timed out</span>' in html
    assert event.created_at.strftime("%Y-%m-%d %H:%M:%S") in html  # Date and time (UTC).
    # The whole data opens from its summary line.
    assert '<details class="ev-data"><summary>Dir-Code missed heartbeats for 2.4s' in html
    assert "&quot;restart_count&quot;: 1" in html


@pytest.mark.parametrize(
    ("name", "query", "message"),
    [
        ("hmi:events", {"run": "not a run!"}, "a run id or its first characters"),
        ("hmi:events", {"before": "abc"}, "Enter a whole number"),
        ("hmi:events", {"after": "-4"}, "greater than or equal to 0"),
        ("hmi:comms", {"run": "zzz"}, "a run id or its first characters"),
        ("hmi:comms", {"kind": "SHOUT"}, "Select a valid choice"),
        ("hmi:runs", {"status": "exploded"}, "Select a valid choice"),
        ("hmi:runs", {"page": "0"}, "greater than or equal to 1"),
    ],
)
def test_bad_filters_are_answered_400_in_place(
    viewer: Any, name: str, query: dict, message: str
) -> None:
    response = viewer.get(reverse(name), query)
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html and 'role="alert"' in html


def test_the_runs_list_searches_filters_and_pages(viewer: Any, tree: dict[str, Agent]) -> None:
    hot = RunFactory(title="Parse the config files", status="failed")
    calm = RunFactory(title="Write the docs", status="completed")
    for kind in ("hhmrs_timeout", "hhmrs_restart", "hhmrs_escalation"):
        EventFactory(event_type=kind, run_id=str(hot.run_id), agent_id="Dir-Code")
    EventFactory(event_type="job_started", run_id=str(calm.run_id))
    html = viewer.get(reverse("hmi:runs")).content.decode()
    # The interventions column counts the run's HHMRS events.
    assert f'?run={str(hot.run_id)[:8]}" title="HHMRS events of this run">3</a>' in html

    def titles(**query: str) -> set[str]:
        page = viewer.get(reverse("hmi:runs"), query).content.decode()
        return {t for t in ("Parse the config files", "Write the docs") if t in page}

    assert titles(q="config") == {"Parse the config files"}
    assert titles(q=str(calm.run_id)[:8]) == {"Write the docs"}
    assert titles(status="completed") == {"Write the docs"}
    assert titles(interventions="1") == {"Parse the config files"}
    assert titles(interventions="0") == {"Write the docs"}
    for n in range(30):
        RunFactory(title=f"Bulk run {n:02d}")
    first = viewer.get(reverse("hmi:runs")).content.decode()
    assert "page 1 of 2" in first and "Bulk run 29" in first and "Write the docs" not in first
    second = viewer.get(reverse("hmi:runs"), {"page": "2"}).content.decode()
    assert "Write the docs" in second and "Bulk run 29" not in second


def test_search_jumps_to_the_page_it_names(viewer: Any, tree: dict[str, Agent]) -> None:
    run = RunFactory(title="Parse the config files")
    job = JobFactory(run=run, agent=tree["Dir-Code"], job_id=f"jc-{str(run.run_id)[:8]}-Code-1")
    detail = reverse("hmi:run-detail", args=[run.run_id])

    def lands(q: str) -> str:
        response = viewer.get(reverse("hmi:search"), {"q": q})
        assert response.status_code == 302, q
        return str(response["Location"])

    assert lands(job.job_id) == f"{detail}#job-{job.job_id}"
    assert lands(str(run.run_id)[:8]) == detail
    assert lands(str(run.run_id)) == detail
    assert lands("dir-code") == reverse("hmi:agent", args=["Dir-Code"])
    assert lands("Parse the config") == detail
    # Several matches are listed; nothing is said so, with a 200.
    many = viewer.get(reverse("hmi:search"), {"q": "Mgr-Code"})
    assert many.status_code == 200 and "Mgr-Code-01" in many.content.decode()
    none = viewer.get(reverse("hmi:search"), {"q": "no such thing"})
    assert none.status_code == 200 and "Nothing matches" in none.content.decode()


def test_every_page_has_the_search_box(viewer: Any) -> None:
    html = viewer.get(reverse("hmi:tree")).content.decode()
    assert f'action="{reverse("hmi:search")}"' in html and 'name="q"' in html


def test_the_type_filter_lists_readable_names(viewer: Any) -> None:
    Event.objects.create(event_type="job_discarded", data={})
    html = viewer.get(reverse("hmi:events")).content.decode()
    assert '<option value="job_discarded">Job discarded (job_discarded)</option>' in html
