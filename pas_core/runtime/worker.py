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

import errno
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from django.conf import settings
from django.db import DatabaseError, connection

from .. import dispatch, inflight
from ..config import Hhmrs, hhmrs_get
from ..errors import AttemptError
from ..models import Attempt, Job
from ..selectors import provider_cap
from ..services.attempts import attempt_fail, attempt_start, attempt_waits
from ..services.faults import fault_take
from ..services.jobs import attempt_finish
from ..stores import slots, statements, workers
from ..stores.events import event_emit
from . import roles
from .beater import Beater
from .faults import fault_act
from .types import Complete, Delegate, StepContext

log = logging.getLogger(__name__)

SLOT_POLL_S = (0.2, 0.5)  # A waiting attempt asks again after a random pause in this range.
RECHECK_EVERY = 20  # ... and checks it is still wanted every this many asks.
# Faults the step itself acts out (it garbles its reply, or makes its change fail).
STEP_FAULTS = ("bad_output", "failing_output")
# A step's write that fails for one of these failed for the machine's disk.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT}

T = TypeVar("T")


def attempt_execute(attempt_id: int, *, redelivered: bool = False) -> str:
    """Run one attempt (the body of the Celery task); return what happened.

    ``redelivered``: Celery gave the message back because the worker process running
    it died. The attempt is then failed as a crash at once instead of waiting for TRON
    to notice its beats stopped; it is never run again.

    Then, on the same thread, the parent's aggregate this attempt's end made ready (and
    the grandparent's that one's end made ready, and so on): the thread is free, and an
    aggregate calls no model. Sent through the broker instead, it waited behind every
    model step queued for a thread (``dispatch.running_here``).
    """
    with dispatch.running_here() as ahead:
        outcome = _attempt_execute(attempt_id, redelivered=redelivered)
        while ahead:
            pk, task_id = ahead.pop(0)
            try:
                _attempt_execute(pk, redelivered=False)
            except Exception as exc:  # noqa: BLE001 - e.g. the database away before it started
                log.warning("aggregate attempt %s goes through the broker: %r", pk, exc)
                connection.close()
                dispatch.attempts_send([(pk, task_id, 0.0)])
    return outcome


def _attempt_execute(attempt_id: int, *, redelivered: bool) -> str:
    # The attempt with its job, run and agent: a statement built once (what the ORM's
    # select_related would read, for a tenth of the CPU: every step starts here).
    attempt = statements.row_with_related(Attempt, attempt_id, ["job", "job__run", "agent"])
    if attempt is None:
        return "missing"
    if attempt.job.current_attempt_id != attempt.pk:
        return "stale"  # Fencing: a newer attempt took over; this message is old.
    wid = workers.worker_id()
    with inflight.holding(attempt.pk) as handle:
        # The registry is for finding work a dead process held; Redis not answering
        # must not stop the work itself (heartbeats and TRON cover a running attempt).
        _registry(lambda: workers.held_add(wid, attempt.pk, handle.native_id))
        try:
            return _attempt_run(attempt, redelivered=redelivered, worker=wid)
        except inflight.AttemptKilled:
            return "killed"  # Supervision ended it; its row says how.
        finally:
            _registry(lambda: workers.held_remove(wid, attempt.pk))


def _registry(call: Callable[[], None]) -> None:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - Redis away: the attempt goes on unregistered
        log.warning("worker registry not updated (Redis: %s)", exc)


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
    failure: AttemptError | None = None
    try:
        outcome = until_db(lambda: _run_step(attempt, beat), beat)
    except AttemptError as exc:
        failure = exc
    except Exception as exc:  # noqa: BLE001 - any bug in a step is a crash of the attempt
        failure = _unexpected(attempt, exc)
    if failure is None:
        children = outcome.children if isinstance(outcome, Delegate) else None
        result = outcome.result if isinstance(outcome, Complete) else None
        try:
            # A finished step's outcome waits here, in memory, while the database is away.
            won = until_db(lambda: attempt_finish(attempt, children=children, result=result), beat)
            return "done" if won else "discarded"
        except AttemptError as exc:  # The outcome could not be recorded (e.g. a bad card).
            failure = exc
    failed = failure
    until_db(lambda: _fail(attempt, failed), beat)
    return f"failed:{failed.kind}"


def _unexpected(attempt: Attempt, exc: Exception) -> AttemptError:
    """Say what an unexpected exception of a step was: the machine's disk, or a crash."""
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        # Not the agent: failed without climbing the ladder, resumable once space is freed.
        where = exc.filename or "the artifacts folder"
        return AttemptError("storage", f"the disk is full or read-only: {exc.strerror} ({where})")
    log.exception("attempt %s crashed", attempt.pk)
    return AttemptError("crash", f"{exc.__class__.__name__}: {exc}")


def _fail(attempt: Attempt, failure: AttemptError) -> bool:
    return attempt_fail(
        attempt, kind=failure.kind, message=failure.message, retry_after_s=failure.retry_after_s
    )


def db_backoff(tries: int) -> float:
    """Return how long to wait before trying the database again (0.5 s doubling to 15 s)."""
    return float(min(15.0, 0.5 * 2 ** min(tries, 5)))


DB_WAIT_MAX_S = 2.0  # While the database is away, it is asked again at least this often.
DB_WAIT_LOG_EVERY = 15  # Tries between two "still waiting" lines (about 30 s).


def until_db(fn: Callable[[], T], beat: Beater) -> T:
    """Run ``fn``; while the database is away, wait and run it again.

    A database outage is not the agent's failure: the attempt keeps beating (so TRON
    does not take it for a hang, however short its timeout) and keeps what it has done
    (a finished step's outcome) until it can be written. The database is asked again
    every 0.25 s doubling to ``DB_WAIT_MAX_S``, so work moves on soon after it is back.
    A kill ends the wait (AttemptKilled).
    """
    tries = 0
    started = time.monotonic()
    while True:
        try:
            result = fn()
            if tries:
                log.info("the database is back after %.1f s", time.monotonic() - started)
            return result
        except DatabaseError as exc:
            if tries == 0:
                log.warning("an attempt waits for the database: %s", exc)
            elif tries % DB_WAIT_LOG_EVERY == 0:
                waited_s = time.monotonic() - started
                log.warning("still waiting for the database after %.0f s: %s", waited_s, exc)
            connection.close()  # A broken connection must not be handed out again.
            pause = min(DB_WAIT_MAX_S, 0.25 * 2**tries)
            slice_s = max(0.05, min(pause, beat.interval_s / 2))
            waited = 0.0
            while waited < pause:
                beat(0.9, "waiting for the database")
                inflight.wait(min(slice_s, pause - waited))
                waited += slice_s
            tries += 1


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
        if fault not in STEP_FAULTS:
            fault_act(fault, beat, attempt_id=attempt.pk)
    ctx = StepContext(
        run=job.run,
        job=job,
        attempt=attempt,
        agent=attempt.agent,
        model=attempt.model,
        beat=beat,
        artifacts_dir=Path(settings.PAS_ARTIFACTS_DIR) / "runs" / str(job.run_id),
        fault=fault if fault in STEP_FAULTS else None,
    )
    beat(0.05, "step started")
    if attempt.phase == Attempt.Phase.AGGREGATE:
        ctx.children = statements.rows_where(Job, "parent", job.pk, order=["created_at", "job_id"])
        return roles.aggregate(ctx)
    return roles.step(ctx)
