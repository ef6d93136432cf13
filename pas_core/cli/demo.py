from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from .. import config
from ..models import Run
from ..selectors import events_after, last_event_id
from ..services.faults import fault_inject
from ..services.submit import run_submit
from .submit import summary, workers_answering

help = "Walk through restart, escalation, model switch and completion with a hang on Dir-Code"

DEMO_TIMINGS = {
    "heartbeat_interval_s": 1,
    "timeout_threshold_s": 3,
    "missed_heartbeat_threshold": 2,
    "sweep_interval_s": 1,
    "max_restarts": 3,
    "max_llm_retries": 3,
    "enable_auto_restart": True,
    "enable_llm_switching": True,
}
SHOWN = ("hhmrs_", "fault_", "run_", "job_failed")
EVENTS_PAGE = 200


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("--agent", default="Dir-Code", help="the agent that hangs (Dir-Code)")
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument(
        "--keep-timings", action="store_true", help="leave the short demo timings in place"
    )


def run(cmd: BaseCommand, options: dict[str, Any]) -> None:
    if not workers_answering():
        raise CommandError("no Celery worker answers: start PAS with `make run` first")
    before = config.hhmrs_get().as_dict()
    cfg = config.hhmrs_update(DEMO_TIMINGS)
    hangs = cfg.max_restarts + 1
    cmd.stdout.write(
        f"demo timings: heartbeat {cfg.heartbeat_interval_s}s, timeout "
        f"{cfg.timeout_threshold_s}s, sweep {cfg.sweep_interval_s}s"
    )
    try:
        fault_inject(options["agent"], "hang", count=hangs, by="pas demo")
        cmd.stdout.write(f"injected: {options['agent']} hangs on its next {hangs} attempts")
        last = last_event_id()
        new = run_submit(
            title="Demo: add a health endpoint",
            goal="Add a /health endpoint with code, tests and docs",
            submitted_by="pas demo",
        )
        cmd.stdout.write(f"run {new.run_id} submitted; watching supervision events...")
        deadline = time.monotonic() + options["timeout"]
        while True:
            # The status before the events: a run's end and its event are stored in one
            # transaction, so once the run is seen ended its event is among those read.
            found = Run.objects.get(pk=new.run_id)
            events = events_after(last, EVENTS_PAGE)
            for event in events:
                last = event.id
                if event.event_type.startswith(SHOWN):
                    message = event.data.get("message") or event.data.get("status") or ""
                    cmd.stdout.write(f"  {event.event_type:<18} {message}")
            ended = found.status in (Run.Status.COMPLETED, Run.Status.FAILED)
            if ended and len(events) < EVENTS_PAGE:
                break
            if time.monotonic() > deadline:
                raise CommandError(
                    f"the demo run is still {found.status} after {options['timeout']}s"
                )
            time.sleep(0.3)
        summary(cmd, found)
    finally:
        if not options["keep_timings"]:
            config.hhmrs_update(before)
            cmd.stdout.write("settings restored")
