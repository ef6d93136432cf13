"""The retry queue and the operator's restart: a person takes over from supervision."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from ..config import hhmrs_get
from ..errors import Conflict, NotFound, ServiceError
from ..models import Agent, Attempt, Job, Run
from ..stores.comms import comms_log, model_short
from ..stores.events import event_emit
from .agents import agent_get, agents_status_set
from .attempts import attempts_create
from .notes import Notes, jobless_restart_note
from .runs import run_reopen
from .supervision import OPEN, jobs_restart
from .transitions import jobs_move


def job_retry(job_id: str, *, model: str | None = None, by: str = "") -> Job:
    """Take a permanently failed job out of the retry queue and run it again.

    Counters reset, the agent goes back to its primary model (or ``model``), and the
    job's ancestors and run reopen so that the run carries on to its end.
    """
    with transaction.atomic():
        job = (
            Job.objects.select_for_update(of=("self",))
            .select_related("agent", "current_attempt")
            .filter(pk=job_id)
            .first()
        )
        if job is None:
            raise NotFound("job_id", f"no job {job_id!r}")
        if job.status != Job.Status.FAILED or not job.retryable:
            raise Conflict("job_id", f"{job_id} is not in the retry queue (status {job.status})")
        agent = job.agent
        target = (model or "").strip() or agent.primary_model
        if model and model not in agent.model_chain and "/" not in model:
            raise ServiceError("model", "must be provider/model (e.g. ollama/llama3.1:8b)")
        Agent.objects.filter(pk=agent.pk).update(current_model=target)
        Job.objects.filter(pk=job.pk).update(
            restart_count=0, llm_failure_count=0, retryable=False, error="", finished_at=None
        )
        job.restart_count = job.llm_failure_count = 0
        jobs_move(_ancestors(job), to=Job.Status.WAITING, finished_at=None)
        run_reopen(job.run_id)
        event_emit(
            "job_retried",
            {
                "agent_id": job.agent_id,
                "job_id": job.pk,
                "run_id": str(job.run_id),
                "llm_model": target,
                "by": by,
            },
        )
        comms_log(
            sender=by or "user",
            recipient=job.agent_id,
            kind="CMD",
            message=f"Retry {job.pk} on {model_short(target)}",
            llm_model=target,
            run_id=job.run_id,
            status="queued",
        )
        agents_status_set([job.agent_id], Agent.Status.IDLE)
        last = job.current_attempt
        attempts_create([(job, last.phase if last else Attempt.Phase.STEP, target)])
    job.refresh_from_db()
    return job


def _ancestors(job: Job) -> list[str]:
    ids: list[str] = []
    parent_id = job.parent_id
    while parent_id is not None:
        ids.append(parent_id)
        parent_id = Job.objects.filter(pk=parent_id).values_list("parent_id", flat=True).first()
    return ids


def run_retry(run_id: Any, *, by: str = "") -> list[Job]:
    """Retry every job of the run that waits in the retry queue."""
    if not Run.objects.filter(pk=run_id).exists():
        raise NotFound("run_id", f"no run {run_id}")
    ids = list(
        Job.objects.filter(run_id=run_id, status=Job.Status.FAILED, retryable=True).values_list(
            "pk", flat=True
        )
    )
    if not ids:
        raise Conflict("run_id", "the run has no job in the retry queue")
    return [job_retry(job_id, by=by) for job_id in ids]


def agent_restart_now(agent_id: str, *, by: str = "") -> dict[str, Any]:
    """An operator's restart: kill and re-send the agent's open jobs (not counted)."""
    cfg = hhmrs_get()
    with transaction.atomic():
        agent = agent_get(agent_id)
        jobs = list(
            Job.objects.select_for_update(of=("self",))
            .select_related("agent", "agent__parent", "current_attempt")
            .filter(agent=agent, status__in=OPEN)
            .order_by("pk")
        )
        jobs_restart([(job, "operator") for job in jobs], cfg=cfg, counted=False, by=by)
        if not jobs:
            notes = Notes()
            notes.add("hhmrs_restart", jobless_restart_note(agent, count=0, by=by))
            notes.save()
    return {
        "status": "restarted_and_resent" if jobs else "restarted",
        "jobs": [j.pk for j in jobs],
    }
