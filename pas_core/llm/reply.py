"""What a model call returns, whichever model (or the offline planner) answered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# beat(progress 0..1, message): called while a reply streams in (it throttles itself).
Beat = Callable[[float, str], None]


@dataclass
class LlmReply:
    text: str
    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    produced_by: str = ""
