"""HHMRS rules: pure functions, no I/O, ``now`` passed in (DESIGN section 5)."""

from __future__ import annotations

import math
from typing import Literal, Protocol


class Limits(Protocol):
    """What the rules read of the HHMRS settings (``pas_core.config.Hhmrs`` has it)."""

    @property
    def heartbeat_interval_s(self) -> float: ...
    @property
    def timeout_threshold_s(self) -> float: ...
    @property
    def missed_heartbeat_threshold(self) -> int: ...
    @property
    def max_restarts(self) -> int: ...
    @property
    def max_llm_retries(self) -> int: ...
    @property
    def enable_auto_restart(self) -> bool: ...
    @property
    def enable_llm_switching(self) -> bool: ...


ChildDecision = Literal["restart", "escalate"]
GrandchildDecision = Literal["switch", "fail"]
Route = Literal["restart", "switch", "fail"]


def missed_beats(now: float, last_beat: float, heartbeat_interval_s: float) -> int:
    """Return how many whole heartbeat intervals have passed since the last beat."""
    return max(0, math.floor((now - last_beat) / heartbeat_interval_s))


def is_overdue(now: float, last_beat: float, limits: Limits) -> bool:
    """An attempt is overdue when it is past the threshold AND missed enough beats.

    ``last_beat`` is the attempt's start until its first beat.
    """
    elapsed = now - last_beat
    return (
        elapsed >= limits.timeout_threshold_s
        and missed_beats(now, last_beat, limits.heartbeat_interval_s)
        >= limits.missed_heartbeat_threshold
    )


def overdue_cutoff(now: float, limits: Limits) -> float:
    """Return the newest last-beat time that can be overdue at ``now`` (for the store)."""
    need = max(
        limits.timeout_threshold_s,
        limits.missed_heartbeat_threshold * limits.heartbeat_interval_s,
    )
    return now - need


def child_timeout_decision(restart_count: int, limits: Limits) -> ChildDecision:
    """The parent's choice for a timed-out (or crashed) child: restart it, or escalate."""
    if limits.enable_auto_restart and restart_count < limits.max_restarts:
        return "restart"
    return "escalate"


def grandchild_failure_decision(
    failure_count: int, limits: Limits, *, has_grandparent: bool, models_available: int = 2
) -> GrandchildDecision:
    """The grandparent's choice: switch the agent to another model, or fail for good.

    The top of the tree has no grandparent to switch anything: it fails. So does an
    agent with a single model (nothing to switch to).
    """
    if (
        has_grandparent
        and limits.enable_llm_switching
        and failure_count < limits.max_llm_retries
        and models_available > 1
    ):
        return "switch"
    return "fail"


# Error kind -> first response (DESIGN section 5).
ERROR_ROUTES: dict[str, Route] = {
    "timeout": "restart",
    "crash": "restart",
    "error": "restart",
    "bad_output": "restart",
    "rate_limit": "restart",
    "auth": "switch",
    "model_not_found": "switch",
    "budget_exceeded": "fail",
}


def route_error(kind: str) -> Route:
    """Return how a failure of ``kind`` is handled first; unknown kinds restart."""
    return ERROR_ROUTES.get(kind, "restart")


def next_model(chain: list[str], current: str) -> str:
    """Return the model after ``current`` in ``chain``, wrapping; the first if unknown."""
    if not chain:
        return current
    try:
        return chain[(chain.index(current) + 1) % len(chain)]
    except ValueError:
        return chain[0]


def worst_case_attempts(limits: Limits) -> int:
    """Return the most attempts one job can take before it fails for good."""
    return (limits.max_restarts + 1) * (limits.max_llm_retries + 1)
