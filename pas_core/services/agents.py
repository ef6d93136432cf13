"""Agents: their display status, their current model, and the operator's switches."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection
from django.utils import timezone

from .. import policy
from ..errors import NotFound, ServiceError
from ..models import Agent, Attempt, Provider
from ..stores import statements
from ..stores.events import event_emit, events_emit


def agents_status_set(agent_ids: Iterable[str], status: str, *, unless_busy: bool = False) -> None:
    """Set agents' display status and announce each change; disabled agents stay disabled.

    With ``unless_busy``, an agent that still runs another attempt reads ``working``
    instead (set ``idle`` when one of its jobs ends while another still runs).
    """
    ids = list(dict.fromkeys(agent_ids))
    if not ids:
        return
    if len(ids) == 1:
        # Every step does this twice: a conditional update or two, no reads.
        if not (unless_busy and status == Agent.Status.IDLE):
            _one_status_set(ids[0], status)
        elif not _one_status_set(ids[0], status, busy=False):
            _one_status_set(ids[0], Agent.Status.WORKING, busy=True)
        return
    targets = dict.fromkeys(ids, status)
    if unless_busy and status == Agent.Status.IDLE:
        busy = Attempt.objects.filter(agent_id__in=ids, status=Attempt.Status.RUNNING)
        for agent_id in busy.order_by().values_list("agent_id", flat=True):
            targets[agent_id] = Agent.Status.WORKING
    changed: set[str] = set()
    for target in set(targets.values()):
        group = [a for a, s in targets.items() if s == target]
        rows = (
            Agent.objects.filter(agent_id__in=group, enabled=True).exclude(status=target).order_by()
        )
        moved = list(rows.values_list("agent_id", flat=True))
        if moved:
            Agent.objects.filter(agent_id__in=moved).update(
                status=target, updated_at=timezone.now()
            )
            changed.update(moved)
    events_emit(
        [("agent_status", {"agent_id": a, "status": targets[a]}) for a in ids if a in changed]
    )


def _one_status_set(agent_id: str, status: str, *, busy: bool | None = None) -> bool:
    """Set one agent's status unless it has it (and, with ``busy``, only if the agent
    runs an attempt, or only if it runs none); return whether it changed.

    A statement built once (``stores.statements``): every step does this twice.
    """
    extra = ""
    if busy is not None:
        extra = ("" if busy else "NOT ") + _running_test()
    moved = statements.rows_update(
        Agent,
        {"status": status, "updated_at": timezone.now()},
        equal={"pk": agent_id, "enabled": True},
        differ={"status": status},
        extra=extra,
        extra_params=[Attempt.Status.RUNNING] if extra else [],
    )
    if not moved:
        return False
    event_emit("agent_status", {"agent_id": agent_id, "status": status})
    return True


def _running_test() -> str:
    """SQL: the agent row (``{table}``) has a running attempt (one parameter: the status)."""
    quote, attempts = connection.ops.quote_name, Attempt._meta.db_table
    agent = statements.field_of(Attempt, "agent").column
    return (
        f"EXISTS (SELECT 1 FROM {quote(attempts)} WHERE {quote(attempts)}.{quote(agent)}"
        f" = {{table}}.{quote(Agent._meta.pk.column)} AND {quote(attempts)}.{quote('status')} = %s)"
    )


def agent_status_set(agent_id: str, status: str, *, unless_busy: bool = False) -> None:
    agents_status_set([agent_id], status, unless_busy=unless_busy)


def agent_get(agent_id: str) -> Agent:
    """Return the agent, or raise NotFound naming ``agent_id``."""
    agent = Agent.objects.select_related("parent").filter(pk=agent_id).first()
    if agent is None:
        raise NotFound("agent_id", f"no agent {agent_id!r}")
    return agent


def agent_switch_model(agent: Agent, *, old: str | None = None) -> tuple[str, str]:
    """Move the agent to the model after ``old`` (its current one) in its chain.

    Return ``(old, new)``. A switch also starts the agent's own restart count over
    (the counter the seed's handlers keep for an agent without a job).
    """
    old = agent.current_model if old is None else old
    new = policy.next_model(agent.model_chain, old)
    Agent.objects.filter(pk=agent.pk).update(
        current_model=new, restart_count=0, updated_at=timezone.now()
    )
    agent.current_model, agent.restart_count = new, 0
    return old, new


def agent_model_reset(agent_id: str, *, by: str = "") -> Agent:
    """Put the agent back on its primary model; its own counters start over."""
    agent = agent_get(agent_id)
    old = agent.current_model
    Agent.objects.filter(pk=agent_id).update(
        current_model=agent.primary_model, restart_count=0, llm_failure_count=0
    )
    agent.current_model = agent.primary_model
    agent.restart_count = agent.llm_failure_count = 0
    event_emit(
        "agent_model_reset",
        {"agent_id": agent_id, "old_llm": old, "new_llm": agent.primary_model, "by": by},
    )
    return agent


def agent_set_enabled(agent_id: str, enabled: bool, *, by: str = "") -> Agent:
    agent = agent_get(agent_id)
    status = Agent.Status.IDLE if enabled else Agent.Status.DISABLED
    Agent.objects.filter(pk=agent_id).update(enabled=enabled, status=status)
    agent.enabled, agent.status = enabled, status
    event_emit(
        "agent_status", {"agent_id": agent_id, "status": status, "enabled": enabled, "by": by}
    )
    return agent


def model_check(model: str, field: str = "model") -> str:
    """Return ``model`` if it is ``provider/model`` with a known provider; else refuse it."""
    model = (model or "").strip()
    provider, sep, rest = model.partition("/")
    if not sep or not provider or not rest:
        raise ServiceError(field, f"{model!r} is not provider/model (e.g. local/smollm2-135m)")
    if not Provider.objects.filter(name=provider).exists():
        known = ", ".join(Provider.objects.values_list("name", flat=True))
        raise ServiceError(field, f"unknown provider {provider!r} (known: {known})")
    return model


def agents_models_set(
    agent_ids: list[str] | None, model: str, *, fallbacks: list[str] | None = None, by: str = ""
) -> list[str]:
    """Set the primary model (and, if given, the fallback chain) of agents; all when None.

    Their current model moves to the new primary. PAS Root calls no model: it is left
    out of ``--all``. Return the agents changed.
    """
    model = model_check(model)
    chain = [model_check(f, "fallback") for f in fallbacks] if fallbacks is not None else None
    rows = (
        Agent.objects.exclude(role="root")
        if agent_ids is None
        else Agent.objects.filter(agent_id__in=agent_ids)
    )
    found = list(rows.values_list("agent_id", flat=True))
    missing = sorted(set(agent_ids or []) - set(found))
    if missing:
        raise NotFound("agent_id", f"no agent {missing[0]!r}")
    values: dict[str, object] = {"primary_model": model, "current_model": model}
    if chain is not None:
        values["fallback_models"] = [m for m in chain if m != model]
    Agent.objects.filter(agent_id__in=found).update(
        restart_count=0, llm_failure_count=0, updated_at=timezone.now(), **values
    )
    event_emit(
        "agents_models_set",
        {"agents": found, "model": model, "fallbacks": values.get("fallback_models"), "by": by},
    )
    return found
