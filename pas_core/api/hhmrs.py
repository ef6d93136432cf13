"""Agents' supervision endpoints: submit, heartbeat, and the seed's HHMRS handlers."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Field, Router, Schema
from ninja.errors import HttpError
from pydantic import ConfigDict

from ..auth import bearer, token_check
from ..models import Agent
from ..services import seed
from ..services.submit import job_submit
from ..stores.heartbeats import hb_http_beat
from ..stores.metrics import beat_counted
from .access import SessionAuth

router = Router(tags=["hhmrs"])


class SubmitIn(Schema):
    model_config = ConfigDict(extra="forbid")

    job_card: dict[str, Any]


class HeartbeatIn(Schema):
    model_config = ConfigDict(extra="forbid")

    job_id: str | None = Field(None, max_length=120)
    state: str | None = Field(None, max_length=32)
    message: str | None = Field(None, max_length=500)
    progress: float | None = Field(None, ge=0, le=1)


class ChildTimeoutIn(Schema):
    type: str = Field("child_timeout", max_length=32)
    child_id: str = Field(..., min_length=1, max_length=64)
    reason: str = Field("timeout", max_length=64)
    restart_count: int = Field(0, ge=0, le=1000)
    last_seen_timestamp: float | None = None
    timeout_duration_s: float | None = Field(None, ge=0)


class GrandchildFailureIn(Schema):
    type: str = Field("grandchild_failure", max_length=32)
    grandchild_id: str = Field(..., min_length=1, max_length=64)
    parent_id: str | None = Field(None, max_length=64)
    failure_count: int = Field(0, ge=0, le=1000)
    reason: str = Field("max_restarts_exceeded", max_length=64)


class AgentBeatAuth(SessionAuth):
    """A token bound to the agent in the path, a full token, or a session.

    The token is tried first: a good token bound to another agent is refused with 403,
    as the lean ASGI route does, rather than falling through to the session check.
    """

    def __call__(self, request: HttpRequest) -> Any:
        raw = bearer(request.headers.get("Authorization"))
        found = token_check(raw) if raw else None
        if found is None:
            return super().__call__(request)
        bound = found[1]
        agent_id = request.resolver_match.kwargs.get("agent_id") if request.resolver_match else None
        if bound and bound != agent_id:
            # A good token, but not for this agent: 403 like the lean ASGI route, not 401.
            raise HttpError(403, f"token: may only send heartbeats for {bound}")
        return found


@router.post(
    "/{agent_id}/submit",
    response={202: dict, 400: dict, 404: dict, 422: dict},
    summary="Send a job card to an agent",
)
def agent_submit(request: HttpRequest, agent_id: str, payload: SubmitIn) -> Any:
    job = job_submit(agent_id, payload.job_card)
    return 202, {"job_card_id": job.job_id, "status": "queued", "message": "Job card accepted"}


@router.post(
    "/{agent_id}/heartbeat",
    auth=AgentBeatAuth(),
    response={202: dict, 403: dict, 404: dict, 409: dict, 422: dict},
    summary="A heartbeat from an agent running outside the workers",
)
def agent_heartbeat(request: HttpRequest, agent_id: str, payload: HeartbeatIn) -> Any:
    # Served by the lean ASGI route (pas_core.heartbeat_asgi) for bearer tokens; this
    # is the same logic for sessions and for servers that bypass that route.
    if not Agent.objects.filter(pk=agent_id).exists():
        return 404, {"detail": f"agent_id: no agent {agent_id!r}"}
    body = {k: v for k, v in payload.dict().items() if v is not None}
    status, answer = hb_http_beat(agent_id, body)
    beat_counted(status)  # /metrics, as the lean route counts.
    return status, answer


@router.post(
    "/{agent_id}/handle_child_timeout",
    response={200: dict, 400: dict, 404: dict},
    summary="The parent handles a child's timeout: restart it, or escalate",
)
def handle_child_timeout(request: HttpRequest, agent_id: str, payload: ChildTimeoutIn) -> Any:
    answer = seed.child_timeout_handle(
        parent_id=agent_id,
        child_id=payload.child_id,
        reason=payload.reason,
        restart_count=payload.restart_count,
    )
    return 200, answer.as_dict()


@router.post(
    "/{agent_id}/handle_grandchild_failure",
    response={200: dict, 400: dict, 404: dict},
    summary="The grandparent handles an escalation: switch the model, or fail for good",
)
def handle_grandchild_failure(
    request: HttpRequest, agent_id: str, payload: GrandchildFailureIn
) -> Any:
    answer = seed.grandchild_failure_handle(
        grandparent_id=agent_id,
        grandchild_id=payload.grandchild_id,
        failure_count=payload.failure_count,
    )
    return 200, answer.as_dict()
