"""TRON: the heartbeat sweep. Finds attempts whose heartbeats stopped and hands each to
its parent. Runs under a short Redis lock so that two beats never both act."""

from __future__ import annotations

import logging
import time

from ..config import hhmrs_get
from ..redis import redis_client, rkey
from . import heartbeats, policy, timeouts

log = logging.getLogger(__name__)

LOCK_TTL_S = 30
RECONCILE_EVERY_S = 10


def sweep(now: float | None = None) -> int:
    """Time out every overdue attempt and start its recovery; return how many.

    Costs one settings read, one lock round trip and one range query when nothing is
    overdue, whatever the number of supervised attempts.
    """
    lock = redis_client().lock(rkey("tron", "lock"), timeout=LOCK_TTL_S, blocking=False)
    if not lock.acquire(blocking=False):
        return 0  # Another sweep is running; it will see the same attempts.
    try:
        return _sweep(time.time() if now is None else now)
    finally:
        try:
            lock.release()
        except Exception:  # noqa: BLE001 - expired: the next sweep takes it again
            log.warning("TRON lock expired during a sweep")


def _sweep(now: float) -> int:
    cfg = hhmrs_get()
    if redis_client().set(rkey("tron", "reconciled"), 1, nx=True, ex=RECONCILE_EVERY_S):
        reconcile(now, cfg)
    overdue = [
        (attempt_id, last_beat)
        for attempt_id, last_beat in heartbeats.hb_overdue(policy.overdue_cutoff(now, cfg))
        if policy.is_overdue(now, last_beat, cfg)
    ]
    # In chunks, one transaction each (see timeouts.py): 1,000 at once in about a second.
    return timeouts.attempts_time_out(overdue, now=now, cfg=cfg) if overdue else 0


def reconcile(now: float, cfg: object) -> dict[str, int]:
    """Repair what Redis lost (a restart without persistence), every few seconds.

    - A running attempt missing from the store goes back in with its last beat from
      the database: a live one beats again and stays, a dead one times out as usual.
    - A queued attempt never started long after it was sent lost its message (or
      waits behind a backlog): it is sent again. The start is a conditional update,
      so a duplicate message does nothing.
    """
    from datetime import UTC, datetime, timedelta

    from ..models import Attempt
    from ..runtime.execute import attempt_send

    timeout = float(getattr(cfg, "timeout_threshold_s", 60))
    running = list(
        Attempt.objects.filter(status=Attempt.Status.RUNNING).values_list(
            "pk", "agent_id", "job_id", "last_heartbeat_at", "started_at"
        )
    )
    repaired = 0
    for pk, agent_id, job_id, last, started in running:
        if heartbeats.hb_last(pk) is None:
            stamp = last or started
            seen = stamp.timestamp() if stamp is not None else now
            heartbeats.hb_register(pk, agent_id=agent_id, job_id=job_id, now=seen)
            repaired += 1
    stale = datetime.fromtimestamp(now, tz=UTC) - timedelta(seconds=max(30.0, 3 * timeout))
    resent = 0
    for attempt in Attempt.objects.filter(status=Attempt.Status.QUEUED, created_at__lt=stale):
        if redis_client().set(
            rkey("tron", "resent", attempt.pk), 1, nx=True, ex=int(max(30, 3 * timeout))
        ):
            attempt_send(attempt)
            resent += 1
    if repaired or resent:
        log.warning(
            "TRON reconciled: %s running re-registered, %s queued re-sent", repaired, resent
        )
    return {"running": repaired, "queued": resent}
