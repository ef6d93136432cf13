"""A page kind's HTML fragments for batches of events: rendered in a thread, one
rendering at a time, with the batches that wait meanwhile merged into the next."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from asgiref.sync import sync_to_async

from .batches import Batch
from .fragments import fragments_for_events

log = logging.getLogger(__name__)

FRAGMENTS_MAX = 512  # Batches a page renderer remembers the answer for.


class PageRenderer:
    """Render one page kind's fragments, one rendering at a time, merging what waits."""

    def __init__(self, page: str) -> None:
        self.page = page
        self.render = sync_to_async(fragments_for_events, thread_sensitive=False)
        self.futures: OrderedDict[int, asyncio.Future[str]] = OrderedDict()
        self.waiting: list[tuple[Batch, asyncio.Future[str]]] = []
        self.busy = False

    def html_for(self, batch: Batch) -> asyncio.Future[str]:
        future = self.futures.get(batch.id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self.futures[batch.id] = future
            while len(self.futures) > FRAGMENTS_MAX:
                self.futures.popitem(last=False)
            self.waiting.append((batch, future))
            if not self.busy:
                self.busy = True
                asyncio.get_running_loop().create_task(self._work())
        return future

    async def _work(self) -> None:
        try:
            while self.waiting:
                group, self.waiting = self.waiting, []
                events = [event for batch, _ in group for event in batch.events]
                try:
                    html = await self.render(events, page=self.page)
                except Exception:  # noqa: BLE001 - the JSON already went out
                    log.warning("could not render %s fragments", self.page, exc_info=True)
                    html = ""
                for _, future in group:
                    if not future.done():
                        future.set_result(html)
        finally:
            self.busy = False
