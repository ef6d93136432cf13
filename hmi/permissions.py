"""Who may do what: viewers read, operators act (DESIGN section 10)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from pas_core.bootstrap import OPERATORS


def is_operator(user: Any) -> bool:
    """Return whether ``user`` may act: a superuser or a member of ``operators``."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser:
        return True
    cached = getattr(user, "_pas_is_operator", None)
    if cached is None:
        cached = user.groups.filter(name=OPERATORS).exists()
        user._pas_is_operator = cached
    return bool(cached)


def operator_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Log in first (302); a logged-in viewer gets 403."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_operator(request.user):
            raise PermissionDenied("Only operators may do this.")
        return view(request, *args, **kwargs)

    return login_required(wrapped)
