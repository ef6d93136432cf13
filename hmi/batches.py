"""Server-sent event messages, and the batches of events a stream hub hands out.

A batch is formatted once for every stream (its events' JSON messages, the run pages'
triggers, a page's HTML message once per rendering); ``Seen`` keeps a stream from
sending an event twice (replayed, then received live).
"""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

SEEN_MAX = 5000  # Ids a stream remembers for de-duplication between replay and live.


def sse_message(data: str, *, event: str | None = None, event_id: int | None = None) -> str:
    """Return one SSE message; every line of ``data`` gets its own ``data:`` field."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event:
        lines.append("event: " + event.replace("\r", " ").replace("\n", " "))
    lines += ["data: " + line for line in data.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines) + "\n\n"


def event_json(event: dict[str, Any], *, replay: bool = False) -> str:
    body = {k: v for k, v in event.items() if k != "type"}
    if replay:
        body["replay"] = True
    return json.dumps(body, cls=DjangoJSONEncoder, separators=(",", ":"))


def events_text(events: list[dict[str, Any]], *, replay: bool = False) -> str:
    """Return the JSON messages of ``events``, in order."""
    return "".join(
        sse_message(event_json(e, replay=replay), event=e["event_type"], event_id=e["id"])
        for e in events
    )


def triggers_text(events: list[dict[str, Any]]) -> str:
    """Return the ``run`` / ``run-<id>`` messages the run pages refresh on."""
    out = []
    for e in events:
        if e.get("run_id"):
            out.append(sse_message(e["run_id"], event="run"))
            out.append(sse_message(e["event_type"], event=f"run-{e['run_id']}"))
    return "".join(out)


_batch_ids = itertools.count(1)


@dataclass
class Batch:
    """Events handed to every stream together, formatted once."""

    events: list[dict[str, Any]]
    replay: bool = False
    id: int = field(default_factory=lambda: next(_batch_ids))

    def __post_init__(self) -> None:
        self.ids = [e["id"] for e in self.events]
        self.text = events_text(self.events, replay=self.replay)
        self.triggers = triggers_text(self.events)
        self._html: tuple[str, str] | None = None  # (rendering, its message), made once

    def fresh_text(self, seen: Seen) -> str:
        """Return the batch's events a stream has not sent yet (``seen``), as messages."""
        fresh = [e for e in self.events if seen.fresh(e["id"])]
        if not fresh:
            return ""
        return (
            self.text if len(fresh) == len(self.events) else events_text(fresh, replay=self.replay)
        )

    def page_text(self, html: str, sent_html: str | None) -> str:
        """Return what follows the batch's events on a page's stream: the page's HTML,
        unless that rendering went out already (renderings of batches that waited
        together are merged into one), then the run pages' triggers."""
        if not html or html is sent_html:
            return self.triggers
        if self._html is None or self._html[0] is not html:
            self._html = (html, sse_message(html, event="hmi", event_id=self.ids[-1]))
        return self._html[1] + self.triggers


class Seen:
    """The ids a stream sent, so an event replayed and received live goes out once."""

    def __init__(self) -> None:
        self.ids: OrderedDict[int, None] = OrderedDict()

    def fresh(self, event_id: int) -> bool:
        if event_id in self.ids:
            return False
        self.ids[event_id] = None
        if len(self.ids) > SEEN_MAX:
            self.ids.popitem(last=False)
        return True
