"""Reads the API, the HMI and the command line share: one query for each question.

Selectors never write. Each returns rows or plain values; presentation (JSON, HTML,
terminal lines) stays with the interface that shows it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from .models import Agent, Event, Job, Provider, Run

ACTIVE = (Job.Status.QUEUED, Job.Status.RUNNING, Job.Status.WAITING)
TERMINAL = [s.value for s in Job.TERMINAL]


def lane_state(status: str, result: Any) -> str:
    """Return a lane's state from its Director job: its report's state once it ended."""
    if status == Job.Status.SUCCEEDED:
        return str((result or {}).get("state", "completed"))
    if status in (Job.Status.FAILED, Job.Status.CANCELLED):
        return "failed"
    return "running"


def runs_lanes(runs: Iterable[Run]) -> dict[str, dict[str, str]]:
    """Return ``{run_id: {lane: state}}`` for many runs in one query."""
    runs = list(runs)
    lanes: dict[str, dict[str, str]] = {str(r.run_id): {} for r in runs}
    rows = Job.objects.filter(run__in=runs, agent__role="director").values_list(
        "run_id", "lane", "status", "result"
    )
    for run_id, lane, status, result in rows:
        lanes[str(run_id)][lane or "?"] = lane_state(status, result)
    return lanes


def lane_states(run: Run) -> dict[str, str]:
    """Return each lane's state, from its Director job."""
    return runs_lanes([run])[str(run.run_id)]


def lane_reports(run: Run) -> dict[str, Any]:
    """Return each ended lane's report (its Director job's result)."""
    jobs = run.jobs.filter(agent__role="director", status=Job.Status.SUCCEEDED)
    return {job.lane: job.result for job in jobs}


def run_progress(run_id: Any) -> tuple[int, int]:
    """Return ``(jobs ended, jobs in all)`` of a run."""
    jobs = Job.objects.filter(run_id=run_id)
    return jobs.filter(status__in=TERMINAL).count(), jobs.count()


def run_get(run_id: Any) -> Run | None:
    """Return the run with this id, or None (also for a malformed id)."""
    try:
        uuid.UUID(str(run_id))
    except ValueError:
        return None
    return Run.objects.filter(pk=run_id).first()


def events_after(after: int = 0, limit: int = 100, **filters: Any) -> list[Event]:
    """Return up to ``limit`` events with id greater than ``after``, ascending."""
    qs = Event.objects.filter(id__gt=after, **filters).order_by("id")
    return list(qs[: max(1, min(limit, 1000))])


def last_event_id() -> int:
    return Event.objects.order_by("-id").values_list("id", flat=True).first() or 0


def retry_queue() -> list[Job]:
    """Return the jobs that failed for good and wait for a person, newest first."""
    return list(
        Job.objects.filter(status=Job.Status.FAILED, retryable=True)
        .select_related("agent", "run", "current_attempt")
        .order_by("-finished_at", "-updated_at")
    )


def open_jobs(agent_ids: Iterable[str] | None = None) -> dict[str, list[Job]]:
    """Return each agent's open jobs (queued, running, waiting), oldest first."""
    qs = Job.objects.select_related("current_attempt").filter(status__in=ACTIVE)
    if agent_ids is not None:
        qs = qs.filter(agent_id__in=list(agent_ids))
    out: dict[str, list[Job]] = {}
    for job in qs.order_by("created_at"):
        out.setdefault(job.agent_id, []).append(job)
    return out


def agents_tree() -> list[Agent]:
    """Return every agent in tree order (parents before children, by position)."""
    return list(Agent.objects.select_related("parent").all())


DEFAULT_MAX_CONCURRENCY = 8


def provider_cap(name: str) -> int:
    """Return how many calls to a provider may be in flight at once (its row, or 8)."""
    cap = Provider.objects.filter(name=name).values_list("max_concurrency", flat=True).first()
    return max(1, cap or DEFAULT_MAX_CONCURRENCY)
