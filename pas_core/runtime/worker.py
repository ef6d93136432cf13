"""The worker harness: run one attempt from start to its one recorded end.

Every end is a conditional update (``services.transitions``), so a result racing a
timeout, two sweeps, or a message Celery delivers twice resolve to one winner:

- ``queued -> running`` happens once (a message delivered again finds ``running``);
- ``running -> succeeded | errored`` by this harness, ``running -> timed_out | killed``
  by supervision: whoever moves first wins, the other's update matches no row;
- an attempt that is no longer its job's current one has its result discarded.

Many attempts share one process (one thread each, see ``inflight``): each is
registered as held by this process while it runs, and a step that calls a model first
takes one of its provider's slots, waiting ``queued`` (not running, not timing out)
while they are all busy.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from django.conf import settings
from django.db import connection

from .. import inflight
from ..config import Hhmrs, hhmrs_get
from ..errors import AttemptError
from ..models import Attempt
from ..selectors import provider_cap
from ..services.attempts import attempt_fail, attempt_start, attempt_waits
from ..services.faults import fault_take
from ..services.jobs import attempt_finish
from ..stores import slots, workers
from ..stores.events import event_emit
from . import roles
from .beater import Beater
from .faults import fault_act
from .types import Complete, Delegate, StepContext

log = logging.getLogger(__name__)

SLOT_POLL_S = (0.2, 0.5)  # A waiting attempt asks again after a random pause in this range.
RECHECK_EVERY = 20  # ... and checks it is still wanted every this many asks.


def attempt_execute(attempt_id: int, *, redelivered: bool = False) -> str:
    """Run one attempt (the body of the Celery task); return what happened.

    ``redelivered``: Celery gave the message back because the worker process running
    it died. The attempt is then failed as a crash at once instead of waiting for TRON
    to notice its beats stopped; it is never run again.
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
    wid = workers.worker_id()
    with inflight.holding(attempt.pk) as handle:
        workers.held_add(wid, attempt.pk, handle.native_id)
        try:
            return _attempt_run(attempt, redelivered=redelivered, worker=wid)
        except inflight.AttemptKilled:
            return "killed"  # Supervision ended it; its row says how.
        finally:
            workers.held_remove(wid, attempt.pk)


def model_provider(attempt: Attempt) -> str:
    """Return the provider whose slot the attempt's step needs ("" when it calls no model).

    Only live mode calls providers; the offline planner has none to protect.
    """
    if settings.PAS_LLM_MODE != "live":
        return ""
    if attempt.phase != Attempt.Phase.STEP or attempt.agent.role == "root":
        return ""
    provider, sep, _ = attempt.model.partition("/")
    return provider if sep else ""


def _attempt_run(attempt: Attempt, *, redelivered: bool, worker: str) -> str:
    cfg = hhmrs_get()
    provider = model_provider(attempt)
    lease_s = max(60.0, 3 * cfg.heartbeat_interval_s)
    if provider and not _slot_wait(attempt, provider, lease_s=lease_s):
        return "not-queued"  # Restarted, switched or killed while it waited.
    try:
        if not attempt_start(attempt, worker=worker):
            if redelivered and attempt_fail(attempt, kind="crash", message="worker process lost"):
                return "worker-lost"
            return "not-queued"  # Delivered again, or killed before it ran: never re-run.
        return _step_run(attempt, cfg, provider=provider, lease_s=lease_s)
    finally:
        if provider:
            slots.slot_give_back(provider, attempt.pk)


def _slot_wait(attempt: Attempt, provider: str, *, lease_s: float) -> bool:
    """Wait for a slot of ``provider``; False if the attempt stopped being wanted."""
    cap = provider_cap(provider)
    asks = 0
    while not slots.slot_take(provider, attempt.pk, cap=cap, lease_s=lease_s):
        asks += 1
        if asks % RECHECK_EVERY == 0:
            if not attempt_waits(attempt):
                return False
            cap = provider_cap(provider)  # An operator may have raised it meanwhile.
        # Hold no database connection while waiting: a hundred waiting threads would
        # otherwise hold a hundred idle connections (PostgreSQL allows 100 by default).
        connection.close()
        inflight.wait(random.uniform(*SLOT_POLL_S))
    return True


def _step_run(attempt: Attempt, cfg: Hhmrs, *, provider: str, lease_s: float) -> str:
    beat = Beater(
        attempt.pk,
        agent_id=attempt.agent_id,
        interval_s=cfg.heartbeat_interval_s,
        renew=(lambda: slots.slot_renew(provider, attempt.pk, lease_s=lease_s))
        if provider
        else None,
    )
    try:
        outcome = _run_step(attempt, beat)
    except AttemptError as exc:
        attempt_fail(attempt, kind=exc.kind, message=exc.message, retry_after_s=exc.retry_after_s)
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
            fault_act(fault, beat, attempt_id=attempt.pk)
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
