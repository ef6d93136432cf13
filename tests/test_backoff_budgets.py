"""Restarts that back off, a provider's Retry-After, and budgets that stop a run.

Real workers and beat; live mode talks to the test server (tests/llm_server.py), whose
``planner`` model answers what the offline planner would, with usage, slowly.
"""

from __future__ import annotations

from typing import Any

import pytest

from pas_core.models import Agent, Attempt, Event, Job, Notification, Run
from pas_core.services.faults import fault_inject
from pas_core.services.submit import run_submit
from tests.e2e import short_timings, stack, wait_run
from tests.llm_server import RETRY_AFTER_S, llm_server

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

DOCS = {"title": "Write the guide", "goal": "Write the user guide documentation"}
CODE = {"title": "Parse the config", "goal": "Implement the parser function in code"}


def _step_attempts(run: Run, agent_id: str) -> list[Attempt]:
    job = Job.objects.get(run=run, agent_id=agent_id)
    return list(job.attempts.filter(phase=Attempt.Phase.STEP).order_by("number"))


def test_restarts_after_errors_wait_longer_each_time(tree: Any, proc_env: Any) -> None:
    short_timings(restart_backoff_initial_s=0.5, restart_backoff_factor=2, restart_backoff_jitter=0)
    fault_inject("Dir-Docs", "error", count=3)
    with stack(proc_env()):
        run = wait_run(run_submit(**DOCS).run_id, timeout=120)

    assert run.status == Run.Status.COMPLETED, run.message
    attempts = _step_attempts(run, "Dir-Docs")
    assert [a.error_kind for a in attempts] == ["error", "error", "error", ""]
    waits = [
        (later.started_at - earlier.finished_at).total_seconds()
        for earlier, later in zip(attempts, attempts[1:], strict=False)
    ]
    # 0.5 s, then 1 s, then 2 s: not 16 restarts in a few seconds.
    for waited, backoff in zip(waits, [0.5, 1.0, 2.0], strict=True):
        assert backoff - 0.05 <= waited <= backoff + 3, waits
    restarts = Event.objects.filter(event_type="hhmrs_restart", agent_id="Dir-Docs")
    assert [e.data["delay_s"] for e in restarts.order_by("id")] == [0.5, 1.0, 2.0]
    assert not Event.objects.filter(event_type="hhmrs_timeout").exists()  # Waiting is not hanging.


def test_a_rate_limited_call_is_retried_after_the_providers_retry_after(
    tree: Any, proc_env: Any
) -> None:
    short_timings(restart_backoff_initial_s=0.1)
    Agent.objects.exclude(role="root").update(current_model="custom/planner")
    Agent.objects.filter(pk="Dir-Code").update(current_model="custom/planner-busy")
    with llm_server() as server:
        server.planner_delay_s = 0.3
        env = proc_env(PAS_LLM_MODE="live", PAS_CUSTOM_BASE_URL=server.base_url)
        with stack(env):
            run = wait_run(run_submit(**CODE).run_id, timeout=150)

    assert run.status == Run.Status.COMPLETED, run.message
    first, second = _step_attempts(run, "Dir-Code")
    assert (first.error_kind, first.retry_after_s) == ("rate_limit", RETRY_AFTER_S)
    waited = (second.started_at - first.finished_at).total_seconds()
    assert waited >= RETRY_AFTER_S - 0.05  # The provider asked for 3 s: it got them.
    assert second.not_before is not None
    assert not Event.objects.filter(event_type="hhmrs_timeout").exists()


def test_a_run_that_passes_its_token_budget_stops_naming_it(tree: Any, proc_env: Any) -> None:
    short_timings()
    Agent.objects.exclude(role="root").update(current_model="custom/planner")
    with llm_server() as server:
        server.planner_delay_s = 0.3
        env = proc_env(PAS_LLM_MODE="live", PAS_CUSTOM_BASE_URL=server.base_url)
        with stack(env):
            submitted = run_submit(**CODE, budget_tokens_max=250)
            run = wait_run(submitted.run_id, timeout=150)

    assert run.status == Run.Status.FAILED
    assert run.message.startswith("Budget exceeded: tokens ")
    assert run.tokens_used > 250
    stopped = Event.objects.get(event_type="run_budget_exceeded")
    assert stopped.data["breach"].startswith("tokens ")
    failed = Job.objects.filter(run=run, status=Job.Status.FAILED)
    assert failed.exists()
    for job in failed:
        assert job.current_attempt.error_kind == "budget_exceeded"
        assert job.restart_count == 0 and job.llm_failure_count == 0  # No ladder climbed.
    # One notice for the run, not one per job.
    assert Notification.objects.filter(reason="budget_exceeded").count() == 1


def test_a_run_that_passes_its_wall_time_budget_is_stopped_by_tron(
    tree: Any, proc_env: Any
) -> None:
    short_timings()
    with stack(proc_env(PAS_OFFLINE_DELAY_S="2")):
        run = wait_run(run_submit(**DOCS, budget_wall_s=3).run_id, timeout=90)

    assert run.status == Run.Status.FAILED
    assert run.message.startswith("Budget exceeded: wall time ")
    assert Event.objects.filter(event_type="run_budget_exceeded").count() == 1
