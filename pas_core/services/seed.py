"""The seed's two supervision handlers, as its curl examples call them (DESIGN 8).

``child_timeout_handle``: a parent told that its child timed out restarts it or
escalates. ``grandchild_failure_handle``: a grandparent told of an escalation switches
the grandchild's model or fails it for good.

With an open job on the child, the job's own counters decide (the server is the source
of truth) and the job is really restarted, re-sent, switched or failed. With none, the
agent's own counters decide (``Agent.restart_count``, ``Agent.llm_failure_count``):
they grow and start over like a job's, never below what the caller reports, so a
caller that keeps reporting 0 is still escalated after ``max_restarts`` restarts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.db import transaction

from .. import policy
from ..config import Hhmrs, hhmrs_get
from ..errors import NotFound, ServiceError
from ..models import Agent, Job
from .agents import agent_get, agent_switch_model, agents_status_set
from .notes import (
    Notes,
    chain_ids,
    escalation_note,
    failure_note,
    jobless_restart_note,
    switch_note,
)
from .supervision import OPEN, job_escalate, job_switch_or_fail, jobs_restart


@dataclass(frozen=True)
class ChildTimeoutAnswer:
    status: str  # restarted, restarted_and_resent, escalated
    message: str
    restart_count: int  # The new count; on escalation, the count that decided.
    job_card_id: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class GrandchildFailureAnswer:
    status: str  # retrying_with_different_llm, permanently_failed
    agent_id: str
    old_llm: str = ""
    new_llm: str = ""
    failure_count: int = 0

    def as_dict(self) -> dict[str, object]:
        if self.status == "permanently_failed":
            return {"status": self.status, "agent_id": self.agent_id}
        return {
            "status": self.status,
            "grandchild_id": self.agent_id,
            "old_llm": self.old_llm,
            "new_llm": self.new_llm,
            "failure_count": self.failure_count,
        }


def _open_job(agent: Agent) -> Job | None:
    return (
        Job.objects.select_for_update(of=("self",))
        .select_related("agent", "agent__parent", "current_attempt")
        .filter(agent=agent, status__in=OPEN)
        .order_by("created_at")
        .first()
    )


def child_timeout_handle(
    *, parent_id: str, child_id: str, reason: str = "timeout", restart_count: int = 0
) -> ChildTimeoutAnswer:
    """The parent's answer to a child's timeout: restart it, or escalate."""
    cfg = hhmrs_get()
    with transaction.atomic():
        parent = agent_get(parent_id)
        child = Agent.objects.select_related("parent").filter(pk=child_id).first()
        if child is None:
            raise NotFound("child_id", f"no agent {child_id!r}")
        if child.parent_id != parent.pk:
            raise ServiceError("child_id", f"{child_id} is not a child of {parent_id}")
        job = _open_job(child)
        if job is not None:
            return _job_timeout(job, cfg=cfg, reason=reason)
        count = max(restart_count, child.restart_count)
        if policy.child_timeout_decision(count, cfg) == "restart":
            Agent.objects.filter(pk=child.pk).update(restart_count=count + 1)
            notes = Notes()
            notes.add("hhmrs_restart", jobless_restart_note(child, count=count + 1))
            notes.save()
            agents_status_set([child.agent_id], Agent.Status.IDLE)
            return ChildTimeoutAnswer(
                "restarted",
                f"Successfully restarted {child_id} (no active task to resend)",
                count + 1,
            )
        _jobless_escalate(child, restart_count=count, cfg=cfg)
        return ChildTimeoutAnswer(
            "escalated",
            f"Escalated {child_id} to {parent.parent_id or 'nobody (top of the tree)'}",
            count,
        )


def _job_timeout(job: Job, *, cfg: Hhmrs, reason: str) -> ChildTimeoutAnswer:
    if policy.child_timeout_decision(job.restart_count, cfg) == "restart":
        jobs_restart([(job, reason or "timeout")], cfg=cfg)
        return ChildTimeoutAnswer(
            "restarted_and_resent",
            f"Restarted {job.agent_id} and re-sent {job.pk}",
            job.restart_count,
            job.pk,
        )
    count = job.restart_count
    job_escalate(job, cfg=cfg, reason="max_restarts_exceeded")
    _, grandparent_id = chain_ids(job.agent)
    return ChildTimeoutAnswer(
        "escalated",
        f"Escalated {job.agent_id} to {grandparent_id or 'nobody (top of the tree)'}",
        count,
    )


def _jobless_escalate(child: Agent, *, restart_count: int, cfg: Hhmrs) -> None:
    notes = Notes()
    note = escalation_note(
        child,
        job=None,
        restart_count=restart_count,
        failure_count=child.llm_failure_count,
        reason="max_restarts_exceeded",
    )
    notes.add("hhmrs_escalation", note)
    notes.save()
    agents_status_set([child.agent_id], Agent.Status.ESCALATED)
    if chain_ids(child)[1] is not None:
        _jobless_switch_or_fail(child, failure_count=child.llm_failure_count, cfg=cfg)


def grandchild_failure_handle(
    *, grandparent_id: str, grandchild_id: str, failure_count: int = 0
) -> GrandchildFailureAnswer:
    """The grandparent's answer to an escalation: another model, or a permanent failure."""
    cfg = hhmrs_get()
    with transaction.atomic():
        agent_get(grandparent_id)
        agent = Agent.objects.select_related("parent").filter(pk=grandchild_id).first()
        if agent is None:
            raise NotFound("grandchild_id", f"no agent {grandchild_id!r}")
        if agent.parent is None or agent.parent.parent_id != grandparent_id:
            raise ServiceError(
                "grandchild_id", f"{grandchild_id} is not a grandchild of {grandparent_id}"
            )
        job = _open_job(agent)
        if job is None:
            failures = max(failure_count, agent.llm_failure_count)
            return _jobless_switch_or_fail(agent, failure_count=failures, cfg=cfg)
        current = job.current_attempt
        old = (current.model if current else "") or agent.current_model
        if job_switch_or_fail(job, cfg=cfg) == "failed":
            return GrandchildFailureAnswer("permanently_failed", grandchild_id)
        return GrandchildFailureAnswer(
            "retrying_with_different_llm",
            grandchild_id,
            old,
            job.agent.current_model,
            job.llm_failure_count,
        )


def _jobless_switch_or_fail(
    agent: Agent, *, failure_count: int, cfg: Hhmrs
) -> GrandchildFailureAnswer:
    decision = policy.grandchild_failure_decision(
        failure_count, cfg, has_grandparent=True, models_available=len(agent.model_chain)
    )
    notes = Notes()
    if decision == "fail":
        note = failure_note(
            agent,
            job=None,
            reason="max_llm_retries_exceeded",
            last_error="",
            failure_count=failure_count,
            restart_count=agent.restart_count,
        )
        notes.add("hhmrs_failure", note)
        notes.save()
        agents_status_set([agent.agent_id], Agent.Status.FAILED)
        return GrandchildFailureAnswer("permanently_failed", agent.agent_id)
    old, new = agent_switch_model(agent)
    Agent.objects.filter(pk=agent.pk).update(llm_failure_count=failure_count + 1)
    agent.llm_failure_count = failure_count + 1
    note = switch_note(agent, old=old, new=new, failure_count=failure_count + 1, job=None)
    notes.add("hhmrs_restart", note)
    notes.save()
    agents_status_set([agent.agent_id], Agent.Status.IDLE)
    return GrandchildFailureAnswer(
        "retrying_with_different_llm", agent.agent_id, old, new, failure_count + 1
    )
