"""Dispatch: send Celery tasks by name and kill running attempts. Imports no task.

Every send happens after the transaction that made its rows commits (a worker must
find the attempt it is sent), and never raises into the caller: a message that could
not be sent is re-sent by TRON's reconcile, which finds queued attempts nobody started.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from django.db import transaction

from .celery import app
from .stores import effects

log = logging.getLogger(__name__)

AGENTS = "agents"
HHMRS = "hhmrs"

ATTEMPT_EXECUTE = "pas_core.tasks.attempt_execute"
ATTEMPT_FAILURE_HANDLE = "pas_core.tasks.attempt_failure_handle"
NOTIFICATION_DELIVER = "pas_core.tasks.notification_deliver"
ATTEMPTS_WORKER_LOST = "pas_core.tasks.attempts_worker_lost"
KILL_COMMAND = "pas_attempts_kill"  # A worker control command (pas_core.tasks).


def after_commit(fn: Callable[[], object]) -> None:
    """Run ``fn`` once the current transaction commits (at once outside one).

    ``robust``: an exception in ``fn`` is logged and the hooks after it still run, so a
    failed file write can never swallow the Celery sends registered after it.
    """
    transaction.on_commit(fn, robust=True)


# A send waits at most this long for the broker (a frozen Redis must not hold a web
# request for 30 s); one that has not gone out by then is left to TRON's reconcile.
SEND_WAIT_S = 3.0
_senders = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pas-send")


def attempts_send(attempts: Sequence[tuple[int, str, float]]) -> int:
    """Send ``(attempt id, task id, delay s)`` to the agents queue over one connection.

    A delayed one is held by the worker until its time (Celery's countdown). Return
    how many went out. A failure is logged, not raised (see the module note), and a
    broker that does not answer within SEND_WAIT_S is given up on.
    """
    sent: list[int] = []

    def send() -> None:
        with app.producer_or_acquire() as producer:
            for attempt_id, task_id, delay in attempts:
                app.send_task(
                    ATTEMPT_EXECUTE,
                    args=[attempt_id],
                    task_id=task_id,
                    queue=AGENTS,
                    producer=producer,
                    countdown=delay if delay > 0 else None,
                )
                sent.append(attempt_id)

    try:
        _senders.submit(send).result(timeout=SEND_WAIT_S)
    except Exception as exc:  # noqa: BLE001 - TRON's reconcile re-sends queued attempts
        left = len(attempts) - len(sent)
        log.warning("could not send %s of %s attempt(s): %r", left, len(attempts), exc)
        effects.failed("send", f"{left} attempt(s) not sent yet ({exc.__class__.__name__})")
    return len(sent)


def attempts_send_on_commit(attempts: Sequence[tuple[int, str, float]]) -> None:
    if attempts:
        pairs = list(attempts)
        after_commit(lambda: attempts_send(pairs))


_here = threading.local()  # ``next``: attempts this worker thread runs after its own.


@contextlib.contextmanager
def running_here() -> Iterator[list[tuple[int, str]]]:
    """While a worker thread runs an attempt: the attempts ``attempts_run_here`` is
    given (a parent's aggregate its end made ready) wait in the list this yields, to
    run next on the same thread, instead of going through the broker and the queue
    for a free thread. Whatever is still in the list when the block ends is sent."""
    ahead: list[tuple[int, str]] = []
    outer = getattr(_here, "next", None)
    _here.next = ahead
    try:
        yield ahead
    finally:
        _here.next = outer
        if ahead:
            attempts_send([(pk, task_id, 0.0) for pk, task_id in ahead])


def attempts_run_here(attempts: Sequence[tuple[int, str]]) -> None:
    """Run ``(attempt id, task id)`` next on this worker thread once the transaction
    commits (``running_here``); send them as usual outside a worker's attempt."""
    if not attempts:
        return
    ahead = getattr(_here, "next", None)
    pairs = list(attempts)
    if ahead is None:
        attempts_send_on_commit([(pk, task_id, 0.0) for pk, task_id in pairs])
    else:
        after_commit(lambda: ahead.extend(pairs))


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


def attempts_kill(attempt_ids: Sequence[int]) -> None:
    """End these attempts wherever they run, after commit: one broadcast to every worker.

    Each worker ends the attempts of the list it holds (``pas_core.inflight``) and
    ignores the rest, so a kill never reaches the wrong attempt, even late. The
    attempts are fenced off already (their rows ended): the kill only stops the work.
    """
    ids = [int(a) for a in attempt_ids]
    if not ids:
        return

    def broadcast() -> None:
        try:
            app.control.broadcast(KILL_COMMAND, arguments={"attempt_ids": ids}, reply=False)
        except Exception:  # noqa: BLE001 - the attempts are fenced off already
            log.warning("could not broadcast the kill of %s attempt(s)", len(ids), exc_info=True)

    after_commit(broadcast)


def worker_lost_send(attempt_ids: Sequence[int], *, culprits: Sequence[int], cause: str) -> None:
    """Tell supervision that a worker process is gone with these attempts (now)."""
    app.send_task(
        ATTEMPTS_WORKER_LOST,
        kwargs={"attempt_ids": list(attempt_ids), "culprits": list(culprits), "cause": cause},
        queue=HHMRS,
    )
