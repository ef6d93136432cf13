"""The HHMRS rules (pas_core.hhmrs.policy), at and around every boundary. No database."""

from __future__ import annotations

import ast
import inspect
import sys

import pytest

from pas_core import policy
from pas_core.config import Hhmrs

LAST_BEAT = 1_000_000.0  # Whole seconds: every elapsed time below is exact in binary.

# The contract defaults: beat every 30 s, overdue after 60 s and 2 missed beats.
DEFAULTS = Hhmrs()
# The threshold is longer than the missed beats: the timeout decides.
SHORT_BEATS = Hhmrs(heartbeat_interval_s=10, timeout_threshold_s=60, missed_heartbeat_threshold=2)
# The missed beats take longer than the threshold: the beat count decides.
FEW_BEATS = Hhmrs(heartbeat_interval_s=30, timeout_threshold_s=10, missed_heartbeat_threshold=2)
# The interval is longer than the threshold: one whole interval must pass.
LONG_INTERVAL = Hhmrs(
    heartbeat_interval_s=120, timeout_threshold_s=60, missed_heartbeat_threshold=1
)
# The end-to-end timings: beat 1 s, overdue after 2 s.
E2E = Hhmrs(heartbeat_interval_s=1, timeout_threshold_s=2, missed_heartbeat_threshold=2)


@pytest.mark.parametrize(
    ("limits", "elapsed", "overdue"),
    [
        (DEFAULTS, 0.0, False),
        (DEFAULTS, 59.999, False),  # Just under the threshold.
        (DEFAULTS, 60.0, True),  # At it: ">=", and floor(60/30) = 2 missed beats.
        (DEFAULTS, 60.001, True),
        (DEFAULTS, 3600.0, True),
        (SHORT_BEATS, 59.999, False),  # 5 beats missed, but the threshold is not reached.
        (SHORT_BEATS, 60.0, True),
        (FEW_BEATS, 10.0, False),  # Past the threshold, but floor(10/30) = 0 beats missed.
        (FEW_BEATS, 59.999, False),  # floor(59.999/30) = 1: one beat under the count.
        (FEW_BEATS, 60.0, True),  # floor(60/30) = 2: the count is reached.
        (LONG_INTERVAL, 60.0, False),  # At the threshold, but not a whole interval yet.
        (LONG_INTERVAL, 119.999, False),
        (LONG_INTERVAL, 120.0, True),
        (E2E, 1.999, False),
        (E2E, 2.0, True),
        (DEFAULTS, -5.0, False),  # A last beat in the future (clock skew) is never overdue.
    ],
)
def test_it_finds_an_attempt_overdue_only_past_the_threshold_and_the_missed_beats(
    limits: Hhmrs, elapsed: float, overdue: bool
) -> None:
    assert policy.is_overdue(LAST_BEAT + elapsed, LAST_BEAT, limits) is overdue


@pytest.mark.parametrize(
    ("elapsed", "interval", "missed"),
    [(0.0, 30, 0), (29.999, 30, 0), (30.0, 30, 1), (59.999, 30, 1), (60.0, 30, 2), (-1.0, 30, 0)],
)
def test_it_counts_whole_missed_beats(elapsed: float, interval: float, missed: int) -> None:
    assert policy.missed_beats(LAST_BEAT + elapsed, LAST_BEAT, interval) == missed


@pytest.mark.parametrize(
    ("limits", "wait"),
    [(DEFAULTS, 60.0), (SHORT_BEATS, 60.0), (FEW_BEATS, 60.0), (LONG_INTERVAL, 120.0), (E2E, 2.0)],
)
def test_the_store_cutoff_is_the_first_moment_an_attempt_can_be_overdue(
    limits: Hhmrs, wait: float
) -> None:
    now = LAST_BEAT + 500
    cutoff = policy.overdue_cutoff(now, limits)

    # The sweep asks the store for last beats <= cutoff: that is exactly `wait` ago ...
    assert cutoff == now - wait
    # ... an attempt whose last beat is the cutoff is overdue, one a moment later is not.
    assert policy.is_overdue(now, cutoff, limits) is True
    assert policy.is_overdue(now, cutoff + 0.001, limits) is False


@pytest.mark.parametrize(
    ("limits", "restart_count", "decision"),
    [
        (Hhmrs(max_restarts=3), 0, "restart"),
        (Hhmrs(max_restarts=3), 2, "restart"),  # max - 1: the last restart.
        (Hhmrs(max_restarts=3), 3, "escalate"),  # max: escalate to the grandparent.
        (Hhmrs(max_restarts=3), 4, "escalate"),  # max + 1
        (Hhmrs(max_restarts=0), 0, "escalate"),  # No restarts allowed at all.
        (Hhmrs(max_restarts=10), 9, "restart"),
        (Hhmrs(max_restarts=10), 10, "escalate"),
        (Hhmrs(max_restarts=3, enable_auto_restart=False), 0, "escalate"),
        (Hhmrs(max_restarts=3, enable_auto_restart=False), 2, "escalate"),
    ],
)
def test_the_parent_restarts_until_max_restarts_then_escalates(
    limits: Hhmrs, restart_count: int, decision: str
) -> None:
    assert policy.child_timeout_decision(restart_count, limits) == decision


@pytest.mark.parametrize(
    ("limits", "failure_count", "has_grandparent", "models", "decision"),
    [
        (Hhmrs(max_llm_retries=3), 0, True, 3, "switch"),
        (Hhmrs(max_llm_retries=3), 2, True, 3, "switch"),  # max - 1: the last switch.
        (Hhmrs(max_llm_retries=3), 3, True, 3, "fail"),  # max: permanent failure.
        (Hhmrs(max_llm_retries=3), 4, True, 3, "fail"),  # max + 1
        (Hhmrs(max_llm_retries=0), 0, True, 3, "fail"),
        (Hhmrs(max_llm_retries=3), 0, False, 3, "fail"),  # The top of the tree: nobody to ask.
        (Hhmrs(max_llm_retries=3, enable_llm_switching=False), 0, True, 3, "fail"),
        (Hhmrs(max_llm_retries=3), 0, True, 1, "fail"),  # A single-model chain.
        (Hhmrs(max_llm_retries=3), 0, True, 2, "switch"),  # Two models are enough.
    ],
)
def test_the_grandparent_switches_models_until_max_llm_retries_then_fails(
    limits: Hhmrs, failure_count: int, has_grandparent: bool, models: int, decision: str
) -> None:
    assert (
        policy.grandchild_failure_decision(
            failure_count, limits, has_grandparent=has_grandparent, models_available=models
        )
        == decision
    )


@pytest.mark.parametrize(
    ("kind", "route"),
    [
        ("timeout", "restart"),
        ("crash", "restart"),
        ("error", "restart"),
        ("bad_output", "restart"),
        ("rate_limit", "restart"),
        ("auth", "switch"),  # Another restart on the same model cannot help.
        ("model_not_found", "switch"),
        ("budget_exceeded", "fail"),  # No model and no restart brings the budget back.
        ("something_new", "restart"),  # Unknown kinds get the mildest treatment.
        ("", "restart"),
    ],
)
def test_each_error_kind_has_its_first_response(kind: str, route: str) -> None:
    assert policy.route_error(kind) == route


def test_every_error_kind_the_runtime_knows_has_a_route() -> None:
    from pas_core.errors import ERROR_KINDS

    # A kind added to the runtime without a route would silently restart.
    assert set(ERROR_KINDS) == set(policy.ERROR_ROUTES)


CHAIN = ["google/gemini-2.5-flash", "ollama/llama3.1:8b", "anthropic/claude-sonnet-4-5"]


@pytest.mark.parametrize(
    ("chain", "current", "expected"),
    [
        (CHAIN, "google/gemini-2.5-flash", "ollama/llama3.1:8b"),
        (CHAIN, "ollama/llama3.1:8b", "anthropic/claude-sonnet-4-5"),
        (CHAIN, "anthropic/claude-sonnet-4-5", "google/gemini-2.5-flash"),  # It wraps.
        (CHAIN, "openai/gpt-4o", "google/gemini-2.5-flash"),  # Unknown: back to the first.
        (CHAIN, "", "google/gemini-2.5-flash"),
        (["ollama/llama3.1:8b"], "ollama/llama3.1:8b", "ollama/llama3.1:8b"),
        ([], "ollama/llama3.1:8b", "ollama/llama3.1:8b"),  # No chain: keep the model.
    ],
)
def test_the_next_model_follows_the_chain_and_wraps(
    chain: list[str], current: str, expected: str
) -> None:
    assert policy.next_model(chain, current) == expected


@pytest.mark.parametrize(
    ("max_restarts", "max_llm_retries", "attempts"),
    [(3, 3, 16), (0, 0, 1), (0, 3, 4), (3, 0, 4), (10, 10, 121), (1, 2, 6)],
)
def test_the_worst_case_is_restarts_plus_one_times_switches_plus_one(
    max_restarts: int, max_llm_retries: int, attempts: int
) -> None:
    limits = Hhmrs(max_restarts=max_restarts, max_llm_retries=max_llm_retries)

    assert policy.worst_case_attempts(limits) == attempts
    # The settings page shows the same figure.
    assert limits.worst_case_attempts == attempts


def test_the_rules_do_no_io() -> None:
    tree = ast.parse(inspect.getsource(policy))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])

    # Only the standard library's pure helpers: no Django, no Redis, no clock.
    assert imported <= {"__future__", "math", "typing"}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


# -- restart backoff and budgets (pure) ------------------------------------------------


class _Backoff:
    restart_backoff_initial_s = 1.0
    restart_backoff_factor = 2.0
    restart_backoff_max_s = 10.0
    restart_backoff_jitter = 0.2


@pytest.mark.parametrize(
    ("kind", "number", "delay"),
    [
        ("error", 1, 1.0),  # initial x factor^(n-1)
        ("error", 2, 2.0),
        ("error", 3, 4.0),
        ("crash", 4, 8.0),
        ("bad_output", 5, 10.0),  # capped at max
        ("error", 9, 10.0),
        ("timeout", 1, 0.0),  # The hang already cost the threshold: the first is at once.
        ("timeout", 2, 1.0),
        ("timeout", 3, 2.0),
        ("operator", 3, 0.0),  # A person asked: never held back.
    ],
)
def test_restarts_after_an_error_back_off_and_the_first_after_a_timeout_does_not(
    kind: str, number: int, delay: float
) -> None:
    assert policy.restart_delay(kind, number, _Backoff()) == delay


def test_jitter_spreads_the_delay_by_its_fraction_both_ways() -> None:
    assert policy.restart_delay("error", 2, _Backoff(), jitter=1.0) == pytest.approx(2.4)
    assert policy.restart_delay("error", 2, _Backoff(), jitter=-1.0) == pytest.approx(1.6)
    assert policy.restart_delay("error", 2, _Backoff(), jitter=-7) == pytest.approx(1.6)


def test_a_rate_limit_waits_at_least_the_providers_retry_after() -> None:
    assert policy.restart_delay("rate_limit", 1, _Backoff(), retry_after_s=30) == 30.0
    assert policy.restart_delay("rate_limit", 4, _Backoff(), retry_after_s=3) == 8.0


def test_the_worst_case_backoff_adds_every_capped_step_at_full_jitter() -> None:
    assert policy.backoff_total(_Backoff(), 5) == pytest.approx((1 + 2 + 4 + 8 + 10) * 1.2)


@pytest.mark.parametrize(
    ("spent", "breach"),
    [
        ({"tokens": 500}, ""),
        ({"tokens": 501}, "tokens 501 > 500"),
        ({"cost_usd": 0.0101}, "cost $0.0101 > $0.0100"),
        ({"elapsed_s": 61}, "wall time 61 s > 60 s"),
        ({"elapsed_s": 61, "wall_s_max": None}, ""),  # No wall-time budget.
    ],
)
def test_a_run_breaks_a_budget_only_past_it(spent: dict, breach: str) -> None:
    limits = {
        "tokens": 0,
        "tokens_max": 500,
        "cost_usd": 0.0,
        "cost_usd_max": 0.01,
        "elapsed_s": 0.0,
        "wall_s_max": 60.0,
    }
    assert policy.budget_breach(**{**limits, **spent}) == breach
