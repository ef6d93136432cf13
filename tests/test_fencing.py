"""Fencing: an attempt that is no longer the job's current one changes nothing.

No worker runs here: ``attempt_dispatch`` sends its message to this test's Redis
database, where nothing consumes it, and the task bodies are called directly.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from pas_core.config import hhmrs_get
from pas_core.models import Agent, Attempt, Event, Job, Run
from pas_core.runtime import worker
from pas_core.runtime.beater import Beater
from pas_core.services import attempts, jobs, supervision
from pas_core.services.submit import run_submit
from pas_core.stores import heartbeats
from tests.factories import time_out

pytestmark = pytest.mark.django_db(transaction=True)


def _job(agent_id: str = "Prog-GPT-001") -> Job:
    run = Run.objects.create(title="Fencing", goal="Write the guide")
    return jobs.job_create(
        run=run,
        agent=Agent.objects.get(pk=agent_id),
        card={"task": "Write docs/guide.md", "lane": "Docs", "files": ["docs/guide.md"]},
        job_id=f"jc-{str(run.run_id)[:8]}-fence",
        lane="Docs",
    )


def _start(attempt: Attempt) -> Attempt:
    """Move a queued attempt to running as its task would, without running the step."""
    now = timezone.now()
    Attempt.objects.filter(pk=attempt.pk, status=Attempt.Status.QUEUED).update(
        status=Attempt.Status.RUNNING, started_at=now, last_heartbeat_at=now
    )
    heartbeats.hb_register(attempt.pk, agent_id=attempt.agent_id, job_id=attempt.job_id)
    Job.objects.filter(pk=attempt.job_id).update(status=Job.Status.RUNNING)
    attempt.refresh_from_db()
    return attempt


def _restart(job: Job) -> Attempt:
    job = Job.objects.select_related("agent", "current_attempt").get(pk=job.pk)
    return supervision.jobs_restart([(job, "timeout")], cfg=hhmrs_get())[0]


LATE = {"state": "completed", "artifacts": ["docs/late.md"], "summary": "late"}


def test_a_restarted_attempts_late_result_is_discarded(tree):
    job = _job()
    first = _start(attempts.attempt_create(job))
    second = _restart(job)
    assert second.number == first.number + 1

    # The old attempt's step finishes after the restart: its result is not recorded.
    assert jobs.attempt_finish(first, result=LATE) is False
    job.refresh_from_db()
    assert job.current_attempt_id == second.pk
    assert job.status == Job.Status.QUEUED and job.result is None
    first.refresh_from_db()
    assert first.status == Attempt.Status.KILLED
    assert not Event.objects.filter(event_type="job_completed", job_id=job.pk).exists()


def test_a_still_running_superseded_attempt_ends_killed_without_its_result(tree):
    job = _job()
    first = _start(attempts.attempt_create(job))
    # A second attempt is dispatched while the first still runs (nobody killed it).
    second = attempts.attempt_create(job)

    assert jobs.attempt_finish(first, result=LATE) is False
    first.refresh_from_db()
    # Never "succeeded": nothing it produced was kept, and it is no longer supervised.
    assert first.status == Attempt.Status.KILLED
    assert "superseded" in first.error
    assert heartbeats.hb_last(first.pk) is None
    job.refresh_from_db()
    assert (job.current_attempt_id, job.status, job.result) == (second.pk, "queued", None)

    # The current attempt's result, when it comes, is the one recorded.
    _start(second)
    result = {"state": "completed", "artifacts": ["docs/guide.md"]}
    assert jobs.attempt_finish(second, result=result) is True
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.result == result


def test_a_result_racing_a_timeout_loses_once_the_timeout_won(tree):
    job = _job()
    attempt = _start(attempts.attempt_create(job))
    now = timezone.now().timestamp()
    assert time_out(attempt.pk, now=now, last_beat=now - 5) is not None

    assert jobs.attempt_finish(attempt, result=LATE) is False
    attempt.refresh_from_db()
    assert attempt.status == Attempt.Status.TIMED_OUT
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED and job.result is None  # Re-sent by its parent.


def test_an_old_message_for_a_superseded_attempt_is_stale(tree):
    job = _job()
    first = attempts.attempt_create(job)
    _restart(job)  # The first attempt never started: it is killed while queued.

    # Its message arrives late (a slow queue, a re-delivery): the task exits at once.
    assert worker.attempt_execute(first.pk) == "stale"
    first.refresh_from_db()
    assert first.status == Attempt.Status.KILLED and first.started_at is None
    assert not Event.objects.filter(event_type="job_started", job_id=job.pk).exists()


def test_a_stale_attempts_late_beat_does_not_bring_it_back(tree):
    job = _job()
    first = _start(attempts.attempt_create(job))
    _restart(job)
    beat = Beater(first.pk, agent_id=first.agent_id, interval_s=0)
    beat(0.5, "still working")
    # The killed attempt is out of the sweep's set and stays out.
    assert heartbeats.hb_last(first.pk) is None


def test_a_message_delivered_twice_runs_the_work_once(tree):
    run = run_submit(title="Docs", goal="Write the user guide documentation")
    root = Job.objects.get(run=run)
    attempt = root.current_attempt

    assert worker.attempt_execute(attempt.pk) == "done"
    # Celery delivers the same message again (e.g. after a visibility timeout).
    assert worker.attempt_execute(attempt.pk) == "not-queued"

    attempt.refresh_from_db()
    assert attempt.status == Attempt.Status.SUCCEEDED
    started = Event.objects.filter(event_type="job_started", job_id=root.pk)
    assert started.count() == 1
    # PAS Root delegated to the Architect once: one child job, one attempt for it.
    children = Job.objects.filter(parent=root)
    assert [c.agent_id for c in children] == ["Architect"]
    assert children.get().attempts.count() == 1


def test_a_redelivered_message_fails_a_running_attempt_as_a_crash_once(tree):
    job = _job()
    attempt = _start(attempts.attempt_create(job))

    # The worker child running it died; Celery hands the message back (redelivered).
    assert worker.attempt_execute(attempt.pk, redelivered=True) == "worker-lost"
    attempt.refresh_from_db()
    assert (attempt.status, attempt.error_kind) == (Attempt.Status.ERRORED, "crash")
    assert heartbeats.hb_last(attempt.pk) is None
    # A second re-delivery changes nothing: it is never run, never failed twice.
    assert worker.attempt_execute(attempt.pk, redelivered=True) == "not-queued"
    assert Event.objects.filter(event_type="attempt_failed", job_id=job.pk).count() == 1

    # Supervision restarts the job once, however often the failure is reported.
    assert supervision.attempts_failure_handle([attempt.pk])[attempt.pk] == "restarted"
    assert supervision.attempts_failure_handle([attempt.pk])[attempt.pk] == "handled"
    job.refresh_from_db()
    assert job.restart_count == 1
    assert job.attempts.count() == 2
    assert job.current_attempt.status == Attempt.Status.QUEUED
