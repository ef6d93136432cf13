"""The attempts this worker process holds, and how to end one of them alone.

The agents worker runs many attempts at once, one thread each (Celery's ``threads``
pool): they spend their lives waiting on a model, so one process carries a hundred.
Killing one must not touch the others, so a kill is addressed to an attempt, never to
a process or a Celery task: ``attempts_kill`` (a control command every worker runs)
ends the attempts of that list that this process holds, and ignores the rest.

Ending one is done three ways at once, because a thread cannot be killed from outside:

- its ``cancel`` event is set: waits on it (a fault's hang, a slot wait) end at once;
- its abort hooks run: the model call's socket is shut down, so a read blocked on a
  frozen server returns;
- ``AttemptKilled`` is raised in its thread at its next Python instruction.

Code that never returns to Python (a loop in C holding the interpreter lock, the
``spin`` fault) defeats all three: then every thread of the process stops, its
liveness ticks stop, and the supervisor (``pas_core.scripts.supervise``) replaces the
process, blaming the thread that burned the CPU.

Plain Python with no imports from the project: the model clients (``pas_core.llm``)
register their abort hooks here, below every layer that uses them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class AttemptKilled(BaseException):  # noqa: N818 - not an error of the step: an order to stop
    """Raised in an attempt's thread to end it; a BaseException so no step swallows it."""


@dataclass
class Handle:
    attempt_id: int
    thread_id: int
    native_id: int
    cancel: threading.Event = field(default_factory=threading.Event)
    aborts: list[Callable[[], None]] = field(default_factory=list)


_lock = threading.Lock()
_held: dict[int, Handle] = {}
_local = threading.local()


@contextlib.contextmanager
def holding(attempt_id: int) -> Iterator[Handle]:
    """Register the current thread as running ``attempt_id`` for the ``with`` block."""
    handle = Handle(attempt_id, threading.get_ident(), threading.get_native_id())
    with _lock:
        _held[attempt_id] = handle
    _local.handle = handle
    try:
        yield handle
    finally:
        _local.handle = None
        with _lock:
            if _held.get(attempt_id) is handle:
                del _held[attempt_id]
        # A kill scheduled just before we let go must not fire in the next attempt
        # this thread runs: clear it (no new one can come, we are not registered).
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(handle.thread_id), None)


def current() -> Handle | None:
    """Return the handle of the attempt the calling thread runs, if any."""
    return getattr(_local, "handle", None)


def held() -> dict[int, int]:
    """Return ``{attempt id: native thread id}`` of every attempt this process holds."""
    with _lock:
        return {a: h.native_id for a, h in _held.items()}


def on_abort(hook: Callable[[], None]) -> Callable[[], None]:
    """Run ``hook`` if the current attempt is killed; return a function that forgets it.

    Outside an attempt (tests, the shell) nothing is registered.
    """
    handle = current()
    if handle is None:
        return lambda: None
    handle.aborts.append(hook)

    def forget() -> None:
        with contextlib.suppress(ValueError):
            handle.aborts.remove(hook)

    return forget


def cancelled() -> bool:
    """Return whether the current attempt has been told to stop."""
    handle = current()
    return handle is not None and handle.cancel.is_set()


def wait(seconds: float) -> None:
    """Sleep ``seconds``, or raise AttemptKilled as soon as the attempt is killed."""
    handle = current()
    if handle is None:
        threading.Event().wait(seconds)
        return
    if handle.cancel.wait(seconds):
        raise AttemptKilled(f"attempt {handle.attempt_id} killed")


def attempts_kill(attempt_ids: list[int]) -> list[int]:
    """End the listed attempts this process holds; return those it held.

    Safe to call with ids of attempts held elsewhere, or already ended: only a
    thread still registered for exactly that attempt is touched, so a kill that
    arrives late can never hit the next attempt its thread took up.
    """
    with _lock:
        handles = [_held[a] for a in attempt_ids if a in _held]
    for handle in handles:
        handle.cancel.set()
        for hook in list(handle.aborts):
            try:
                hook()
            except Exception:  # noqa: BLE001 - one hook failing must not stop the kill
                log.warning("abort hook of attempt %s failed", handle.attempt_id, exc_info=True)
        _raise_in(handle)
    return [h.attempt_id for h in handles]


def _raise_in(handle: Handle) -> None:
    with _lock:
        if _held.get(handle.attempt_id) is not handle:
            return  # It ended meanwhile; its thread may run another attempt now.
        done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(handle.thread_id), ctypes.py_object(AttemptKilled)
        )
    if done != 1:
        log.warning("could not interrupt the thread of attempt %s", handle.attempt_id)
