"""What every HMI view shares: the page context and calling a service safely."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .. import selectors
from ..permissions import is_operator

log = logging.getLogger(__name__)


def page(
    request: HttpRequest, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> HttpResponse:
    """Render a whole page: its context plus the header, banner and script settings."""
    ctx = {**selectors.chrome(), "is_operator": is_operator(request.user), **(context or {})}
    return render(request, template, ctx, status=status)


def fragment(
    request: HttpRequest, template: str, context: dict[str, Any], *, status: int = 200
) -> HttpResponse:
    """Render one partial (``template#name``) for htmx."""
    ctx = {"is_operator": is_operator(request.user), **context}
    return render(request, template, ctx, status=status)


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, dict[str, str], int]:
    """Call a service; return ``(result, errors by field, status)``.

    Bad input never raises: ``ValueError`` (and ``LookupError``) messages read
    ``field: reason``; the field is split off when it is one, else the whole message
    lands under ``__all__``. A bug answers 500, in place.
    """
    try:
        return fn(*args, **kwargs), {}, 200
    except LookupError as exc:
        return None, _split(exc), 404
    except ValueError as exc:
        field = getattr(exc, "field", None)
        status = getattr(exc, "status", 400)
        if field:
            message = str(exc)
            prefix = f"{field}: "
            return None, {field: message.removeprefix(prefix)}, status
        return None, _split(exc), 400
    except Exception as exc:  # noqa: BLE001 - shown in place; the traceback goes to the log
        log.exception("service %s failed", getattr(fn, "__qualname__", fn))
        return None, {"__all__": f"internal error ({type(exc).__name__}); see the server log"}, 500


def _split(exc: Exception) -> dict[str, str]:
    text = str(exc.args[0]) if exc.args else str(exc)
    head, sep, tail = text.partition(": ")
    if sep and head.isidentifier():
        return {head: tail}
    return {"__all__": text}


def user_name(request: HttpRequest) -> str:
    return request.user.get_username() if request.user.is_authenticated else ""
