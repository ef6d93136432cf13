"""What every HMI view shares: the page context and calling a service safely."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from pas_core.errors import ServiceError

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

    A refusal (ServiceError) never raises: its fields and status are shown in place. A
    bug answers 500, in place, its traceback in the log.
    """
    try:
        return fn(*args, **kwargs), {}, 200
    except ServiceError as exc:
        return None, dict(exc.errors), exc.status
    except Exception as exc:  # noqa: BLE001 - shown in place; the traceback goes to the log
        log.exception("service %s failed", getattr(fn, "__qualname__", fn))
        return None, {"__all__": f"internal error ({type(exc).__name__}); see the server log"}, 500


def user_name(request: HttpRequest) -> str:
    return request.user.get_username() if request.user.is_authenticated else ""
