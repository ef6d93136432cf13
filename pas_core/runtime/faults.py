"""Acting out an injected fault in the worker (the fault rows: ``services.faults``)."""

from __future__ import annotations

import os
from collections.abc import Callable

from .. import inflight
from ..errors import AttemptError
from ..models import Fault
from ..stores import workers

CRASH_EXIT_STATUS = 70  # EX_SOFTWARE
SLOW_S = 3.0
SLOW_STEP_S = 0.25
# A sum the CPU would take hours over: a loop in C, so the interpreter never regains
# control (no other thread of the process runs, no signal handler, no kill reaches it).
SPIN_TERMS = 10**18


def fault_act(kind: str, beat: Callable[[float, str], None], *, attempt_id: int = 0) -> None:
    """Act out the part of a fault that comes before the step.

    ``hang``, ``crash`` and ``spin`` never return; ``error`` raises
    AttemptError("error"); ``slow`` returns after about 3 s of beating; ``bad_output``
    and ``failing_output`` return at once (the step garbles its own reply, or makes its
    change fail its checks: see ``StepContext.fault``).
    """
    if kind == Fault.Kind.HANG:
        # No beats from here on: to supervision this is a call that never answers. A
        # kill addressed to this attempt ends the wait (AttemptKilled).
        while True:
            inflight.wait(3600)
    if kind == Fault.Kind.CRASH:
        # Say who did it, then die: no cleanup, no exception handlers, no finally blocks.
        try:
            workers.dying_set(workers.worker_id(), attempt_id)
        finally:
            os._exit(CRASH_EXIT_STATUS)
    if kind == Fault.Kind.SPIN:
        sum(range(SPIN_TERMS))  # Never returns in practice: the supervisor replaces us.
        return
    if kind == Fault.Kind.ERROR:
        raise AttemptError("error", "injected error")
    if kind == Fault.Kind.SLOW:
        steps = int(SLOW_S / SLOW_STEP_S)
        for i in range(steps):
            beat(0.05 * (i + 1) / steps, "slow (injected fault)")
            inflight.wait(SLOW_STEP_S)
        return
    if kind in (Fault.Kind.BAD_OUTPUT, Fault.Kind.FAILING_OUTPUT):
        return
    raise AttemptError("error", f"unknown fault kind {kind!r}")
