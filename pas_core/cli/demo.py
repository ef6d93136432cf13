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
ENDS = ("run_completed", "run_failed")
END_EVENT_WAIT_S = 5.0


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
        ended_at: float | None = None
        told = False  # The run's own run_completed / run_failed event was shown.
        while True:
            # The status before the events: an event stored before the run was seen to
            # end is then among those read below.
            found = Run.objects.get(pk=new.run_id)
            for event in events_after(last, 200):
                last = event.id
                if event.event_type.startswith(SHOWN):
                    message = event.data.get("message") or event.data.get("status") or ""
                    cmd.stdout.write(f"  {event.event_type:<18} {message}")
                if event.event_type in ENDS and event.data.get("run_id") == str(new.run_id):
                    told = True
            if found.status in (Run.Status.COMPLETED, Run.Status.FAILED):
                # The run's end and its event are stored one after the other: wait a
                # little for the event, so that the demo shows how the run ended.
                ended_at = ended_at or time.monotonic()
                if told or time.monotonic() - ended_at > END_EVENT_WAIT_S:
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
