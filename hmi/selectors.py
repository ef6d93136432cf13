"""Read-side queries for the HMI: each returns what one page region shows.

The page views and the SSE stream both call these, so a fragment pushed live shows
exactly what a reload would.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, OuterRef, Subquery
from django.utils import timezone

from pas_core import config
from pas_core import selectors as core
from pas_core.models import Agent, Attempt, Event, Job, Notification
from pas_core.selectors import last_event_id
from pas_core.stores.heartbeats import hb_agents

log = logging.getLogger(__name__)

ACTIVE = (Job.Status.QUEUED, Job.Status.RUNNING, Job.Status.WAITING)
BUSY = (Job.Status.QUEUED, Job.Status.RUNNING)
INTERVENTIONS = ("hhmrs_timeout", "hhmrs_restart", "hhmrs_escalation", "hhmrs_failure")
INTERVENTION_LABELS = {
    "hhmrs_timeout": ("timeout", "◷", "Timed out"),
    "hhmrs_restart": ("restart", "↻", "Restart"),
    "hhmrs_escalation": ("escalation", "⇪", "Escalation"),
    "hhmrs_failure": ("failure", "✖", "Permanent failure"),
}
# The status an event says its agent is in at that moment.
EVENT_STATUS = {
    "hhmrs_timeout": Agent.Status.TIMED_OUT,
    "hhmrs_restart": Agent.Status.RESTARTING,
    "hhmrs_escalation": Agent.Status.ESCALATED,
    "hhmrs_failure": Agent.Status.FAILED,
}
# Short words for the 5 s badge on the node an event touched.
BADGES = {
    "hhmrs_timeout": "timed out",
    "hhmrs_restart": "restart",
    "hhmrs_escalation": "escalated",
    "hhmrs_failure": "failed",
    "job_started": "started",
    "job_completed": "done",
    "job_failed": "job failed",
    "agent_status": "status",
    "agent_model_reset": "model reset",
    "fault_injected": "fault",
    "fault_triggered": "fault",
    "job_retried": "retry",
}


# The legend's order; ``waiting`` is a display state (an agent whose open jobs all wait
# for their children), ``late`` is set by the browser (see hmi.js ``tick``).
STATUS_ORDER = [
    "idle",
    "working",
    "waiting",
    "late",
    "timed_out",
    "restarting",
    "escalated",
    "failed",
    "disabled",
]
STATUSES = [(s, s.replace("_", " ")) for s in STATUS_ORDER]
RECENT_S = 3600  # The tree's "in the last hour" counters.


def dom_id(agent_id: str) -> str:
    """Return the HTML id of an agent's node: ``PAS Root`` -> ``node-PAS-Root``."""
    return "node-" + re.sub(r"[^A-Za-z0-9_-]+", "-", agent_id).strip("-")


def page_slug(agent_id: str) -> str:
    """Return the stream page name of an agent's page: ``PAS Root`` -> ``agent-pas-root``.

    The stream accepts ``[a-z0-9][a-z0-9-]{0,31}``; a long id is cut, so two agents
    may share a name and get each other's refreshes (harmless: a refresh is a read).
    """
    slug = re.sub(r"[^a-z0-9]+", "-", agent_id.lower()).strip("-")
    return ("agent-" + slug)[:32].rstrip("-")


@dataclass
class NodeState:
    """What the tree shows for one agent."""

    agent: Agent
    dom_id: str
    depth: int = 0
    active_jobs: int = 0
    busy_jobs: int = 0  # Open jobs that are not waiting for their children.
    job_id: str = ""
    phase: str = ""  # The phase of the attempt at work: step or aggregate.
    restarts: int = 0
    switches: int = 0
    max_restarts: int = 3
    max_switches: int = 3
    beat_epoch: float | None = None
    last_active_epoch: float | None = None
    recent: dict[str, int] = field(default_factory=dict)
    badge: str = ""
    # The status an event announced, shown instead of the stored one (see fragments).
    status_override: str = ""
    children: list[NodeState] = field(default_factory=list)

    @property
    def waiting(self) -> bool:
        return self.active_jobs > 0 and self.busy_jobs == 0

    @property
    def status(self) -> str:
        if not self.agent.enabled:
            return Agent.Status.DISABLED
        status = self.status_override or self.agent.status
        # A parent that delegated is not idle: it waits for its children.
        if self.waiting and status in (Agent.Status.IDLE, Agent.Status.WORKING):
            return "waiting"
        return status

    @property
    def status_label(self) -> str:
        return self.status.replace("_", " ")

    @property
    def model_short(self) -> str:
        model = self.agent.current_model
        return model.split("/", 1)[1] if "/" in model else model

    @property
    def recent_restarts(self) -> int:
        return self.recent.get("restart", 0)

    @property
    def recent_switches(self) -> int:
        return self.recent.get("switch", 0)


def _beats() -> dict[str, float]:
    """Return each agent's last heartbeat epoch from the Redis store (empty if down)."""
    try:
        return hb_agents()
    except Exception:  # noqa: BLE001 - display only; the database copy still shows
        log.debug("no heartbeat store", exc_info=True)
        return {}


def _depths(agents: list[Agent]) -> dict[str, int]:
    parents = {a.agent_id: a.parent_id for a in agents}
    depths: dict[str, int] = {}
    for agent_id in parents:
        depth, up = 0, parents.get(agent_id)
        while up is not None and depth < 32:
            depth, up = depth + 1, parents.get(up)
        depths[agent_id] = depth
    return depths


def _last_finished(agent_ids: list[str]) -> dict[str, float]:
    """Return when each agent's last attempt ended (for agents Redis knows nothing of)."""
    if not agent_ids:
        return {}
    rows = (
        Attempt.objects.filter(agent_id__in=agent_ids, finished_at__isnull=False)
        .values("agent_id")
        .annotate(last=Max("finished_at"))
    )
    return {r["agent_id"]: r["last"].timestamp() for r in rows if r["last"]}


def _counted_jobs(states: dict[str, NodeState], jobs: Any) -> dict[str, Job]:
    """Count each agent's open jobs; return the job whose counters its node shows.

    The newest job at work wins over a job waiting for its children; with no open job,
    the agent's latest job if that one failed (so an exhausted job still reads 3/3).
    """
    counted: dict[str, Job] = {}
    for job in jobs.filter(status__in=ACTIVE):
        state = states.get(job.agent_id)
        if state is None:
            continue
        state.active_jobs += 1
        at_work = job.status != Job.Status.WAITING
        state.busy_jobs += int(at_work)
        current = counted.get(job.agent_id)
        if current is None or at_work or current.status == Job.Status.WAITING:
            counted[job.agent_id] = job
    idle = [a for a in states if a not in counted]
    if idle:
        latest = Job.objects.filter(agent_id=OuterRef("agent_id")).order_by("-updated_at")
        last_ids = Agent.objects.filter(agent_id__in=idle).annotate(
            last_job=Subquery(latest.values("job_id")[:1])
        )
        failed = Job.objects.select_related("current_attempt").filter(
            job_id__in=[a.last_job for a in last_ids if a.last_job], status=Job.Status.FAILED
        )
        for job in failed:
            counted[job.agent_id] = job
    return counted


def node_states(agent_ids: list[str] | None = None) -> dict[str, NodeState]:
    """Return the node state of every agent (or of ``agent_ids``), in tree order."""
    cfg = config.hhmrs_get()
    every = list(Agent.objects.all())
    depths = _depths(every)
    wanted = set(agent_ids) if agent_ids is not None else None
    jobs = Job.objects.select_related("current_attempt").order_by("created_at")
    if agent_ids is not None:
        jobs = jobs.filter(agent_id__in=agent_ids)
    states = {
        a.agent_id: NodeState(
            agent=a,
            dom_id=dom_id(a.agent_id),
            depth=depths.get(a.agent_id, 0),
            max_restarts=cfg.max_restarts,
            max_switches=cfg.max_llm_retries,
        )
        for a in every
        if wanted is None or a.agent_id in wanted
    }
    counted = _counted_jobs(states, jobs)
    beats = _beats()
    since = timezone.now() - timedelta(seconds=RECENT_S)
    recent = core.interventions_by_agent(since, agent_ids=agent_ids)
    finished = _last_finished([a for a in states if a not in beats])
    for agent_id, state in states.items():
        state.recent = recent.get(agent_id, {})
        state.last_active_epoch = beats.get(agent_id) or finished.get(agent_id)
        found = counted.get(agent_id)
        if found is None:
            continue
        state.job_id = found.job_id
        state.restarts = found.restart_count
        state.switches = found.llm_failure_count
        attempt = found.current_attempt
        # Only a job at work beats; a parent waiting for its children does not.
        if attempt is not None and attempt.status == "running" and found.status in BUSY:
            state.phase = attempt.phase
            beat = attempt.last_heartbeat_at or attempt.started_at
            state.beat_epoch = beat.timestamp() if beat else None
        if found.status == Job.Status.RUNNING and agent_id in beats:
            state.beat_epoch = max(state.beat_epoch or 0, beats[agent_id])
    return states


def tree_nodes() -> tuple[list[NodeState], int]:
    """Return the root nodes (children nested) and how many agents there are."""
    states = node_states()
    roots: list[NodeState] = []
    for state in states.values():
        parent = states.get(state.agent.parent_id or "")
        (parent.children if parent else roots).append(state)
    return roots, len(states)


@dataclass
class Intervention:
    event: Event
    kind: str
    icon: str
    label: str

    @property
    def message(self) -> str:
        data = self.event.data or {}
        return str(data.get("message") or data.get("reason") or "")


def interventions(limit: int = 5) -> list[Intervention]:
    """Return the last ``limit`` TRON interventions, newest first."""
    rows = Event.objects.filter(event_type__in=INTERVENTIONS).order_by("-id")[:limit]
    return [Intervention(e, *INTERVENTION_LABELS[e.event_type]) for e in rows]


def intervention_counts() -> dict[str, int]:
    """Return how many timeouts, restarts, escalations and failures were recorded."""
    rows = (
        Event.objects.filter(event_type__in=INTERVENTIONS)
        .values("event_type")
        .annotate(n=Count("id"))
    )
    counts = {INTERVENTION_LABELS[t][0]: 0 for t in INTERVENTIONS}
    for row in rows:
        counts[INTERVENTION_LABELS[row["event_type"]][0]] = row["n"]
    return counts


def unread_count() -> int:
    return Notification.objects.filter(read=False).count()


def chrome() -> dict[str, Any]:
    """Return what every page's header, banner and scripts need."""
    doc = config.document_get()
    return {
        "unread": unread_count(),
        "banner": interventions(),
        "counts": intervention_counts(),
        "last_event_id": last_event_id(),
        "chime": doc["tron_chime"],
        "display": doc["hmi_display"],
        "hhmrs": doc["hhmrs"],
        "llm_mode": settings.PAS_LLM_MODE,
        "now_epoch": timezone.now().timestamp(),
    }
