"""The JSON API (contract: DESIGN section 8). Thin: parse, call a service, format."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings  # `settings` is our submodule
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, ValidationError
from ninja.security import APIKeyCookie, HttpBearer

from ..auth import token_check


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
        if user is not None and user.is_authenticated:
            return user
        return None


class TokenAuth(HttpBearer):
    """``Authorization: Bearer <token>``. Agent-bound tokens may only send heartbeats."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        found = token_check(token)
        if found is None or found[1]:
            return None
        request.pas_token_id = found[0]  # type: ignore[attr-defined]
        return found


api = NinjaAPI(
    title="PAS control plane",
    version="1.0",
    urls_namespace="api",
    auth=[SessionAuth(), TokenAuth()],
    docs_url="/docs",
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
