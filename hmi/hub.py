"""The stream hub: one subscription per process, every open stream fed from it.

Each event published reaches this process once (one channel in the events group), is
formatted once (``hmi.batches``), and is handed to every open stream as a ready-made
batch. Once a stream is live the hub writes to it itself, paced: the events at once,
and a page's HTML when its rendering is ready (one task per page kind writes it to
every stream of the page, in the order of the batches), so no stream's task is woken
per event. Events that arrive together (a storm: a thousand timeouts at once) travel
together, and each page kind's HTML fragments are rendered once per batch, not once
per stream or per event (``hmi.renderers``). The same
event loop serves the heartbeat route (``pas_core.heartbeat_asgi``), so this work is
kept small and out of the loop: rendering happens in a thread.

The hub also keeps the stream count of this process in Redis
(``pas_core.stores.streams``), which is what ``POST /api/events/broadcast`` answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from pas_core.stores import streams as stream_keys
from pas_core.stores.events import GROUP

from .batches import Batch, Seen
from .pacer import Pacer
from .renderers import PageRenderer

log = logging.getLogger(__name__)

SILENCE_S = 15.0  # After this long without an event: look for missed ones, keep-alive.
READY_TIMEOUT_S = 5.0
GAP_PAGE = 500  # Events read per query while filling a gap.
LINGER_S = 1.0  # The subscription outlives the last stream by this much.
QUEUE_MAX = 2000  # Batches a slow client may fall behind by before it is dropped.
BATCH_MAX = 200  # Events formatted in one turn of the loop (a storm takes several).


@dataclass(eq=False)
class Listener:
    page: str
    queue: asyncio.Queue[Batch | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_MAX)
    )
    dropped: bool = False
    seen: Seen = field(default_factory=Seen)
    # Set once the stream is live and its queue empty: the hub then writes each batch
    # (its events the stream has not sent, a keep-alive, its page's HTML) through it
    # itself, instead of waking the stream's task for every batch (with 100 streams that
    # wake-up and the generators it resumes were most of a write's cost to the loop).
    write: Callable[[str], Awaitable[None]] | None = None
    sent_html: str | None = None  # The page's last rendering this stream was sent.


class Hub:
    def __init__(
        self,
        fetch: Callable[[int, int, int | None], list[dict[str, Any]]],
        latest: Callable[[], int],
    ) -> None:
        self.fetch = sync_to_async(fetch, thread_sensitive=False)  # (after, limit, before)
        self.latest = sync_to_async(latest, thread_sensitive=False)
        self.listeners: set[Listener] = set()
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.last_id: int | None = None
        self.ready = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.stopper: asyncio.TimerHandle | None = None
        self.renderers: dict[str, PageRenderer] = {}
        # Per page kind: the batches whose HTML is due to streams the hub writes, in order.
        self.page_queues: dict[str, asyncio.Queue[tuple[Batch, list[Listener]]]] = {}
        self.page_tasks: list[asyncio.Task[None]] = []
        self.pacer = Pacer()
        self.proc = f"{socket.gethostname()}:{os.getpid()}"
        self.redis: Any = None

    # -- streams -----------------------------------------------------------------

    async def join(self, page: str) -> Listener:
        """Register a stream; from now on it receives every batch delivered."""
        if self.stopper is not None:
            self.stopper.cancel()
            self.stopper = None
        if not self.tasks:
            self.ready.clear()
            loop = asyncio.get_running_loop()
            self.tasks = [loop.create_task(self._receive()), loop.create_task(self._deliver())]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), READY_TIMEOUT_S)
        listener = Listener(page)
        self.listeners.add(listener)
        await self._count()
        return listener

    def leave(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        loop = asyncio.get_running_loop()
        loop.create_task(self._count())
        if not self.listeners and self.stopper is None:
            self.stopper = loop.call_later(LINGER_S, self._stop_if_idle)

    def request(self, batch: Batch, page: str) -> None:
        """Ask for a batch's HTML ahead (so the batches a stream drained render together)."""
        renderer = self.renderers.get(page)
        if renderer is None:
            renderer = self.renderers[page] = PageRenderer(page)
        renderer.html_for(batch)

    async def fragments_for(self, batch: Batch, page: str) -> str:
        """Return the page's HTML for a batch: rendered once for every stream of the page,
        and merged with the batches that arrive while a rendering of that page runs (a
        storm of events costs a few renderings, not one per batch)."""
        renderer = self.renderers.get(page)
        if renderer is None:
            renderer = self.renderers[page] = PageRenderer(page)
        try:
            # shield: a client leaving must not cancel a rendering other streams await.
            return await asyncio.shield(renderer.html_for(batch))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a fragment is a nicety; the JSON already went out
            log.warning("could not render fragments for batch %s", batch.id, exc_info=True)
            return ""

    # -- the subscription --------------------------------------------------------

    async def _receive(self) -> None:
        """Receive every published event into the inbox (the one receive of the process).

        ``RedisPubSubChannelLayer.receive()`` unsubscribes its channel when cancelled:
        it is awaited here and nowhere else, and cancelled only when the hub stops.
        """
        layer: Any = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(GROUP, channel)
        try:
            await self._confirm(layer, channel)
            while True:
                self._take(await layer.receive(channel))
        finally:
            with contextlib.suppress(Exception):
                await layer.group_discard(GROUP, channel)

    def _take(self, message: dict[str, Any]) -> None:
        """Put the events of a message in the inbox: ``pas.event`` carries one,
        ``pas.events`` the list of those a transaction stored (``events_publish``)."""
        kind = message.get("type")
        if kind == "pas.event" and "id" in message:
            self.inbox.put_nowait(message)
        elif kind == "pas.events":
            for event in message.get("events") or []:
                if isinstance(event, dict) and "id" in event:
                    self.inbox.put_nowait(event)

    async def _confirm(self, layer: Any, channel: str) -> None:
        """Wait until Redis has applied our subscription (SUBSCRIBE returns on write).

        A private marker group on the same pub/sub connection: Redis applies one
        connection's commands in order, so once the marker comes back every event
        published from then on reaches us. Only then may a stream rely on the hub.
        """
        marker = f"pas-ready-{channel.rsplit('.', 1)[-1][-32:]}"
        await layer.group_add(marker, channel)
        try:
            await layer.group_send(marker, {"type": "pas.ready", "marker": marker})
            while True:
                message = await asyncio.wait_for(layer.receive(channel), READY_TIMEOUT_S)
                if message.get("type") == "pas.ready" and message.get("marker") == marker:
                    break
                self._take(message)
        except TimeoutError:
            log.warning("stream hub: no subscription confirmation from Redis")
        finally:
            await layer.group_discard(marker, channel)
        # Everything stored from here on either arrives or is found as a gap.
        self.last_id = max(self.last_id or 0, await self.latest())
        self.ready.set()

    # -- delivery ----------------------------------------------------------------

    async def _deliver(self) -> None:
        """Hand what arrived to every stream, in batches; fill gaps; keep streams alive."""
        while True:
            try:
                first = await asyncio.wait_for(self.inbox.get(), SILENCE_S)
            except TimeoutError:
                await self._silence()
                continue
            events = [first]
            while not self.inbox.empty():
                events.append(self.inbox.get_nowait())
            events = [{k: v for k, v in e.items() if k != "type"} for e in events]
            events.sort(key=lambda e: e["id"])
            await self._fill_gaps(events)
            self.last_id = max(self.last_id or 0, events[-1]["id"])
            for start in range(0, len(events), BATCH_MAX):
                if start:
                    await asyncio.sleep(0)  # A storm is formatted over several turns.
                await self._send(Batch(events[start : start + BATCH_MAX]))

    async def _fill_gaps(self, events: list[dict[str, Any]]) -> None:
        """Send the stored events missing before or among ``events`` (sorted), if any.

        Pub/sub delivers at most once: while Redis restarts, while the subscription
        reconnects, or when a publish fails, published events reach nobody, yet they
        are stored. The gap may be before the batch or inside it (the events received
        before a reconnect and after it drain together). An event committed out of
        order makes a gap too; it is then sent a little early, and the streams drop its
        live copy. A gap that stays (an id a rolled-back transaction took) costs one
        read.
        """
        if self.last_id is None:
            return
        low, high = self.last_id, events[-1]["id"]
        have = {e["id"] for e in events if e["id"] > low}
        if len(have) >= high - low:
            return
        missed: list[dict[str, Any]] = []
        while True:
            page = await self.fetch(low, GAP_PAGE, high)
            missed += [e for e in page if e["id"] not in have]
            if len(page) < GAP_PAGE:
                break
            low = page[-1]["id"]
        if missed:
            await self._send(Batch(missed, replay=True))

    async def _silence(self) -> None:
        """After a quiet spell: send stored events never received, else a keep-alive."""
        missed = await self.fetch(self.last_id, 500, None) if self.last_id is not None else []
        if missed:
            await self._send(Batch(missed, replay=True))
            self.last_id = max(self.last_id or 0, missed[-1]["id"])
        else:
            await self._send(None)
        await self._count()

    async def _send(self, item: Batch | None) -> None:
        """Hand ``item`` to every stream: into the queues of those not live yet, then
        written to the others, each write within the pacer's budget for a turn; their
        pages' HTML is asked for first and written when ready (``_write_pages``)."""
        written = []
        for listener in list(self.listeners):
            if listener.write is None:
                self._put(listener, item)
            else:
                written.append(listener)
        if item is None:
            for listener in written:
                await self._write(listener, ": keep-alive\n\n")
            return
        pages: dict[str, list[Listener]] = {}
        for page in {listener.page for listener in written if listener.page}:
            self.request(item, page)  # Rendering while the events go out.
            pages[page] = []
        for listener in written:
            text = item.fresh_text(listener.seen)
            if text and await self._write(listener, text) and listener.page:
                pages[listener.page].append(listener)
        for page, listeners in pages.items():
            if listeners:
                self._page_queue(page).put_nowait((item, listeners))

    async def _write(self, listener: Listener, text: str) -> bool:
        """Write to a stream within the pacer's budget; drop it if the write fails.
        Return whether the text was written."""
        await self.pacer.turn()
        if listener.write is None or listener not in self.listeners:  # It left meanwhile.
            return False
        started = time.perf_counter()
        try:
            await listener.write(text)
            return True
        except Exception:  # noqa: BLE001 - one stream's failure is not the others'
            log.warning("could not write to an event stream; dropping it", exc_info=True)
            self._drop(listener)
            with contextlib.suppress(asyncio.QueueFull):
                listener.queue.put_nowait(None)  # Wakes its task, which then ends.
            return False
        finally:
            self.pacer.spend(time.perf_counter() - started)

    def _page_queue(self, page: str) -> asyncio.Queue[tuple[Batch, list[Listener]]]:
        queue = self.page_queues.get(page)
        if queue is None:
            queue = self.page_queues[page] = asyncio.Queue()
            task = asyncio.get_running_loop().create_task(self._write_pages(page, queue))
            self.page_tasks.append(task)
        return queue

    async def _write_pages(
        self, page: str, queue: asyncio.Queue[tuple[Batch, list[Listener]]]
    ) -> None:
        """Write a page's HTML and the run pages' triggers to the streams that got a
        batch's events, batch after batch (a later rendering never goes out first)."""
        while True:
            batch, listeners = await queue.get()
            html = await self.fragments_for(batch, page)
            for listener in listeners:
                text = batch.page_text(html, listener.sent_html)
                listener.sent_html = html or listener.sent_html
                if text:
                    await self._write(listener, text)

    def _put(self, listener: Listener, item: Batch | None) -> None:
        try:
            listener.queue.put_nowait(item)
        except asyncio.QueueFull:
            # Too far behind: drop the stream. The browser reconnects with its
            # Last-Event-ID and replays what it missed from the database.
            self._drop(listener)

    def _drop(self, listener: Listener) -> None:
        listener.dropped = True
        self.listeners.discard(listener)

    # -- bookkeeping -------------------------------------------------------------

    async def _count(self) -> None:
        """Publish how many streams this process serves (for the broadcast's answer)."""
        try:
            if self.redis is None:
                self.redis = aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(stream_keys.counts_key(), self.proc, len(self.listeners))
            pipe.set(stream_keys.alive_key(self.proc), 1, ex=stream_keys.ALIVE_S)
            await pipe.execute()
        except Exception:  # noqa: BLE001 - a count is informational
            log.debug("could not publish the stream count", exc_info=True)

    def _stop_if_idle(self) -> None:
        self.stopper = None
        if self.listeners:
            return
        for task in self.tasks + self.page_tasks:
            task.cancel()
        self.tasks, self.page_tasks, self.page_queues = [], [], {}
        self.last_id = None
        self.inbox = asyncio.Queue()


_hubs: dict[int, Hub] = {}


def hub(
    fetch: Callable[[int, int, int | None], list[dict[str, Any]]], latest: Callable[[], int]
) -> Hub:
    """Return this event loop's hub (one per process: Daphne runs one loop)."""
    key = id(asyncio.get_running_loop())
    found = _hubs.get(key)
    if found is None:
        found = _hubs[key] = Hub(fetch, latest)
    return found
