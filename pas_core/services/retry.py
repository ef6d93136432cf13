"""The retry queue and the operator's restart: a person takes over from supervision."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction

from ..config import hhmrs_get
from ..errors import Conflict, NotFound, ServiceError
from ..models import Agent, Attempt, Job, Run
from ..stores.comms import comms_log, comms_log_many, model_short
from ..stores.events import event_emit, events_emit
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
        ancestors = _ancestors(job)
        # An ancestor that failed with it (its roll-up, say) waits for it again, out of
        # the retry queue: it aggregates once its children end, on their new reports.
        Job.objects.filter(pk__in=ancestors, status=Job.Status.FAILED).update(
            restart_count=0, llm_failure_count=0, retryable=False, error=""
        )
        jobs_move(ancestors, to=Job.Status.WAITING, finished_at=None)
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


def _deepest(ids: list[str]) -> tuple[list[str], list[str]]:
    """Split jobs to retry into those to run again and their ancestors among them.

    Re-running an ancestor at once would aggregate its children's old failed reports
    while they run again; it waits for them instead (see :func:`job_retry`).
    """
    above = {a for job_id in ids for a in _ancestors(Job.objects.get(pk=job_id))}
    return [i for i in ids if i not in above], [i for i in ids if i in above]


def _retry_many(ids: list[str], *, model: str | None, by: str) -> list[Job]:
    deepest, waiting = _deepest(ids)
    retried = {job_id: job_retry(job_id, model=model, by=by) for job_id in deepest}
    rest = {j.pk: j for j in Job.objects.filter(pk__in=waiting)}
    return [retried.get(i) or rest[i] for i in ids]


def run_retry(run_id: Any, *, by: str = "") -> list[Job]:
    """Retry every job of the run that waits in the retry queue (the deepest of a chain
    runs again; its failed ancestors wait for it)."""
    if not Run.objects.filter(pk=run_id).exists():
        raise NotFound("run_id", f"no run {run_id}")
    ids = list(
        Job.objects.filter(run_id=run_id, status=Job.Status.FAILED, retryable=True).values_list(
            "pk", flat=True
        )
    )
    if not ids:
        raise Conflict("run_id", "the run has no job in the retry queue")
    with transaction.atomic():
        return _retry_many(ids, model=None, by=by)


MAX_BULK = 500


def _queue_ids(job_ids: Iterable[str]) -> list[str]:
    """Return the ids without repeats, in order; refuse an empty or oversized list."""
    ids = list(dict.fromkeys(str(j).strip() for j in job_ids if str(j).strip()))
    if not ids:
        raise ServiceError("job_ids", "select at least one job")
    if len(ids) > MAX_BULK:
        raise ServiceError("job_ids", f"at most {MAX_BULK} jobs at once (got {len(ids)})")
    return ids


def _queue_check(jobs: dict[str, Job], ids: list[str]) -> None:
    """Refuse ids that name no job (404) or a job that is not in the retry queue (409)."""
    missing = [i for i in ids if i not in jobs]
    if missing:
        raise NotFound("job_ids", "no job " + ", ".join(repr(i) for i in missing))
    outside = [i for i in ids if jobs[i].status != Job.Status.FAILED or not jobs[i].retryable]
    if outside:
        raise Conflict("job_ids", "not in the retry queue: " + ", ".join(outside))


def jobs_discard(job_ids: Iterable[str], *, by: str = "") -> list[Job]:
    """Take failed jobs out of the retry queue for good; they stay failed.

    All or nothing: one id that names no job (NotFound) or a job that is not in the
    queue (Conflict) refuses the whole list. Each discard is a ``job_discarded`` event
    and a comms line naming who did it.
    """
    ids = _queue_ids(job_ids)
    with transaction.atomic():
        # Locked in pk order, as supervision locks jobs: a concurrent retry waits for us.
        jobs = {
            j.pk: j
            for j in Job.objects.select_for_update(of=("self",))
            .select_related("agent")
            .filter(pk__in=ids)
            .order_by("pk")
        }
        _queue_check(jobs, ids)
        Job.objects.filter(pk__in=ids).update(retryable=False)
        items = [jobs[i] for i in ids]
        events_emit([("job_discarded", _discard_data(job, by=by)) for job in items])
        comms_log_many([_discard_line(job, by=by) for job in items])
    for job in items:
        job.retryable = False
    return items


def _discard_data(job: Job, *, by: str) -> dict[str, Any]:
    return {
        "agent_id": job.agent_id,
        "job_id": job.pk,
        "run_id": str(job.run_id),
        "status": job.status,
        "by": by,
        "message": f"{job.pk} discarded from the retry queue by {by or 'an operator'}",
    }


def _discard_line(job: Job, *, by: str) -> dict[str, Any]:
    return {
        "sender": by or "user",
        "recipient": job.agent_id,
        "kind": "CMD",
        "message": f"Discard {job.pk} from the retry queue",
        "llm_model": job.agent.current_model,
        "run_id": job.run_id,
        "status": "discarded",
        "metadata": {"job_id": job.pk, "by": by},
    }


def jobs_retry(job_ids: Iterable[str], *, model: str | None = None, by: str = "") -> list[Job]:
    """Retry several jobs of the retry queue at once (each as :func:`job_retry` does).

    All or nothing: the ids are checked first (NotFound, Conflict), and one refusal
    while retrying (a bad ``model``) rolls every retry back, events and sends included
    (they run on commit).
    """
    ids = _queue_ids(job_ids)
    with transaction.atomic():
        _queue_check({j.pk: j for j in Job.objects.filter(pk__in=ids)}, ids)
        return _retry_many(ids, model=model, by=by)


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
