"""The attempt lifecycle: dispatch, start at most once, fence, end with one winner.

Every transition is a conditional update, so a result racing a timeout, two sweeps,
or a message Celery delivers twice resolve to exactly one winner:

- ``queued -> running`` happens once (a re-delivered message finds ``running``, exits);
- ``running -> succeeded | errored`` by the task, ``running -> timed_out | killed`` by
  supervision: whoever updates first wins, the other's update matches no row;
- a task whose attempt is no longer the job's current one discards its result.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from .. import comms
from ..config import hhmrs_get
from ..events import event_emit
from ..hhmrs import heartbeats
from ..models import Agent, Attempt, Job, Run
from .types import AttemptError, ChildCard, Complete, Delegate, StepContext

log = logging.getLogger(__name__)

TERMINAL = [s.value for s in Job.TERMINAL]


# -- creating and sending ---------------------------------------------------------


def child_job_id(parent: Job, card: ChildCard, index: int) -> str:
    """Return a readable id that is unique by construction (no counting, no races).

    ``jc-<run8>-architect`` for the Architect, ``jc-<run8>-code`` for a lane's Director,
    then ``-m1`` for its first Manager job and ``-m1-p2`` for that Manager's second
    Programmer job.
    """
    run8 = str(parent.run_id)[:8]
    role = parent.agent.role
    if role == "root":
        return f"jc-{run8}-{card.agent_id.lower().replace(' ', '-')}"
    if role == "architect":
        return f"jc-{run8}-{(card.lane or card.agent_id).lower()}"
    letter = {"director": "m", "manager": "p"}.get(role, "c")
    return f"{parent.job_id}-{letter}{index + 1}"


def job_create(
    *,
    run: Run,
    agent: Agent,
    card: dict[str, Any],
    job_id: str,
    parent: Job | None = None,
    lane: str = "",
) -> Job:
    card = {**card, "id": job_id, "run_id": str(run.run_id)}
    return Job.objects.create(
        job_id=job_id, run=run, agent=agent, card=card, parent=parent, lane=lane or agent.lane
    )


def attempt_dispatch(
    job: Job, *, phase: str = Attempt.Phase.STEP, model: str | None = None
) -> Attempt:
    """Create the job's next attempt, make it current, and send it once committed."""
    with transaction.atomic():
        job = Job.objects.select_for_update(of=("self",)).select_related("agent").get(pk=job.pk)
        number = (job.attempts.aggregate(n=Max("number"))["n"] or 0) + 1
        attempt = Attempt.objects.create(
            job=job,
            number=number,
            phase=phase,
            agent=job.agent,
            model=job.agent.current_model if model is None else model,
            celery_task_id=uuid.uuid4().hex,
        )
        Job.objects.filter(pk=job.pk).update(
            current_attempt=attempt, status=Job.Status.QUEUED, updated_at=timezone.now()
        )
        transaction.on_commit(lambda: attempt_send(attempt))
    return attempt


def attempt_send(attempt: Attempt) -> None:
    from ..tasks import attempt_execute

    try:
        attempt_execute.apply_async(
            args=[attempt.pk], task_id=attempt.celery_task_id, queue="agents"
        )
    except Exception:  # noqa: BLE001 - the queued-attempt sweep sends it again
        log.exception("could not send attempt %s", attempt.pk)


# -- running ----------------------------------------------------------------------


def attempt_execute(attempt_id: int, *, redelivered: bool = False) -> str:
    """Run one attempt (the body of the Celery task); return what happened.

    ``redelivered``: Celery gave the message back because the worker process running
    it died (``reject_on_worker_lost``). The attempt is then failed as a crash at once
    instead of waiting for TRON to notice its beats stopped; it is never run again.
    """
    attempt = (
        Attempt.objects.select_related("job", "job__run", "job__parent", "agent")
        .filter(pk=attempt_id)
        .first()
    )
    if attempt is None:
        return "missing"
    job = attempt.job
    if job.current_attempt_id != attempt.pk:
        return "stale"  # Fencing: a newer attempt took over; this message is old.
    now = timezone.now()
    started = Attempt.objects.filter(pk=attempt.pk, status=Attempt.Status.QUEUED).update(
        status=Attempt.Status.RUNNING, started_at=now, last_heartbeat_at=now
    )
    if started != 1:
        if redelivered and attempt_fail(attempt, kind="crash", message="worker process lost"):
            return "worker-lost"
        return "not-queued"  # Delivered again, or killed before it ran: never re-run.
    heartbeats.hb_register(attempt.pk, agent_id=attempt.agent_id, job_id=job.pk)
    with transaction.atomic():
        Job.objects.filter(pk=job.pk, current_attempt=attempt).exclude(status__in=TERMINAL).update(
            status=Job.Status.RUNNING, updated_at=now
        )
        agent_status_set(attempt.agent_id, Agent.Status.WORKING)
        Run.objects.filter(pk=job.run_id, status=Run.Status.QUEUED).update(
            status=Run.Status.RUNNING, started_at=now
        )
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
    cfg = hhmrs_get()
    beat = heartbeats.Beater(
        attempt.pk, agent_id=attempt.agent_id, interval_s=cfg.heartbeat_interval_s
    )
    try:
        outcome = _run_step(attempt, beat)
    except AttemptError as exc:
        attempt_fail(attempt, kind=exc.kind, message=exc.message)
        return f"failed:{exc.kind}"
    except Exception as exc:  # noqa: BLE001 - any bug in a step is a crash of the attempt
        log.exception("attempt %s crashed", attempt.pk)
        attempt_fail(attempt, kind="crash", message=f"{exc.__class__.__name__}: {exc}")
        return "failed:crash"
    try:
        return "done" if attempt_finish(attempt, outcome) else "discarded"
    except AttemptError as exc:  # The outcome could not be recorded (e.g. a bad card).
        attempt_fail(attempt, kind=exc.kind, message=exc.message)
        return f"failed:{exc.kind}"


def _run_step(attempt: Attempt, beat: heartbeats.Beater) -> Delegate | Complete:
    from ..llm import faults
    from . import roles

    job = attempt.job
    fault = faults.fault_take(attempt.agent_id, attempt.model)
    if fault:
        event_emit(
            "fault_triggered",
            {
                "agent_id": attempt.agent_id,
                "job_id": job.pk,
                "kind": fault,
                "attempt": attempt.number,
                "message": f"{attempt.agent_id}: injected {fault} (attempt {attempt.number})",
            },
        )
        if fault != "bad_output":
            faults.fault_act(fault, beat)
    ctx = StepContext(
        run=job.run,
        job=job,
        attempt=attempt,
        agent=attempt.agent,
        model=attempt.model,
        beat=beat,
        artifacts_dir=Path(settings.PAS_ARTIFACTS_DIR) / "runs" / str(job.run_id),
        fault=fault if fault == "bad_output" else None,
    )
    beat(0.05, "step started")
    if attempt.phase == Attempt.Phase.AGGREGATE:
        ctx.children = list(job.children.select_related("agent").order_by("created_at", "job_id"))
        return roles.aggregate(ctx)
    return roles.step(ctx)


# -- ending -----------------------------------------------------------------------


def attempt_finish(attempt: Attempt, outcome: Delegate | Complete) -> bool:
    """Record a step's outcome if the attempt is still the winner; return whether it was.

    A fenced-off attempt (no longer the job's current one) ends ``killed`` with its
    result discarded. An AttemptError raised while recording (e.g. a card naming an
    unknown agent) rolls everything back, the attempt still ``running``.
    """
    with transaction.atomic():
        # The job row is locked before the attempt row is written, in the order the
        # supervision services take them: the reverse order can deadlock on PostgreSQL.
        job = (
            Job.objects.select_for_update(of=("self",))
            .select_related("agent", "run", "parent")
            .get(pk=attempt.job_id)
        )
        current = job.current_attempt_id == attempt.pk
        running = Attempt.objects.filter(pk=attempt.pk, status=Attempt.Status.RUNNING)
        if current:
            ended = running.update(
                status=Attempt.Status.SUCCEEDED, finished_at=timezone.now(), progress=1.0
            )
        else:  # Never "succeeded": nothing it produced was recorded.
            ended = running.update(
                status=Attempt.Status.KILLED,
                finished_at=timezone.now(),
                error_kind="killed",
                error="superseded by a newer attempt; its result was discarded",
            )
        if current and ended == 1:
            if isinstance(outcome, Delegate) and outcome.children:
                _delegate(job, attempt, outcome.children)
            else:
                result = outcome.result if isinstance(outcome, Complete) else {}
                job_succeed(job, attempt, result)
    heartbeats.hb_unregister(attempt.pk, job_id=job.pk)
    # Timed out or killed meanwhile, or fenced off: the result is discarded.
    return current and ended == 1


def _delegate(job: Job, attempt: Attempt, children: list[ChildCard]) -> None:
    Job.objects.filter(pk=job.pk).update(status=Job.Status.WAITING, updated_at=timezone.now())
    agents = {
        a.agent_id: a for a in Agent.objects.filter(agent_id__in=[c.agent_id for c in children])
    }
    created = []
    for index, card in enumerate(children):
        agent = agents.get(card.agent_id)
        if agent is None:
            raise AttemptError("bad_output", f"delegated to unknown agent {card.agent_id!r}")
        child_id = child_job_id(job, card, index)
        existing = Job.objects.filter(pk=child_id).first()
        if existing is not None:
            continue  # Already created by an earlier winner of this step (a retry).
        child = job_create(
            run=job.run, agent=agent, card=card.card, job_id=child_id, parent=job, lane=card.lane
        )
        comms.comms_log(
            sender=job.agent_id,
            recipient=agent.agent_id,
            kind="CMD",
            message=f"Job card {child_id}: {str(card.card.get('task', ''))[:200]}",
            llm_model=attempt.model,
            run_id=job.run_id,
            status="queued",
            metadata={"job_id": child_id},
        )
        created.append(child)
    agent_status_set(job.agent_id, Agent.Status.IDLE, only_if_idle_now=True)
    for child in created:
        attempt_dispatch(child)


def job_succeed(job: Job, attempt: Attempt, result: dict[str, Any]) -> None:
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.SUCCEEDED, result=result, error="", finished_at=now, updated_at=now
    )
    agent_status_set(job.agent_id, Agent.Status.IDLE, only_if_idle_now=True)
    state = str(result.get("state", "completed")) if isinstance(result, dict) else "completed"
    event_emit(
        "job_completed",
        {
            "agent_id": job.agent_id,
            "job_id": job.pk,
            "run_id": str(job.run_id),
            "status": "succeeded",
            "state": state,
            "attempt": attempt.number,
        },
    )
    if job.parent is not None:
        comms.comms_log(
            sender=job.agent_id,
            recipient=job.parent.agent_id,
            kind="RESPONSE",
            message=f"{'Report' if attempt.phase == 'aggregate' else 'Result'} {job.pk}: {state}",
            llm_model=attempt.model,
            run_id=job.run_id,
            status=state,
            progress=1.0,
            metadata={"job_id": job.pk},
        )
    job.status = Job.Status.SUCCEEDED
    job.result = result
    job_after_end(job)


def job_after_end(job: Job) -> None:
    """Once a job is terminal: aggregate its parent if every sibling is, or end the run.

    The parent row is locked first: two siblings ending at once both wait on it, and
    the second sees the first one committed, so exactly one of them dispatches.
    """
    if job.parent_id is None:
        run_finish(job.run_id, job)
        return
    parent = (
        Job.objects.select_for_update(of=("self",)).select_related("agent").get(pk=job.parent_id)
    )
    if parent.status != Job.Status.WAITING:
        return
    if Job.objects.filter(parent_id=parent.pk).exclude(status__in=TERMINAL).exists():
        return
    won = Job.objects.filter(pk=parent.pk, status=Job.Status.WAITING).update(
        status=Job.Status.QUEUED
    )
    if won:
        attempt_dispatch(parent, phase=Attempt.Phase.AGGREGATE)


def run_finish(run_id: Any, root: Job) -> None:
    """End a run from its top job's outcome."""
    result = root.result if isinstance(root.result, dict) else {}
    ok = root.status == Job.Status.SUCCEEDED and result.get("state", "completed") == "completed"
    status = Run.Status.COMPLETED if ok else Run.Status.FAILED
    if ok:
        message = "All lanes completed"
    elif result.get("failed_lanes"):
        message = "Lanes failed: " + ", ".join(result["failed_lanes"])
    else:
        message = result.get("message") or root.error or f"Permanently failed: {root.agent_id}"
    now = timezone.now()
    updated = (
        Run.objects.filter(pk=run_id)
        .exclude(status=status)
        .update(status=status, finished_at=now, message=message, summary=result)
    )
    if not updated:
        return
    run = Run.objects.get(pk=run_id)
    event_emit(
        "run_completed" if ok else "run_failed",
        {
            "run_id": str(run_id),
            "status": status,
            "message": message,
            "duration_s": run.duration_s,
            "lanes": result.get("lanes", {}),
        },
    )
    comms.comms_log(
        sender="PAS Root",
        recipient="user",
        kind="STATUS",
        message=f"Run {run.title!r} {status}: {message}",
        run_id=run_id,
        status=status,
        progress=1.0,
    )


def attempt_fail(attempt: Attempt, *, kind: str, message: str) -> bool:
    """Record a failed attempt and hand it to supervision; False if it already ended."""
    with transaction.atomic():
        won = Attempt.objects.filter(pk=attempt.pk, status=Attempt.Status.RUNNING).update(
            status=Attempt.Status.ERRORED,
            error_kind=kind,
            error=message[:4000],
            finished_at=timezone.now(),
        )
        if won != 1:
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
        transaction.on_commit(lambda: _send_failure(attempt.pk))
    heartbeats.hb_unregister(attempt.pk, job_id=attempt.job_id)
    return True


def _send_failure(attempt_id: int) -> None:
    from ..tasks import attempt_failure_handle

    attempt_failure_handle.apply_async(args=[attempt_id], queue="hhmrs")


# -- agent status -----------------------------------------------------------------


def agent_status_set(agent_id: str, status: str, *, only_if_idle_now: bool = False) -> None:
    """Set an agent's display status and announce it; disabled agents stay disabled.

    With ``only_if_idle_now``, an agent that still runs other attempts stays working.
    """
    if only_if_idle_now and status == Agent.Status.IDLE:
        if Attempt.objects.filter(agent_id=agent_id, status=Attempt.Status.RUNNING).exists():
            status = Agent.Status.WORKING
    updated = (
        Agent.objects.filter(agent_id=agent_id, enabled=True)
        .exclude(status=status)
        .update(status=status, updated_at=timezone.now())
    )
    if updated:
        event_emit("agent_status", {"agent_id": agent_id, "status": status})
