"""Celery wiring: two queues, late acks, nothing lost when a worker dies."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pas_core.settings")

app = Celery("pas_core")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("agents"), Queue("hhmrs"))
app.autodiscover_tasks()


def _skip_exited_children() -> None:
    """Keep a prefork worker alive when its broker connection comes back (Celery bug).

    On reconnecting, the worker registers every pool process with its event loop. A
    process that has just exited (a restart SIGKILLs it: ``revoke(terminate=True)``)
    is untracked (``_sentinel_poll = None``) but still in the pool until it is
    replaced, and registering ``None`` raises ``ValueError: file descriptor is None``:
    the whole worker dies with "Unrecoverable error". Found by the Redis-restart drill
    (tests/drills). Such a process needs no tracking: the pool replaces it anyway.
    """
    from celery.concurrency import asynpool

    track = asynpool.AsynPool._track_child_process
    if getattr(track, "pas_patched", False):
        return

    def _track_child_process(self: asynpool.AsynPool, proc: object, hub: object) -> None:
        if getattr(proc, "_sentinel_poll", 0) is None:
            return  # Exited and untracked already; maintain_pool replaces it.
        track(self, proc, hub)

    _track_child_process.pas_patched = True  # type: ignore[attr-defined]
    asynpool.AsynPool._track_child_process = _track_child_process  # type: ignore[method-assign]


_skip_exited_children()
