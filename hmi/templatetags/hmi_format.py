"""Presentation-only filters: how numbers, times and JSON read on screen (no logic)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django import template

from ..labels import event_label, status_label

register = template.Library()


@register.filter
def duration(seconds: Any) -> str:
    """Return ``72.5`` as ``1m 12s``; ``None`` as an em dash."""
    if seconds is None or seconds == "":
        return "—"
    total = float(seconds)
    if total < 60:
        return f"{total:.1f}s"
    minutes, secs = divmod(int(round(total)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


@register.filter
def seconds_to(start: datetime | None, end: datetime | None) -> float | None:
    """Return the seconds from ``start`` to ``end`` (None if either is missing)."""
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


@register.filter
def compact_json(value: Any, limit: int = 240) -> str:
    """Return ``value`` as one line of JSON, cut at ``limit`` characters."""
    text = json.dumps(value, sort_keys=True, separators=(", ", ": "), default=str)
    return text if len(text) <= int(limit) else text[: int(limit) - 1] + "…"


@register.filter
def model_short(model_id: str) -> str:
    """Return a model id without its provider prefix (as the comms log writes it)."""
    return model_id.split("/", 1)[1] if model_id and "/" in model_id else (model_id or "")


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


@register.filter
def event_words(event_type: str) -> str:
    """Return an event type as words: ``hhmrs_timeout`` -> ``Timed out``."""
    return event_label(str(event_type or ""))


@register.filter
def words(status: str) -> str:
    """Return a status as words: ``timed_out`` -> ``timed out``."""
    return status_label(str(status or ""))
