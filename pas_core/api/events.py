"""Events: read them after an id; broadcast one."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Field, Router, Schema
from pydantic import ConfigDict

from ..selectors import events_after
from ..stores.events import event_as_dict, event_emit, event_publish
from ..stores.streams import streams_open

router = Router(tags=["events"])


class BroadcastIn(Schema):
    model_config = ConfigDict(extra="forbid")

    event_type: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    data: dict[str, Any] = Field(default_factory=dict)


@router.get("", summary="Events with id greater than `after`, ascending")
def events_list(
    request: HttpRequest,
    after: int = 0,
    limit: int = 100,
    event_type: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    filters = {
        k: v
        for k, v in {"event_type": event_type, "agent_id": agent_id, "run_id": run_id}.items()
        if v
    }
    return {"events": [event_as_dict(e) for e in events_after(after, limit, **filters)]}


@router.post("/broadcast", summary="Store an event and push it to every open stream")
def events_broadcast(request: HttpRequest, payload: BroadcastIn) -> dict[str, Any]:
    event = event_emit(payload.event_type, payload.data, publish=False)
    event_publish(event)  # Now, not on commit: the answer says who it reached.
    return {
        "status": "broadcasted",
        "event_type": event.event_type,
        "id": event.id,
        # The open streams (every web process) that receive it, not the Redis subscribers.
        "clients": streams_open(),
    }
