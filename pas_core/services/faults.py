"""Fault injection: make the next N attempts of an agent misbehave, on purpose.

For demos, tests and rehearsals of supervision. A fault sits in front of the step (and
so in front of both the offline planner and live models): the worker takes one unit
with :func:`fault_take` when an attempt starts and acts it out
(``pas_core.runtime.faults``).

- ``hang``: stop beating and never return (TRON must catch it).
- ``crash``: the worker process dies on the spot (exit status 70).
- ``error``: the attempt fails with error kind ``error``.
- ``slow``: about 3 s of slow work, beating all along, then the normal step.
- ``bad_output``: the step runs, but its LLM reply is garbage, so it fails ``bad_output``.
- ``failing_output`` (Programmers only): the step runs, but its change gets a failing
  test (on a repository) or a file that no longer parses (in an artifacts folder), so
  its checks fail and the job is restarted with the failure as feedback.
"""

from __future__ import annotations

from typing import Any

from django.db.models import F, Q

from ..errors import NotFound, ServiceError
from ..models import Agent, Fault, Role
from ..stores import statements
from ..stores.comms import model_short
from ..stores.events import event_emit

MAX_COUNT = 100


def fault_inject(agent_id: str, kind: str, count: int = 1, model: str = "", by: str = "") -> Fault:
    """Arm a fault for the next ``count`` attempts of an agent (only on ``model`` if given).

    Raises ServiceError naming the field (``kind``, ``count``, ``model``; NotFound for
    ``agent_id``) when an argument is invalid.
    """
    if kind not in Fault.Kind.values:
        kinds = ", ".join(Fault.Kind.values)
        raise ServiceError("kind", f"must be one of {kinds}, not {kind!r}", status=422)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise ServiceError(
            "count", f"must be a whole number from 1 to {MAX_COUNT}, not {count!r}", status=422
        )
    model = (model or "").strip()
    if len(model) > 128:
        raise ServiceError("model", "at most 128 characters", status=422)
    role = Agent.objects.filter(agent_id=agent_id).values_list("role", flat=True).first()
    if role is None:
        raise NotFound("agent_id", f"no agent {agent_id!r}")
    if kind == Fault.Kind.FAILING_OUTPUT and role != Role.PROGRAMMER:
        raise ServiceError(
            "kind",
            f"failing_output applies to Programmers (their checked changes), not a {role}",
            status=422,
        )
    fault = Fault.objects.create(
        agent_id=agent_id, kind=kind, remaining=count, model=model, created_by=by[:150]
    )
    event_emit(
        "fault_injected",
        {
            "agent_id": agent_id,
            "kind": kind,
            "count": count,
            "model": model,
            "by": by,
            "fault_id": fault.pk,
            "message": f"Injected {kind} x{count} into {agent_id}"
            + (f" (only on {model})" if model else ""),
        },
    )
    return fault


def fault_take(agent_id: str, model: str) -> str | None:
    """Consume one unit of the oldest fault that applies; return its kind, or None.

    A fault with a model applies only to attempts on that model (its full id or the id
    without the provider). Two workers never take the same unit: the decrement is a
    conditional update that only one of them wins; the loser tries the next fault.
    """
    # Every step asks, and faults are rare: first the cheapest question, any armed?
    if not statements.rows_exist(Fault, equal={"agent": agent_id}, extra="{table}.remaining > 0"):
        return None
    applies = Q(model="") | Q(model=model)
    if model:
        applies |= Q(model=model_short(model))
    candidates = Fault.objects.filter(applies, agent_id=agent_id, remaining__gt=0).order_by(
        "created_at", "id"
    )
    for fault_id, kind in candidates.values_list("id", "kind"):
        taken = Fault.objects.filter(pk=fault_id, remaining__gt=0).update(
            remaining=F("remaining") - 1
        )
        if taken == 1:
            return str(kind)
    return None


def faults_clear(agent_id: str, by: str = "") -> int:
    """Disarm every fault of an agent; return how many rows were removed."""
    deleted, _ = Fault.objects.filter(agent_id=agent_id).delete()
    if deleted:
        event_emit(
            "faults_cleared",
            {"agent_id": agent_id, "count": deleted, "by": by},
        )
    return deleted


def faults_pending(agent_id: str | None = None) -> list[Fault]:
    """Return the faults still armed (all agents when ``agent_id`` is None), oldest first."""
    qs = Fault.objects.filter(remaining__gt=0)
    if agent_id is not None:
        qs = qs.filter(agent_id=agent_id)
    return list(qs.order_by("created_at", "id"))


def fault_as_dict(fault: Fault) -> dict[str, Any]:
    return {
        "id": fault.pk,
        "agent_id": fault.agent_id,
        "kind": fault.kind,
        "remaining": fault.remaining,
        "model": fault.model,
        "created_by": fault.created_by,
        "created_at": fault.created_at.isoformat() if fault.created_at else None,
    }
