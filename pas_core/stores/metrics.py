"""Counters and histograms that many processes add to, kept in Redis for ``/metrics``.

What the database holds (interventions, attempts, tokens) is read when Prometheus
scrapes; these are the numbers nothing else records:

- ``metrics:beats``          heartbeats accepted (a counter). Each process counts in
                             memory and adds its count with one INCRBY a second, from a
                             thread of its own: the heartbeat paths never wait for it.
- ``metrics:h:<name>``       a histogram: one hash field per bucket bound (cumulative
                             counts, ``+Inf`` is the count) and ``sum``. TRON adds one
                             observation per sweep, both histograms in one round trip.

A metric never breaks the work it measures: every write here swallows Redis errors
(a count that could not be added is kept and added with the next one).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from .redis import redis_client, rkey

log = logging.getLogger(__name__)

SWEEP_S = "sweep_s"
OVERDUE = "overdue"
# Sweep duration (s): nothing overdue takes milliseconds; 1,000 overdue about a second.
SWEEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Overdue attempts found by one sweep.
OVERDUE_BUCKETS = (0.0, 1.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0)
BUCKETS = {SWEEP_S: SWEEP_BUCKETS, OVERDUE: OVERDUE_BUCKETS}
FLUSH_EVERY_S = 1.0


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


def _observe(pipe: Any, name: str, value: float) -> None:
    key = rkey("metrics", "h", name)
    for bound in BUCKETS[name]:
        if value <= bound:
            pipe.hincrby(key, _bound(bound), 1)
    pipe.hincrby(key, "+Inf", 1)
    pipe.hincrbyfloat(key, "sum", value)


def sweep_observe(duration_s: float, *, overdue: int) -> None:
    """Record one TRON sweep: how long it took and how many overdue attempts it found."""
    try:
        pipe = redis_client().pipeline(transaction=False)
        _observe(pipe, SWEEP_S, duration_s)
        _observe(pipe, OVERDUE, float(overdue))
        pipe.execute()
    except Exception:  # noqa: BLE001 - a metric must never fail a sweep
        log.debug("could not record the sweep's metrics", exc_info=True)


def histogram_read(name: str) -> tuple[list[tuple[str, float]], float]:
    """Return ``([(bound, cumulative count), ...], sum)``, ``+Inf`` last, of a histogram."""
    stored = redis_client().hgetall(rkey("metrics", "h", name))
    raw = {k.decode(): float(v) for k, v in stored.items()}
    buckets = [(_bound(b), raw.get(_bound(b), 0.0)) for b in BUCKETS[name]]
    buckets.append(("+Inf", raw.get("+Inf", 0.0)))
    return buckets, raw.get("sum", 0.0)


class _Tally:
    """A count kept in this process and added to a Redis counter once a second."""

    def __init__(self, *key: str) -> None:
        self.key = key  # The parts of its Redis key, under the prefix.
        self.count = 0
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.pid = 0

    def add(self, n: int = 1) -> None:
        with self.lock:
            self.count += n
            if self.pid != os.getpid():  # First use in this process (or after a fork).
                self.pid = os.getpid()
                threading.Thread(target=self._loop, name="pas-metrics", daemon=True).start()

    def flush(self) -> int:
        """Add what was counted to Redis now; return how much (0 if Redis refused)."""
        with self.lock:
            count, self.count = self.count, 0
        if not count:
            return 0
        try:
            redis_client().incrby(rkey(*self.key), count)
            return count
        except Exception:  # noqa: BLE001 - kept for the next flush
            with self.lock:
                self.count += count
            return 0

    def _loop(self) -> None:
        while not self.wake.wait(FLUSH_EVERY_S):
            self.flush()

    def read(self) -> int:
        value = redis_client().get(rkey(*self.key))
        return int(value or 0)


beats = _Tally("metrics", "beats")


def beat_counted(status: int) -> None:
    """Count a heartbeat the caller answered with ``status`` (202: accepted)."""
    if status == 202:
        beats.add()
