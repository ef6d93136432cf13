"""The worker harness: run one attempt from start to its one recorded end.

Every end is a conditional update (``services.transitions``), so a result racing a
timeout, two sweeps, or a message Celery delivers twice resolve to one winner:

- ``queued -> running`` happens once (a message delivered again finds ``running``);
- ``running -> succeeded | errored`` by this harness, ``running -> timed_out | killed``
  by supervision: whoever moves first wins, the other's update matches no row;
- an attempt that is no longer its job's current one has its result discarded.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings

from ..config import hhmrs_get
from ..errors import AttemptError
from ..models import Attempt
from ..services.attempts import attempt_fail, attempt_start
from ..services.faults import fault_take
from ..services.jobs import attempt_finish
from ..stores.events import event_emit
from . import roles
from .beater import Beater
from .faults import fault_act
from .types import Complete, Delegate, StepContext

log = logging.getLogger(__name__)


def attempt_execute(attempt_id: int, *, redelivered: bool = False) -> str:
    """Run one attempt (the body of the Celery task); return what happened.

    ``redelivered``: Celery gave the message back because the worker process running
    it died (``reject_on_worker_lost``). The attempt is then failed as a crash at once
    instead of waiting for TRON to notice its beats stopped; it is never run again.
    """
    attempt = (
        Attempt.objects.select_related("job", "job__run", "job__parent", "agent")
        .filter(pk=attempt_id)
        .first()
    )
    if attempt is None:
        return "missing"
    if attempt.job.current_attempt_id != attempt.pk:
        return "stale"  # Fencing: a newer attempt took over; this message is old.
    if not attempt_start(attempt):
        if redelivered and attempt_fail(attempt, kind="crash", message="worker process lost"):
            return "worker-lost"
        return "not-queued"  # Delivered again, or killed before it ran: never re-run.
    cfg = hhmrs_get()
    beat = Beater(attempt.pk, agent_id=attempt.agent_id, interval_s=cfg.heartbeat_interval_s)
    try:
        outcome = _run_step(attempt, beat)
    except AttemptError as exc:
        attempt_fail(attempt, kind=exc.kind, message=exc.message)
        return f"failed:{exc.kind}"
    except Exception as exc:  # noqa: BLE001 - any bug in a step is a crash of the attempt
        log.exception("attempt %s crashed", attempt.pk)
        attempt_fail(attempt, kind="crash", message=f"{exc.__class__.__name__}: {exc}")
        return "failed:crash"
    children = outcome.children if isinstance(outcome, Delegate) else None
    result = outcome.result if isinstance(outcome, Complete) else None
    try:
        won = attempt_finish(attempt, children=children, result=result)
        return "done" if won else "discarded"
    except AttemptError as exc:  # The outcome could not be recorded (e.g. a bad card).
        attempt_fail(attempt, kind=exc.kind, message=exc.message)
        return f"failed:{exc.kind}"


def _run_step(attempt: Attempt, beat: Beater) -> Delegate | Complete:
    job = attempt.job
    fault = fault_take(attempt.agent_id, attempt.model)
    if fault:
        event_emit(
            "fault_triggered",
            {
                "agent_id": attempt.agent_id,
                "job_id": job.pk,
                "kind": fault,
                "attempt": attempt.number,
                "message": f"{attempt.agent_id}: injected {fault} (attempt {attempt.number})",
            },
        )
        if fault != "bad_output":
            fault_act(fault, beat)
    ctx = StepContext(
        run=job.run,
        job=job,
        attempt=attempt,
        agent=attempt.agent,
        model=attempt.model,
        beat=beat,
        artifacts_dir=Path(settings.PAS_ARTIFACTS_DIR) / "runs" / str(job.run_id),
        fault=fault if fault == "bad_output" else None,
    )
    beat(0.05, "step started")
    if attempt.phase == Attempt.Phase.AGGREGATE:
        ctx.children = list(job.children.select_related("agent").order_by("created_at", "job_id"))
        return roles.aggregate(ctx)
    return roles.step(ctx)
