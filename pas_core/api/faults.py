"""Faults: arm, list and clear injected faults on an agent (DESIGN section 7)."""

from __future__ import annotations

from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from pydantic import ConfigDict

from ..models import Agent
from ..services.faults import MAX_COUNT, fault_as_dict, fault_inject, faults_clear, faults_pending
from .access import request_actor

router = Router(tags=["faults"])


class FaultIn(Schema):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["hang", "crash", "error", "slow", "bad_output", "failing_output"]
    count: int = Field(1, ge=1, le=MAX_COUNT)
    model: str | None = Field(None, max_length=128)


def _unknown(agent_id: str) -> dict[str, Any]:
    return {"detail": f"no agent {agent_id!r}"}


@router.post(
    "/{agent_id}/faults",
    response={201: dict, 404: dict, 422: dict},
    summary="Make the agent's next N attempts misbehave (optionally only on one model)",
)
def fault_create(request: HttpRequest, agent_id: str, payload: FaultIn) -> Any:
    if not Agent.objects.filter(agent_id=agent_id).exists():
        return Status(404, _unknown(agent_id))
    fault = fault_inject(
        agent_id,
        payload.kind,
        payload.count,
        model=payload.model or "",
        by=request_actor(request),
    )
    out = fault_as_dict(fault)
    return Status(201, {k: out[k] for k in ("id", "agent_id", "kind", "remaining", "model")})


@router.get(
    "/{agent_id}/faults",
    response={200: dict, 404: dict},
    summary="The agent's faults still armed",
)
def fault_list(request: HttpRequest, agent_id: str) -> Any:
    if not Agent.objects.filter(agent_id=agent_id).exists():
        return Status(404, _unknown(agent_id))
    return Status(200, {"faults": [fault_as_dict(f) for f in faults_pending(agent_id)]})


@router.delete(
    "/{agent_id}/faults",
    response={200: dict, 404: dict},
    summary="Disarm every fault of the agent",
)
def fault_clear(request: HttpRequest, agent_id: str) -> Any:
    if not Agent.objects.filter(agent_id=agent_id).exists():
        return Status(404, _unknown(agent_id))
    return Status(200, {"cleared": faults_clear(agent_id, by=request_actor(request))})
