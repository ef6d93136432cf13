"""Each injected fault does what it says, through real workers, real beat, real Redis.

``hang`` (stops beating, caught by TRON, restarted, escalated, switched) is covered in
tests/test_hhmrs_e2e.py; these cover ``crash``, ``error``, ``bad_output`` and ``slow``,
and a fault scoped to a model the agent does not use.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from pas_core.models import Attempt, Event, Fault, Job, Run
from pas_core.runtime.faults import CRASH_EXIT_STATUS
from pas_core.services.faults import fault_inject
from pas_core.services.submit import run_submit
from pas_core.stores import heartbeats
from tests.e2e import short_timings, stack, wait_run, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DOCS = {"title": "User guide", "goal": "Write the user guide documentation"}
CODE = {"title": "Parser", "goal": "Implement the parser function in code"}


def _run_with_fault(proc_env, agent_id: str, kind: str, directive: dict[str, str]):
    """Arm one ``kind`` fault on ``agent_id``; run ``directive`` to its end and return it."""
    short_timings()
    fault_inject(agent_id, kind, count=1)
    with stack(proc_env()):
        run = run_submit(**directive)
        return wait_run(run.run_id, timeout=90)


def _restarted_once(run: Run, agent_id: str) -> tuple[Job, Attempt, Attempt]:
    """Return the agent's job and its two attempts; assert the second one succeeded."""
    job = Job.objects.get(run=run, agent_id=agent_id)
    attempts = list(job.attempts.filter(phase=Attempt.Phase.STEP).order_by("number"))
    assert len(attempts) == 2, [(a.number, a.status, a.error_kind) for a in attempts]
    first, second = attempts
    # The parent restarted the job once, on the same model, and the new attempt worked.
    assert job.status == Job.Status.SUCCEEDED
    assert job.restart_count == 1 and job.llm_failure_count == 0
    assert second.status == Attempt.Status.SUCCEEDED
    assert second.model == first.model
    restarts = Event.objects.filter(event_type="hhmrs_restart", agent_id=agent_id)
    assert restarts.count() == 1
    assert restarts.get().data["restart_count"] == 1
    return job, first, second


def _children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def test_crash_kills_the_worker_process_and_only_its_attempt_is_blamed(tree, proc_env):
    short_timings()
    fault_inject("Dir-Docs", "crash", count=1)
    with stack(proc_env()) as running:
        agents = running["agents"]
        before = _children(agents.pid)
        run = run_submit(**DOCS)
        run = wait_run(run.run_id, timeout=90)
        # The supervisor replaced the worker process that died.
        gone = wait_until(lambda: before - _children(agents.pid), "the worker replaced", 15)
        log = agents.log_text()

    assert run.status == Run.Status.COMPLETED, run.message
    _, first, _ = _restarted_once(run, "Dir-Docs")
    assert Fault.objects.get(agent_id="Dir-Docs").remaining == 0
    # The crash named its attempt before it died: that one failed as a crash (and its
    # job counted the restart), never as a success.
    assert (first.status, first.error_kind) == (Attempt.Status.ERRORED, "crash")
    assert len(before) == 1 and gone == before
    assert f"exited ({CRASH_EXIT_STATUS}); culprit [{first.pk}]" in log
    replaced = Event.objects.get(event_type="worker_replaced")
    assert replaced.data["cause"] == "crash" and replaced.data["culprits"] == [first.pk]


@pytest.mark.parametrize("kind", ["error", "bad_output"])
def test_a_failing_attempt_is_restarted_and_the_run_completes(tree, proc_env, kind):
    run = _run_with_fault(proc_env, "Dir-Docs", kind, DOCS)

    assert run.status == Run.Status.COMPLETED, run.message
    _, first, _ = _restarted_once(run, "Dir-Docs")
    # The attempt failed with the fault's own kind and was routed to a restart.
    assert (first.status, first.error_kind) == (Attempt.Status.ERRORED, kind)
    failed = Event.objects.get(event_type="attempt_failed", agent_id="Dir-Docs")
    assert failed.data["kind"] == kind
    restart = Event.objects.get(event_type="hhmrs_restart", agent_id="Dir-Docs")
    assert restart.data["reason"] == kind
    assert not Event.objects.filter(event_type="hhmrs_timeout").exists()


def test_slow_keeps_beating_and_completes_without_a_timeout(tree, proc_env):
    short_timings()  # Timeout after 2 s without a beat; the slow step takes about 3 s.
    fault_inject("Dir-Docs", "slow", count=1)
    with stack(proc_env()):
        run = run_submit(**DOCS)
        attempt = wait_until(
            lambda: Attempt.objects.filter(
                agent_id="Dir-Docs", status=Attempt.Status.RUNNING
            ).first(),
            "Dir-Docs's attempt to run",
            60,
        )
        scores = []
        while Attempt.objects.filter(pk=attempt.pk, status=Attempt.Status.RUNNING).exists():
            score = heartbeats.hb_last(attempt.pk)
            if score is not None and (not scores or score != scores[-1]):
                scores.append(score)
            time.sleep(0.1)
        run = wait_run(run.run_id, timeout=60)

    assert run.status == Run.Status.COMPLETED, run.message
    # Its score in the sweep's set moved on while the slow step ran: it was beating.
    assert len(scores) >= 3, scores
    assert scores == sorted(scores)
    attempt.refresh_from_db()
    assert attempt.status == Attempt.Status.SUCCEEDED
    assert (attempt.finished_at - attempt.started_at).total_seconds() >= 2.5
    # Slow is not dead: no timeout, no restart, one attempt.
    assert not Event.objects.filter(event_type__startswith="hhmrs_").exists()
    job = Job.objects.get(run=run, agent_id="Dir-Docs")
    assert job.restart_count == 0
    assert job.attempts.filter(phase=Attempt.Phase.STEP).count() == 1


def test_a_fault_scoped_to_a_model_not_in_use_never_fires(tree, proc_env):
    short_timings()
    # Dir-Code runs on google/gemini-2.5-flash; the hang is armed for its fallback only.
    assert tree["Dir-Code"].current_model == "google/gemini-2.5-flash"
    fault_inject("Dir-Code", "hang", count=1, model="ollama/llama3.1:8b")
    with stack(proc_env()):
        run = run_submit(**CODE)
        run = wait_run(run.run_id, timeout=90)

    assert run.status == Run.Status.COMPLETED, run.message
    assert not Event.objects.filter(event_type="fault_triggered").exists()
    assert not Event.objects.filter(event_type__startswith="hhmrs_").exists()
    # Still armed, waiting for an attempt on that model.
    assert Fault.objects.get(agent_id="Dir-Code").remaining == 1
    job = Job.objects.get(run=run, agent_id="Dir-Code")
    assert set(job.attempts.values_list("model", flat=True)) == {"google/gemini-2.5-flash"}
