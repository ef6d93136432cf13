"""Acting out an injected fault in the worker (the fault rows: ``services.faults``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from ..errors import AttemptError
from ..models import Fault

CRASH_EXIT_STATUS = 70  # EX_SOFTWARE
SLOW_S = 3.0
SLOW_STEP_S = 0.25


def fault_act(kind: str, beat: Callable[[float, str], None]) -> None:
    """Act out the part of a fault that comes before the step.

    ``hang`` and ``crash`` never return; ``error`` raises AttemptError("error");
    ``slow`` returns after about 3 s of beating; ``bad_output`` returns at once (the
    step garbles its own reply, see ``StepContext.fault``).
    """
    if kind == Fault.Kind.HANG:
        # No beats from here on: to supervision this is a call that never answers.
        while True:
            time.sleep(3600)
    if kind == Fault.Kind.CRASH:
        # No cleanup, no exception handlers, no finally blocks: a process that dies.
        os._exit(CRASH_EXIT_STATUS)
    if kind == Fault.Kind.ERROR:
        raise AttemptError("error", "injected error")
    if kind == Fault.Kind.SLOW:
        steps = int(SLOW_S / SLOW_STEP_S)
        for i in range(steps):
            beat(0.05 * (i + 1) / steps, "slow (injected fault)")
            time.sleep(SLOW_STEP_S)
        return
    if kind == Fault.Kind.BAD_OUTPUT:
        return
    raise AttemptError("error", f"unknown fault kind {kind!r}")
