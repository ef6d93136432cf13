"""Celery tasks: a few lines each; the work is in the runtime, TRON and services.

Nothing imports this module: tasks are sent by name (``pas_core.dispatch``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
from typing import Any

from celery import shared_task
from celery.signals import (
    task_postrun,
    task_received,
    task_retry,
    worker_init,
    worker_ready,
    worker_shutdown,
)
from celery.worker.control import control_command
from django.db import DatabaseError, connection

from . import inflight, tron
from .dispatch import KILL_COMMAND
from .runtime import liveness, worker
from .services import notifications, recovery, supervision
from .stores import workers

log = logging.getLogger(__name__)


# A task that cannot reach the database waits and comes back (the message is sent
# again before this one is acked): a database outage is not an attempt failure, and
# it never spends a job's restart budget (DESIGN 5).
DB_RETRY = {
    "autoretry_for": (DatabaseError,),
    "retry_backoff": 1,
    "retry_backoff_max": 15,
    "retry_jitter": True,
    "max_retries": None,
}


@shared_task(bind=True, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def attempt_execute(self: Any, attempt_id: int) -> str:
    """Run one attempt of a job (agents queue)."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    try:
        return worker.attempt_execute(attempt_id, redelivered=redelivered)
    except inflight.AttemptKilled:
        # A kill that landed between the attempt's end and its thread letting go: the
        # attempt is over either way; never let it reach Celery (it would requeue).
        return "killed"
    except DatabaseError as exc:
        # Only before the attempt started (the harness waits out an outage once it
        # runs): nothing was done, so the same message comes back later.
        log.warning("attempt %s waits for the database: %s", attempt_id, exc)
        _reconnect()
        countdown = worker.db_backoff(self.request.retries)
        raise self.retry(countdown=countdown, max_retries=None) from exc


@shared_task(ignore_result=True)
def tron_sweep() -> int:
    """Time out every attempt whose heartbeats stopped; return how many."""
    try:
        return tron.sweep()
    except DatabaseError as exc:
        log.warning("TRON: no sweep, the database is away: %s", exc)  # The next beat tries.
        _reconnect()
        return 0


def _reconnect() -> None:
    """Drop this thread's database connection after a database error.

    A connection opened while the database could not be written (SQLite's file made
    read-only, a full disk) stays read-only for its whole life, even once the file is
    writable again; Django would keep handing it out (SQLite's is always "usable").
    The next query opens a fresh one.
    """
    with contextlib.suppress(Exception):
        connection.close()


@task_retry.connect
def _retrying(reason: Any = None, **_kwargs: Any) -> None:
    if isinstance(reason, DatabaseError):
        _reconnect()


@shared_task(ignore_result=True, **DB_RETRY)
def attempt_failure_handle(attempt_id: int) -> str:
    """Hand a failed attempt to its parent (hhmrs queue)."""
    return supervision.attempts_failure_handle([attempt_id])[attempt_id]


@shared_task(ignore_result=True, **DB_RETRY)
def notification_deliver(notification_id: int) -> dict[str, Any]:
    """Send a stored notification to the configured webhook and email."""
    return notifications.notification_deliver(notification_id)


@shared_task(ignore_result=True, **DB_RETRY)
def attempts_worker_lost(attempt_ids: list[int], culprits: list[int], cause: str) -> dict[str, int]:
    """Recover the attempts a replaced worker process held (hhmrs queue)."""
    return recovery.attempts_worker_lost(attempt_ids, culprits=culprits, cause=cause)


@control_command(args=[("attempt_ids", list)], signature="<attempt_ids>", name=KILL_COMMAND)
def attempts_kill_command(state: Any, attempt_ids: list[int] | None = None) -> dict[str, Any]:
    """End the listed attempts this worker process holds (sent to every worker)."""
    return {"killed": inflight.attempts_kill([int(a) for a in attempt_ids or []])}


@worker_init.connect
def _freeze(**_kwargs: Any) -> None:
    """Put what start-up made (Django, the project, Celery: a few hundred thousand
    objects) out of the collector's way, as the web process does (``asgi.py``).

    A full collection no longer walks them (the agents worker runs one interpreter for
    a hundred threads: every pause stops them all), and a prefork pool's processes,
    forked after this, no longer copy the pages the collector would have written to.
    """
    gc.collect()
    gc.freeze()


@worker_ready.connect
def _liveness_start(sender: Any = None, **_kwargs: Any) -> None:
    """Tick from a thread of this worker process while it lives (see runtime.liveness)."""
    queues = [q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", [])]
    liveness.start(name=str(getattr(sender, "hostname", "worker")), queues=queues)


@worker_shutdown.connect
def _liveness_stop(**_kwargs: Any) -> None:
    liveness.stop()


@task_received.connect
def _reserved(request: Any = None, **_kwargs: Any) -> None:
    """Hold an attempt from the moment its message reaches this worker (an ETA one too):
    if the process dies before running it, TRON sees it lost at once, not in an hour."""
    if getattr(request, "name", "") == attempt_execute.name and request.args:
        with contextlib.suppress(Exception):
            workers.held_add(workers.worker_id(), int(request.args[0]), 0)


@task_postrun.connect
def _released(task: Any = None, args: Any = None, **_kwargs: Any) -> None:
    if getattr(task, "name", "") == attempt_execute.name and args:
        with contextlib.suppress(Exception):
            workers.held_remove(workers.worker_id(), int(args[0]))
