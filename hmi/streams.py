"""``GET /events/stream``: server-sent events, replayed from the database, then live.

Message format (DESIGN section 8), one per stored event::

    id: 42
    event: hhmrs_timeout
    data: {"id": 42, "event_type": "hhmrs_timeout", "agent_id": ..., "data": {...}, ...}

With ``?hmi=<page>`` (the pages ask for it: ``1``, ``tree``, ...; see
``hmi.fragments.fragments_for_events``, which decides what each page gets) each batch
of events is followed by HTML for htmx: ``event: hmi`` (the last event's ``id:``)
carrying out-of-band fragments, and, for each event of a run, ``event: run`` and
``event: run-<run_id>`` (data: the event type) that the run pages use as triggers to
refresh themselves. A comment ``: keep-alive`` goes out after 15 s of silence. The
stream starts with ``retry: 2000``; the comment ``: live`` marks the end of the replay
(from then on, every event committed is delivered).

Resuming: events with id greater than the ``Last-Event-ID`` header (a reconnecting
EventSource sends it) or ``?last_event_id=`` are replayed from the database first,
marked ``"replay": true``; with neither, the stream starts with live events only.

Every stream of a process is fed by one hub (``hmi.hub``): one subscription, one
receive, events formatted once and fragments rendered once per batch. Daphne serves the
path through ``stream_front``, in front of Django; the view ``event_stream`` answers the
same for whatever reaches Django itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from importlib import import_module
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.cookie import parse_cookie
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_GET

from pas_core.auth import bearer, token_check
from pas_core.models import Event
from pas_core.stores.events import event_as_dict

from .batches import Batch, Seen, event_json, sse_message
from .hub import Hub, Listener, hub
from .pacer import Pacer

__all__ = ["event_json", "event_stream", "sse_message", "stream_front"]

log = logging.getLogger(__name__)

RETRY_MS = 2000
REPLAY_BATCH = 500
PAGE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
STREAM_PATH = "/events/stream"


def _parse_last_id(raw: str | None) -> int | None:
    """The ``Last-Event-ID`` header's or ``?last_event_id=``'s value; None when absent or bad."""
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


def _session_user(key: str) -> bool:
    """Whether the session ``key`` (the session cookie's value) is a logged-in user's."""
    close_old_connections()
    try:
        request = HttpRequest()
        request.session = import_module(settings.SESSION_ENGINE).SessionStore(key)
        return bool(get_user(request).is_authenticated)
    finally:
        close_old_connections()


def _latest_id() -> int:
    close_old_connections()
    try:
        return Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    finally:
        close_old_connections()


def _hub() -> Hub:
    return hub(_events_after, _latest_id)


async def _replay(after: int, seen: Seen, page: str) -> AsyncIterator[str]:
    """Yield everything after the client's last id, in order, in batches; then one refresh."""
    fetch = sync_to_async(_events_after, thread_sensitive=False)
    last: Batch | None = None
    while True:
        rows = [e for e in await fetch(after, REPLAY_BATCH) if seen.fresh(e["id"])]
        if rows:
            last = Batch(rows, replay=True)
            yield last.text
        if len(rows) < REPLAY_BATCH:
            break
        after = rows[-1]["id"]
    if page and last is not None:
        # One refresh for the whole replay, not one per missed event.
        html = await _hub().fragments_for(last, page)
        if html:
            yield sse_message(html, event="hmi", event_id=last.ids[-1])


def _drain(listener: Listener) -> list[Batch | None]:
    out: list[Batch | None] = []
    while not listener.queue.empty():
        out.append(listener.queue.get_nowait())
    return out


async def _paced(chunks: AsyncGenerator[str, None], pacer: Pacer) -> AsyncGenerator[str, None]:
    """Yield ``chunks``, each written within the process's per-turn budget (``Pacer``)."""
    try:
        async for chunk in chunks:
            await pacer.turn()
            started = time.perf_counter()
            yield chunk  # Resumes once the server has taken the write (synchronously).
            pacer.spend(time.perf_counter() - started)
    finally:
        await chunks.aclose()


Write = Callable[[str], Awaitable[None]]


async def _stream(
    after: int | None, page: str, write: Write | None = None
) -> AsyncGenerator[str, None]:
    """Yield the stream's chunks. With ``write`` (``stream_front``), once live the hub
    writes the events and the page's HTML through ``write`` itself and this generator
    only waits for the stream's end."""
    the_hub = _hub()
    listener: Listener = await the_hub.join(page)
    try:
        yield f"retry: {RETRY_MS}\n\n"
        if after is not None:
            async for chunk in _replay(after, listener.seen, page):
                yield chunk
        # From here on every event arrives live: a client (or a test) may rely on it.
        yield ": live\n\n"
        while not listener.dropped:
            if write is not None and listener.queue.empty():
                # Nothing left to write in order before the hub's next batch: from now
                # on the hub writes to this stream itself, and the queue stays empty
                # (unless a write fails: the hub drops the stream and wakes us).
                listener.write = write
            first = await listener.queue.get()
            if listener.write is not None:
                break  # The hub dropped the stream (a write failed).
            # Everything that queued up while this stream waited goes out together, its
            # events first: no stream waits for HTML to get its JSON.
            batches = [first, *_drain(listener)]
            if None in batches:
                yield ": keep-alive\n\n"
            live = [b for b in batches if b is not None]
            text = "".join(b.fresh_text(listener.seen) for b in live)
            if not text:
                continue
            yield text
            if not page:
                continue
            for batch in live:
                the_hub.request(batch, page)  # All asked before one is awaited: merged.
            # The HTML and the run pages' triggers go out in one write: each write costs
            # the process's event loop a pass through the response and a socket write.
            tail = []
            for batch in live:
                html = await the_hub.fragments_for(batch, page)
                tail.append(batch.page_text(html, listener.sent_html))
                listener.sent_html = html or listener.sent_html
            if text := "".join(tail):
                yield text
    finally:
        # The client left: Django cancels the response task on http.disconnect, which
        # raises CancelledError here (or GeneratorExit when the generator is closed).
        the_hub.leave(listener)


def _page(raw: str | None) -> str:
    return raw if raw is not None and PAGE.fullmatch(raw) else ""


def _refused() -> HttpResponse:
    return HttpResponse("login required\n", status=401, content_type="text/plain; charset=utf-8")


@require_GET
async def event_stream(request: HttpRequest) -> HttpResponseBase:
    """Stream events to a logged-in user or a bearer token; 401 otherwise.

    Daphne serves the path through ``stream_front``; this view answers the same for
    whatever reaches Django itself (its test client, an application without the front).
    """
    user = await request.auser()
    if not user.is_authenticated:
        authorized = await sync_to_async(_token_user, thread_sensitive=False)(
            request.headers.get("Authorization")
        )
        if not authorized:
            return _refused()
    last = _parse_last_id(request.headers.get("Last-Event-ID") or request.GET.get("last_event_id"))
    response = StreamingHttpResponse(
        _paced(_stream(last, _page(request.GET.get("hmi"))), _hub().pacer),
        content_type="text/event-stream",
    )
    for name, value in STREAM_HEADERS:
        response[name] = value
    return response


STREAM_HEADERS = [
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),  # Tell a proxy (nginx) not to buffer the stream.
    ("X-Content-Type-Options", "nosniff"),
]


async def _authorized(headers: dict[bytes, bytes]) -> bool:
    """A session cookie of a logged-in user, or a bearer token that is not an agent's."""
    cookies = parse_cookie(headers.get(b"cookie", b"").decode("latin-1"))
    key = cookies.get(settings.SESSION_COOKIE_NAME)
    if key and await sync_to_async(_session_user, thread_sensitive=False)(key):
        return True
    raw = headers.get(b"authorization", b"").decode("latin-1") or None
    return await sync_to_async(_token_user, thread_sensitive=False)(raw)


async def _until_disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def stream_front(app: Any) -> Any:
    """Serve ``GET /events/stream`` in front of Django; pass everything else to ``app``.

    A stream's writes skip Django's streaming response: each chunk is one ``send``
    (once live, the hub writes them itself: ``Listener.write``), where Django's response
    took a pass through its own iterators and a per-chunk split, on the event loop that
    serves every stream and the heartbeat route. With 500 streams and 10 events a second
    Daphne was busy 93 % of its core, 62-65 % without those passes. Authentication is
    checked once, at connect, as the view does: a session cookie of a logged-in user, or
    a bearer token that is not an agent's.
    """

    async def front(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope.get("path") != STREAM_PATH
            or scope.get("method") != "GET"
        ):
            await app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if not await _authorized(headers):
            body = _refused().content
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        raw_last = headers.get(b"last-event-id", b"").decode("latin-1")
        last = _parse_last_id(raw_last or (query.get("last_event_id") or [None])[-1])
        page = _page((query.get("hmi") or [None])[-1])
        start_headers = [(b"content-type", b"text/event-stream")]
        start_headers += [(k.encode(), v.encode()) for k, v in STREAM_HEADERS]
        await send({"type": "http.response.start", "status": 200, "headers": start_headers})

        async def write(text: str) -> None:
            await send({"type": "http.response.body", "body": text.encode(), "more_body": True})

        async def pump() -> None:
            chunks = _paced(_stream(last, page, write), _hub().pacer)
            async with aclosing(chunks):
                async for chunk in chunks:
                    await write(chunk)

        writer = asyncio.ensure_future(pump())
        watcher = asyncio.ensure_future(_until_disconnect(receive))
        try:
            await asyncio.wait({writer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (writer, watcher):
                task.cancel()
            await asyncio.gather(writer, watcher, return_exceptions=True)
        if watcher.cancelled() and not writer.cancelled():
            if writer.exception() is not None:
                log.warning("an event stream failed", exc_info=writer.exception())
            # The stream ended on its own (a client too slow was dropped): close it.
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    return front
