"""HMI pages: parse, call a selector, render."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from pas_core.models import Agent


def tree_nodes() -> list[dict]:
    """Return the agents as nested dicts, roots first, children in tree order."""
    agents = list(Agent.objects.all())
    by_parent: dict[str | None, list[Agent]] = {}
    for agent in agents:
        by_parent.setdefault(agent.parent_id, []).append(agent)

    def build(agent: Agent) -> dict:
        return {"agent": agent, "children": [build(c) for c in by_parent.get(agent.agent_id, [])]}

    return [build(a) for a in by_parent.get(None, [])]


@login_required
@require_GET
def tree(request: HttpRequest) -> HttpResponse:
    return render(request, "hmi/tree.html", {"nodes": tree_nodes(), "count": Agent.objects.count()})
