"""What a role's step receives and returns (DESIGN section 4)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AttemptError
from ..models import Agent, Attempt, Job, Run
from ..services.jobs import ChildCard

__all__ = ["AttemptError", "ChildCard", "Complete", "Delegate", "StepContext"]


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
    fault: str | None = None  # "bad_output" or "failing_output" when injected for it.
    children: list[Job] = field(default_factory=list)  # Aggregate phase: ended children.
