"""Budgets: what a run's model calls spend, and the stop when it goes past a limit.

Spend comes from the providers' streamed usage (``stream_options.include_usage``),
attempt by attempt, failed ones included: a restart costs tokens too. A run that goes
past ``budget_tokens_max``, ``budget_cost_usd_max`` or ``budget_wall_s`` stops: every
open job fails with ``budget_exceeded`` (DESIGN 5: the route is ``fail``, no restart,
no model switch), the user is told once, and the run fails naming the budget.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .. import policy
from ..models import Attempt, Job, Notification, Run
from ..stores.events import event_emit
from .supervision import OPEN, job_fail_permanently, jobs_locked
from .transitions import attempts_move

LIVE = (Attempt.Status.QUEUED, Attempt.Status.RUNNING)


def run_breach(run: Run, *, now: Any = None) -> str:
    """Return which budget the run has gone past ("" when none)."""
    elapsed = None
    if run.started_at is not None:
        elapsed = ((now or timezone.now()) - run.started_at).total_seconds()
    return policy.budget_breach(
        tokens=run.tokens_used,
        tokens_max=run.budget_tokens_max,
        cost_usd=run.cost_usd,
        cost_usd_max=run.budget_cost_usd_max,
        elapsed_s=elapsed,
        wall_s_max=run.budget_wall_s,
    )


def attempt_spend(attempt: Attempt, *, tokens: int, cost_usd: float) -> str:
    """Add one model call's usage to its attempt and run; return the budget broken, if any."""
    with transaction.atomic():
        Attempt.objects.filter(pk=attempt.pk).update(
            tokens=F("tokens") + tokens, cost_usd=F("cost_usd") + cost_usd
        )
        Run.objects.filter(pk=attempt.job.run_id).update(
            tokens_used=F("tokens_used") + tokens, cost_usd=F("cost_usd") + cost_usd
        )
        run = Run.objects.get(pk=attempt.job.run_id)
    if run.status not in (Run.Status.QUEUED, Run.Status.RUNNING):
        return ""
    return run_breach(run)


def run_budget_stop(run_id: Any, *, breach: str) -> int:
    """Stop a run that broke a budget: fail its open jobs; return how many.

    Their live attempts end (``budget_exceeded``), their parents roll up what is left,
    and the run fails with ``Budget exceeded: <which>``. Idempotent: a second stop
    of the same run finds nothing open.
    """
    reason = f"Budget exceeded: {breach}"
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        if run.status not in (Run.Status.QUEUED, Run.Status.RUNNING) or run.stop_reason:
            return 0
        Run.objects.filter(pk=run_id).update(stop_reason=reason[:200])
        jobs = jobs_locked(
            Job.objects.filter(run_id=run_id, status__in=OPEN).values_list("pk", flat=True)
        )
        live = [
            j.current_attempt
            for j in jobs.values()
            if j.current_attempt and j.current_attempt.status in LIVE
        ]
        now = timezone.now()
        fields: dict[str, Any] = {
            "error_kind": "budget_exceeded",
            "error": reason,
            "finished_at": now,
        }
        attempts_move(
            [a.pk for a in live if a.status == Attempt.Status.RUNNING],
            to=Attempt.Status.ERRORED,
            **fields,
        )
        attempts_move(
            [a.pk for a in live if a.status == Attempt.Status.QUEUED],
            to=Attempt.Status.KILLED,
            **fields,
        )
        for job in jobs.values():
            job.refresh_from_db(fields=["status"])
            if job.current_attempt is not None:
                job.current_attempt.refresh_from_db()
            job_fail_permanently(job, reason="budget_exceeded", notify=False)
        event_emit(
            "run_budget_exceeded",
            {"run_id": str(run_id), "breach": breach, "jobs": sorted(jobs), "message": reason},
        )
        Notification.objects.create(
            title=f"Run {run.title!r} stopped: {reason}"[:200],
            body=f"Run {run.title!r} ({run.run_id}) spent {run.tokens_used} tokens and "
            f"${run.cost_usd:.4f}; {len(jobs)} open job(s) failed with budget_exceeded.",
            reason="budget_exceeded",
            run=run,
        )
    return len(jobs)


def runs_over_wall_time(now: Any = None) -> list[tuple[Any, str]]:
    """Return ``(run id, breach)`` of running runs past their wall-time budget."""
    now = now or timezone.now()
    runs = Run.objects.filter(
        status=Run.Status.RUNNING, budget_wall_s__isnull=False, stop_reason=""
    ).exclude(started_at=None)
    return [(run.pk, b) for run in runs if (b := run_breach(run, now=now))]
