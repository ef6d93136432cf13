"""What a run's page shows: the job tree, the attempt timeline, the lanes, its logs.

Read-only; the run page view and its live refreshes call these.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from pas_core.models import Agent, Attempt, CommsMessage, Event, Job, Run

from .lanes import lane_reports
from .lists import Window
from .timeline import Moment, Span, timeline_build

LOG_ROWS = 100


@dataclass
class JobNode:
    """A job in the run's job tree, with what its current attempt is doing."""

    job: Job
    phase: str = ""
    # How many attempts this phase took: 2 or more means it was restarted.
    tries: int = 0
    # When its queued attempt is held back by the restart backoff: when it may start.
    waiting_until: datetime | None = None
    children: list[JobNode] = field(default_factory=list)

    @property
    def retried(self) -> bool:
        return self.tries > 1


def _job_tree(jobs: list[Job], tries: Counter[tuple[str, str]], now: datetime) -> list[JobNode]:
    by_parent: dict[str | None, list[Job]] = {}
    for job in jobs:
        by_parent.setdefault(job.parent_id, []).append(job)

    def build(job: Job) -> JobNode:
        attempt = job.current_attempt
        phase = attempt.phase if attempt is not None else ""
        waiting = None
        if attempt is not None and attempt.status == Attempt.Status.QUEUED:
            if attempt.not_before is not None and attempt.not_before > now:
                waiting = attempt.not_before
        return JobNode(
            job=job,
            phase=phase,
            tries=tries[(job.job_id, phase)],
            waiting_until=waiting,
            children=[build(c) for c in by_parent.get(job.job_id, [])],
        )

    ids = {j.job_id for j in jobs}
    return [build(j) for j in jobs if j.parent_id is None or j.parent_id not in ids]


# Not artifacts: a run's git worktree (the repository itself; its diff is shown per
# lane) and the checks' scratch files.
NOT_ARTIFACTS = ("worktree", "work")


def artifacts(run: Run) -> list[dict[str, Any]]:
    """Return the run's artifact files (path relative to its directory, size); 500 at most."""
    root = Path(settings.PAS_ARTIFACTS_DIR) / "runs" / str(run.run_id)
    if not root.is_dir():
        return []
    files = []
    for top in sorted(root.iterdir()):
        if top.name in NOT_ARTIFACTS:
            continue
        found = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in found:
            files.append({"path": path.relative_to(root).as_posix(), "size": path.stat().st_size})
            if len(files) >= 500:
                return files
    return files


def _marks(run: Run) -> list[Moment]:
    """Return the run's escalations and model switches, to mark on the timeline."""
    rows = Event.objects.filter(
        run_id=str(run.run_id), event_type__in=("hhmrs_escalation", "hhmrs_restart")
    ).order_by("id")
    marks = []
    for e in rows:
        data = e.data or {}
        if e.event_type == "hhmrs_restart" and data.get("retry_type") != "llm_change":
            continue
        kind = "escalation" if e.event_type == "hhmrs_escalation" else "switch"
        title = str(data.get("message") or kind)
        marks.append(Moment(agent_id=e.agent_id, at=e.created_at, kind=kind, title=title))
    return marks


def _spans(attempts: list[Attempt]) -> list[Span]:
    return [
        Span(
            agent_id=a.agent_id,
            number=a.number,
            status=a.status,
            model=a.model,
            start=a.started_at or a.created_at,
            end=a.finished_at if a.status not in ("queued", "running") else None,
            job_id=a.job_id,
            error_kind=a.error_kind,
            phase=a.phase,
        )
        for a in attempts
    ]


def _share(used: float, limit: float | None) -> int | None:
    """Return ``used`` as a whole percentage of ``limit`` (None when there is no limit)."""
    if not limit:
        return None
    return min(999, int(100 * used / limit))


def budget_use(run: Run) -> list[dict[str, Any]]:
    """Return what the run has spent against each of its budgets, for the run's head."""
    rows = [
        {
            "name": "tokens",
            "used": f"{run.tokens_used:,}",
            "limit": f"{run.budget_tokens_max:,}",
            "pct": _share(run.tokens_used, run.budget_tokens_max),
        },
        {
            "name": "cost",
            "used": f"${run.cost_usd:.4f}",
            "limit": f"${run.budget_cost_usd_max:.2f}",
            "pct": _share(run.cost_usd, run.budget_cost_usd_max),
        },
    ]
    if run.budget_wall_s:
        took = run.duration_s or 0.0
        rows.append(
            {
                "name": "wall time",
                "used": f"{took:.0f} s",
                "limit": f"{run.budget_wall_s:.0f} s",
                "pct": _share(took, run.budget_wall_s),
            }
        )
    return rows


def run_live(run: Run, *, zoom: tuple[float | None, float | None] = (None, None)) -> dict[str, Any]:
    """Return everything the live part of a run's page shows."""
    jobs = list(run.jobs.select_related("agent", "current_attempt").order_by("created_at"))
    attempts = list(Attempt.objects.filter(job__run=run).order_by("created_at"))
    tries = Counter((a.job_id, a.phase) for a in attempts)
    now = timezone.now()
    order = list(Agent.objects.values_list("agent_id", flat=True))
    timeline = timeline_build(
        _spans(attempts),
        order=order,
        start=run.started_at or run.created_at,
        now=now,
        marks=_marks(run),
        zoom=zoom,
    )
    return {
        "run": run,
        "job_tree": _job_tree(jobs, tries, now),
        "budget": budget_use(run),
        "jobs_count": len(jobs),
        "attempts_count": len(attempts),
        "timeline": timeline,
        "lanes": lane_reports(jobs),
        "artifacts": artifacts(run),
        "retryable": sum(1 for j in jobs if j.status == Job.Status.FAILED and j.retryable),
    }


def run_logs(run: Run) -> dict[str, Any]:
    """Return the run's newest comms and events (the collapsed sections of its page)."""
    run_id = str(run.run_id)
    comms = list(CommsMessage.objects.filter(run_id=run_id).order_by("-id")[:LOG_ROWS])
    events = list(Event.objects.filter(run_id=run_id).order_by("-id")[:LOG_ROWS])
    return {"run": run, "comms": Window(rows=comms), "events": Window(rows=events)}


def run_log_counts(run: Run) -> dict[str, int]:
    run_id = str(run.run_id)
    return {
        "comms_total": CommsMessage.objects.filter(run_id=run_id).count(),
        "events_total": Event.objects.filter(run_id=run_id).count(),
    }
