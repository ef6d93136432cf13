"""The ``beat(progress, message)`` a step calls: throttled, Redis first, the database rarely."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.db import DatabaseError, connection

from ..services.attempts import attempt_beat_record, attempt_running_job
from ..stores import heartbeats, metrics


class Beater:
    """Send an attempt's beats: to Redis at most once per ``interval_s``, and its
    database row (for display) at most once per ``db_every_s``.

    Agents beat from inside the work (step boundaries, every streamed chunk): a hung
    call sends nothing, and that silence is what TRON catches.
    """

    def __init__(
        self,
        attempt_id: int,
        *,
        agent_id: str,
        interval_s: float,
        db_every_s: float = 15.0,
        renew: Callable[[], None] | None = None,
    ):
        self.attempt_id = attempt_id
        self.renew = renew  # Called with each beat sent: a provider slot's lease.
        self.agent_id = agent_id
        self.interval_s = interval_s
        self.db_every_s = max(db_every_s, interval_s)
        self.last_sent = time.monotonic()  # hb_register counted as the first beat
        self.last_db = self.last_sent
        self.beats_sent = 0

    def _rejoin(self) -> None:
        """The store lost this attempt (Redis restarted): register it again if it runs.

        An attempt that TRON timed out is no longer ``running`` in the database and
        stays out.
        """
        job_id = attempt_running_job(self.attempt_id)
        if job_id is not None:
            heartbeats.hb_register(self.attempt_id, agent_id=self.agent_id, job_id=job_id)

    def __call__(self, progress: float = 0.0, message: str = "") -> None:
        now = time.monotonic()
        if now - self.last_sent < self.interval_s:
            return
        self.last_sent = now
        try:
            supervised = heartbeats.hb_beat(
                self.attempt_id, agent_id=self.agent_id, progress=progress, message=message
            )
        except Exception:  # noqa: BLE001 - Redis away: the work goes on; TRON reconciles
            return
        self.beats_sent += 1
        metrics.beats.add()  # /metrics: in memory; a thread adds it to Redis each second.
        if self.renew is not None:
            self.renew()
        if not supervised:
            try:
                self._rejoin()
            except DatabaseError:
                pass  # The database is away too: the next beat tries again.
        if now - self.last_db >= self.db_every_s:
            self.last_db = now
            try:
                attempt_beat_record(self.attempt_id, progress=progress, message=message)
            except DatabaseError:
                # A display copy: the beat in Redis is what supervision reads. The
                # connection goes: one opened while SQLite could not be written stays
                # read-only for its life (and keeps the process's others so).
                if not connection.in_atomic_block:
                    connection.close()
