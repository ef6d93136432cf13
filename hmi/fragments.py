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


def fragments_render(
    agent_ids: Iterable[str], *, badges: dict[str, str] | None = None, tron: bool = False
) -> str:
    """Render the out-of-band fragments for these agents (and the banner when ``tron``)."""
    badges = badges or {}
    parts: list[str] = []
    agent_ids = list(agent_ids)
    if agent_ids:
        for agent_id, state in selectors.node_states(agent_ids).items():
            state.badge = badges.get(agent_id, "")
            parts.append(render_to_string("hmi/tree.html#node", {"node": state, "oob": True}))
    if tron:
        ctx = {"banner": selectors.interventions(), "counts": selectors.intervention_counts()}
        parts.append(render_to_string("hmi/_tron.html#banner", {**ctx, "oob": True}))
        parts.append(render_to_string("hmi/_tron.html#counters", {**ctx, "oob": True}))
    parts.append(
        render_to_string("hmi/_tron.html#unread", {"unread": selectors.unread_count(), "oob": True})
    )
    return "".join(parts)


def fragments_for_events(events: list[dict[str, Any]], *, nodes: bool = False) -> str:
    """Render the fragments for a batch of events (one live event, or a whole replay).

    Tree nodes are included only when ``nodes`` (the tree page asks for them): a page
    without them would log an error for every out-of-band fragment with no target.

    Runs in a worker thread: it opens and closes its own database connection, as a
    request would, so a stream that lives for hours never holds a stale one.
    """
    close_old_connections()
    try:
        agents: list[str] = []
        badges: dict[str, str] = {}
        tron = False
        for event in events:
            touched = touched_agents(event)
            agents += [a for a in touched if a not in agents]
            if touched:
                badges[touched[0]] = selectors.BADGES.get(
                    event["event_type"], event["event_type"].replace("_", " ")
                )
            tron = tron or event["event_type"] in selectors.INTERVENTIONS
        return fragments_render(agents if nodes else [], badges=badges, tron=tron)
    finally:
        close_old_connections()
