"""One Redis client per process (redis-py's pool re-creates itself after a fork)."""

from __future__ import annotations

import functools
from typing import Any

import redis
from django.conf import settings


@functools.cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=2, socket_timeout=3, health_check_interval=30
    )


def redis_client() -> Any:
    """Return the shared ``redis.Redis`` for ``REDIS_URL`` (read at call time).

    Typed ``Any``: redis-py's stubs type every command as ``Awaitable[T] | T``.
    """
    return _client(settings.REDIS_URL)


def rkey(*parts: object) -> str:
    """Return a key under the installation's prefix: ``rkey("hb", "running")``."""
    return ":".join([settings.PAS_REDIS_PREFIX, *map(str, parts)])


def broker_client() -> Any:
    """Return a client on Celery's broker (``CELERY_BROKER_URL``: the queues live there)."""
    return _client(settings.CELERY_BROKER_URL)
