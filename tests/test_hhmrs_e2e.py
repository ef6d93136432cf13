"""Supervision end to end: real workers, real beat, real Redis, short timings."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter

import pytest

from pas_core.models import Attempt, Event, Job, Notification, Run
from pas_core.services.submit import run_submit
from tests.e2e import event_trail, short_timings, stack, wait_run, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HHMRS = ("hhmrs_timeout", "hhmrs_restart", "hhmrs_escalation", "hhmrs_failure")


def test_a_hung_director_is_restarted_escalated_switched_and_the_run_completes(tree, proc_env):
    from pas_core.services.faults import fault_inject

    short_timings(max_restarts=3, max_llm_retries=3)
    # 1 attempt + 3 restarts hang; the 4th timeout escalates and switches the model.
    fault_inject("Dir-Code", "hang", count=4)
    with stack(proc_env()):
        run = run_submit(title="Code only", goal="Implement the parser function in code")
        run = wait_run(run.run_id, timeout=120)

    assert run.status == Run.Status.COMPLETED, run.message
    trail = event_trail("Dir-Code", HHMRS)
    kinds = [t for t, _ in trail]
    # Three timeout/restart pairs, then the fourth timeout escalates to PAS Root.
    assert kinds == [
        "hhmrs_timeout",
        "hhmrs_restart",
        "hhmrs_timeout",
        "hhmrs_restart",
        "hhmrs_timeout",
        "hhmrs_restart",
        "hhmrs_timeout",
        "hhmrs_escalation",
        "hhmrs_restart",
    ]
    assert [d["restart_count"] for t, d in trail[:6] if t == "hhmrs_restart"] == [1, 2, 3]
    escalation = trail[7][1]
    assert escalation["parent_id"] == "Architect"
    assert escalation["grandparent_id"] == "PAS Root"
    assert escalation["reason"] == "max_restarts_exceeded"
    switch = trail[8][1]
    # The grandparent re-sends the job on the next model of Dir-Code's chain.
    assert switch["retry_type"] == "llm_change"
    assert switch["old_llm"] == "google/gemini-2.5-flash"
    assert switch["new_llm"] == "ollama/llama3.1:8b"
    job = Job.objects.get(run=run, agent_id="Dir-Code")
    assert job.status == Job.Status.SUCCEEDED
    assert job.llm_failure_count == 1 and job.restart_count == 0
    last = job.attempts.order_by("-number").first()
    assert last.model == "ollama/llama3.1:8b" and last.status == Attempt.Status.SUCCEEDED
    # The run completed after the switch.
    last_switch = Event.objects.filter(event_type="hhmrs_restart", agent_id="Dir-Code").last()
    done = Event.objects.get(event_type="run_completed", run_id=str(run.run_id))
    assert done.id > last_switch.id


def test_a_job_hanging_on_every_model_fails_for_good_and_a_retry_completes_it(
    tree, proc_env, client
):
    from pas_core.services.faults import fault_inject, faults_clear

    short_timings(max_restarts=1, max_llm_retries=1)
    fault_inject("Dir-Code", "hang", count=50)
    with stack(proc_env()) as running:
        run = run_submit(title="Code only", goal="Implement the parser function in code")
        run = wait_run(run.run_id, timeout=120)

        assert run.status == Run.Status.FAILED
        assert "Code" in run.message
        job = Job.objects.get(run=run, agent_id="Dir-Code")
        # (max_restarts + 1) x (max_llm_retries + 1) attempts, then the retry queue.
        assert job.attempts.count() == 4
        assert job.status == Job.Status.FAILED and job.retryable
        failure = Event.objects.get(event_type="hhmrs_failure", agent_id="Dir-Code")
        assert failure.data["reason"] == "max_llm_retries_exceeded"
        assert failure.data["run_id"] == str(run.run_id)
        assert Notification.objects.filter(job=job, read=False).exists()

        faults_clear("Dir-Code")
        client.force_login(tree_admin())
        answer = client.post(f"/api/runs/{run.run_id}/retry")
        assert answer.status_code == 202, answer.content
        assert running["agents"].alive
        run = wait_until(
            lambda: Run.objects.filter(pk=run.run_id, status=Run.Status.COMPLETED).first(),
            "the retried run to complete",
            90,
        )
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    # The retry starts again from the primary model with fresh counters.
    assert job.attempts.order_by("-number").first().model == "google/gemini-2.5-flash"


def tree_admin():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username="admin")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_a_worker_killed_mid_attempt_loses_nothing(tree, proc_env):
    from pas_core.services.faults import fault_inject

    short_timings()
    # A slow step keeps beating for a few seconds: time to kill its worker process.
    fault_inject("Dir-Code", "slow", count=1)
    with stack(proc_env()) as running:
        run = run_submit(title="Code only", goal="Implement the parser function in code")
        busy = wait_until(
            lambda: Attempt.objects.filter(
                agent_id="Dir-Code", status=Attempt.Status.RUNNING
            ).first(),
            "Dir-Code's attempt to run",
            60,
        )
        for child in _children(running["agents"].pid):
            os.kill(child, signal.SIGKILL)
        run = wait_run(run.run_id, timeout=120)

    assert run.status == Run.Status.COMPLETED, run.message
    busy.refresh_from_db()
    # Killed from outside, nobody to blame: its supervisor replaced the worker and the
    # attempt was re-sent without spending the job's restart budget. Never a success.
    assert busy.status == Attempt.Status.KILLED
    assert busy.error == "worker process replaced (killed); re-sent, not counted"
    assert Job.objects.get(pk=busy.job_id).restart_count == 0
    assert Event.objects.filter(event_type="worker_replaced").exists()
    completed = Counter(
        e.job_id for e in Event.objects.filter(event_type="job_completed", run_id=str(run.run_id))
    )
    # Every job's result was recorded exactly once.
    assert completed and set(completed.values()) == {1}
    assert not Attempt.objects.filter(
        job__run=run, status__in=[Attempt.Status.RUNNING, Attempt.Status.QUEUED]
    ).exists()
