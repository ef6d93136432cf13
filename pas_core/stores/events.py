"""Events: stored, then pushed live. The only module that touches the channel layer."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from ..models import Event
from . import effects, statements
from .redis import redis_client

log = logging.getLogger(__name__)

GROUP = "events"


def _row(event_type: str, data: dict[str, Any], *, now: float) -> Event:
    payload = dict(data)
    payload.setdefault("timestamp", now)
    return Event(
        event_type=event_type,
        agent_id=str(payload.get("agent_id") or ""),
        run_id=str(payload.get("run_id") or ""),
        job_id=str(payload.get("job_id") or ""),
        data=payload,
    )


def event_emit(
    event_type: str, data: dict[str, Any] | None = None, *, publish: bool = True
) -> Event:
    """Store an event and publish it to every open stream once the transaction commits.

    ``data`` gets ``timestamp`` added when it lacks one; ``agent_id``, ``run_id`` and
    ``job_id`` in it become the row's columns. Publishing never fails the caller: a
    stream that misses the push finds the event on replay.
    """
    event = _row(event_type, data or {}, now=timezone.now().timestamp())
    statements.rows_insert([event])
    if publish:
        transaction.on_commit(lambda: event_publish(event), robust=True)
    return event


def events_emit(items: Sequence[tuple[str, dict[str, Any]]]) -> list[Event]:
    """Store many events in one statement, in order; publish them after commit.

    Ids follow the order of ``items``, so each attempt's story reads in order.
    """
    if not items:
        return []
    now = timezone.now().timestamp()
    events = statements.rows_insert([_row(kind, data, now=now) for kind, data in items])
    transaction.on_commit(lambda: events_publish(events), robust=True)
    return events


def event_as_dict(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "event_type": event.event_type,
        "agent_id": event.agent_id,
        "run_id": event.run_id,
        "job_id": event.job_id,
        "data": event.data,
        "created_at": event.created_at.isoformat(),
    }


PUBLISH_BATCH = 200  # Events per message when a transaction stored many.


def _publish(message: dict[str, Any], what: str) -> int:
    """PUBLISH ``message`` on the group's channel; return how many listened.

    This is exactly what ``RedisPubSubChannelLayer.group_send`` does (a PUBLISH of the
    layer's serialized message on the group's channel), done with the process's plain
    Redis client so that workers need no event loop per event.
    """
    layer: Any = get_channel_layer()
    try:
        channel = f"{layer._kwargs.get('prefix', 'asgi')}__group__{GROUP}"
        return int(redis_client().publish(channel, layer.serialize(message)))
    except Exception as exc:  # noqa: BLE001 - a lost push is recovered by replay
        log.warning("could not publish %s: %s", what, exc)
        effects.failed("live push", f"{exc.__class__.__name__}: {exc}")
        return 0


def event_publish(event: Event) -> int:
    """Publish one stored event to the channel layer group (``pas.event``)."""
    return _publish({"type": "pas.event", **event_as_dict(event)}, f"event {event.id}")


def events_publish(events: Sequence[Event]) -> None:
    """Publish events stored together, up to ``PUBLISH_BATCH`` in one ``pas.events``
    message (``events``: a list of what ``pas.event`` carries).

    A storm (a sweep timing out a thousand attempts, 100 per transaction) is then a few
    messages, not thousands: each web process decodes and hands on one message instead
    of a hundred, which was most of its event loop's time during a storm.
    """
    if len(events) == 1:
        event_publish(events[0])
        return
    for first in range(0, len(events), PUBLISH_BATCH):
        part = events[first : first + PUBLISH_BATCH]
        body = {"type": "pas.events", "events": [event_as_dict(e) for e in part]}
        _publish(body, f"events {part[0].id}-{part[-1].id}")
