"""One step function per role, and the aggregates that roll children up (DESIGN 4).

``step(ctx)`` plans and delegates (Delegate) or does the work (Complete);
``aggregate(ctx)`` runs once every child job has ended and returns the role's report.
Neither writes comms lines or job rows: the runtime does, from what these return.
Plans and reports are also written under ``ctx.artifacts_dir`` (the run's folder),
each lane's work under ``<lane>/``.
"""

from __future__ import annotations

from collections.abc import Callable

from ...errors import AttemptError
from ...models import Role
from ..types import Complete, Delegate, StepContext
from .aggregates import architect_aggregate, director_aggregate, manager_aggregate, root_aggregate
from .planners import architect_step, director_step, manager_step, root_step
from .programmer import programmer_step

STEPS: dict[str, Callable[[StepContext], Delegate | Complete]] = {
    Role.ROOT: root_step,
    Role.ARCHITECT: architect_step,
    Role.DIRECTOR: director_step,
    Role.MANAGER: manager_step,
    Role.PROGRAMMER: programmer_step,
}

AGGREGATES: dict[str, Callable[[StepContext], Complete]] = {
    Role.ROOT: root_aggregate,
    Role.ARCHITECT: architect_aggregate,
    Role.DIRECTOR: director_aggregate,
    Role.MANAGER: manager_aggregate,
}


def step(ctx: StepContext) -> Delegate | Complete:
    """Run the step of ``ctx.agent``'s role."""
    handler = STEPS.get(ctx.agent.role)
    if handler is None:
        raise AttemptError("error", f"no step for role {ctx.agent.role!r}")
    return handler(ctx)


def aggregate(ctx: StepContext) -> Complete:
    """Roll up ``ctx.children`` (all ended) into the role's report."""
    if ctx.fault == "bad_output":
        raise AttemptError("bad_output", "injected bad_output (aggregate step)")
    handler = AGGREGATES.get(ctx.agent.role)
    if handler is None:
        raise AttemptError("error", f"no aggregate for role {ctx.agent.role!r}")
    ctx.beat(0.3, "aggregating")
    return handler(ctx)
