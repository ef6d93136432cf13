"""The JSON API (contract: DESIGN section 8). Thin: parse, call a service, format."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings as django_settings  # `settings` is our submodule
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import APIKeyCookie, HttpBearer

from ..auth import bearer, token_check


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
    from ..bootstrap import OPERATORS

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


api = NinjaAPI(
    title="PAS control plane",
    version="1.0",
    urls_namespace="api",
    auth=[SessionAuth(), TokenAuth()],
    docs_url="/docs",
    docs_decorator=docs_login_required,
    openapi_url="/openapi.json",
)


@api.exception_handler(ValidationError)
def validation_error(request: HttpRequest, exc: ValidationError):  # type: ignore[no-untyped-def]
    """422 naming each field: ``{"detail": "...", "errors": [{"field", "message"}]}``."""
    errors = []
    for err in exc.errors:
        loc = [str(p) for p in err.get("loc", []) if p not in ("body", "payload", "query", "path")]
        errors.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid")})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return api.create_response(request, {"detail": detail, "errors": errors}, status=422)


@api.exception_handler(RequestDataTooBig)
def body_too_big(request: HttpRequest, exc: RequestDataTooBig):  # type: ignore[no-untyped-def]
    """413 in the API's shape, not Django's HTML 400 page (found by the bad-input drill)."""
    limit = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    message = f"larger than {limit} bytes"
    return api.create_response(
        request,
        {"detail": f"body: {message}", "errors": [{"field": "body", "message": message}]},
        status=413,
    )


@api.exception_handler(AuthenticationError)
def auth_error(request: HttpRequest, exc: AuthenticationError):  # type: ignore[no-untyped-def]
    return api.create_response(request, {"detail": "authentication required"}, status=401)


def _mount() -> None:
    from . import agents, events, faults, hhmrs, runs, settings

    api.add_router("/agents", agents.router)
    api.add_router("/agents", hhmrs.router)
    api.add_router("/agents", faults.router)
    api.add_router("/runs", runs.router)
    api.add_router("/events", events.router)
    api.add_router("/settings", settings.router)


_mount()
