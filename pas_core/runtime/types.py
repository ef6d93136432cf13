"""What a role's step receives and returns (DESIGN section 4)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..models import Agent, Attempt, Job, Run

# Error kinds (DESIGN section 5); supervision routes each one.
ERROR_KINDS = (
    "timeout",
    "crash",
    "error",
    "bad_output",
    "auth",
    "model_not_found",
    "rate_limit",
    "budget_exceeded",
)


class AttemptError(Exception):
    """The attempt failed in a known way; ``kind`` is one of ERROR_KINDS."""

    def __init__(self, kind: str, message: str):
        if kind not in ERROR_KINDS:
            kind = "error"
        self.kind = kind
        self.message = message
        super().__init__(f"{kind}: {message}")


@dataclass
class ChildCard:
    """A job card for one child agent; the runtime gives it its job id."""

    agent_id: str
    card: dict[str, Any]
    lane: str = ""


@dataclass
class Delegate:
    children: list[ChildCard]


@dataclass
class Complete:
    result: dict[str, Any]


@dataclass
class StepContext:
    run: Run
    job: Job
    attempt: Attempt
    agent: Agent
    model: str  # The model this attempt runs on (empty for PAS Root).
    beat: Callable[[float, str], None]  # beat(progress 0..1, message), throttled.
    artifacts_dir: Path  # <PAS_ARTIFACTS_DIR>/runs/<run_id>
    fault: str | None = None  # "bad_output" when injected for this attempt.
    children: list[Job] = field(default_factory=list)  # Aggregate phase: ended children.
