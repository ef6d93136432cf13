"""System checks for PAS's own settings (``manage.py check`` and every command run them)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

LLM_MODES = ("offline", "live")


@register()
def llm_mode_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """``PAS_LLM_MODE`` must name a mode PAS has: a typo must not fall back silently."""
    mode = str(getattr(settings, "PAS_LLM_MODE", "offline"))
    if mode in LLM_MODES:
        return []
    return [
        Error(
            f"PAS_LLM_MODE is {mode!r}: it must be one of {', '.join(LLM_MODES)}.",
            hint="offline: the built-in planner, no network; live: the real providers.",
            id="pas_core.E001",
        )
    ]
