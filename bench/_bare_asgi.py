"""An ASGI app that answers every request at once with 202: Daphne's own ceiling.

hhmrs_bench.py serves it with the same Daphne and the same client as the heartbeat
route, so that the route's figure can be read against what Daphne alone does here.
"""

from __future__ import annotations

from typing import Any

BODY = b'{"status": "accepted"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 202, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
