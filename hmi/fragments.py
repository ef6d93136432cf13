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


BADGE_STEPS = 3  # A batch's badge tells at most the last three steps.
# Pages whose template holds the TRON counters (``_tron.html#counters``).
COUNTER_PAGES = ("tree", "overview")
# Events after which a page's ``data-signal`` region refreshes itself (see signal()).
RETRY_EVENTS = ("hhmrs_failure", "job_failed", "job_retried", "job_discarded", "run_failed")
OVERVIEW_EVENTS = (*selectors.INTERVENTIONS, "run_completed", "run_failed", "job_failed")


def signal(name: str, event_id: Any) -> str:
    """Return an out-of-band fragment that tells the page to refresh region ``name``.

    The page holds ``<div id="signal-<name>" data-signal="<name>" hidden>``; hmi.js
    refreshes every ``[data-refresh-on="<name>"]`` when it is swapped. The refresh is
    an ordinary GET with the user's session, so what is shown (operator buttons, CSRF
    tokens) stays per user while this fragment is the same for everyone.
    """
    return render_to_string(
        "hmi/_tron.html#signal", {"name": name, "event_id": event_id, "oob": True}
    )


def fragments_render(
    agent_ids: Iterable[str],
    *,
    badges: dict[str, str] | None = None,
    statuses: dict[str, str] | None = None,
    tron: bool = False,
    counters: bool = False,
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
        if counters:
            parts.append(render_to_string("hmi/_tron.html#counters", {**ctx, "oob": True}))
    parts.append(
        render_to_string("hmi/_tron.html#unread", {"unread": selectors.unread_count(), "oob": True})
    )
    return "".join(parts)


def _page_parts(page: str, events: list[dict[str, Any]], agents: list[str]) -> tuple[list, str]:
    """Return the nodes this page shows among ``agents``, and its signal fragments."""
    kinds = {e["event_type"] for e in events}
    last_id = events[-1].get("id") if events else ""
    if page == "tree":
        return agents, ""
    if page == "retry":
        return [], signal("retry", last_id) if kinds & set(RETRY_EVENTS) else ""
    if page == "overview":
        return [], signal("overview", last_id) if kinds & set(OVERVIEW_EVENTS) else ""
    if page.startswith("agent-"):
        mine = [a for a in agents if selectors.page_slug(a) == page]
        return mine, signal("agent", last_id) if mine else ""
    return [], ""


def fragments_for_events(events: list[dict[str, Any]], *, page: str = "1") -> str:
    """Render the fragments for a batch of events (one live event, or a whole replay).

    ``page`` is the stream's ``?hmi=`` value: what the asking page shows, so that no
    fragment arrives without a target (htmx logs an error for each one):

    - every page: the TRON banner and the unread count (both in base.html);
    - ``tree``: the nodes the events touched, and the TRON counters;
    - ``overview``: the counters, and a signal to redraw its charts;
    - ``retry``: a signal to reload the queue when a job fails for good, is retried
      or discarded;
    - ``agent-<slug>`` (``selectors.page_slug``): that agent's node and a signal.

    Runs in a worker thread: it opens and closes its own database connection, as a
    request would, so a stream that lives for hours never holds a stale one.
    """
    close_old_connections()
    try:
        agents: list[str] = []
        steps: dict[str, list[tuple[str, str]]] = {}
        statuses: dict[str, str] = {}
        tron = False
        for event in events:
            kind = event["event_type"]
            touched = touched_agents(event)
            agents += [a for a in touched if a not in agents]
            if touched:
                status = event_status(event)
                _step(steps.setdefault(touched[0], []), kind, status)
                if status:
                    statuses[touched[0]] = status
            tron = tron or kind in selectors.INTERVENTIONS
        badges = {a: _badge(s) for a, s in steps.items()}
        nodes, signals = _page_parts(page, events, agents)
        html = fragments_render(
            nodes, badges=badges, statuses=statuses, tron=tron, counters=page in COUNTER_PAGES
        )
        return html + signals
    finally:
        close_old_connections()


# The badge words of HHMRS interventions: kept before the ordinary steps of a batch.
_INTERVENTION_LABELS = {selectors.BADGES[kind] for kind in selectors.INTERVENTIONS}


def _badge(steps: list[tuple[str, str]]) -> str:
    """The badge for a batch's steps: at most ``BADGE_STEPS``, in order.

    A long batch (a timeout, the escalation, the switch's restart, the new attempt
    starting) keeps its interventions first and fills the rest with the latest steps,
    so "escalated" is never pushed out by "working" and "started".
    """
    if len(steps) > BADGE_STEPS:
        key = [i for i, (label, _) in enumerate(steps) if label in _INTERVENTION_LABELS]
        key = key[-BADGE_STEPS:]
        others = [i for i in range(len(steps)) if i not in key]
        fill = BADGE_STEPS - len(key)
        kept = key + (others[-fill:] if fill else [])
        steps = [steps[i] for i in sorted(kept)]
    return " → ".join(label for label, _ in steps)


def _step(steps: list[tuple[str, str]], kind: str, status: str) -> None:
    """Add an event to an agent's badge story: ``(label, status)``.

    Events that travel in one batch (an escalation and the model switch it causes are
    committed together) replace the node once, so its status jumps to the last one;
    the badge keeps the steps in between ("timed out → escalated → restart"). The
    ``agent_status`` that follows each HHMRS event says the same thing: it is left out.
    """
    label = status.replace("_", " ") if kind == "agent_status" and status else ""
    label = label or selectors.BADGES.get(kind) or kind.replace("_", " ")
    if steps and ((status and steps[-1][1] == status) or steps[-1][0] == label):
        return
    steps.append((label, status))
