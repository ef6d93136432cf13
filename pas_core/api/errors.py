"""Turn a service's refusal into the API's answer: the field and the reason."""

from __future__ import annotations

from typing import Any


def refusal(exc: Exception) -> dict[str, Any]:
    """``ValueError("field: reason")`` -> ``{"detail", "errors": [{"field", "message"}]}``."""
    text = str(exc).strip("'\"")
    field, sep, message = text.partition(": ")
    if not sep:
        field, message = "body", text
    return {"detail": text, "errors": [{"field": field, "message": message}]}
