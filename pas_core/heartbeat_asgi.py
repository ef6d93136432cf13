"""The lean ASGI route for ``POST /api/agents/{agent_id}/heartbeat`` (the hottest path).

Requests with a bearer token are answered here, in front of the Django stack: the
token is checked against a per-process cache, and the beat is one Redis round trip
(a Lua script: find the job's attempt, check its owner, refresh its score). Anything
else (a session cookie, another path) goes on to Django, which has the same logic.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings

from .auth import bearer, token_check
from .hhmrs.heartbeats import HTTP_BEAT_ANSWERS, HTTP_BEAT_LUA, http_beat_args

PATH = re.compile(r"^/api/agents/([^/]+)/heartbeat/?$")
MAX_BODY = 16 * 1024


class _Beats:
    def __init__(self) -> None:
        self.client: aioredis.Redis | None = None
        self.script: Any = None
        self.agents: set[str] | None = None

    def redis(self) -> Any:
        if self.client is None:
            self.client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
            self.script = self.client.register_script(HTTP_BEAT_LUA)
        return self.script


def _known_agents() -> set[str]:
    from .models import Agent

    return set(Agent.objects.values_list("agent_id", flat=True))


async def _send(send: Any, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def heartbeat_front(app: Any) -> Any:
    beats = _Beats()

    async def front(scope: dict[str, Any], receive: Any, send: Any) -> None:
        match = PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        headers = dict(scope.get("headers") or []) if match else {}
        raw = bearer(headers.get(b"authorization", b"").decode("latin-1")) if match else None
        if not match or scope.get("method") != "POST" or raw is None:
            await app(scope, receive, send)
            return
        agent_id = unquote(match.group(1))
        found = await sync_to_async(token_check)(raw)
        if found is None or (found[1] and found[1] != agent_id):
            await _send(send, 401 if found is None else 403, {"detail": "authentication required"})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_BODY:
                await _send(send, 413, {"detail": "body: larger than 16 KiB"})
                return
        try:
            payload = json.loads(body or b"{}")
            args = http_beat_args(agent_id, payload, prefix=settings.PAS_REDIS_PREFIX)
        except json.JSONDecodeError as exc:
            await _send(send, 400, {"detail": f"body: malformed JSON ({exc.msg})"})
            return
        except ValueError as exc:
            field, _, why = str(exc).partition(": ")
            await _send(
                send, 422, {"detail": str(exc), "errors": [{"field": field, "message": why}]}
            )
            return
        if beats.agents is None or agent_id not in beats.agents:
            beats.agents = await sync_to_async(_known_agents)()
            if agent_id not in beats.agents:
                await _send(send, 404, {"detail": f"agent_id: no agent {agent_id!r}"})
                return
        code = int(await beats.redis()(args=args))
        status, answer = HTTP_BEAT_ANSWERS[code]
        await _send(send, status, answer)

    return front
