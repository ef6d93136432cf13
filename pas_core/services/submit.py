"""Runs and job cards entering the tree: a Prime Directive, or a card sent to an agent."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from ..errors import NotFound, ServiceError
from ..models import Agent, Job, Run
from ..stores.comms import comms_log
from ..stores.events import event_emit
from .attempts import attempt_create
from .jobs import job_create


def _refuse(field: str, message: str, status: int = 422) -> ServiceError:
    return ServiceError(field, message, status=status)


def _root_agent() -> Agent:
    root = Agent.objects.filter(role="root").first()
    if root is None:
        raise _refuse(
            "agents", "no PAS Root agent: run `python manage.py pas bootstrap`", status=503
        )
    return root


def run_submit(
    *,
    title: str,
    goal: str,
    description: str = "",
    repo_root: str = "",
    entry_files: list[str] | None = None,
    budget_tokens_max: int = 25000,
    budget_cost_usd_max: float = 2.0,
    budget_wall_s: float | None = None,
    submitted_by: str = "",
) -> Run:
    """Create a run for a Prime Directive and send PAS Root its first job.

    Budgets: tokens and cost (from the providers' usage) and, optionally, wall time
    from the run's start; passing one stops the run (``services.budgets``).
    """
    title, goal = (title or "").strip(), (goal or "").strip()
    if not title:
        raise _refuse("title", "must not be empty")
    if not goal:
        raise _refuse("goal", "must not be empty")
    if len(title) > 200:
        raise _refuse("title", "must be at most 200 characters")
    root = _root_agent()
    with transaction.atomic():
        run = Run.objects.create(
            title=title,
            goal=goal,
            description=description or "",
            repo_root=repo_root or "",
            entry_files=list(entry_files or []),
            budget_tokens_max=budget_tokens_max,
            budget_cost_usd_max=budget_cost_usd_max,
            budget_wall_s=budget_wall_s or None,
            submitted_by=submitted_by,
            status=Run.Status.QUEUED,
        )
        job = job_create(
            run=run, agent=root, job_id=f"jc-{str(run.run_id)[:8]}-root", card=_root_card(run)
        )
        event_emit(
            "run_submitted",
            {"run_id": str(run.run_id), "title": title, "status": "queued", "by": submitted_by},
        )
        comms_log(
            sender=submitted_by or "user",
            recipient=root.agent_id,
            kind="CMD",
            message=f"Prime Directive: {title}",
            run_id=run.run_id,
            status="queued",
        )
        attempt_create(job)
    return run


def _root_card(run: Run) -> dict[str, Any]:
    return {
        "role": "root",
        "task": run.goal,
        "title": run.title,
        "description": run.description,
        "entry_files": run.entry_files,
        "budget": {
            "tokens_max": run.budget_tokens_max,
            "cost_usd_max": run.budget_cost_usd_max,
            "wall_s": run.budget_wall_s,
        },
        "submitted_by": run.submitted_by,
    }


def job_submit(agent_id: str, card: dict[str, Any], *, submitted_by: str = "") -> Job:
    """Accept a job card sent straight to an agent (``POST /api/agents/{id}/submit``)."""
    agent = Agent.objects.filter(agent_id=agent_id).first()
    if agent is None:
        raise NotFound("agent_id", f"no agent {agent_id!r}")
    if not isinstance(card, dict):
        raise _refuse("job_card", "must be an object")
    job_id = str(card.get("id") or "").strip()
    task = str(card.get("task") or "").strip()
    if not task:
        raise _refuse("job_card.task", "must not be empty")
    if job_id and Job.objects.filter(pk=job_id).exists():
        raise _refuse("job_card.id", f"duplicate job card id {job_id!r}", status=400)
    with transaction.atomic():
        run_id = card.get("run_id")
        run = Run.objects.filter(pk=run_id).first() if run_id else None
        if run_id and run is None:
            raise NotFound("job_card.run_id", f"no run {run_id!r}")
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
            raise _refuse("job_card.id", f"duplicate job card id {job_id!r}", status=400)
        job = job_create(
            run=run, agent=agent, card=card, job_id=job_id, lane=str(card.get("lane") or "")
        )
        comms_log(
            sender=submitted_by or "user",
            recipient=agent.agent_id,
            kind="CMD",
            message=f"Job card {job_id}: {task[:200]}",
            run_id=run.run_id,
            status="queued",
        )
        attempt_create(job)
    return job
