"""Who may call the API: a logged-in session or a bearer token (DESIGN section 8)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja.errors import HttpError
from ninja.security import APIKeyCookie, HttpBearer

from ..auth import bearer, token_check
from ..bootstrap import OPERATORS


class SessionAuth(APIKeyCookie):
    """A logged-in session (with Django's CSRF check on unsafe methods).

    Without a session cookie there is nothing to check: the request goes on to the
    bearer token (ninja's cookie auth would otherwise answer 403 "CSRF check Failed"
    to every token-only POST before the token is looked at).
    """

    param_name = "sessionid"

    def _get_key(self, request: HttpRequest) -> str | None:
        if self.param_name not in request.COOKIES:
            return None
        return super()._get_key(request)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        if request.method not in ("GET", "HEAD", "OPTIONS") and not user_may_act(user):
            if request.headers.get("Authorization"):
                return None  # A bearer token may still allow it.
            # A viewer reads; only operators act (DESIGN section 10), here as in the HMI.
            raise HttpError(403, "operators only: a viewer may read but not act")
        return user


def user_may_act(user: Any) -> bool:
    """Return whether a logged-in user may act: a superuser or a member of ``operators``."""
    if not user.is_active:
        return False
    return bool(user.is_superuser or user.groups.filter(name=OPERATORS).exists())


class TokenAuth(HttpBearer):
    """``Authorization: Bearer <token>``. Agent-bound tokens may only send heartbeats."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        found = token_check(token)
        if found is None or found[1]:
            return None
        request.pas_token_id = found[0]  # type: ignore[attr-defined]
        return found


def docs_login_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The schema and its docs page, like every other API path: a session or a full token.

    An anonymous caller (or an agent-bound token, which may only send heartbeats) gets
    401, as anywhere else in the API. Found by the security drill (tests/drills).
    """

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = getattr(request, "user", None)
        raw = bearer(request.headers.get("Authorization"))
        found = token_check(raw) if raw else None
        if (user is None or not user.is_authenticated) and (found is None or found[1]):
            return JsonResponse({"detail": "authentication required"}, status=401)
        if request.method not in ("GET", "HEAD"):
            return JsonResponse({"detail": "method: only GET reads the schema"}, status=405)
        return view(request, *args, **kwargs)

    return wrapped


def request_actor(request: HttpRequest) -> str:
    """Return who made an API request, for events and comms: a user name or a token."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user.get_username()
    token = getattr(request, "pas_token_id", None)
    return f"token:{token}" if token else "api"
