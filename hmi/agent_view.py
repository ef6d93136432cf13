"""What an agent's page shows: its node, heartbeat, faults, interventions, attempts, jobs."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.http import Http404
from django.utils import timezone

from pas_core import config
from pas_core import selectors as core
from pas_core.models import Agent, Attempt, Job
from pas_core.services.faults import faults_pending
from pas_core.stores.heartbeats import hb_details

from . import selectors
from .charts import spark_frame
from .labels import KIND_LABELS
from .lists import Window, window

log = logging.getLogger(__name__)

ATTEMPTS_PAGE = 50
JOBS_SHOWN = 20


def agent_or_404(agent_id: str) -> Agent:
    """Return the agent with this id; 404 when there is none."""
    agent = Agent.objects.select_related("parent").filter(agent_id=agent_id).first()
    if agent is None:
        raise Http404(f"no agent {agent_id!r}")
    return agent


def _beat(attempt: Attempt | None) -> dict[str, str]:
    """Return the running attempt's last beat details from Redis (empty when down)."""
    if attempt is None or attempt.status != Attempt.Status.RUNNING:
        return {}
    try:
        return hb_details(attempt.pk)
    except Exception:  # noqa: BLE001 - display only
        log.debug("no heartbeat store", exc_info=True)
        return {}


def interventions(agent_id: str) -> list[dict[str, Any]]:
    """Return each intervention kind's count for the agent over the last hour and day."""
    now = timezone.now()
    hour = core.interventions_by_agent(now - timedelta(hours=1), [agent_id]).get(agent_id, {})
    day = core.interventions_by_agent(now - timedelta(days=1), [agent_id]).get(agent_id, {})
    return [
        {"kind": k, "icon": icon, "label": plural, "hour": hour.get(k, 0), "day": day.get(k, 0)}
        for k, (icon, _one, plural) in KIND_LABELS.items()
    ]


def attempts_window(agent_id: str, *, before: int | None, after: int | None) -> Window:
    """Return one page of the agent's attempts, newest first (paged by attempt id)."""
    qs = Attempt.objects.filter(agent_id=agent_id).select_related("job", "job__run")
    return window(qs, size=ATTEMPTS_PAGE, before=before, after=after)


def agent_page(
    agent: Agent, *, before: int | None = None, after: int | None = None
) -> dict[str, Any]:
    """Return the agent page's context."""
    node = selectors.node_states([agent.agent_id])[agent.agent_id]
    running = (
        Attempt.objects.filter(agent=agent, status=Attempt.Status.RUNNING)
        .select_related("job")
        .order_by("-id")
        .first()
    )
    cfg = config.hhmrs_get()
    late_after = cfg.heartbeat_interval_s * 1.5
    timeout_s = max(
        cfg.timeout_threshold_s, cfg.missed_heartbeat_threshold * cfg.heartbeat_interval_s
    )
    jobs = (
        Job.objects.filter(agent=agent)
        .select_related("run", "current_attempt")
        .order_by("-created_at")[:JOBS_SHOWN]
    )
    return {
        "agent": agent,
        "node": node,
        "children": list(Agent.objects.filter(parent=agent)),
        "running": running,
        "beat": _beat(running),
        "spark": spark_frame(late_after_s=late_after, timeout_s=timeout_s),
        "late_after_s": late_after,
        "faults": faults_pending(agent.agent_id),
        "interventions": interventions(agent.agent_id),
        "attempts": attempts_window(agent.agent_id, before=before, after=after),
        "jobs": list(jobs),
        "stream_page": selectors.page_slug(agent.agent_id),
    }
