"""The retry queue: the real last error, discard and bulk retry (services and pages),
who may act, bad input answered in place, and the stream's signal that keeps it live."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from hmi.fragments import fragments_for_events
from pas_core.errors import Conflict, NotFound, ServiceError
from pas_core.models import Agent, CommsMessage, Event, Job
from pas_core.services.retry import jobs_discard, jobs_retry
from tests.factories import AttemptFactory, JobFactory, RunFactory

pytestmark = pytest.mark.django_db

ERROR = "Permanently failed: Dir-Code (injected error)"


@pytest.fixture
def failed(tree: dict[str, Agent]) -> list[Job]:
    """Two jobs in the retry queue (Dir-Code, Dir-Docs) and one that succeeded."""
    run = RunFactory(title="Parse the config", status="failed")
    code = JobFactory(
        run=run,
        agent=tree["Dir-Code"],
        job_id="jc-aaaa-Code-1",
        status=Job.Status.FAILED,
        retryable=True,
        error=ERROR,
        restart_count=3,
        llm_failure_count=3,
    )
    AttemptFactory(job=code, number=1, status="errored", error_kind="error", error="injected")
    docs = JobFactory(
        run=run,
        agent=tree["Mgr-DevSecOps-01"],
        job_id="jc-aaaa-Docs-1",
        status=Job.Status.FAILED,
        retryable=True,
        error="Permanently failed: Mgr-DevSecOps-01 (timeout)",
    )
    JobFactory(run=run, agent=tree["Dir-Data"], job_id="jc-aaaa-Data-1", status="succeeded")
    return [code, docs]


def test_the_queue_shows_the_real_last_error_and_whole_agent_ids(
    viewer: Any, failed: list[Job]
) -> None:
    html = viewer.get(reverse("hmi:retry")).content.decode()
    assert ERROR in html  # Job.error, not "max failures exceeded".
    assert '<td data-label="Agent" class="nowrap"><a href="/agents/Mgr-DevSecOps-01/">' in html
    assert "jc-aaaa-Data-1" not in html
    # A viewer reads; no actions, no bulk form.
    assert "Discard" not in html and 'id="retry-bulk"' not in html
    # The page listens for the stream's signal and reloads its own rows.
    assert 'id="signal-retry"' in html and 'data-refresh-on="retry"' in html
    assert "?hmi=retry" in html


def test_jobs_discard_keeps_them_failed_out_of_the_queue_and_says_who(failed: list[Job]) -> None:
    done = jobs_discard(["jc-aaaa-Code-1", "jc-aaaa-Code-1"], by="ops-anna")
    assert [j.job_id for j in done] == ["jc-aaaa-Code-1"]  # Repeats are one.
    job = Job.objects.get(pk="jc-aaaa-Code-1")
    assert job.status == Job.Status.FAILED and job.retryable is False
    event = Event.objects.get(event_type="job_discarded")
    assert event.data["by"] == "ops-anna" and event.data["job_id"] == "jc-aaaa-Code-1"
    assert event.agent_id == "Dir-Code" and event.run_id == str(job.run_id)
    line = CommsMessage.objects.get(status="discarded")
    assert line.sender == "ops-anna" and line.recipient == "Dir-Code"


@pytest.mark.parametrize(
    ("ids", "error", "field_text"),
    [
        ([], ServiceError, "select at least one job"),
        (["jc-aaaa-Code-1", "jc-nope"], NotFound, "no job 'jc-nope'"),
        (["jc-aaaa-Code-1", "jc-aaaa-Data-1"], Conflict, "not in the retry queue: jc-aaaa-Data-1"),
    ],
)
def test_a_bad_list_refuses_the_whole_discard(
    failed: list[Job], ids: list[str], error: type, field_text: str
) -> None:
    with pytest.raises(error) as refused:
        jobs_discard(ids, by="op")
    assert field_text in refused.value.errors["job_ids"]
    # All or nothing: the good id is still queued, nothing was recorded.
    assert Job.objects.get(pk="jc-aaaa-Code-1").retryable is True
    assert not Event.objects.filter(event_type="job_discarded").exists()


def test_jobs_retry_resends_each_one(
    failed: list[Job], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        done = jobs_retry(["jc-aaaa-Code-1", "jc-aaaa-Docs-1"], by="op")
    assert {j.job_id for j in done} == {"jc-aaaa-Code-1", "jc-aaaa-Docs-1"}
    assert not Job.objects.filter(retryable=True).exists()
    retried = Event.objects.filter(event_type="job_retried")
    assert retried.count() == 2 and {e.data["by"] for e in retried} == {"op"}


@pytest.mark.parametrize("how", ["run", "bulk"])
def test_a_failed_chain_reruns_its_deepest_job_and_its_ancestors_wait(
    tree: dict[str, Agent], how: str, django_capture_on_commit_callbacks: Any
) -> None:
    """A full disk fails a step and the roll-ups above it: retrying them all re-runs the
    step only; the roll-ups wait for it instead of aggregating its old failed report."""
    run = RunFactory(title="Disk full", status="failed")
    arch = JobFactory(
        run=run, agent=tree["Architect"], job_id="jc-arch", status="failed", retryable=True
    )
    AttemptFactory(job=arch, number=1, phase="aggregate", status="errored", error_kind="storage")
    code = JobFactory(
        run=run,
        agent=tree["Dir-Code"],
        parent=arch,
        job_id="jc-code",
        status="failed",
        retryable=True,
        restart_count=2,
    )
    AttemptFactory(job=code, number=1, status="errored", error_kind="storage")
    with django_capture_on_commit_callbacks(execute=False):
        if how == "run":
            from pas_core.services.retry import run_retry

            done = run_retry(run.run_id, by="op")
        else:  # The child named first: the ancestor is never retried on its own.
            done = jobs_retry(["jc-code", "jc-arch"], by="op")
    assert {j.job_id for j in done} == {"jc-code", "jc-arch"}
    arch.refresh_from_db()
    code.refresh_from_db()
    assert arch.status == Job.Status.WAITING and not arch.retryable and arch.error == ""
    assert arch.attempts.count() == 1  # No new roll-up yet: it waits for jc-code.
    assert code.attempts.count() == 2 and code.current_attempt.status == "queued"
    assert code.restart_count == 0 and not code.retryable
    assert [e.data["job_id"] for e in Event.objects.filter(event_type="job_retried")] == ["jc-code"]


def test_a_bulk_retry_with_a_bad_model_retries_nothing(
    failed: list[Job], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False), pytest.raises(ServiceError):
        jobs_retry(["jc-aaaa-Code-1", "jc-aaaa-Docs-1"], model="nonsense", by="op")
    assert Job.objects.filter(retryable=True).count() == 2
    assert not Event.objects.filter(event_type="job_retried").exists()


def test_an_operator_discards_one_job_from_the_page(operator: Any, failed: list[Job]) -> None:
    response = operator.post(reverse("hmi:job-discard", args=["jc-aaaa-Code-1"]))
    assert response.status_code == 302
    html = operator.get(reverse("hmi:retry")).content.decode()
    assert "jc-aaaa-Code-1 discarded" in html  # The flash message.
    assert 'id="retry-jc-aaaa-Code-1"' not in html
    assert Event.objects.get(event_type="job_discarded").data["by"] == "operator"


def test_bulk_actions_from_the_page(
    operator: Any, failed: list[Job], django_capture_on_commit_callbacks: Any
) -> None:
    url = reverse("hmi:retry-bulk")
    ids = ["jc-aaaa-Code-1", "jc-aaaa-Docs-1"]
    with django_capture_on_commit_callbacks(execute=False):
        response = operator.post(url, {"action": "retry", "selected": ids, "model": ""})
    assert response.status_code == 302
    assert not Job.objects.filter(retryable=True).exists()
    assert Event.objects.filter(event_type="job_retried").count() == 2


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        ({"action": "discard"}, 400, "tick at least one job"),
        ({"action": "explode", "selected": ["jc-aaaa-Code-1"]}, 400, "Select a valid choice"),
        ({"action": "discard", "selected": ["jc-nope"]}, 404, "no job &#x27;jc-nope&#x27;"),
        ({"action": "discard", "selected": ["jc-aaaa-Data-1"]}, 409, "not in the retry queue"),
        (
            {"action": "retry", "selected": ["jc-aaaa-Code-1"], "model": "nonsense"},
            400,
            "must be provider/model",
        ),
    ],
)
def test_bad_bulk_input_is_answered_in_place(
    operator: Any, failed: list[Job], data: dict, status: int, message: str
) -> None:
    response = operator.post(reverse("hmi:retry-bulk"), data)
    assert response.status_code == status
    html = response.content.decode()
    assert message in html and 'role="alert"' in html
    assert Job.objects.filter(retryable=True).count() == 2  # Nothing happened.


@pytest.mark.parametrize(
    ("name", "args", "data"),
    [
        ("hmi:job-discard", ["jc-aaaa-Code-1"], {}),
        ("hmi:retry-bulk", [], {"action": "discard", "selected": ["jc-aaaa-Code-1"]}),
        ("hmi:retry-bulk", [], {"action": "retry", "selected": ["jc-aaaa-Code-1"]}),
    ],
)
def test_a_viewer_may_not_discard_or_bulk_retry(
    viewer: Any, failed: list[Job], name: str, args: list[str], data: dict
) -> None:
    response = viewer.post(reverse(name, args=args), data)
    assert response.status_code == 403
    assert Job.objects.filter(retryable=True).count() == 2


def test_the_queue_rows_reload_as_a_fragment(operator: Any, failed: list[Job]) -> None:
    response = operator.get(reverse("hmi:retry"), {"partial": "rows"})
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="retry-queue"')
    assert "<html" not in html and "csrfmiddlewaretoken" in html  # The user's own forms.


@pytest.mark.parametrize(
    ("event_type", "signalled"),
    [
        ("hhmrs_failure", True),
        ("job_retried", True),
        ("job_discarded", True),
        ("job_started", False),
    ],
)
def test_the_stream_signals_the_retry_page(
    tree: dict[str, Agent], event_type: str, signalled: bool, monkeypatch: Any
) -> None:
    # The stream calls this in a worker thread that opens its own connection; here the
    # test's connection must stay open.
    monkeypatch.setattr("hmi.fragments.close_old_connections", lambda: None)
    event = {"id": 7, "event_type": event_type, "agent_id": "Dir-Code", "data": {}}
    html = fragments_for_events([event], page="retry")
    assert ('id="signal-retry"' in html) is signalled
    # Never a fragment the retry page has no target for.
    assert 'id="tron-counters"' not in html and 'id="node-' not in html
