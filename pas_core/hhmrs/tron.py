"""TRON: the heartbeat sweep. Finds attempts whose heartbeats stopped and hands each to
its parent. Runs under a short Redis lock so that two beats never both act."""

from __future__ import annotations

import logging
import time

from ..config import hhmrs_get
from ..redis import redis_client, rkey
from . import heartbeats, policy, services

log = logging.getLogger(__name__)

LOCK_TTL_S = 30


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
    handled = 0
    for attempt_id, last_beat in heartbeats.hb_overdue(policy.overdue_cutoff(now, cfg)):
        if not policy.is_overdue(now, last_beat, cfg):
            continue
        attempt = services.attempt_time_out(attempt_id, now=now, last_beat=last_beat)
        if attempt is None:
            continue
        handled += 1
        try:
            services.attempt_failure_handle(attempt.pk)
        except Exception:  # noqa: BLE001 - one bad job must not stop the sweep
            log.exception("recovering attempt %s failed", attempt.pk)
    return handled
