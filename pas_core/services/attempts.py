"""Attempts: created and sent, started at most once, failed by their worker.

An attempt is one execution of a job; ``number`` is its fencing generation. The job's
``current_attempt`` names the only attempt whose result counts: creating a new one
fences off every older one at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from django.db import transaction
from django.db.models import Max, OuterRef, Subquery
from django.utils import timezone

from .. import dispatch
from ..models import Agent, Attempt, Job, Run
from ..stores import heartbeats, statements
from ..stores.events import event_emit
from .agents import agent_status_set
from .transitions import attempt_move, jobs_move, run_move

Phase = str
FEW = 10  # Up to this many new attempts, each job is moved on its own (see attempts_create).


def attempts_create(
    items: Sequence[tuple[Job, Phase, str | None]],
    *,
    delays: dict[str, float] | None = None,
    locked: bool = False,
    new: bool = False,
) -> list[Attempt]:
    """Give each job a new current attempt (``(job, phase, model)``; None: the agent's).

    The jobs move to ``queued`` (their older attempts are fenced off from here on) and
    the attempts are sent over one broker connection once the transaction commits.
    ``delays`` (job id -> seconds) holds a restart back: its attempt waits, queued,
    until ``not_before``. Jobs whose status does not allow it (ended meanwhile) get
    none. One job is a list of one. ``locked``: the caller's transaction has locked
    these jobs already (rows read after the lock, with their agents): not read again.
    ``new``: the caller's transaction created these jobs: they have no attempt yet.
    """
    delays = delays or {}
    now = timezone.now()
    if not items:
        return []
    # Inside a caller's transaction no savepoint: nothing here is undone on its own (two
    # statements fewer while the caller holds the database's write lock).
    with transaction.atomic(savepoint=False):
        pks = sorted({job.pk for job, _, _ in items})
        # Lock the jobs first, in pk order: the order every writer takes them in.
        rows = (
            [job for job, _, _ in items]
            if locked
            else Job.objects.select_for_update(of=("self",))
            .select_related("agent")
            .filter(pk__in=pks)
            .order_by("pk")
        )
        held = {job.pk: job for job in rows}
        top: dict[str, int | None]
        if new:
            top = {}
        elif len(pks) == 1:  # One job (a restart, an aggregate): a statement built once.
            top = {pks[0]: statements.value_max(Attempt, "number", equal={"job": pks[0]})}
        else:
            top = dict(
                Attempt.objects.filter(job_id__in=pks)
                .order_by()  # The default order (by job) would join the jobs for nothing.
                .values("job_id")
                .annotate(n=Max("number"))
                .values_list("job_id", "n")
            )
        fresh = [
            Attempt(
                job=held[job.pk],
                number=(top.get(job.pk) or 0) + 1,
                phase=phase,
                agent_id=job.agent_id,
                model=held[job.pk].agent.current_model if model is None else model,
                celery_task_id=uuid.uuid4().hex,
                not_before=now + timedelta(seconds=delays[job.pk]) if delays.get(job.pk) else None,
            )
            for job, phase, model in items
            if job.pk in held
        ]
        statements.rows_insert(fresh)
        if len(fresh) <= FEW and all(a.pk is not None for a in fresh):
            # A few: each job names its new attempt by value, one prepared UPDATE each.
            moved = {
                a.job_id
                for a in fresh
                if jobs_move([a.job_id], to=Job.Status.QUEUED, current_attempt=a.pk)
            }
        else:
            newest = Subquery(
                Attempt.objects.filter(job=OuterRef("pk")).order_by("-number").values("pk")[:1]
            )
            moved = set(jobs_move(pks, to=Job.Status.QUEUED, current_attempt=newest))
        sent = [a for a in fresh if a.job_id in moved]
        callers = {job.pk: job for job, _, _ in items}
        for attempt in sent:  # The callers' objects see what the rows now say.
            job = callers[attempt.job_id]
            job.current_attempt, job.status = attempt, Job.Status.QUEUED
        # A parent's aggregate made ready in a worker's attempt runs next on its thread
        # (no model call, short; its thread is free now): ``dispatch.running_here``.
        here = [a for a in sent if a.phase == Attempt.Phase.AGGREGATE and not a.not_before]
        dispatch.attempts_run_here([(a.pk, a.celery_task_id) for a in here])
        dispatch.attempts_send_on_commit(
            [(a.pk, a.celery_task_id, delays.get(a.job_id, 0.0)) for a in sent if a not in here]
        )
    return sent


def attempt_create(
    job: Job, *, phase: Phase = Attempt.Phase.STEP, model: str | None = None
) -> Attempt:
    """Give one job a new current attempt (see ``attempts_create``)."""
    created = attempts_create([(job, phase, model)])
    if not created:
        raise ValueError(f"job_id: {job.pk} cannot be sent again (status {job.status})")
    return created[0]


def attempts_resend(attempts: Sequence[Attempt]) -> int:
    """Send queued attempts again (their message was lost); a duplicate does nothing.

    One still backing off keeps its wait: it is sent for the rest of it.
    """
    now = timezone.now()
    return dispatch.attempts_send(
        [
            (a.pk, a.celery_task_id, (a.not_before - now).total_seconds() if a.not_before else 0)
            for a in attempts
        ]
    )


def attempt_start(attempt: Attempt, *, worker: str = "") -> bool:
    """Move a queued attempt to running, once; return False if it was not queued.

    A message delivered twice, or an attempt killed before it started, finds it no
    longer queued and runs nothing. The winner is supervised from this moment, as
    run by the worker process ``worker`` (``stores.workers``).
    """
    now = timezone.now()
    job = attempt.job
    # One transaction: a database that fails half-way leaves the attempt queued, and
    # its message (sent again by the task) starts it later; never running with no one
    # running it.
    with transaction.atomic():
        if not attempt_move(
            attempt.pk, to=Attempt.Status.RUNNING, started_at=now, last_heartbeat_at=now
        ):
            return False
        jobs_move([job.pk], to=Job.Status.RUNNING, where={"current_attempt": attempt.pk})
        if job.run.status == Run.Status.QUEUED:  # Only a run's first attempt starts it.
            run_move(
                job.run_id,
                to=Run.Status.RUNNING,
                where={"status": Run.Status.QUEUED},
                started_at=now,
            )
        agent_status_set(attempt.agent_id, Agent.Status.WORKING)
        event_emit(
            "job_started",
            {
                "agent_id": attempt.agent_id,
                "job_id": job.pk,
                "run_id": str(job.run_id),
                "attempt": attempt.number,
                "phase": attempt.phase,
                "llm_model": attempt.model,
                "status": "running",
            },
        )
        # Supervised from the commit on (a beat that comes first is not lost: the
        # register is the first beat).
        dispatch.after_commit(
            lambda: heartbeats.hb_register(
                attempt.pk, agent_id=attempt.agent_id, job_id=job.pk, worker=worker
            )
        )
    return True


def attempt_fail(
    attempt: Attempt, *, kind: str, message: str, retry_after_s: float | None = None
) -> bool:
    """Record a failed attempt and hand it to supervision; False if it already ended.

    ``retry_after_s``: the provider asked not to be called again before then.
    """
    with transaction.atomic():
        won = attempt_move(
            attempt.pk,
            to=Attempt.Status.ERRORED,
            error_kind=kind,
            error=message[:4000],
            finished_at=timezone.now(),
            retry_after_s=retry_after_s,
        )
        if not won:
            return False
        event_emit(
            "attempt_failed",
            {
                "agent_id": attempt.agent_id,
                "job_id": attempt.job_id,
                "run_id": str(attempt.job.run_id),
                "kind": kind,
                "message": message[:500],
                "attempt": attempt.number,
                "llm_model": attempt.model,
            },
        )
        dispatch.failure_handle_send(attempt.pk)
    heartbeats.hb_unregister_after_end(attempt.pk)
    return True


def attempt_beat_record(attempt_id: int, *, progress: float, message: str) -> None:
    """Refresh a running attempt's database copy of its last beat (for display only)."""
    Attempt.objects.filter(pk=attempt_id, status=Attempt.Status.RUNNING).update(
        last_heartbeat_at=timezone.now(), progress=progress, message=message[:500]
    )


def attempt_waits(attempt: Attempt) -> bool:
    """Return whether a queued attempt should go on waiting to start (still current)."""
    return Attempt.objects.filter(
        pk=attempt.pk, status=Attempt.Status.QUEUED, job__current_attempt=attempt.pk
    ).exists()


def attempt_running_job(attempt_id: int) -> str | None:
    """Return the job of a still-running attempt (None when it has ended)."""
    return (
        Attempt.objects.filter(pk=attempt_id, status=Attempt.Status.RUNNING)
        .values_list("job_id", flat=True)
        .first()
    )
