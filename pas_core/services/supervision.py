"""Supervision: what happens to a job whose attempt timed out or failed (DESIGN 5).

The chain: the agent's **parent** restarts the job up to ``max_restarts``; then it
escalates to the **grandparent**, which re-sends the job on the next model of the
agent's chain up to ``max_llm_retries``; then the job fails for good, a person is
told, and the job waits in the retry queue.

Every entry point takes a list (one item is a list of one) and locks the jobs' rows
first, in pk order, then the attempts' (the order every writer takes them in). A
failure is acted on only while its attempt is still the job's current one, so it is
handled once however often it is reported: two sweeps, a worker-lost signal and TRON,
a message delivered twice.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .. import dispatch, policy
from ..config import Hhmrs, hhmrs_get
from ..models import Agent, Attempt, Job, Run
from ..stores import heartbeats
from .agents import agent_switch_model, agents_status_set
from .attempts import attempts_create
from .jobs import job_after_end
from .notes import (
    Notes,
    chain_ids,
    escalation_note,
    failure_note,
    failure_text,
    restart_note,
    silence,
    switch_note,
    timeout_note,
)
from .notifications import notification_create
from .transitions import attempts_move, job_move

OPEN = (Job.Status.QUEUED, Job.Status.RUNNING)
LIVE = (Attempt.Status.QUEUED, Attempt.Status.RUNNING)


def jobs_locked(pks: Iterable[str]) -> dict[str, Job]:
    rows = (
        Job.objects.select_for_update(of=("self",))
        .select_related("agent", "agent__parent", "current_attempt")
        .filter(pk__in=set(pks))
        .order_by("pk")
    )
    return {job.pk: job for job in rows}


# -- detection --------------------------------------------------------------------


def attempts_time_out(overdue: Sequence[tuple[int, float]], *, now: float, cfg: Hhmrs) -> int:
    """Time out the overdue attempts still running and recover their jobs; return how many.

    ``overdue`` holds ``(attempt id, last beat)``. Each attempt that wins its move to
    ``timed_out`` gets its ``hhmrs_timeout``; each job whose current attempt it was is
    restarted by its parent or escalated. Every id leaves the heartbeat store: won or
    stale (ended some other way), none of them is supervised any more.
    """
    last = dict(overdue)
    with transaction.atomic():
        running = Attempt.objects.filter(pk__in=last, status=Attempt.Status.RUNNING)
        jobs = jobs_locked(running.values_list("job_id", flat=True))
        quiet = defaultdict(list)
        for pk in sorted(last):
            quiet[f"no heartbeat for {silence(now - last[pk])}"].append(pk)
        won: list[int] = []
        for text, pks in quiet.items():
            won += attempts_move(
                pks,
                to=Attempt.Status.TIMED_OUT,
                where={"job_id__in": list(jobs)},
                finished_at=timezone.now(),
                error_kind="timeout",
                error=text,
            )
        attempts = list(Attempt.objects.filter(pk__in=won).order_by("pk"))
        notes, restarts, escalations = Notes(), [], []
        for attempt in attempts:
            job = jobs[attempt.job_id]
            attempt.job, attempt.agent = job, job.agent
            if job.current_attempt_id == attempt.pk:
                job.current_attempt = attempt  # Timed out now: nothing left to kill.
            notes.add(
                "hhmrs_timeout", timeout_note(attempt, job, now=now, last_beat=last[attempt.pk])
            )
            if job.current_attempt_id != attempt.pk or job.status not in OPEN:
                continue  # Fenced off: the job moved on without this attempt.
            if policy.child_timeout_decision(job.restart_count, cfg) == "restart":
                restarts.append((job, "timeout"))
            else:
                escalations.append(job)
        notes.save()
        agents_status_set([a.agent_id for a in attempts], Agent.Status.TIMED_OUT)
        dispatch.attempts_kill([a.pk for a in attempts])
        jobs_restart(restarts, cfg=cfg)
        for job in escalations:  # Rare, and each its own story (switch or fail).
            job_escalate(job, cfg=cfg, reason="max_restarts_exceeded")
    heartbeats.hb_unregister_many(list(last))
    return len(attempts)


def attempts_failure_handle(attempt_ids: Sequence[int]) -> dict[int, str]:
    """Route ended attempts (errored, crashed, timed out) by error kind; say what happened.

    Answers per attempt: ``restarted``, ``escalated``, ``failed``; ``handled`` when the
    job already moved on; ``still-running``; ``missing``.
    """
    cfg = hhmrs_get()
    out = dict.fromkeys(attempt_ids, "missing")
    with transaction.atomic():
        attempts = {a.pk: a for a in Attempt.objects.filter(pk__in=attempt_ids)}
        jobs = jobs_locked(a.job_id for a in attempts.values())
        restarts: list[tuple[Job, str]] = []
        for attempt in attempts.values():
            job = jobs[attempt.job_id]
            if job.current_attempt_id != attempt.pk or job.status not in OPEN:
                out[attempt.pk] = "handled"  # Someone already acted on this failure.
            elif attempt.status in LIVE:
                out[attempt.pk] = "still-running"
            else:
                out[attempt.pk] = route_failure(job, attempt.error_kind or "crash", cfg, restarts)
        jobs_restart(restarts, cfg=cfg)
    return out


def route_failure(job: Job, kind: str, cfg: Hhmrs, restarts: list[tuple[Job, str]]) -> str:
    route = policy.route_error(kind)
    if route == "fail":
        job_fail_permanently(job, reason=kind)
        return "failed"
    if route == "restart" and policy.child_timeout_decision(job.restart_count, cfg) == "restart":
        restarts.append((job, kind))
        return "restarted"
    reason = "max_restarts_exceeded" if route == "restart" else kind
    return "failed" if job_escalate(job, cfg=cfg, reason=reason) == "failed" else "escalated"


# -- the parent: restart ------------------------------------------------------------


def jobs_restart(
    items: Sequence[tuple[Job, str]], *, cfg: Hhmrs, counted: bool = True, by: str = ""
) -> list[Attempt]:
    """Kill what is left of each job's attempt, count the restart, re-send the job.

    ``items`` holds ``(job, reason)``; the jobs are locked by the caller. An operator's
    restart is not ``counted`` against the job's budget.
    """
    if not items:
        return []
    jobs = [job for job, _ in items]
    live = [
        j.current_attempt for j in jobs if j.current_attempt and j.current_attempt.status in LIVE
    ]
    killed = attempts_move(
        [a.pk for a in live],
        to=Attempt.Status.KILLED,
        error_kind="killed",
        error="restarted",
        finished_at=timezone.now(),
    )
    heartbeats.hb_unregister_many(killed)
    dispatch.attempts_kill(killed)
    if counted:
        Job.objects.filter(pk__in=[j.pk for j in jobs]).update(restart_count=F("restart_count") + 1)
        for job in jobs:
            job.restart_count += 1
    delays = {job.pk: _delay(job, reason, cfg) if counted else 0.0 for job, reason in items}
    fresh = attempts_create(
        [
            (j, j.current_attempt.phase if j.current_attempt else Attempt.Phase.STEP, None)
            for j in jobs
        ],
        delays=delays,
    )
    numbers = {a.job_id: a.number for a in fresh}
    notes = Notes()
    for job, reason in items:
        if job.pk in numbers:
            number, delay = numbers[job.pk], delays[job.pk]
            note = restart_note(job, cfg=cfg, reason=reason, number=number, by=by, delay_s=delay)
            notes.add("hhmrs_restart", note)
    notes.save()
    agents_status_set([j.agent_id for j in jobs if j.pk in numbers], Agent.Status.RESTARTING)
    return fresh


def _delay(job: Job, reason: str, cfg: Hhmrs) -> float:
    """How long this restart of ``job`` waits (policy.restart_delay; jitter drawn here)."""
    attempt = job.current_attempt
    return policy.restart_delay(
        reason,
        job.restart_count,
        cfg,
        retry_after_s=attempt.retry_after_s if attempt is not None else None,
        jitter=random.uniform(-1.0, 1.0),
    )


# -- the grandparent: switch the model or fail --------------------------------------


def job_escalate(job: Job, *, cfg: Hhmrs, reason: str) -> str:
    """Hand the job to the grandparent, which switches its model or fails it for good.

    Return ``switched`` or ``failed``. The top of the tree has no grandparent: it fails.
    """
    _, grandparent_id = chain_ids(job.agent)
    if grandparent_id is None:
        job_fail_permanently(job, reason=reason)
        return "failed"
    notes = Notes()
    note = escalation_note(
        job.agent,
        job=job,
        restart_count=job.restart_count,
        failure_count=job.llm_failure_count,
        reason=reason,
    )
    notes.add("hhmrs_escalation", note)
    notes.save()
    agents_status_set([job.agent_id], Agent.Status.ESCALATED)
    return job_switch_or_fail(job, cfg=cfg)


def job_switch_or_fail(job: Job, *, cfg: Hhmrs) -> str:
    """The grandparent's choice for an escalated job: its next model, or the end."""
    decision = policy.grandchild_failure_decision(
        job.llm_failure_count,
        cfg,
        has_grandparent=chain_ids(job.agent)[1] is not None,
        models_available=len(job.agent.model_chain),
    )
    if decision == "fail":
        job_fail_permanently(job, reason="max_llm_retries_exceeded")
        return "failed"
    job_switch_model(job, cfg=cfg)
    return "switched"


def job_switch_model(job: Job, *, cfg: Hhmrs) -> Attempt:
    """Switch the job's agent to its next model, reset the restarts, re-send the job."""
    agent = job.agent
    current = job.current_attempt
    old, new = agent_switch_model(agent, old=(current.model if current else "") or None)
    failures = job.llm_failure_count + 1
    Job.objects.filter(pk=job.pk).update(llm_failure_count=failures, restart_count=0)
    job.llm_failure_count, job.restart_count = failures, 0
    notes = Notes()
    notes.add(
        "hhmrs_restart", switch_note(agent, old=old, new=new, failure_count=failures, job=job)
    )
    notes.save()
    agents_status_set([job.agent_id], Agent.Status.RESTARTING)
    phase = current.phase if current is not None else Attempt.Phase.STEP
    return attempts_create([(job, phase, new)])[0]


def last_error(job: Job) -> str:
    """Return what went wrong on the job's last attempt, as its row recorded it."""
    attempt = job.current_attempt
    if attempt is None:
        return ""
    return attempt.error or attempt.error_kind


def job_fail_permanently(job: Job, *, reason: str, notify: bool = True) -> None:
    """Fail the job for good: it waits in the retry queue and a person is told.

    ``reason`` is the rung that gave up; the job's error, its event, the comms line
    and the notification all carry the real last error of its last attempt.
    """
    error = last_error(job)
    message = failure_text(job.agent_id, reason=reason, last_error=error)
    if not job_move(
        job.pk, to=Job.Status.FAILED, retryable=True, error=message, finished_at=timezone.now()
    ):
        return
    job.status, job.error = Job.Status.FAILED, message
    if reason == "storage":
        # The machine's disk, not the work: the run says so, not "lanes failed".
        Run.objects.filter(pk=job.run_id, stop_reason="").update(stop_reason=f"Disk: {error}"[:200])
    notes = Notes()
    notes.add(
        "hhmrs_failure",
        failure_note(
            job.agent,
            job=job,
            reason=reason,
            last_error=error,
            failure_count=job.llm_failure_count,
            restart_count=job.restart_count,
        ),
    )
    notes.event(
        "job_failed",
        {
            "agent_id": job.agent_id,
            "job_id": job.pk,
            "run_id": str(job.run_id),
            "status": "failed",
            "retryable": True,
            "message": message,
        },
    )
    notes.save()
    agents_status_set([job.agent_id], Agent.Status.FAILED)
    if notify:
        notification_create(job, message=message, reason=reason, last_error=error)
    job_after_end(job)
