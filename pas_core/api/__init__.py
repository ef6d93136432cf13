"""The JSON API (contract: DESIGN section 8). Thin: parse, call a service, format."""

from __future__ import annotations

import logging

from django.conf import settings as django_settings  # `settings` is our submodule
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpRequest
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, ValidationError

from ..errors import ServiceError
from . import agents, events, faults, hhmrs, runs, settings
from .access import SessionAuth, TokenAuth, docs_login_required

log = logging.getLogger(__name__)

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


@api.exception_handler(ServiceError)
def service_error(request: HttpRequest, exc: ServiceError):  # type: ignore[no-untyped-def]
    """A service's refusal: its status, and each field with its reason."""
    return api.create_response(request, exc.as_dict(), status=exc.status)


@api.exception_handler(DatabaseError)
def database_away(request: HttpRequest, exc: DatabaseError):  # type: ignore[no-untyped-def]
    """503 in the API's shape: nothing of the request was stored (it rolled back)."""
    log.warning("API %s %s: the database is away: %s", request.method, request.path, exc)
    detail = "database: unavailable, nothing was stored; try again"
    return api.create_response(
        request,
        {"detail": detail, "errors": [{"field": "database", "message": "unavailable"}]},
        status=503,
    )


@api.exception_handler(Exception)
def internal_error(request: HttpRequest, exc: Exception):  # type: ignore[no-untyped-def]
    """A bug answers JSON too (never Django's HTML page); its traceback goes to the log."""
    log.exception("API %s %s failed", request.method, request.path)
    return api.create_response(
        request, {"detail": f"internal error ({exc.__class__.__name__}); see the log"}, status=500
    )


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


api.add_router("/agents", agents.router)
api.add_router("/agents", hhmrs.router)
api.add_router("/agents", faults.router)
api.add_router("/runs", runs.router)
api.add_router("/events", events.router)
api.add_router("/settings", settings.router)
