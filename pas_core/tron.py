"""TRON: the heartbeat sweep. Finds attempts whose heartbeats stopped and hands them to
supervision, and repairs what a Redis that lost its data forgot. Runs under a short
Redis lock so that two beats never both act."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Q

from . import dispatch, policy
from .config import Hhmrs, hhmrs_get
from .models import Attempt, Job
from .services.attempts import attempts_resend
from .services.budgets import run_budget_stop, runs_over_wall_time
from .services.supervision import attempts_failure_handle, attempts_time_out
from .stores import heartbeats, metrics, slots, workers
from .stores.redis import broker_client, redis_client, rkey

log = logging.getLogger(__name__)

RECONCILE_EVERY_S = 10
# Overdue attempts handled per transaction: short enough that SQLite's other writers
# barely wait, long enough that 1,000 at once take about a second.
CHUNK = 100
# After Redis came back empty, queued attempts older than this are sent again at once
# (younger ones were most likely sent to the new Redis).
EMPTIED_GRACE_S = 5.0
# A failed attempt whose failure no handler took up after this is handled here.
ORPHAN_AFTER_S = 10.0
# How long the attempts of a worker process that stopped ticking wait for its
# supervisor to say who is to blame (it acts within PAS_WORKER_STALL_S, 5 s).
WORKER_GRACE_S = 20.0
# A queued attempt that no queue, worker or slot accounts for this long lost its message.
LOST_AFTER_S = 10.0


def lock_ttl_s(cfg: Hhmrs) -> float:
    """How long TRON's lock lives unless the sweep holding it extends it.

    Two sweep intervals: a sweeper killed mid-sweep (an OOM kill, a deploy) holds
    detection back by at most that much; a sweep that works longer extends it as it
    goes (every chunk, and after reconcile).
    """
    return max(1.0, 2 * cfg.sweep_interval_s)


def sweep(now: float | None = None) -> int:
    """Time out every overdue attempt and start its recovery; return how many.

    Costs one settings read, one lock round trip and one range query when nothing is
    overdue, whatever the number of supervised attempts.
    """
    cfg = hhmrs_get()
    ttl = lock_ttl_s(cfg)
    lock = redis_client().lock(rkey("tron", "lock"), timeout=ttl, blocking=False)
    if not lock.acquire(blocking=False):
        _skipped(ttl)  # Another sweep is running; it will see the same attempts.
        return 0
    redis_client().delete(rkey("tron", "skipped"))
    try:
        return _sweep(time.time() if now is None else now, cfg, lambda: _extend(lock, ttl))
    finally:
        try:
            lock.release()
        except Exception:  # noqa: BLE001 - expired: the next sweep takes it again
            log.warning("TRON lock expired during a sweep")


def _extend(lock: Any, ttl: float) -> None:
    """Keep the lock while this sweep works (a lost lock only logs: the work is idempotent)."""
    try:
        lock.extend(ttl, replace_ttl=True)
    except Exception:  # noqa: BLE001 - another sweep may act on the same attempts: one wins
        log.warning("TRON: could not extend the sweep lock", exc_info=True)


def _skipped(ttl: float) -> None:
    """Count the sweeps in a row that found the lock held; say so when it goes on."""
    key = rkey("tron", "skipped")
    skipped = int(redis_client().incr(key))
    redis_client().expire(key, int(max(60, 10 * ttl)))
    if skipped % 10 == 0:
        log.warning(
            "TRON: %s sweeps in a row found the lock held (a slow sweep, or two beats)", skipped
        )


def _sweep(now: float, cfg: Hhmrs, keep_lock: Callable[[], None]) -> int:
    began = time.monotonic()  # /metrics: the sweep's duration and what it found.
    client = redis_client()
    # No epoch key: this Redis is new, or came back empty (a restart without
    # persistence): every message sent before is gone. Reconcile now, in a hurry.
    emptied = not client.exists(rkey("tron", "epoch"))
    if emptied or client.set(rkey("tron", "reconciled"), 1, nx=True, ex=RECONCILE_EVERY_S):
        reconcile(now, cfg, emptied=emptied)
        if emptied:
            client.set(rkey("tron", "epoch"), now)
        keep_lock()
    overdue = [
        (attempt_id, last_beat)
        for attempt_id, last_beat in heartbeats.hb_overdue(policy.overdue_cutoff(now, cfg))
        if policy.is_overdue(now, last_beat, cfg)
    ]
    handled = time_out_in_chunks(
        _agents_to_blame(overdue, now=now, cfg=cfg), now=now, cfg=cfg, keep_lock=keep_lock
    )
    _wall_budgets()
    metrics.sweep_observe(time.monotonic() - began, overdue=len(overdue))
    return handled


def _wall_budgets() -> None:
    """Stop the runs that went past their wall-time budget (few run at once: cheap)."""
    for run_id, breach in runs_over_wall_time():
        try:
            run_budget_stop(run_id, breach=breach)
        except Exception:  # noqa: BLE001 - one bad run must not stop the sweep
            log.exception("TRON: stopping run %s over its wall-time budget failed", run_id)


def worker_grace_s() -> float:
    """How long TRON leaves a stopped worker process's attempts to its supervisor."""
    try:
        return max(0.0, float(os.environ.get("PAS_WORKER_GRACE_S") or WORKER_GRACE_S))
    except ValueError:
        return WORKER_GRACE_S


def _agents_to_blame(
    overdue: list[tuple[int, float]], *, now: float, cfg: Hhmrs
) -> list[tuple[int, float]]:
    """Drop, for a grace, the overdue attempts whose worker process stopped as a whole.

    When every thread of a process stops (one of them spins in C, the process froze,
    its host is cut off), its attempts all stop beating together, and none of them is
    to blame but the culprit. The process's supervisor replaces it and says which was
    which (``services.recovery``); TRON waits ``PAS_WORKER_GRACE_S`` for that, then
    times out whatever is left (a host that vanished has no supervisor to tell).
    """
    owners = heartbeats.hb_workers([attempt_id for attempt_id, _ in overdue])
    if not owners:
        return overdue
    seen = workers.workers_seen(sorted(set(owners.values())))
    deadline = policy.overdue_cutoff(now, cfg) - worker_grace_s()
    keep = []
    for attempt_id, last_beat in overdue:
        tick = seen.get(owners.get(attempt_id, ""), 0.0)
        stopped = attempt_id in owners and (tick is None or now - tick > workers.STALE_S)
        if not stopped or last_beat <= deadline:
            keep.append((attempt_id, last_beat))
    return keep


def time_out_in_chunks(
    overdue: list[tuple[int, float]],
    *,
    now: float,
    cfg: Hhmrs,
    keep_lock: Callable[[], None] = lambda: None,
) -> int:
    """Time out ``overdue`` in chunks of CHUNK, one transaction each; return how many.

    A chunk that fails as a whole (a bad row, a deadlock) is rolled back and handled
    one attempt at a time, so one bad job never holds the others back.
    """
    handled = 0
    for start in range(0, len(overdue), CHUNK):
        chunk = overdue[start : start + CHUNK]
        keep_lock()
        try:
            handled += attempts_time_out(chunk, now=now, cfg=cfg)
        except Exception:  # noqa: BLE001 - retried one by one below
            log.exception("TRON: a chunk of %s timeouts failed; one by one now", len(chunk))
            for item in chunk:
                try:
                    handled += attempts_time_out([item], now=now, cfg=cfg)
                except Exception:  # noqa: BLE001 - one bad job must not stop the sweep
                    log.exception("TRON: handling attempt %s failed", item[0])
    return handled


def reconcile(now: float, cfg: Hhmrs, *, emptied: bool = False) -> dict[str, int]:
    """Repair what Redis lost (a restart without persistence), every few seconds.

    - A running attempt missing from the store goes back in with its last beat from
      the database: a live one beats again and stays, a dead one times out as usual.
    - A queued attempt never started long after it was sent lost its message (or
      waits behind a backlog): it is sent again. The start is a conditional update,
      so a duplicate message does nothing. ``emptied`` (Redis came back empty, so
      every message sent before is gone): after a few seconds instead of 3 timeouts.
    - A job whose current attempt failed but whose failure was never handled (the
      handler's message could not be sent: Redis was away) is handled here. Handling
      is idempotent (the job row is locked, the attempt must still be current).
    """
    repaired = _running_register(now)
    resent = _queued_resend(now, cfg, emptied=emptied)
    orphans = _orphans_handle(datetime.fromtimestamp(now - ORPHAN_AFTER_S, tz=UTC))
    if repaired or resent or orphans:
        log.warning(
            "TRON reconciled: %s running re-registered, %s queued re-sent, "
            "%s unhandled failures handled",
            repaired,
            resent,
            orphans,
        )
    return {"running": repaired, "queued": resent, "failures": orphans}


def _running_register(now: float) -> int:
    running = list(
        Attempt.objects.filter(status=Attempt.Status.RUNNING).values_list(
            "pk", "agent_id", "job_id", "last_heartbeat_at", "started_at"
        )
    )
    # One round trip for all of them: this runs inside the sweep's lock, and one
    # ZSCORE per running attempt (1,000 running: 0.8 s) held the next detection back.
    scores = heartbeats.hb_last_many([pk for pk, *_ in running])
    repaired = 0
    for (pk, agent_id, job_id, last, started), score in zip(running, scores, strict=True):
        if score is None:
            stamp = last or started
            seen = stamp.timestamp() if stamp is not None else now
            heartbeats.hb_register(pk, agent_id=agent_id, job_id=job_id, now=seen)
            repaired += 1
    return repaired


def _queued_resend(now: float, cfg: Hhmrs, *, emptied: bool) -> int:
    """Send again the queued attempts whose message is gone; leave a backlog alone.

    A queued attempt is accounted for when its message waits in the broker's queue,
    when a live worker holds it (received, waiting for a slot or its backoff), or when
    it waits for a provider slot. Anything else older than ``LOST_AFTER_S`` lost its
    message (a worker died holding it, Redis came back empty): sent again at once. A
    duplicate does nothing (an attempt starts once).
    """
    wait_s = EMPTIED_GRACE_S if emptied else LOST_AFTER_S
    stale = datetime.fromtimestamp(now, tz=UTC) - timedelta(seconds=wait_s)
    old = Attempt.objects.filter(status=Attempt.Status.QUEUED, created_at__lt=stale).filter(
        Q(not_before__isnull=True) | Q(not_before__lt=stale)  # Not one backing off.
    )
    candidates = list(old[:1000])
    if not candidates:
        return 0
    accounted = slots.waiting_for_slots([a.pk for a in candidates])
    accounted |= workers.held_by_live(now)
    if not emptied:
        accounted |= queued_in_broker({a.celery_task_id: a.pk for a in candidates})
    lost = [
        attempt
        for attempt in candidates
        if attempt.pk not in accounted
        # Once per attempt per while: never a storm of duplicates.
        and redis_client().set(rkey("tron", "resent", attempt.pk), 1, nx=True, ex=30)
    ]
    if lost:
        log.warning("TRON: %s queued attempt(s) lost their message; sent again", len(lost))
    return attempts_resend(lost) if lost else 0


def queued_in_broker(task_ids: dict[str, int]) -> set[int]:
    """Return the attempts (of ``task_ids``: task id -> attempt) whose message waits in
    the agents queue of the broker (a backlog, not a loss)."""
    found: set[int] = set()
    client = broker_client()
    for key in client.scan_iter(match=f"{dispatch.AGENTS}*", count=100):
        if client.type(key) != b"list":
            continue
        for raw in client.lrange(key, 0, -1):
            try:
                task_id = json.loads(raw).get("headers", {}).get("id")
            except (ValueError, AttributeError):
                continue
            if task_id in task_ids:
                found.add(task_ids[task_id])
    return found


def _orphans_handle(before: Any) -> int:
    """Handle failed current attempts of open jobs that ended before ``before``."""
    ended = [Attempt.Status.ERRORED, Attempt.Status.TIMED_OUT, Attempt.Status.KILLED]
    ids = list(
        Job.objects.filter(
            status__in=[Job.Status.QUEUED, Job.Status.RUNNING],
            current_attempt__status__in=ended,
            current_attempt__finished_at__lt=before,
        ).values_list("current_attempt_id", flat=True)[:100]
    )
    handled = 0
    for attempt_id in ids:
        try:
            handled += attempts_failure_handle([attempt_id])[attempt_id] != "handled"
        except Exception:  # noqa: BLE001 - one bad job must not stop the sweep
            log.exception("handling the failure of attempt %s failed", attempt_id)
    return handled
