"""Celery tasks: a few lines each; the work is in the runtime, TRON and services.

Nothing imports this module: tasks are sent by name (``pas_core.dispatch``).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from . import tron
from .runtime import worker
from .services import notifications, supervision


@shared_task(bind=True, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def attempt_execute(self: Any, attempt_id: int) -> str:
    """Run one attempt of a job (agents queue)."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    return worker.attempt_execute(attempt_id, redelivered=redelivered)


@shared_task(ignore_result=True)
def tron_sweep() -> int:
    """Time out every attempt whose heartbeats stopped; return how many."""
    return tron.sweep()


@shared_task(ignore_result=True)
def attempt_failure_handle(attempt_id: int) -> str:
    """Hand a failed attempt to its parent (hhmrs queue)."""
    return supervision.attempts_failure_handle([attempt_id])[attempt_id]


@shared_task(ignore_result=True)
def notification_deliver(notification_id: int) -> dict[str, Any]:
    """Send a stored notification to the configured webhook and email."""
    return notifications.notification_deliver(notification_id)
