"""HTML fragments the SSE stream pushes: the same partials the pages render.

Each fragment carries ``hx-swap-oob`` so that one SSE message (``event: hmi``) updates
every region it names: the nodes an event touched, the TRON banner and counters, the
unread count in the header. Fragments hold no user-specific content (no CSRF tokens),
so one rendering serves every open stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import close_old_connections
from django.template.loader import render_to_string

from pas_core.models import Agent

from . import selectors

_AGENT_KEYS = ("agent_id", "parent_id", "grandparent_id")


def touched_agents(event: dict[str, Any]) -> list[str]:
    """Return the agents whose node an event may change, the event's own first."""
    data = event.get("data") or {}
    ids = [event.get("agent_id") or data.get("agent_id")]
    ids += [data.get(key) for key in _AGENT_KEYS[1:]]
    out: list[str] = []
    for agent_id in ids:
        if isinstance(agent_id, str) and agent_id and agent_id not in out:
            out.append(agent_id)
    return out


def event_status(event: dict[str, Any]) -> str:
    """Return the status an event says its agent was in, or "".

    A fragment is rendered a moment after its event, when the agent may have moved on
    (a timeout is followed at once by the restart): the node shows the status of the
    event it answers, so the browser sees every step in order, and the last event's
    status is the stored one (every status change emits ``agent_status``).
    """
    if event["event_type"] == "agent_status":
        status = (event.get("data") or {}).get("status")
        return status if status in Agent.Status.values else ""
    return selectors.EVENT_STATUS.get(event["event_type"], "")


def fragments_render(
    agent_ids: Iterable[str],
    *,
    badges: dict[str, str] | None = None,
    statuses: dict[str, str] | None = None,
    tron: bool = False,
) -> str:
    """Render the out-of-band fragments for these agents (and the banner when ``tron``)."""
    badges = badges or {}
    statuses = statuses or {}
    parts: list[str] = []
    agent_ids = list(agent_ids)
    if agent_ids:
        for agent_id, state in selectors.node_states(agent_ids).items():
            state.badge = badges.get(agent_id, "")
            state.status_override = statuses.get(agent_id, "")
            parts.append(render_to_string("hmi/tree.html#node", {"node": state, "oob": True}))
    if tron:
        ctx = {"banner": selectors.interventions(), "counts": selectors.intervention_counts()}
        parts.append(render_to_string("hmi/_tron.html#banner", {**ctx, "oob": True}))
        parts.append(render_to_string("hmi/_tron.html#counters", {**ctx, "oob": True}))
    parts.append(
        render_to_string("hmi/_tron.html#unread", {"unread": selectors.unread_count(), "oob": True})
    )
    return "".join(parts)


def fragments_for_events(events: list[dict[str, Any]], *, page: str = "1") -> str:
    """Render the fragments for a batch of events (one live event, or a whole replay).

    ``page`` is the stream's ``?hmi=`` value: what the asking page shows. Tree nodes
    are included only for ``tree``: a page without them would log an error for every
    out-of-band fragment with no target.

    Runs in a worker thread: it opens and closes its own database connection, as a
    request would, so a stream that lives for hours never holds a stale one.
    """
    close_old_connections()
    try:
        agents: list[str] = []
        badges: dict[str, str] = {}
        statuses: dict[str, str] = {}
        tron = False
        for event in events:
            kind = event["event_type"]
            touched = touched_agents(event)
            agents += [a for a in touched if a not in agents]
            if touched:
                status = event_status(event)
                label = status if kind == "agent_status" and status else ""
                badges[touched[0]] = (
                    label.replace("_", " ") or selectors.BADGES.get(kind) or kind.replace("_", " ")
                )
                if status:
                    statuses[touched[0]] = status
            tron = tron or kind in selectors.INTERVENTIONS
        nodes_ids = agents if page == "tree" else []
        return fragments_render(nodes_ids, badges=badges, statuses=statuses, tron=tron)
    finally:
        close_old_connections()
