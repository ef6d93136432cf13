"""Dispatch: send Celery tasks by name and kill running attempts. Imports no task.

Every send happens after the transaction that made its rows commits (a worker must
find the attempt it is sent), and never raises into the caller: a message that could
not be sent is re-sent by TRON's reconcile, which finds queued attempts nobody started.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from django.db import transaction

from .celery import app

log = logging.getLogger(__name__)

AGENTS = "agents"
HHMRS = "hhmrs"

ATTEMPT_EXECUTE = "pas_core.tasks.attempt_execute"
ATTEMPT_FAILURE_HANDLE = "pas_core.tasks.attempt_failure_handle"
NOTIFICATION_DELIVER = "pas_core.tasks.notification_deliver"


def after_commit(fn: Callable[[], object]) -> None:
    """Run ``fn`` once the current transaction commits (at once outside one).

    ``robust``: an exception in ``fn`` is logged and the hooks after it still run, so a
    failed file write can never swallow the Celery sends registered after it.
    """
    transaction.on_commit(fn, robust=True)


def attempts_send(attempts: Sequence[tuple[int, str]]) -> int:
    """Send ``(attempt id, task id)`` pairs to the agents queue over one connection.

    Return how many went out. A failure is logged, not raised (see the module note).
    """
    sent = 0
    try:
        with app.producer_or_acquire() as producer:
            for attempt_id, task_id in attempts:
                app.send_task(
                    ATTEMPT_EXECUTE,
                    args=[attempt_id],
                    task_id=task_id,
                    queue=AGENTS,
                    producer=producer,
                )
                sent += 1
    except Exception:  # noqa: BLE001 - TRON's reconcile re-sends queued attempts
        log.exception("could not send %s of %s attempt(s)", len(attempts) - sent, len(attempts))
    return sent


def attempts_send_on_commit(attempts: Sequence[tuple[int, str]]) -> None:
    if attempts:
        pairs = list(attempts)
        after_commit(lambda: attempts_send(pairs))


def failure_handle_send(attempt_id: int) -> None:
    """Hand a failed attempt to supervision (hhmrs queue), after commit."""

    def send() -> None:
        try:
            app.send_task(ATTEMPT_FAILURE_HANDLE, args=[attempt_id], queue=HHMRS)
        except Exception:  # noqa: BLE001 - TRON's reconcile handles unhandled failures
            log.exception("could not send the failure of attempt %s", attempt_id)

    after_commit(send)


def notification_send(notification_id: int) -> None:
    """Deliver a stored notification to the webhook and email (hhmrs queue), after commit."""

    def send() -> None:
        try:
            app.send_task(NOTIFICATION_DELIVER, args=[notification_id], queue=HHMRS)
        except Exception:  # noqa: BLE001 - the notification is stored and shown anyway
            log.exception("could not send notification %s for delivery", notification_id)

    after_commit(send)


def attempts_kill(task_ids: Sequence[str]) -> None:
    """Kill the worker children running these tasks (SIGKILL), in one broadcast, after commit.

    The attempts are fenced off already (their rows ended): the kill only stops the
    work, it decides nothing.
    """
    ids = [t for t in task_ids if t]
    if not ids:
        return

    def revoke() -> None:
        try:
            app.control.revoke(ids, terminate=True, signal="SIGKILL")
        except Exception:  # noqa: BLE001 - the attempts are fenced off already
            log.warning("could not revoke %s task(s)", len(ids), exc_info=True)

    after_commit(revoke)


def workers_ping(timeout: float = 1.0) -> list[str]:
    """Return the names of the Celery workers that answer a ping (empty when none)."""
    try:
        return sorted(n for reply in app.control.ping(timeout=timeout) or [] for n in reply)
    except Exception:  # noqa: BLE001 - reported by the caller
        return []
