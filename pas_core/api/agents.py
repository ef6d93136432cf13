"""Agents: the tree and each agent's health."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router

from ..models import Agent

router = Router(tags=["agents"])


def agent_as_dict(agent: Agent) -> dict[str, Any]:
    return {
        "agent_id": agent.agent_id,
        "role": agent.role,
        "lane": agent.lane,
        "parent": agent.parent_id,
        "description": agent.description,
        "primary_model": agent.primary_model,
        "fallback_models": agent.fallback_models,
        "current_model": agent.current_model,
        "model_switched": agent.model_switched,
        "enabled": agent.enabled,
        "status": agent.status,
    }


@router.get("", summary="List every agent of the tree")
def agents_list(request: HttpRequest) -> dict[str, Any]:
    return {"agents": [agent_as_dict(a) for a in Agent.objects.all()]}


@router.get("/{agent_id}/health", summary="One agent's health and place in the tree")
def agent_health(request: HttpRequest, agent_id: str) -> dict[str, Any]:
    agent = get_object_or_404(Agent, agent_id=agent_id)
    children = list(agent.children.values_list("agent_id", flat=True))
    healthy = agent.enabled and agent.status not in (Agent.Status.FAILED, Agent.Status.TIMED_OUT)
    return {
        "status": "ok" if healthy else "degraded",
        "agent": agent.agent_id,
        "agent_status": agent.status,
        "enabled": agent.enabled,
        "llm_model": agent.current_model,
        "agent_metadata": {
            "role": agent.role,
            "lane": agent.lane,
            "parent": agent.parent_id,
            "grandparent": agent.parent.parent_id if agent.parent else None,
            "children": children,
        },
    }
