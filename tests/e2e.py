"""Helpers for end-to-end tests: short timings, a running stack, waiting for a run."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from pas_core import config
from pas_core.models import Event, Run
from tests import procs

SHORT = {
    "heartbeat_interval_s": 1,
    "timeout_threshold_s": 2,
    "missed_heartbeat_threshold": 2,
    "sweep_interval_s": 0.5,
}


@contextlib.contextmanager
def stack(env: dict[str, str], *, beat: bool = True, agents: int = 8) -> Iterator[dict[str, Any]]:
    """Start real workers (agents as the Procfile runs it, hhmrs) and, optionally, beat.

    They start together and stop together (``procs.start_together``): the test waits for
    the slowest start-up and the slowest shutdown, not for their sum.
    """
    running: dict[str, Any] = {
        "agents": procs.agents_worker(env, concurrency=agents),
        "hhmrs": procs.celery_worker(env, queues="hhmrs", name="hhmrs", concurrency=1),
    }
    if beat:
        running["beat"] = procs.celery_beat(env)
    procs.start_together(list(running.values()))
    try:
        yield running
    finally:
        procs.stop_together(list(running.values()))


def short_timings(**more: Any) -> config.Hhmrs:
    return config.hhmrs_update({**SHORT, **more})


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_run(run_id: Any, timeout: float = 90) -> Run:
    """Wait until the run has ended; return it."""

    def ended() -> Run | None:
        run = Run.objects.get(pk=run_id)
        return run if run.status in (Run.Status.COMPLETED, Run.Status.FAILED) else None

    return wait_until(ended, f"run {run_id} to end", timeout)


def event_trail(agent_id: str, types: tuple[str, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """Return ``(event_type, data)`` for the agent's events, oldest first."""
    qs = Event.objects.filter(agent_id=agent_id).order_by("id")
    if types:
        qs = qs.filter(event_type__in=types)
    return [(e.event_type, e.data) for e in qs]
