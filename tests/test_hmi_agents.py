"""The tree's states and columns, an agent's page, and clearing faults from the browser."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from hmi import selectors
from hmi.fragments import fragments_for_events
from pas_core.models import Agent, Attempt, Event, Fault
from tests.factories import AttemptFactory, EventFactory, FaultFactory, JobFactory, RunFactory

pytestmark = pytest.mark.django_db


def _node(html: str, dom: str) -> str:
    start = html.index(f'id="{dom}"')
    return html[start : html.index("</div>", start)]


def test_a_parent_waiting_for_its_children_reads_waiting(
    viewer: Any, tree: dict[str, Agent]
) -> None:
    run = RunFactory(status="running")
    JobFactory(run=run, agent=tree["Architect"], job_id="jc-arch", status="waiting")
    html = viewer.get(reverse("hmi:tree")).content.decode()
    node = _node(html, "node-Architect")
    assert "st-waiting" in node and 'data-label="waiting"' in node
    assert "jobs </span><b>1</b>" in node
    assert "st-idle" in _node(html, "node-Dir-Code")


def test_counters_keep_the_last_hours_interventions_after_recovery(
    viewer: Any, tree: dict[str, Agent]
) -> None:
    run = RunFactory(status="completed")
    JobFactory(run=run, agent=tree["Dir-Code"], job_id="jc-code", status="succeeded")
    for data in ({}, {}, {"retry_type": "llm_change"}):
        EventFactory(event_type="hhmrs_restart", agent_id="Dir-Code", data=data)
    old = EventFactory(event_type="hhmrs_restart", agent_id="Dir-Code", data={})
    Event.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=2))
    node = _node(viewer.get(reverse("hmi:tree")).content.decode(), "node-Dir-Code")
    assert '<b>0/3</b> <span class="recent">2 in 1h</span>' in node  # Restarts.
    assert '<b>0/3</b> <span class="recent">1 in 1h</span>' in node  # Model switches.


def test_idle_nodes_carry_their_last_active_time(viewer: Any, tree: dict[str, Agent]) -> None:
    job = JobFactory(run=RunFactory(), agent=tree["Dir-Docs"], job_id="jc-docs", status="succeeded")
    ended = timezone.now() - timedelta(minutes=5)
    AttemptFactory(job=job, number=1, status="succeeded", finished_at=ended)
    node = _node(viewer.get(reverse("hmi:tree")).content.decode(), "node-Dir-Docs")
    assert f'data-last="{ended.timestamp():.3f}"' in node
    assert "never" in _node(viewer.get(reverse("hmi:tree")).content.decode(), "node-Dir-Data")


def test_every_agent_name_links_to_its_page(viewer: Any) -> None:
    html = viewer.get(reverse("hmi:tree")).content.decode()
    assert html.count('class="name" href="/agents/') == 24
    assert 'href="/agents/PAS%20Root/"' in html


def test_the_agent_page_shows_history_faults_and_interventions(
    viewer: Any, tree: dict[str, Agent]
) -> None:
    run = RunFactory(title="Parse the config", status="running")
    job = JobFactory(run=run, agent=tree["Dir-Code"], job_id="jc-code", status="running")
    now = timezone.now()
    AttemptFactory(
        job=job,
        number=1,
        status=Attempt.Status.TIMED_OUT,
        model="google/gemini-2.5-flash",
        started_at=now - timedelta(seconds=40),
        finished_at=now - timedelta(seconds=28),
        error_kind="timeout",
        error="no heartbeat for 2.4s",
    )
    AttemptFactory(job=job, number=2, model="ollama/llama3.1:8b", started_at=now)
    FaultFactory(agent=tree["Dir-Code"], kind="hang", remaining=2)
    EventFactory(event_type="hhmrs_timeout", agent_id="Dir-Code")
    EventFactory(event_type="hhmrs_escalation", agent_id="Dir-Code")
    response = viewer.get(reverse("hmi:agent", args=["Dir-Code"]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "?hmi=agent-dir-code" in html and 'id="signal-agent"' in html
    assert 'id="node-Dir-Code"' in html  # The live node, as on the tree.
    assert "no heartbeat for 2.4s" in html and "12.0s" in html  # Error and duration.
    assert "gemini-2.5-flash" in html and "llama3.1:8b" in html
    assert "<b>hang</b> ×2" in html  # The armed fault.
    assert (
        'class="iv-timeout"><td><span class="icon">◷</span> timeouts</td><td class="num">1' in html
    )
    assert 'data-spark="node-Dir-Code"' in html
    assert "Clear faults" not in html  # A viewer reads.
    assert viewer.get(reverse("hmi:agent", args=["Nobody"])).status_code == 404
    bad = viewer.get(reverse("hmi:agent", args=["Dir-Code"]), {"before": "x"})
    assert bad.status_code == 400


def test_an_operator_clears_faults_recorded_with_their_name(
    operator: Any, tree: dict[str, Agent]
) -> None:
    FaultFactory(agent=tree["Dir-Code"], kind="hang", remaining=3)
    panel = operator.get(reverse("hmi:agent-actions", args=["Dir-Code"]), HTTP_HX_REQUEST="true")
    assert "<b>hang</b> ×3" in panel.content.decode() and "Clear faults" in panel.content.decode()
    url = reverse("hmi:agent-faults-clear", args=["Dir-Code"])
    response = operator.post(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert "1 fault cleared on Dir-Code" in html and "No armed faults." in html
    assert not Fault.objects.filter(agent_id="Dir-Code").exists()
    assert Event.objects.get(event_type="faults_cleared").data["by"] == "operator"
    # Without htmx it goes back to the page it came from, if that is one of ours.
    back = operator.post(url, {"next": "/agents/Dir-Code/"})
    assert back.status_code == 302 and back["Location"] == "/agents/Dir-Code/"
    away = operator.post(url, {"next": "https://evil.example/"})
    assert away["Location"] == reverse("hmi:tree")


def test_a_viewer_may_not_clear_faults(viewer: Any, tree: dict[str, Agent]) -> None:
    FaultFactory(agent=tree["Dir-Code"], kind="hang", remaining=3)
    response = viewer.post(reverse("hmi:agent-faults-clear", args=["Dir-Code"]))
    assert response.status_code == 403
    assert Fault.objects.filter(agent_id="Dir-Code").exists()


def test_clearing_an_unknown_agent_is_404(operator: Any) -> None:
    assert operator.post(reverse("hmi:agent-faults-clear", args=["Nobody"])).status_code == 404


def test_the_run_page_shows_phases_not_attempt_numbers(viewer: Any, tree: dict[str, Agent]) -> None:
    run = RunFactory(status="running")
    arch = JobFactory(run=run, agent=tree["Architect"], job_id="jc-arch", status="running")
    AttemptFactory(job=arch, number=1, status="succeeded", phase="step")
    AttemptFactory(job=arch, number=2, phase="aggregate", model="anthropic/claude-sonnet-4-5")
    html = viewer.get(reverse("hmi:run-detail", args=[run.run_id])).content.decode()
    assert "aggregate · claude-sonnet-4-5" in html  # Healthy: no "try", no "#2".
    assert "attempt #2" not in html.replace('title="attempt #2 of the job"', "")


def test_page_slugs_fit_the_streams_names() -> None:
    assert selectors.page_slug("PAS Root") == "agent-pas-root"
    assert selectors.page_slug("Mgr-DevSecOps-01") == "agent-mgr-devsecops-01"
    assert len(selectors.page_slug("X" * 64)) <= 32


@pytest.mark.parametrize(
    ("page", "nodes", "counters"),
    [
        ("tree", ["node-Dir-Code", "node-Architect"], True),
        ("overview", [], True),
        ("run", [], False),
        ("retry", [], False),
        ("events", [], False),
        ("agent-dir-code", ["node-Dir-Code"], False),
        ("agent-architect", ["node-Architect"], False),
        ("agent-dir-data", [], False),
    ],
)
def test_each_page_gets_only_the_fragments_it_has_targets_for(
    tree: dict[str, Agent], page: str, nodes: list[str], counters: bool, monkeypatch: Any
) -> None:
    monkeypatch.setattr("hmi.fragments.close_old_connections", lambda: None)
    event = {
        "id": 9,
        "event_type": "hhmrs_timeout",
        "agent_id": "Dir-Code",
        "data": {"agent_id": "Dir-Code", "parent_id": "Architect", "message": "late"},
    }
    html = fragments_for_events([event], page=page)
    assert 'id="tron-banner"' in html and 'id="unread-count"' in html  # In base.html.
    assert ('id="tron-counters"' in html) is counters
    found = sorted(d for d in ("node-Dir-Code", "node-Architect") if f'id="{d}"' in html)
    assert found == sorted(nodes)


def test_a_batch_tells_its_steps_on_the_badge(tree: dict[str, Agent], monkeypatch: Any) -> None:
    """An escalation and its model switch arrive together: the badge keeps both."""
    monkeypatch.setattr("hmi.fragments.close_old_connections", lambda: None)
    story = [
        ("hhmrs_timeout", {}),
        ("agent_status", {"status": "timed_out"}),
        ("hhmrs_escalation", {}),
        ("agent_status", {"status": "escalated"}),
        ("hhmrs_restart", {"retry_type": "llm_change"}),
        ("agent_status", {"status": "restarting"}),
    ]
    events = [
        {"id": n, "event_type": kind, "agent_id": "Dir-Code", "data": {"agent_id": "Dir-Code", **d}}
        for n, (kind, d) in enumerate(story, start=1)
    ]
    html = fragments_for_events(events, page="tree")
    node = _node(html, "node-Dir-Code")
    assert "st-restarting" in node  # The node shows where it ended up...
    # ... and its badge the way there (the last three steps).
    assert '<span class="badge" data-badge>timed out → escalated → restart</span>' in node


def test_the_badge_keeps_an_escalation_before_ordinary_steps(
    tree: dict[str, Agent], monkeypatch: Any
) -> None:
    """A batch that goes on to the new attempt starting still names the escalation."""
    monkeypatch.setattr("hmi.fragments.close_old_connections", lambda: None)
    story = [
        ("hhmrs_escalation", {}),
        ("agent_status", {"status": "escalated"}),
        ("hhmrs_restart", {"retry_type": "llm_change"}),
        ("agent_status", {"status": "working"}),
        ("job_started", {}),
    ]
    events = [
        {"id": n, "event_type": kind, "agent_id": "Dir-Code", "data": {"agent_id": "Dir-Code", **d}}
        for n, (kind, d) in enumerate(story, start=1)
    ]
    node = _node(fragments_for_events(events, page="tree"), "node-Dir-Code")
    assert '<span class="badge" data-badge>escalated → restart → started</span>' in node
