"""``GET /events/stream``: server-sent events, replayed from the database, then live.

Message format (DESIGN section 8), one per stored event::

    id: 42
    event: hhmrs_timeout
    data: {"id": 42, "event_type": "hhmrs_timeout", "agent_id": ..., "data": {...}, ...}

With ``?hmi=<page>`` (the pages ask for it: ``1``, ``tree``, ...; see
``hmi.fragments.fragments_for_events``, which decides what each page gets) each event
is followed by HTML for htmx: ``event: hmi`` (same ``id:``) carrying out-of-band
fragments, and, for an event of a run, ``event: run`` and ``event: run-<run_id>``
(data: the event type) that the run pages use as triggers to refresh themselves.
A comment ``: keep-alive`` goes out after 15 s of silence. The stream starts with
``retry: 2000``; the comment ``: live`` marks the end of the replay (from then on,
every event committed is delivered).

Resuming: events with id greater than the ``Last-Event-ID`` header (a reconnecting
EventSource sends it) or ``?last_event_id=`` are replayed from the database first,
marked ``"replay": true``; with neither, the stream starts with live events only.

Channels' ``AsyncHttpConsumer`` does not deliver group messages while ``handle()``
runs (django/channels#1747), so this is a plain async view with its own receive loop
on the channel layer (``RedisPubSubChannelLayer``: one shared Redis connection per
process, however many streams are open).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_GET

from pas_core.auth import bearer, token_check
from pas_core.models import Event
from pas_core.stores.events import GROUP, event_as_dict

from .fragments import fragments_for_events

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
PAGE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
RETRY_MS = 2000
REPLAY_BATCH = 500
READY_TIMEOUT_S = 5.0
SEEN_MAX = 5000  # Ids remembered for de-duplication between replay and live.


def sse_message(data: str, *, event: str | None = None, event_id: int | None = None) -> str:
    """Return one SSE message; every line of ``data`` gets its own ``data:`` field."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event:
        lines.append("event: " + event.replace("\r", " ").replace("\n", " "))
    lines += ["data: " + line for line in data.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines) + "\n\n"


def _as_json(event: dict[str, Any], *, replay: bool = False) -> str:
    body = {k: v for k, v in event.items() if k != "type"}
    if replay:
        body["replay"] = True
    return json.dumps(body, cls=DjangoJSONEncoder, separators=(",", ":"))


def _parse_last_id(request: HttpRequest) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    if raw is None or raw.strip() == "":
        return None
    try:
        return max(0, int(raw.strip()))
    except ValueError:
        return None


def _events_after(after: int, limit: int, before: int | None = None) -> list[dict[str, Any]]:
    close_old_connections()
    try:
        rows = Event.objects.filter(id__gt=after)
        if before is not None:
            rows = rows.filter(id__lt=before)
        return [event_as_dict(e) for e in rows.order_by("id")[:limit]]
    finally:
        close_old_connections()


def _token_user(header: str | None) -> bool:
    raw = bearer(header)
    if raw is None:
        return False
    close_old_connections()
    try:
        found = token_check(raw)
        # An agent-bound token may only send heartbeats.
        return found is not None and not found[1]
    finally:
        close_old_connections()


# Rendered fragments, shared by every stream of this process: the first stream that
# needs an event's HTML renders it, the others await the same future.
_fragments: OrderedDict[Any, asyncio.Future[str]] = OrderedDict()
_FRAGMENTS_MAX = 256


async def _fragments_for(key: Any, events: list[dict[str, Any]], *, page: str) -> str:
    key = (key, page)
    future = _fragments.get(key)
    if future is None:
        render = sync_to_async(fragments_for_events, thread_sensitive=False)
        future = asyncio.ensure_future(render(events, page=page))
        _fragments[key] = future
        while len(_fragments) > _FRAGMENTS_MAX:
            _fragments.popitem(last=False)
    try:
        # shield: a client leaving must not cancel a rendering other streams await.
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - a fragment is a nicety; the JSON already went out
        log.warning("could not render fragments for %s", key, exc_info=True)
        _fragments.pop(key, None)
        return ""


class _Subscription:
    """One stream's channel on the layer, in the events group, with one pending receive.

    ``RedisPubSubChannelLayer.receive()`` unsubscribes its channel when it is cancelled
    (that is its only cleanup), so a receive must never be cancelled by a timeout:
    ``asyncio.wait_for(layer.receive(ch), 15)`` would drop every message that arrives
    before the next receive. We keep one receive task alive and wait on it with
    ``asyncio.wait``, which does not cancel; leaving cancels it on purpose.
    """

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel = ""
        self.receiver: asyncio.Future[dict[str, Any]] | None = None

    async def open(self) -> None:
        self.channel = await self.layer.new_channel()
        self.receiver = asyncio.ensure_future(self.layer.receive(self.channel))
        await self.layer.group_add(GROUP, self.channel)

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """Return the next message, or None after ``timeout`` seconds of silence."""
        assert self.receiver is not None
        done, _ = await asyncio.wait({self.receiver}, timeout=timeout)
        if not done:
            return None
        message = self.receiver.result()
        self.receiver = asyncio.ensure_future(self.layer.receive(self.channel))
        return message

    async def ready(self) -> list[dict[str, Any]]:
        """Wait until Redis has processed our group subscription; return what came meanwhile.

        SUBSCRIBE returns once the command is written, not once Redis applied it. An
        event committed and published in between would be neither live (not yet
        subscribed) nor, if we queried first, replayed. So we subscribe a private group
        after the events group on the same pub/sub connection (one Redis host: one
        shard), publish to it, and query the database only once that message is back:
        Redis applies one connection's commands in order, so by then we receive every
        event published after our query could have missed it.
        """
        marker = f"pas-ready-{self.channel.rsplit('.', 1)[-1][-32:]}"
        early: list[dict[str, Any]] = []
        await self.layer.group_add(marker, self.channel)
        try:
            await self.layer.group_send(marker, {"type": "pas.ready", "marker": marker})
            deadline = asyncio.get_running_loop().time() + READY_TIMEOUT_S
            while True:
                left = deadline - asyncio.get_running_loop().time()
                message = await self.next(max(0.0, left)) if left > 0 else None
                if message is None:
                    log.warning("stream: no subscription confirmation from Redis")
                    break
                if message.get("type") == "pas.ready" and message.get("marker") == marker:
                    break
                early.append(message)
        finally:
            await self.layer.group_discard(marker, self.channel)
        return early

    async def close(self) -> None:
        """Leave the group and drop the channel (a receive cancelled while waiting does)."""
        with contextlib.suppress(Exception):
            await self.layer.group_discard(GROUP, self.channel)
        receiver = self.receiver
        for _ in range(100):
            if receiver is None:
                return
            if not receiver.done():
                receiver.cancel()
                with contextlib.suppress(BaseException):
                    await receiver
                return
            # It holds a message: start another receive to cancel while it waits.
            receiver = asyncio.ensure_future(self.layer.receive(self.channel))
            await asyncio.sleep(0)


async def _missed(after: int | None, before: int | None) -> list[dict[str, Any]]:
    """Return stored events with ``after < id < before`` (None: no upper bound).

    Pub/sub delivers at most once: while Redis restarts, or while this process's
    subscription reconnects, published events reach nobody, yet they are stored. The
    live loop therefore fills from the database every gap in the ids it receives (an
    event committed out of order makes a gap too, and is then sent a little early:
    the ``seen`` set drops its live copy), and looks for stored events it never got
    whenever the stream is silent, so events lost at the end of a burst come too.
    """
    if after is None:
        return []
    return await sync_to_async(_events_after, thread_sensitive=False)(after, REPLAY_BATCH, before)


async def _recovered(events: list[dict[str, Any]], *, hmi: str, page: str) -> AsyncIterator[str]:
    """Yield events recovered from the database, marked as replayed, then one refresh."""
    for event in events:
        yield sse_message(
            _as_json(event, replay=True), event=event["event_type"], event_id=event["id"]
        )
    if hmi and events:
        key = ("replay", events[0]["id"], events[-1]["id"])
        html = await _fragments_for(key, events, page=page)
        if html:
            yield sse_message(html, event="hmi", event_id=events[-1]["id"])


async def _replay(
    after: int, fresh: Callable[[int], bool], *, hmi: str, page: str
) -> AsyncIterator[str]:
    """Yield everything after the client's last id, in order, in batches; then one refresh."""
    replayed: list[dict[str, Any]] = []
    while True:
        batch = await sync_to_async(_events_after, thread_sensitive=False)(after, REPLAY_BATCH)
        for event in batch:
            fresh(event["id"])
            yield sse_message(
                _as_json(event, replay=True), event=event["event_type"], event_id=event["id"]
            )
        replayed = (replayed + batch)[-REPLAY_BATCH:]
        if len(batch) < REPLAY_BATCH:
            break
        after = batch[-1]["id"]
    if hmi and replayed:
        # One refresh for the whole replay, not one per missed event.
        last = replayed[-1]["id"]
        html = await _fragments_for(("replay", replayed[0]["id"], last), replayed, page=page)
        if html:
            yield sse_message(html, event="hmi", event_id=last)


async def _stream(after: int | None, hmi: str) -> AsyncIterator[str]:
    page = hmi
    sub = _Subscription()
    seen: OrderedDict[int, None] = OrderedDict()

    def fresh(event_id: int) -> bool:
        if event_id in seen:
            return False
        seen[event_id] = None
        if len(seen) > SEEN_MAX:
            seen.popitem(last=False)
        return True

    try:
        await sub.open()
        yield f"retry: {RETRY_MS}\n\n"
        pending = await sub.ready()
        if after is not None:
            async for chunk in _replay(after, fresh, hmi=hmi, page=page):
                yield chunk
        # From here on every event arrives live: a client (or a test) may rely on it.
        yield ": live\n\n"
        last_sent = max(seen) if seen else after
        while True:
            message = pending.pop(0) if pending else await sub.next(KEEPALIVE_S)
            if message is None:
                # Silence: send what was stored but never reached us (see _missed).
                missed = [e for e in await _missed(last_sent, None) if fresh(e["id"])]
                async for chunk in _recovered(missed, hmi=hmi, page=page):
                    yield chunk
                last_sent = max([last_sent or 0, *(e["id"] for e in missed)])
                if not missed:
                    yield ": keep-alive\n\n"
                continue
            if message.get("type") != "pas.event" or "id" not in message:
                continue
            event_id = int(message["id"])
            if last_sent is not None and event_id > last_sent + 1:
                # A gap: fill it from the database first (see _missed).
                missed = [e for e in await _missed(last_sent, event_id) if fresh(e["id"])]
                async for chunk in _recovered(missed, hmi=hmi, page=page):
                    yield chunk
            last_sent = max(last_sent or 0, event_id)
            if not fresh(event_id):
                continue  # Already sent by the replay.
            yield sse_message(_as_json(message), event=message["event_type"], event_id=event_id)
            if hmi:
                html = await _fragments_for(event_id, [message], page=page)
                if html:
                    yield sse_message(html, event="hmi", event_id=event_id)
                if message.get("run_id"):
                    yield sse_message(message["run_id"], event="run")
                    yield sse_message(message["event_type"], event=f"run-{message['run_id']}")
    finally:
        # The client left: Django cancels the response task on http.disconnect, which
        # raises CancelledError here (or GeneratorExit when the generator is closed).
        await sub.close()


@require_GET
async def event_stream(request: HttpRequest) -> HttpResponseBase:
    """Stream events to a logged-in user or a bearer token; 401 otherwise."""
    user = await request.auser()
    if not user.is_authenticated:
        authorized = await sync_to_async(_token_user, thread_sensitive=False)(
            request.headers.get("Authorization")
        )
        if not authorized:
            return HttpResponse(
                "login required\n", status=401, content_type="text/plain; charset=utf-8"
            )
    hmi = request.GET.get("hmi", "")
    hmi = hmi if PAGE.fullmatch(hmi) else ""
    response = StreamingHttpResponse(
        _stream(_parse_last_id(request), hmi), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # Tell a proxy (nginx) not to buffer the stream.
    return response
