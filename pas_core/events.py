"""Events: stored, then pushed live. The only module that touches the channel layer."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from .models import Event

log = logging.getLogger(__name__)

GROUP = "events"


def event_emit(
    event_type: str,
    data: dict[str, Any] | None = None,
    *,
    agent_id: str = "",
    run_id: str = "",
    job_id: str = "",
    publish: bool = True,
) -> Event:
    """Store an event and publish it to every open stream once the transaction commits.

    ``data`` gets ``timestamp`` added when it lacks one. Publishing never fails the
    caller: a stream that misses the push finds the event on replay.
    """
    payload = dict(data or {})
    payload.setdefault("timestamp", timezone.now().timestamp())
    event = Event.objects.create(
        event_type=event_type,
        agent_id=agent_id or str(payload.get("agent_id") or ""),
        run_id=str(run_id or payload.get("run_id") or ""),
        job_id=job_id or str(payload.get("job_id") or ""),
        data=payload,
    )
    if publish:
        transaction.on_commit(lambda: event_publish(event))
    return event


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


def event_publish(event: Event) -> int:
    """Publish one stored event to the channel layer group; return how many listened.

    This is exactly what ``RedisPubSubChannelLayer.group_send`` does (a PUBLISH of the
    layer's serialized message on the group's channel), done with the process's plain
    Redis client so that workers need no event loop per event.
    """
    from channels.layers import get_channel_layer

    from .redis import redis_client

    layer = get_channel_layer()
    message = {"type": "pas.event", **event_as_dict(event)}
    try:
        channel = f"{layer._kwargs.get('prefix', 'asgi')}__group__{GROUP}"  # type: ignore[union-attr]
        return int(redis_client().publish(channel, layer.serialize(message)))  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - a lost push is recovered by replay
        log.warning("could not publish event %s", event.id, exc_info=True)
        return 0


def events_after(after: int = 0, limit: int = 100, **filters: Any) -> list[Event]:
    """Return up to ``limit`` events with id greater than ``after``, ascending."""
    qs = Event.objects.filter(id__gt=after, **filters).order_by("id")
    return list(qs[: max(1, min(limit, 1000))])
