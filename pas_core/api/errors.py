"""Turn a service's refusal into the API's answer: the field and the reason."""

from __future__ import annotations

from typing import Any


def refusal(exc: Exception) -> dict[str, Any]:
    """``ValueError("field: reason")`` -> ``{"detail", "errors": [{"field", "message"}]}``."""
    text = str(exc)
    if isinstance(exc, KeyError) and len(text) > 1 and text[0] == text[-1] == "'":
        text = text[1:-1]  # str(KeyError("x")) is "'x'".
    field, sep, message = text.partition(": ")
    if not sep:
        field, message = "body", text
    return {"detail": text, "errors": [{"field": field, "message": message}]}
