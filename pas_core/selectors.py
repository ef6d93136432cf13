"""Reads the API, the HMI and the command line share: one query for each question.

Selectors never write. Each returns rows or plain values; presentation (JSON, HTML,
terminal lines) stays with the interface that shows it.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Trunc
from django.utils import timezone

from .models import Agent, Attempt, Event, Job, Provider, Run

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


# -- supervision over time: the overview page now, ``/metrics`` later --------------

# The HHMRS event types (DESIGN 5). A model switch is an ``hhmrs_restart`` whose data
# says ``retry_type: "llm_change"``: counted as a switch, not as a restart.
INTERVENTION_TYPES = ("hhmrs_timeout", "hhmrs_restart", "hhmrs_escalation", "hhmrs_failure")
INTERVENTION_KINDS = ("timeout", "restart", "switch", "escalation", "failure")
_KIND_OF = {
    "hhmrs_timeout": "timeout",
    "hhmrs_restart": "restart",
    "hhmrs_escalation": "escalation",
    "hhmrs_failure": "failure",
}
FAILED_ATTEMPTS = (Attempt.Status.ERRORED, Attempt.Status.TIMED_OUT)
ENDED_ATTEMPTS = (*FAILED_ATTEMPTS, Attempt.Status.SUCCEEDED, Attempt.Status.KILLED)


def intervention_kind(event_type: str, retry_type: str | None = None) -> str:
    """Return ``timeout``, ``restart``, ``switch``, ``escalation`` or ``failure``."""
    if event_type == "hhmrs_restart" and retry_type == "llm_change":
        return "switch"
    return _KIND_OF.get(event_type, "")


def _interventions(since: datetime | None = None) -> Any:
    """Return the HHMRS events since ``since``, each with its ``retry_type`` (or None)."""
    qs = Event.objects.filter(event_type__in=INTERVENTION_TYPES)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    return qs.annotate(retry_type=KeyTextTransform("retry_type", "data"))


def _zero() -> dict[str, int]:
    return dict.fromkeys(INTERVENTION_KINDS, 0)


def interventions_by_agent(
    since: datetime | None = None, agent_ids: Iterable[str] | None = None
) -> dict[str, dict[str, int]]:
    """Return ``{agent_id: {kind: count}}`` of interventions since ``since`` (one query).

    Agents without any are left out; ``agent_ids`` narrows the question.
    """
    qs = _interventions(since)
    if agent_ids is not None:
        qs = qs.filter(agent_id__in=list(agent_ids))
    out: dict[str, dict[str, int]] = {}
    rows = qs.values("agent_id", "event_type", "retry_type").annotate(n=Count("id"))
    for row in rows:
        kind = intervention_kind(row["event_type"], row["retry_type"])
        out.setdefault(row["agent_id"], _zero())[kind] += row["n"]
    return out


def interventions_by_run(run_ids: Iterable[Any]) -> dict[str, int]:
    """Return ``{run_id: how many HHMRS events it had}`` (runs without any are left out)."""
    ids = [str(r) for r in run_ids]
    rows = (
        Event.objects.filter(event_type__in=INTERVENTION_TYPES, run_id__in=ids)
        .values("run_id")
        .annotate(n=Count("id"))
    )
    return {row["run_id"]: row["n"] for row in rows}


def runs_with_interventions() -> QuerySet[Event, str]:
    """Return the ids (text) of every run that had an HHMRS event, for a filter."""
    return (
        Event.objects.filter(event_type__in=INTERVENTION_TYPES)
        .exclude(run_id="")
        .values_list("run_id", flat=True)
        .distinct()
    )


def _trunc_kind(bucket_s: int) -> str:
    if bucket_s < 3600:
        return "minute"
    return "hour" if bucket_s < 86400 else "day"


def interventions_by_bucket(
    since: datetime, bucket_s: int, *, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Return the interventions per time bucket from ``since`` to ``now``, oldest first.

    Each bucket is ``{"start": datetime, "timeout": n, "restart": n, "switch": n,
    "escalation": n, "failure": n}``; buckets are ``bucket_s`` long (at least 60),
    aligned to multiples of ``bucket_s`` since the epoch, and empty ones are included.
    The database groups by minute, hour or day; only those groups are folded here.
    """
    bucket_s = max(60, int(bucket_s))
    now = now or timezone.now()
    first = int(since.timestamp()) // bucket_s * bucket_s
    count = int(now.timestamp()) // bucket_s * bucket_s - first
    buckets = [
        {"start": datetime.fromtimestamp(first + i * bucket_s, tz=UTC), **_zero()}
        for i in range(count // bucket_s + 1)
    ]
    rows = (
        _interventions(since)
        .annotate(slot=Trunc("created_at", _trunc_kind(bucket_s)))
        .values("slot", "event_type", "retry_type")
        .annotate(n=Count("id"))
    )
    for row in rows:
        index = (int(row["slot"].timestamp()) - first) // bucket_s
        if 0 <= index < len(buckets):
            buckets[index][intervention_kind(row["event_type"], row["retry_type"])] += row["n"]
    return buckets


def failure_rates(since: datetime, by: str = "agent") -> list[dict[str, Any]]:
    """Return how often attempts that ended since ``since`` failed, per agent or model.

    Each row is ``{"key", "ended", "failed", "rate"}``, worst rate first; ``failed``
    counts attempts that errored or timed out (a killed attempt was stopped by a
    person or by a restart, and is not counted as failed; it is in ``ended``).
    """
    if by not in ("agent", "model"):
        raise ValueError(f"by must be 'agent' or 'model', not {by!r}")
    column = "agent_id" if by == "agent" else "model"
    rows = (
        Attempt.objects.filter(finished_at__gte=since, status__in=ENDED_ATTEMPTS)
        .values(column)
        .annotate(ended=Count("id"), failed=Count("id", filter=Q(status__in=FAILED_ATTEMPTS)))
    )
    out = [
        {
            "key": row[column] or "(no model)",
            "ended": row["ended"],
            "failed": row["failed"],
            "rate": row["failed"] / row["ended"] if row["ended"] else 0.0,
        }
        for row in rows
    ]
    return sorted(out, key=lambda r: (-r["rate"], -r["failed"], r["key"]))


def run_durations(since: datetime) -> dict[str, Any]:
    """Return ``{"count", "p50_s", "p95_s", "max_s"}`` of the runs that ended since ``since``.

    Nearest-rank percentiles, each read by the database with one ``OFFSET`` (no rows
    are loaded); the values are None when no run ended.
    """
    ended = Run.objects.filter(finished_at__gte=since, started_at__isnull=False).annotate(
        d=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    )
    count = ended.count()
    out: dict[str, Any] = {"count": count, "p50_s": None, "p95_s": None, "max_s": None}
    if not count:
        return out
    ordered = ended.order_by("d").values_list("d", flat=True)
    for key, p in (("p50_s", 0.50), ("p95_s", 0.95), ("max_s", 1.0)):
        value = ordered[max(0, math.ceil(p * count) - 1)]
        out[key] = value.total_seconds() if isinstance(value, timedelta) else float(value or 0)
    return out
