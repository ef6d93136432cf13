"""Supervision services: the only code that changes supervision state.

The chain (DESIGN section 5): a timed-out or failed attempt goes to the agent's
**parent**, which restarts the job up to ``max_restarts``; then it escalates to the
**grandparent**, which re-sends the job on the next model of the agent's chain up to
``max_llm_retries``; then the job fails for good, a person is told, and the job waits
in the retry queue. Each handler locks the job row and checks that the failed attempt
is still the job's current one, so a failure is handled once however often it is
reported (two sweeps, a worker-lost signal and TRON, a re-delivered message).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import comms
from ..comms import model_short
from ..config import Hhmrs, hhmrs_get
from ..events import event_emit
from ..models import Agent, Attempt, Job, Notification, Run
from ..runtime.execute import agent_status_set, attempt_dispatch, job_after_end
from . import heartbeats, policy

log = logging.getLogger(__name__)

OPEN = (Job.Status.QUEUED, Job.Status.RUNNING)


def _ids(agent: Agent) -> tuple[str | None, str | None]:
    parent = agent.parent
    return (parent.agent_id if parent else None, parent.parent_id if parent else None)


def attempt_kill(attempt: Attempt) -> None:
    """Kill the attempt's worker child (SIGKILL; prefork replaces it), after commit."""
    task_id = attempt.celery_task_id
    if not task_id:
        return

    def _revoke() -> None:
        from ..celery import app

        try:
            app.control.revoke(task_id, terminate=True, signal="SIGKILL")
        except Exception:  # noqa: BLE001 - the attempt is already fenced off
            log.warning("could not revoke %s", task_id, exc_info=True)

    transaction.on_commit(_revoke)


# -- detection --------------------------------------------------------------------


def attempt_time_out(attempt_id: int, *, now: float, last_beat: float) -> Attempt | None:
    """Time out a running attempt (exactly one caller wins) and emit ``hhmrs_timeout``."""
    with transaction.atomic():
        won = Attempt.objects.filter(pk=attempt_id, status=Attempt.Status.RUNNING).update(
            status=Attempt.Status.TIMED_OUT,
            finished_at=timezone.now(),
            error_kind="timeout",
            error=f"no heartbeat for {now - last_beat:.1f}s",
        )
        if won != 1:
            heartbeats.hb_unregister(attempt_id)  # A stale entry: it ended otherwise.
            return None
        attempt = Attempt.objects.select_related("job", "agent", "agent__parent").get(pk=attempt_id)
        data, line = timeout_notes(attempt, attempt.job, now=now, last_beat=last_beat)
        event_emit("hhmrs_timeout", data)
        comms.comms_log(**line)
        agent_status_set(attempt.agent_id, Agent.Status.TIMED_OUT)
        attempt_kill(attempt)
    heartbeats.hb_unregister(attempt_id, job_id=attempt.job_id)
    return attempt


def timeout_notes(
    attempt: Attempt, job: Job, *, now: float, last_beat: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the ``hhmrs_timeout`` event's data and TRON's comms line for an attempt.

    The line is ``comms_log``'s arguments. The sweep's batch (timeouts.py) writes both
    in bulk; attempt_time_out writes them one by one: one source for their content.
    """
    parent_id, _ = _ids(attempt.agent)
    last_seen = datetime.fromtimestamp(last_beat, tz=UTC)
    data = {
        "agent_id": attempt.agent_id,
        "parent_id": parent_id,
        "job_id": job.pk,
        "run_id": str(job.run_id),
        "restart_count": job.restart_count,
        "last_seen": last_seen.isoformat(),
        "timeout_duration_s": round(now - last_beat, 3),
        "attempt": attempt.number,
        "llm_model": attempt.model,
        "message": f"{attempt.agent_id} missed heartbeats for {now - last_beat:.1f}s",
    }
    line = {
        "sender": "TRON",
        "recipient": parent_id or "PAS Root",
        "kind": "STATUS",
        "message": f"Child timeout: {attempt.agent_id} (restart_count={job.restart_count})",
        "llm_model": attempt.model,
        "run_id": job.run_id,
        "status": "timed_out",
        "metadata": {"job_id": job.pk, "attempt": attempt.number},
    }
    return data, line


# -- the parent: restart or escalate ------------------------------------------------


def attempt_failure_handle(attempt_id: int) -> str:
    """Route an ended attempt (timed out, errored, crashed) by its error kind."""
    cfg = hhmrs_get()
    with transaction.atomic():
        attempt = Attempt.objects.select_related("job").filter(pk=attempt_id).first()
        if attempt is None:
            return "missing"
        job = (
            Job.objects.select_for_update(of=("self",))
            .select_related("agent", "agent__parent")
            .get(pk=attempt.job_id)
        )
        if job.current_attempt_id != attempt.pk or job.status not in OPEN:
            return "handled"  # Someone already acted on this failure.
        if attempt.status in (Attempt.Status.QUEUED, Attempt.Status.RUNNING):
            return "still-running"
        route = policy.route_error(attempt.error_kind or "crash")
        if route == "fail":
            job_fail_permanently(job, reason=attempt.error_kind, cfg=cfg)
            return "failed"
        if (
            route == "restart"
            and policy.child_timeout_decision(job.restart_count, cfg) == "restart"
        ):
            job_restart(job, cfg=cfg, reason=attempt.error_kind or "timeout")
            return "restarted"
        job_escalate(
            job,
            cfg=cfg,
            reason="max_restarts_exceeded" if route == "restart" else attempt.error_kind,
        )
        return "escalated"


def job_restart(
    job: Job, *, cfg: Hhmrs, reason: str, counted: bool = True, by: str = ""
) -> Attempt:
    """Kill what is left of the job's attempt, count the restart, re-send the job."""
    current = job.current_attempt
    if current is not None and current.status in (Attempt.Status.QUEUED, Attempt.Status.RUNNING):
        Attempt.objects.filter(pk=current.pk, status=current.status).update(
            status=Attempt.Status.KILLED, finished_at=timezone.now(), error_kind="killed"
        )
        heartbeats.hb_unregister(current.pk, job_id=job.pk)
        attempt_kill(current)
    count = job.restart_count + (1 if counted else 0)
    Job.objects.filter(pk=job.pk).update(restart_count=count)
    job.restart_count = count
    phase = current.phase if current is not None else Attempt.Phase.STEP
    number = (current.number + 1) if current is not None else 1
    data, line = restart_notes(job, cfg=cfg, reason=reason, number=number, by=by)
    event_emit("hhmrs_restart", data)
    comms.comms_log(**line)
    agent_status_set(job.agent_id, Agent.Status.RESTARTING)
    return attempt_dispatch(job, phase=phase)


def restart_notes(
    job: Job, *, cfg: Hhmrs, reason: str, number: int, by: str = ""
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the ``hhmrs_restart`` event's data and the parent's comms line for a job.

    ``job.restart_count`` already counts this restart; ``number`` is the new attempt's.
    """
    parent_id, _ = _ids(job.agent)
    count = job.restart_count
    data = {
        "agent_id": job.agent_id,
        "parent_id": parent_id,
        "restart_count": count,
        "max_restarts": cfg.max_restarts,
        "job_id": job.pk,
        "run_id": str(job.run_id),
        "reason": reason,
        "by": by or parent_id or "TRON",
        "message": f"Restarting {job.agent_id} (attempt {number})",
    }
    line = {
        "sender": parent_id or "TRON",
        "recipient": job.agent_id,
        "kind": "STATUS",
        "message": f"Restarting {job.agent_id} and re-sending {job.pk} "
        f"(restart {count}/{cfg.max_restarts}, reason {reason})",
        "llm_model": job.agent.current_model,
        "run_id": job.run_id,
        "status": "restarting",
        "metadata": {"job_id": job.pk, "by": by} if by else {"job_id": job.pk},
    }
    return data, line


def job_escalate(job: Job, *, cfg: Hhmrs, reason: str) -> str:
    """Hand the job to the grandparent (or fail it at the top of the tree)."""
    parent_id, grandparent_id = _ids(job.agent)
    if grandparent_id is None:
        job_fail_permanently(job, reason=reason, cfg=cfg)
        return "failed"
    event_emit(
        "hhmrs_escalation",
        {
            "agent_id": job.agent_id,
            "parent_id": parent_id,
            "grandparent_id": grandparent_id,
            "restart_count": job.restart_count,
            "failure_count": job.llm_failure_count,
            "reason": reason,
            "job_id": job.pk,
            "run_id": str(job.run_id),
            "message": f"Escalated {job.agent_id} to {grandparent_id}",
        },
    )
    comms.comms_log(
        sender=parent_id or "",
        recipient=grandparent_id,
        kind="STATUS",
        message=f"Grandchild escalation: {job.agent_id} (failure_count={job.llm_failure_count})",
        llm_model=job.agent.current_model,
        run_id=job.run_id,
        status="escalated",
        metadata={"job_id": job.pk, "reason": reason},
    )
    agent_status_set(job.agent_id, Agent.Status.ESCALATED)
    return grandchild_failure_handle(job, cfg=cfg)


# -- the grandparent: switch the model or fail --------------------------------------


def grandchild_failure_handle(job: Job, *, cfg: Hhmrs) -> str:
    agent = job.agent
    _, grandparent_id = _ids(agent)
    decision = policy.grandchild_failure_decision(
        job.llm_failure_count,
        cfg,
        has_grandparent=grandparent_id is not None,
        models_available=len(agent.model_chain),
    )
    if decision == "fail":
        job_fail_permanently(job, reason="max_llm_retries_exceeded", cfg=cfg)
        return "failed"
    job_switch_model(job, cfg=cfg)
    return "switched"


def agent_switch_model(agent: Agent) -> tuple[str, str]:
    """Move the agent to the next model of its chain; return (old, new)."""
    old = agent.current_model
    new = policy.next_model(agent.model_chain, old)
    Agent.objects.filter(pk=agent.pk).update(current_model=new, updated_at=timezone.now())
    agent.current_model = new
    return old, new


def _switch_announce(
    agent: Agent, *, old: str, new: str, failure_count: int, job: Job | None
) -> None:
    parent_id, grandparent_id = _ids(agent)
    message = (
        f"Retrying {agent.agent_id} with different LLM: {model_short(old)} → {model_short(new)}"
    )
    event_emit(
        "hhmrs_restart",
        {
            "agent_id": agent.agent_id,
            "parent_id": parent_id,
            "grandparent_id": grandparent_id,
            "retry_type": "llm_change",
            "old_llm": old,
            "new_llm": new,
            "failure_count": failure_count,
            "restart_count": 0,
            "job_id": job.pk if job else None,
            "run_id": str(job.run_id) if job else None,
            "message": message,
        },
    )
    comms.comms_log(
        sender=grandparent_id or "PAS Root",
        recipient=agent.agent_id,
        kind="STATUS",
        message=message,
        llm_model=new,
        run_id=job.run_id if job else "",
        status="retrying",
        metadata={"job_id": job.pk} if job else {},
    )


def job_switch_model(job: Job, *, cfg: Hhmrs) -> Attempt:
    """Switch the job's agent to its next model, reset the restarts, re-send the job."""
    agent = job.agent
    current = job.current_attempt
    old_model = current.model if current is not None and current.model else agent.current_model
    agent.current_model = old_model
    old, new = agent_switch_model(agent)
    failures = job.llm_failure_count + 1
    Job.objects.filter(pk=job.pk).update(llm_failure_count=failures, restart_count=0)
    job.llm_failure_count, job.restart_count = failures, 0
    _switch_announce(agent, old=old, new=new, failure_count=failures, job=job)
    agent_status_set(job.agent_id, Agent.Status.RESTARTING)
    phase = current.phase if current is not None else Attempt.Phase.STEP
    return attempt_dispatch(job, phase=phase, model=new)


def job_fail_permanently(job: Job, *, reason: str, cfg: Hhmrs | None = None) -> None:
    """Fail the job for good: it waits in the retry queue and a person is told."""
    parent_id, grandparent_id = _ids(job.agent)
    now = timezone.now()
    message = f"Permanently failed: {job.agent_id} (max failures exceeded)"
    if reason not in ("max_llm_retries_exceeded", "max_restarts_exceeded"):
        message = f"Permanently failed: {job.agent_id} ({reason})"
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.FAILED, retryable=True, error=message, finished_at=now, updated_at=now
    )
    job.status = Job.Status.FAILED
    job.error = message
    event_emit(
        "hhmrs_failure",
        {
            "agent_id": job.agent_id,
            "parent_id": parent_id,
            "grandparent_id": grandparent_id,
            "failure_count": job.llm_failure_count,
            "restart_count": job.restart_count,
            "reason": reason,
            "job_id": job.pk,
            "run_id": str(job.run_id),
            "message": message,
        },
    )
    event_emit(
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
    comms.comms_log(
        sender=grandparent_id or parent_id or "TRON",
        recipient="user",
        kind="STATUS",
        message=message,
        llm_model=job.agent.current_model,
        run_id=job.run_id,
        status="failed",
        metadata={"job_id": job.pk, "reason": reason},
    )
    agent_status_set(job.agent_id, Agent.Status.FAILED)
    notification_create(job, message=message, reason=reason)
    job_after_end(job)


def notification_create(job: Job, *, message: str, reason: str) -> Notification | None:
    """Store a notice for the HMI and deliver it to the webhook and email, if set."""
    from ..config import document_get

    notify = document_get()["notifications"]
    if not notify.get("notify_on_permanent_failure", True):
        return None
    run = job.run
    note = Notification.objects.create(
        title=message,
        body=(
            f"Run {run.title!r} ({run.run_id}): job {job.pk} on {job.agent_id} failed for good "
            f"after {job.restart_count} restarts and {job.llm_failure_count} model switches "
            f"({reason}). It waits in the retry queue."
        ),
        run=run,
        job=job,
        agent_id=job.agent_id,
    )
    if notify.get("webhook_url") or notify.get("email"):
        from ..tasks import notification_deliver

        transaction.on_commit(
            lambda: notification_deliver.apply_async(args=[note.pk], queue="hhmrs")
        )
    event_emit("notification", {"id": note.pk, "title": note.title, "agent_id": job.agent_id})
    return note


# -- the retry queue and operator actions -------------------------------------------


def job_retry(job_id: str, *, model: str | None = None, by: str = "") -> Job:
    """Take a permanently failed job out of the retry queue and run it again.

    Counters reset, the agent goes back to its primary model (or ``model``), and the
    job's ancestors and run reopen so that the run carries on to its end.
    """
    with transaction.atomic():
        job = (
            Job.objects.select_for_update(of=("self",))
            .select_related("agent")
            .filter(pk=job_id)
            .first()
        )
        if job is None:
            raise ValueError(f"job_id: no job {job_id!r}")
        if job.status != Job.Status.FAILED or not job.retryable:
            raise ValueError(f"job_id: {job_id} is not in the retry queue (status {job.status})")
        agent = job.agent
        target = (model or "").strip() or agent.primary_model
        if model and model not in agent.model_chain and "/" not in model:
            raise ValueError("model: must be provider/model (e.g. ollama/llama3.1:8b)")
        Agent.objects.filter(pk=agent.pk).update(current_model=target)
        last = job.current_attempt
        Job.objects.filter(pk=job.pk).update(
            restart_count=0, llm_failure_count=0, retryable=False, error="", finished_at=None
        )
        ancestor = job.parent
        while ancestor is not None:
            Job.objects.filter(pk=ancestor.pk).update(
                status=Job.Status.WAITING, finished_at=None, updated_at=timezone.now()
            )
            ancestor = ancestor.parent
        Run.objects.filter(pk=job.run_id).update(
            status=Run.Status.RUNNING, finished_at=None, message=""
        )
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
        comms.comms_log(
            sender=by or "user",
            recipient=job.agent_id,
            kind="CMD",
            message=f"Retry {job.pk} on {model_short(target)}",
            llm_model=target,
            run_id=job.run_id,
            status="queued",
        )
        agent_status_set(job.agent_id, Agent.Status.IDLE)
        phase = last.phase if last is not None else Attempt.Phase.STEP
        attempt_dispatch(job, phase=phase, model=target)
    job.refresh_from_db()
    return job


def run_retry(run_id: Any, *, by: str = "") -> list[Job]:
    """Retry every job of the run that waits in the retry queue."""
    ids = list(
        Job.objects.filter(run_id=run_id, status=Job.Status.FAILED, retryable=True).values_list(
            "pk", flat=True
        )
    )
    if not Run.objects.filter(pk=run_id).exists():
        raise LookupError(f"run_id: no run {run_id}")
    if not ids:
        raise ValueError("run_id: the run has no job in the retry queue")
    return [job_retry(job_id, by=by) for job_id in ids]


def agent_restart_now(agent_id: str, *, by: str = "") -> dict[str, Any]:
    """An operator's restart: kill and re-send the agent's open jobs (not counted)."""
    cfg = hhmrs_get()
    with transaction.atomic():
        agent = Agent.objects.filter(pk=agent_id).first()
        if agent is None:
            raise ValueError(f"agent_id: no agent {agent_id!r}")
        jobs = list(
            Job.objects.select_for_update(of=("self",))
            .select_related("agent", "agent__parent", "current_attempt")
            .filter(agent=agent, status__in=OPEN)
        )
        for job in jobs:
            job_restart(job, cfg=cfg, reason="operator", counted=False, by=by)
        if not jobs:
            event_emit(
                "hhmrs_restart",
                {
                    "agent_id": agent_id,
                    "parent_id": agent.parent_id,
                    "restart_count": 0,
                    "by": by,
                    "message": f"Successfully restarted {agent_id} (no active task to resend)",
                },
            )
    return {
        "status": "restarted_and_resent" if jobs else "restarted",
        "jobs": [j.pk for j in jobs],
    }


def agent_model_reset(agent_id: str, *, by: str = "") -> Agent:
    agent = Agent.objects.filter(pk=agent_id).first()
    if agent is None:
        raise ValueError(f"agent_id: no agent {agent_id!r}")
    old = agent.current_model
    Agent.objects.filter(pk=agent_id).update(current_model=agent.primary_model)
    agent.current_model = agent.primary_model
    event_emit(
        "agent_model_reset",
        {"agent_id": agent_id, "old_llm": old, "new_llm": agent.primary_model, "by": by},
    )
    return agent


def agent_set_enabled(agent_id: str, enabled: bool, *, by: str = "") -> Agent:
    agent = Agent.objects.filter(pk=agent_id).first()
    if agent is None:
        raise ValueError(f"agent_id: no agent {agent_id!r}")
    status = Agent.Status.IDLE if enabled else Agent.Status.DISABLED
    Agent.objects.filter(pk=agent_id).update(enabled=enabled, status=status)
    agent.enabled, agent.status = enabled, status
    event_emit(
        "agent_status", {"agent_id": agent_id, "status": status, "enabled": enabled, "by": by}
    )
    return agent


# -- the seed's HTTP handlers (DESIGN section 8) -----------------------------------


def handle_child_timeout(parent_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/agents/{parent}/handle_child_timeout``, as the seed shows it.

    With an open job on the child, the job's own counter decides (the server is the
    source of truth); with none, the request's ``restart_count`` does.
    """
    cfg = hhmrs_get()
    child_id = body["child_id"]
    with transaction.atomic():
        parent = Agent.objects.filter(pk=parent_id).first()
        child = Agent.objects.select_related("parent").filter(pk=child_id).first()
        if parent is None:
            raise LookupError(f"agent_id: no agent {parent_id!r}")
        if child is None:
            raise LookupError(f"child_id: no agent {child_id!r}")
        if child.parent_id != parent.pk:
            raise ValueError(f"child_id: {child_id} is not a child of {parent_id}")
        job = (
            Job.objects.select_for_update(of=("self",))
            .select_related("agent", "agent__parent", "current_attempt")
            .filter(agent=child, status__in=OPEN)
            .order_by("created_at")
            .first()
        )
        count = job.restart_count if job is not None else int(body.get("restart_count", 0))
        if policy.child_timeout_decision(count, cfg) == "restart":
            if job is not None:
                job_restart(job, cfg=cfg, reason=str(body.get("reason") or "timeout"))
                return {
                    "status": "restarted_and_resent",
                    "message": f"Restarted {child_id} and re-sent {job.pk}",
                    "restart_count": job.restart_count,
                    "job_card_id": job.pk,
                }
            _jobless_restart(child, parent_id=parent_id, count=count + 1)
            return {
                "status": "restarted",
                "message": f"Successfully restarted {child_id} (no active task to resend)",
                "restart_count": count + 1,
            }
        grandparent_id = parent.parent_id
        if job is not None:
            job_escalate(job, cfg=cfg, reason="max_restarts_exceeded")
        else:
            _jobless_escalate(child, restart_count=count)
        return {
            "status": "escalated",
            "message": f"Escalated {child_id} to {grandparent_id or 'nobody (top of the tree)'}",
            "restart_count": count,
        }


def _jobless_restart(child: Agent, *, parent_id: str, count: int) -> None:
    event_emit(
        "hhmrs_restart",
        {
            "agent_id": child.agent_id,
            "parent_id": parent_id,
            "restart_count": count,
            "job_id": None,
            "message": f"Restarting {child.agent_id} (attempt {count + 1})",
        },
    )
    comms.comms_log(
        sender=parent_id,
        recipient=child.agent_id,
        kind="STATUS",
        message=f"Restarting {child.agent_id} (no active task to resend)",
        llm_model=child.current_model,
        status="restarting",
    )
    agent_status_set(child.agent_id, Agent.Status.IDLE)


def _jobless_escalate(child: Agent, *, restart_count: int) -> None:
    parent_id, grandparent_id = _ids(child)
    event_emit(
        "hhmrs_escalation",
        {
            "agent_id": child.agent_id,
            "parent_id": parent_id,
            "grandparent_id": grandparent_id,
            "restart_count": restart_count,
            "reason": "max_restarts_exceeded",
            "job_id": None,
            "message": f"Escalated {child.agent_id} to {grandparent_id}",
        },
    )
    comms.comms_log(
        sender=parent_id or "",
        recipient=grandparent_id or "",
        kind="STATUS",
        message=f"Grandchild escalation: {child.agent_id} (failure_count=0)",
        llm_model=child.current_model,
        status="escalated",
    )
    if grandparent_id:
        handle_grandchild_failure(
            grandparent_id,
            {"grandchild_id": child.agent_id, "parent_id": parent_id, "failure_count": 0},
        )


def handle_grandchild_failure(grandparent_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/agents/{grandparent}/handle_grandchild_failure``, as the seed shows it."""
    cfg = hhmrs_get()
    grandchild_id = body["grandchild_id"]
    with transaction.atomic():
        if not Agent.objects.filter(pk=grandparent_id).exists():
            raise LookupError(f"agent_id: no agent {grandparent_id!r}")
        agent = Agent.objects.select_related("parent").filter(pk=grandchild_id).first()
        if agent is None:
            raise LookupError(f"grandchild_id: no agent {grandchild_id!r}")
        if agent.parent is None or agent.parent.parent_id != grandparent_id:
            raise ValueError(
                f"grandchild_id: {grandchild_id} is not a grandchild of {grandparent_id}"
            )
        job = (
            Job.objects.select_for_update(of=("self",))
            .select_related("agent", "agent__parent", "current_attempt")
            .filter(agent=agent, status__in=OPEN)
            .order_by("created_at")
            .first()
        )
        if job is not None:
            old = (job.current_attempt.model if job.current_attempt else "") or agent.current_model
            if grandchild_failure_handle(job, cfg=cfg) == "failed":
                return {"status": "permanently_failed", "agent_id": grandchild_id}
            job.agent.refresh_from_db()
            return {
                "status": "retrying_with_different_llm",
                "grandchild_id": grandchild_id,
                "old_llm": old,
                "new_llm": job.agent.current_model,
                "failure_count": job.llm_failure_count,
            }
        failures = int(body.get("failure_count", 0))
        decision = policy.grandchild_failure_decision(
            failures, cfg, has_grandparent=True, models_available=len(agent.model_chain)
        )
        if decision == "fail":
            event_emit(
                "hhmrs_failure",
                {
                    "agent_id": grandchild_id,
                    "parent_id": agent.parent_id,
                    "grandparent_id": grandparent_id,
                    "failure_count": failures,
                    "reason": "max_llm_retries_exceeded",
                    "job_id": None,
                    "run_id": None,
                    "message": f"Permanently failed: {grandchild_id} (max failures exceeded)",
                },
            )
            agent_status_set(grandchild_id, Agent.Status.FAILED)
            return {"status": "permanently_failed", "agent_id": grandchild_id}
        old, new = agent_switch_model(agent)
        _switch_announce(agent, old=old, new=new, failure_count=failures + 1, job=None)
        return {
            "status": "retrying_with_different_llm",
            "grandchild_id": grandchild_id,
            "old_llm": old,
            "new_llm": new,
            "failure_count": failures + 1,
        }
