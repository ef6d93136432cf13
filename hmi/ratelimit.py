"""Login attempts are rate-limited: at most ``LIMIT`` per client address and user name
per ``WINDOW_S`` seconds, then 429 until the window ends.

Counted in Redis (one INCR per attempt, shared by every web process), or in Django's
cache when Redis does not answer. Every POST to a login page counts, whether it
succeeds or not: a person does not log in ten times a minute. The client address is
``REMOTE_ADDR`` (a proxy in front must set it; a client-sent X-Forwarded-For is not
trusted).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.decorators import sync_and_async_middleware

from pas_core.stores.redis import redis_client, rkey

LIMIT = 10
WINDOW_S = 60


def _login_paths() -> set[str]:
    paths = {reverse("hmi:login")}
    try:
        paths.add(reverse("admin:login"))
    except Exception:  # noqa: BLE001 - no admin site mounted
        pass
    return paths


def _count(key: str) -> int:
    """Count one attempt under ``key``; return the attempts in the current window."""
    try:
        pipe = redis_client().pipeline(transaction=True)
        pipe.incr(rkey("login", key))
        pipe.expire(rkey("login", key), WINDOW_S, nx=True)
        return int(pipe.execute()[0])
    except Exception:  # noqa: BLE001 - Redis away: count in this process's cache
        cache.add(f"pas-login-{key}", 0, WINDOW_S)
        try:
            return int(cache.incr(f"pas-login-{key}"))
        except ValueError:  # Expired between add and incr.
            cache.set(f"pas-login-{key}", 1, WINDOW_S)
            return 1


def login_refusal(request: HttpRequest) -> HttpResponse | None:
    """Return a 429 when this login attempt is one too many, else None (and count it)."""
    if request.method != "POST" or request.path not in _login_paths():
        return None
    username = str(request.POST.get("username", "")).strip().lower()
    ip = request.META.get("REMOTE_ADDR", "") or "-"
    key = hashlib.sha256(f"{ip}\0{username}".encode()).hexdigest()[:32]
    if _count(key) <= LIMIT:
        return None
    response = HttpResponse(
        f"Too many login attempts: at most {LIMIT} a minute. Try again in a minute.\n",
        status=429,
        content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(WINDOW_S)
    return response


@sync_and_async_middleware
def login_rate_limit(get_response: Callable[[HttpRequest], Any]) -> Any:
    """Middleware: refuse a login POST past the limit; anything else passes untouched.

    Both sync and async, so that async views (the SSE stream) stay async.
    """
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            if request.method == "POST":
                refused = await sync_to_async(login_refusal)(request)
                if refused is not None:
                    return refused
            return await get_response(request)  # type: ignore[no-any-return]

        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponse:
        refused = login_refusal(request)
        return refused if refused is not None else get_response(request)

    return sync_middleware
