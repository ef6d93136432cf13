"""HHMRS rules: pure functions and tables, no I/O, ``now`` passed in (DESIGN section 5).

The transition tables below are the only statement of which status may follow which;
``pas_core.services.transitions`` writes every status change through them.
"""

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
    "runaway": "restart",
    "error": "restart",
    "bad_output": "restart",
    "rate_limit": "restart",
    "auth": "switch",
    "model_not_found": "switch",
    "budget_exceeded": "fail",
    # Restarted with the failed check's command and output in its prompt (feedback).
    "acceptance_failed": "restart",
    # The disk, not the agent: failed without spending the ladder; resumable from the
    # retry queue once space is freed.
    "storage": "fail",
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


# -- the state machines -------------------------------------------------------------
# status -> the statuses it may move to. A write from a status not listed is refused:
# that is how a result racing a timeout, two sweeps, or a message delivered twice
# resolve to one winner (the loser's conditional update matches no row).

ATTEMPT_TRANSITIONS: dict[str, frozenset[str]] = {
    # Started once by its task; killed before it started when its job is restarted.
    "queued": frozenset({"running", "killed"}),
    # Ended by its task (succeeded, errored) or by supervision (timed_out, killed).
    "running": frozenset({"succeeded", "errored", "timed_out", "killed"}),
    "succeeded": frozenset(),
    "errored": frozenset(),
    "timed_out": frozenset(),
    "killed": frozenset(),
}

JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    # queued -> queued: re-sent as a new attempt before the last one started.
    "queued": frozenset({"queued", "running", "failed", "cancelled"}),
    # running -> queued: restarted, or switched to another model, as a new attempt.
    "running": frozenset({"queued", "waiting", "succeeded", "failed", "cancelled"}),
    # waiting -> queued: every child ended, the aggregate step is sent.
    # waiting -> waiting: a descendant taken out of the retry queue reopens it.
    "waiting": frozenset({"queued", "waiting", "cancelled"}),
    # An ancestor of a retried job waits again for its children.
    "succeeded": frozenset({"waiting"}),
    # Taken out of the retry queue: sent again, or waits again for a retried child.
    "failed": frozenset({"queued", "waiting"}),
    "cancelled": frozenset(),
}

RUN_TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "completed", "failed"}),
    # running -> running: a retry while other lanes still run.
    "running": frozenset({"running", "completed", "failed"}),
    "completed": frozenset(),
    "failed": frozenset({"running"}),  # A job taken out of the retry queue reopens it.
}


def sources(table: dict[str, frozenset[str]], to: str) -> frozenset[str]:
    """Return the statuses from which ``table`` allows a move to ``to``."""
    return frozenset(status for status, targets in table.items() if to in targets)


def allowed(table: dict[str, frozenset[str]], current: str, to: str) -> bool:
    """Return whether ``table`` allows a move from ``current`` to ``to``."""
    return to in table.get(current, frozenset())


# -- budgets and backoff ------------------------------------------------------------


def budget_breach(
    *,
    tokens: int,
    tokens_max: int | None,
    cost_usd: float,
    cost_usd_max: float | None,
    elapsed_s: float | None = None,
    wall_s_max: float | None = None,
) -> str:
    """Return which budget a run has gone past ("" when none): tokens, cost, wall time."""
    if tokens_max and tokens > tokens_max:
        return f"tokens {tokens} > {tokens_max}"
    if cost_usd_max is not None and cost_usd_max >= 0 and cost_usd > cost_usd_max:
        return f"cost ${cost_usd:.4f} > ${cost_usd_max:.4f}"
    if wall_s_max and elapsed_s is not None and elapsed_s > wall_s_max:
        return f"wall time {elapsed_s:.0f} s > {wall_s_max:.0f} s"
    return ""


class Backoff(Protocol):
    """What the delay rule reads of the HHMRS settings."""

    @property
    def restart_backoff_initial_s(self) -> float: ...
    @property
    def restart_backoff_factor(self) -> float: ...
    @property
    def restart_backoff_max_s(self) -> float: ...
    @property
    def restart_backoff_jitter(self) -> float: ...


def restart_delay(
    kind: str,
    restart_number: int,
    limits: Backoff,
    *,
    retry_after_s: float | None = None,
    jitter: float = 0.0,
) -> float:
    """Return how long the ``restart_number``-th restart (1-based) of a job waits.

    After an error or a crash: ``initial x factor^(n-1)``, capped at ``max``, spread by
    ``jitter`` (a number in [-1, 1] the caller draws, scaled by the jitter fraction) so
    many jobs that failed together do not come back together. After a timeout the
    first restart is immediate (the hang already cost the threshold); later ones back
    off from the first step. A rate limit waits at least the provider's Retry-After.
    An operator's restart never waits.
    """
    if kind == "operator" or restart_number < 1:
        return 0.0
    step = restart_number - 1 if kind == "timeout" else restart_number
    if step < 1:
        delay = 0.0
    else:
        base = limits.restart_backoff_initial_s * limits.restart_backoff_factor ** (step - 1)
        delay = min(base, limits.restart_backoff_max_s)
        delay *= 1 + limits.restart_backoff_jitter * max(-1.0, min(1.0, jitter))
    if kind == "rate_limit" and retry_after_s:
        delay = max(delay, retry_after_s)
    return max(0.0, delay)


def backoff_total(limits: Backoff, restarts: int) -> float:
    """Return the longest a job waits in backoff over ``restarts`` error restarts."""
    total = 0.0
    for n in range(1, restarts + 1):
        base = limits.restart_backoff_initial_s * limits.restart_backoff_factor ** (n - 1)
        total += min(base, limits.restart_backoff_max_s) * (1 + limits.restart_backoff_jitter)
    return total
