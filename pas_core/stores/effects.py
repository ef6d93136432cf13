"""Side effects that failed after a commit: counted, logged, and told to the caller.

What a request stored is stored: a comms file line the disk refused, a push Redis did
not take, a Celery send that timed out, a settings file that could not be written, are
logged and counted here, and never skip the effects after them (``on_commit(...,
robust=True)``). A request that wants to tell its client (``POST /api/runs`` answers
202 with ``warnings``) collects them with ``collect()``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

log = logging.getLogger(__name__)

_collected: ContextVar[list[str] | None] = ContextVar("pas_effect_failures", default=None)
counts: dict[str, int] = {}  # What failed, by kind, in this process (for /metrics).


def failed(kind: str, detail: str) -> None:
    """Record that a side effect of kind ``kind`` failed (already logged by the caller)."""
    counts[kind] = counts.get(kind, 0) + 1
    collected = _collected.get()
    if collected is not None:
        collected.append(f"{kind}: {detail}")


@contextmanager
def collect() -> Iterator[list[str]]:
    """Gather the side effects that fail inside the block (for a request's answer)."""
    found: list[str] = []
    token = _collected.set(found)
    try:
        yield found
    finally:
        _collected.reset(token)
