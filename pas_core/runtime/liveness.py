"""A worker process says it is alive: to Redis (for /health and TRON) and to its supervisor.

One daemon thread per worker process ticks every ``TICK_S``: a byte down the pipe the
supervisor gave it (``PAS_SUPERVISOR_FD``), and every second a line in the worker
registry (``stores.workers``). A thread, not a task: when the process stops as a whole
(a loop in C holding the interpreter lock, a freeze, a partition), the ticks stop with
it, and that silence is what the supervisor and TRON act on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time

from ..stores import workers

log = logging.getLogger(__name__)

TICK_S = 0.5
REGISTRY_EVERY_S = 1.0

_stop = threading.Event()


def start(*, name: str, queues: list[str]) -> None:
    """Start ticking for this process (idempotent)."""
    if any(t.name == "pas-liveness" for t in threading.enumerate()):
        return
    raw = os.environ.get("PAS_SUPERVISOR_FD", "")
    fd = int(raw) if raw.isdigit() else None
    _stop.clear()
    thread = threading.Thread(
        target=_loop, args=(workers.worker_id(), name, queues, fd), name="pas-liveness", daemon=True
    )
    thread.start()


def stop() -> None:
    """Stop ticking and leave the registry (a clean shutdown)."""
    _stop.set()
    with contextlib.suppress(Exception):
        workers.worker_forget(workers.worker_id())


def _loop(wid: str, name: str, queues: list[str], fd: int | None) -> None:
    last = 0.0
    while not _stop.is_set():
        if fd is not None:
            try:
                os.write(fd, b".")
            except OSError:
                fd = None  # The supervisor is gone; Redis still hears us.
        now = time.time()
        if now - last >= REGISTRY_EVERY_S:
            try:
                workers.worker_tick(wid, name=name, queues=queues, now=now)
                last = now
            except Exception:  # noqa: BLE001 - Redis away: tick again next time
                log.debug("liveness tick to Redis failed", exc_info=True)
        _stop.wait(TICK_S)
