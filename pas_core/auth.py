"""API tokens: created once, stored as a SHA-256 hash, looked up through a small cache."""

from __future__ import annotations

import hashlib
import secrets
import time

from django.utils import timezone

from .errors import NotFound, ServiceError
from .models import Agent, ApiToken

TOKEN_PREFIX = "pas_"
_CACHE_TTL_S = 30.0
# token hash -> (expires_at, token id or None, bound agent id or "")
_cache: dict[str, tuple[float, int | None, str]] = {}


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_create(*, name: str, agent_id: str | None = None) -> tuple[str, ApiToken]:
    """Create a token; return the plain text (shown once) and the stored row."""
    name = name.strip()
    if not name:
        raise ServiceError("name", "must not be empty")
    agent = None
    if agent_id:
        agent = Agent.objects.filter(agent_id=agent_id).first()
        if agent is None:
            raise NotFound("agent", f"no agent {agent_id!r}")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        name=name, token_hash=token_hash(raw), prefix=raw[:10], agent=agent
    )
    return raw, token


def token_check(raw: str) -> tuple[int, str] | None:
    """Return ``(token id, bound agent id or "")`` for a valid token, else None.

    Answers come from a per-process cache for 30 s, so the heartbeat path does not
    touch the database; a revoked token stops working within that time.
    """
    digest = token_hash(raw)
    now = time.monotonic()
    hit = _cache.get(digest)
    if hit is not None and hit[0] > now:
        return None if hit[1] is None else (hit[1], hit[2])
    row = (
        ApiToken.objects.filter(token_hash=digest, revoked=False)
        .values_list("id", "agent_id")
        .first()
    )
    if len(_cache) > 10_000:
        _cache.clear()
    _cache[digest] = (now + _CACHE_TTL_S, row[0] if row else None, (row[1] or "") if row else "")
    if row is None:
        return None
    ApiToken.objects.filter(id=row[0]).update(last_used_at=timezone.now())
    return row[0], row[1] or ""


def bearer(header: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
