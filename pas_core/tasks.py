"""Celery tasks: a few lines each; the work is in services."""

from __future__ import annotations

import logging
from typing import Any

from billiard.exceptions import WorkerLostError
from celery import shared_task
from celery.signals import task_failure

log = logging.getLogger(__name__)


@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def attempt_execute(attempt_id: int) -> str:
    """Run one attempt of a job (agents queue)."""
    from .runtime.execute import attempt_execute as run

    return run(attempt_id)


@shared_task(ignore_result=True)
def tron_sweep() -> int:
    """Time out every attempt whose heartbeats stopped; return how many."""
    from .hhmrs import tron

    return tron.sweep()


@shared_task(ignore_result=True)
def attempt_failure_handle(attempt_id: int) -> str:
    """Hand a failed attempt to its parent (hhmrs queue)."""
    from .hhmrs import services

    return services.attempt_failure_handle(attempt_id)


@shared_task(ignore_result=True)
def notification_deliver(notification_id: int) -> dict[str, Any]:
    """Send a stored notification to the configured webhook and email."""
    from .notify import notification_deliver as deliver

    return deliver(notification_id)


@task_failure.connect
def _worker_lost(
    sender: Any = None, task_id: str = "", exception: Any = None, args: Any = None, **kw: Any
) -> None:
    """A worker child died mid-attempt (crash, OOM, SIGKILL): fail the attempt at once.

    The attempt is fenced, so the message Celery re-delivers will not run it again;
    TRON would catch it too, later, once its beats stop.
    """
    if (
        not isinstance(exception, WorkerLostError)
        or getattr(sender, "name", "") != attempt_execute.name
    ):
        return
    from .models import Attempt
    from .runtime.execute import attempt_fail

    attempt = Attempt.objects.select_related("job").filter(celery_task_id=task_id).first()
    if attempt is not None:
        attempt_fail(attempt, kind="crash", message=f"worker process lost: {exception}")
