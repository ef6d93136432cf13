"""Jobs: created from cards, ended by their current attempt, rolled up by their parent.

A step delegates (the job waits for its children) or completes (the job succeeds).
When every child of a waiting job has ended, exactly one of them sends the parent's
aggregate step; when the top job ends, the run ends.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from django.db import transaction
from django.utils import timezone

from ..errors import AttemptError
from ..models import Agent, Attempt, Job, Run
from ..stores import heartbeats, statements
from ..stores.comms import comms_log, comms_log_many
from ..stores.events import event_emit
from .agents import agents_status_set
from .attempts import attempts_create
from .runs import run_finish
from .transitions import attempt_move, job_move

TERMINAL = [s.value for s in Job.TERMINAL]
# A job not ended yet (``statements.rows_exist``); the statuses are the model's constants.
_OPEN = "NOT ({table}.status IN (" + ", ".join(f"'{s}'" for s in TERMINAL) + "))"


class ChildCard(NamedTuple):
    """A job card for one child agent; ``job_delegate`` gives it its job id."""

    agent_id: str
    card: dict[str, Any]
    lane: str = ""


def child_job_id(parent: Job, agent_id: str, lane: str, index: int) -> str:
    """Return a readable id that is unique by construction (no counting, no races).

    ``jc-<run8>-architect`` for the Architect, ``jc-<run8>-code`` for a lane's Director,
    then ``-m1`` for its first Manager job and ``-m1-p2`` for that Manager's second
    Programmer job.
    """
    run8 = str(parent.run_id)[:8]
    role = parent.agent.role
    if role == "root":
        return f"jc-{run8}-{agent_id.lower().replace(' ', '-')}"
    if role == "architect":
        return f"jc-{run8}-{(lane or agent_id).lower()}"
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


def attempt_finish(
    attempt: Attempt,
    *,
    children: list[ChildCard] | None = None,
    result: dict[str, Any] | None = None,
) -> bool:
    """Record a step's outcome if the attempt still wins; return whether it did.

    ``children`` delegates; else ``result`` completes
    the job. A fenced-off attempt (no longer the job's current one) ends ``killed``
    with its outcome discarded. An AttemptError raised while recording (e.g. a card
    naming an unknown agent) rolls everything back, the attempt still ``running``.
    """
    with transaction.atomic():
        # The job row is locked before the attempt row is written, in the order the
        # supervision services take them: the reverse order can deadlock on PostgreSQL.
        # Only the fencing column is read again: the job, its run and parent came with
        # the attempt, and nothing else of them changes while an attempt runs.
        locked = statements.row_values(Job, ["current_attempt"], attempt.job_id, lock=True)
        if locked is None:
            raise Job.DoesNotExist(f"job {attempt.job_id} is gone")
        (current_id,) = locked
        job = attempt.job
        job.current_attempt_id, job.agent = current_id, attempt.agent
        current = current_id == attempt.pk
        now = timezone.now()
        if current:
            won = attempt_move(
                attempt.pk, to=Attempt.Status.SUCCEEDED, finished_at=now, progress=1.0
            )
        else:  # Never "succeeded": nothing it produced was recorded.
            won = attempt_move(
                attempt.pk,
                to=Attempt.Status.KILLED,
                finished_at=now,
                error_kind="killed",
                error="superseded by a newer attempt; its result was discarded",
            )
        if current and won:
            if children:
                job_delegate(job, attempt, children)
            else:
                job_succeed(job, attempt, result or {})
    heartbeats.hb_unregister_after_end(attempt.pk)
    # Timed out or killed meanwhile, or fenced off: the outcome is discarded.
    return current and won


def job_delegate(job: Job, attempt: Attempt, children: list[ChildCard]) -> None:
    """Make the job wait for new child jobs, and send each child its first attempt."""
    job_move(job.pk, to=Job.Status.WAITING)
    agents = {
        agent_id: (lane, model)
        for agent_id, lane, model in statements.rows_values(
            Agent,
            ["agent_id", "lane", "current_model"],
            equal={"pk": {agent_id for agent_id, _, _ in children}},
        )
    }
    ids = [child_job_id(job, a, lane, i) for i, (a, _, lane) in enumerate(children)]
    # Already created by an earlier winner of this step (a retry): left as they are.
    existing = {pk for (pk,) in statements.rows_values(Job, ["pk"], equal={"pk": set(ids)})}
    fresh: list[Job] = []
    lines = []
    for child_id, (agent_id, card, lane) in zip(ids, children, strict=True):
        if agent_id not in agents:
            raise AttemptError("bad_output", f"delegated to unknown agent {agent_id!r}")
        if child_id in existing:
            continue
        fresh.append(
            Job(
                job_id=child_id,
                run=job.run,
                agent_id=agent_id,
                card={**card, "id": child_id, "run_id": str(job.run_id)},
                parent=job,
                lane=lane or agents[agent_id][0],
            )
        )
        lines.append(
            {
                "sender": job.agent_id,
                "recipient": agent_id,
                "kind": "CMD",
                "message": f"Job card {child_id}: {str(card.get('task', ''))[:200]}",
                "llm_model": attempt.model,
                "run_id": job.run_id,
                "status": "queued",
                "metadata": {"job_id": child_id},
            }
        )
    created = statements.rows_insert(fresh)  # One statement for every child.
    comms_log_many(lines)
    agents_status_set([job.agent_id], Agent.Status.IDLE, unless_busy=True)
    # Rows this transaction just inserted: no other writer can see them, let alone lock.
    attempts_create(
        [(child, Attempt.Phase.STEP, agents[child.agent_id][1]) for child in created],
        locked=True,
        new=True,
    )


def job_succeed(job: Job, attempt: Attempt, result: dict[str, Any]) -> None:
    now = timezone.now()
    job_move(job.pk, to=Job.Status.SUCCEEDED, result=result, error="", finished_at=now)
    agents_status_set([job.agent_id], Agent.Status.IDLE, unless_busy=True)
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
    parent = _parent_lock(job.parent_id) if job.parent_id else None
    if parent is not None:
        comms_log(
            sender=job.agent_id,
            recipient=parent.agent_id,
            kind="RESPONSE",
            message=f"{'Report' if attempt.phase == 'aggregate' else 'Result'} {job.pk}: {state}",
            llm_model=attempt.model,
            run_id=job.run_id,
            status=state,
            progress=1.0,
            metadata={"job_id": job.pk},
        )
    job.status, job.result = Job.Status.SUCCEEDED, result
    job_after_end(job, parent=parent)


def _parent_lock(parent_id: str) -> Job:
    """Lock and return a parent job, with its agent."""
    parent = statements.row_with_related(Job, parent_id, ["agent"], lock=True)
    if parent is None:
        raise Job.DoesNotExist(f"job {parent_id} is gone")
    return parent


def job_after_end(job: Job, *, parent: Job | None = None) -> None:
    """Once a job has ended: aggregate its parent if every sibling has, or end the run.

    The parent row is locked first: two siblings ending at once both wait on it, and
    the second sees the first one committed, so exactly one of them sends it.
    ``parent``: locked already by the caller (``_parent_lock``) in this transaction.
    """
    if job.parent_id is None:
        run_finish(job.run_id, job)
        return
    parent = parent or _parent_lock(job.parent_id)
    if parent.status != Job.Status.WAITING:
        return
    if statements.rows_exist(Job, equal={"parent": parent.pk}, extra=_OPEN):
        return
    attempts_create([(parent, Attempt.Phase.AGGREGATE, None)], locked=True)
