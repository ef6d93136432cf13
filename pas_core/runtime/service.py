"""Runs and job cards entering the tree."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import comms
from ..events import event_emit
from ..models import Agent, Job, Run
from .execute import attempt_dispatch, job_create


class SubmitError(ValueError):
    """Refused input; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str, *, status: int = 422):
        self.field = field
        self.status = status
        super().__init__(f"{field}: {message}")


def run_submit(
    *,
    title: str,
    goal: str,
    description: str = "",
    repo_root: str = "",
    entry_files: list[str] | None = None,
    budget_tokens_max: int = 25000,
    budget_cost_usd_max: float = 2.0,
    submitted_by: str = "",
) -> Run:
    """Create a run for a Prime Directive and send PAS Root its first job."""
    title, goal = (title or "").strip(), (goal or "").strip()
    if not title:
        raise SubmitError("title", "must not be empty")
    if not goal:
        raise SubmitError("goal", "must not be empty")
    if len(title) > 200:
        raise SubmitError("title", "must be at most 200 characters")
    root = Agent.objects.filter(role="root").first()
    if root is None:
        raise SubmitError(
            "agents", "no PAS Root agent: run `python manage.py pas bootstrap`", status=503
        )
    with transaction.atomic():
        run = Run.objects.create(
            title=title,
            goal=goal,
            description=description or "",
            repo_root=repo_root or "",
            entry_files=list(entry_files or []),
            budget_tokens_max=budget_tokens_max,
            budget_cost_usd_max=budget_cost_usd_max,
            submitted_by=submitted_by,
            status=Run.Status.QUEUED,
        )
        job = job_create(
            run=run,
            agent=root,
            job_id=f"jc-{str(run.run_id)[:8]}-root",
            card={
                "role": "root",
                "task": goal,
                "title": title,
                "description": run.description,
                "entry_files": run.entry_files,
                "budget": {"tokens_max": budget_tokens_max, "cost_usd_max": budget_cost_usd_max},
                "submitted_by": submitted_by,
            },
        )
        event_emit(
            "run_submitted",
            {"run_id": str(run.run_id), "title": title, "status": "queued", "by": submitted_by},
        )
        comms.comms_log(
            sender=submitted_by or "user",
            recipient=root.agent_id,
            kind="CMD",
            message=f"Prime Directive: {title}",
            run_id=run.run_id,
            status="queued",
        )
        attempt_dispatch(job)
    return run


def job_submit(agent_id: str, card: dict[str, Any], *, submitted_by: str = "") -> Job:
    """Accept a job card sent straight to an agent (``POST /api/agents/{id}/submit``)."""
    agent = Agent.objects.filter(agent_id=agent_id).first()
    if agent is None:
        raise SubmitError("agent_id", f"no agent {agent_id!r}", status=404)
    if not isinstance(card, dict):
        raise SubmitError("job_card", "must be an object")
    job_id = str(card.get("id") or "").strip()
    task = str(card.get("task") or "").strip()
    if not task:
        raise SubmitError("job_card.task", "must not be empty")
    if job_id and Job.objects.filter(pk=job_id).exists():
        raise SubmitError("job_card.id", f"duplicate job card id {job_id!r}", status=400)
    with transaction.atomic():
        run_id = card.get("run_id")
        run = Run.objects.filter(pk=run_id).first() if run_id else None
        if run_id and run is None:
            raise SubmitError("job_card.run_id", f"no run {run_id!r}", status=404)
        if run is None:
            run = Run.objects.create(
                title=str(card.get("title") or task)[:200],
                goal=task,
                status=Run.Status.RUNNING,
                started_at=timezone.now(),
                submitted_by=submitted_by,
            )
        job_id = job_id or f"jc-{str(run.run_id)[:8]}-{agent.agent_id.lower().replace(' ', '-')}"
        if Job.objects.filter(pk=job_id).exists():
            raise SubmitError("job_card.id", f"duplicate job card id {job_id!r}", status=400)
        job = job_create(
            run=run, agent=agent, card=card, job_id=job_id, lane=str(card.get("lane") or "")
        )
        comms.comms_log(
            sender=submitted_by or "user",
            recipient=agent.agent_id,
            kind="CMD",
            message=f"Job card {job_id}: {task[:200]}",
            run_id=run.run_id,
            status="queued",
        )
        attempt_dispatch(job)
    return job
