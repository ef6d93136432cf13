"""Celery tasks: a few lines each; the work is in services."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_process_init

log = logging.getLogger(__name__)


@shared_task(bind=True, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def attempt_execute(self: Any, attempt_id: int) -> str:
    """Run one attempt of a job (agents queue)."""
    from .runtime.execute import attempt_execute as run

    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    return run(attempt_id, redelivered=redelivered)


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


@worker_process_init.connect
def _warm_up(**_kwargs: Any) -> None:
    """Import the step code (and the LLM SDK) when a worker child starts, not during
    its first attempt: that import takes about a second and would count as step time."""
    from .llm import faults, providers  # noqa: F401
    from .runtime import roles  # noqa: F401
