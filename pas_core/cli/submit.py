from __future__ import annotations

import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ..errors import ServiceError
from ..models import Run
from ..selectors import lane_reports, lane_states, run_progress
from ..services.submit import run_submit
from ..stores import workers

help = "Submit a Prime Directive; with --wait, show progress until the run ends"


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("title")
    parser.add_argument("--goal", required=True)
    parser.add_argument("--description", default="")
    parser.add_argument("--repo-root", default="", help="a git repository to work on")
    parser.add_argument(
        "--check",
        action="append",
        default=[],
        dest="checks",
        metavar="NAME=COMMAND",
        help="a check to run on every change (repeatable), e.g. tests='python -m pytest -q'",
    )
    parser.add_argument("--entry-file", action="append", default=[], dest="entry_files")
    parser.add_argument("--budget-tokens", type=int, default=25000, help="tokens (25000)")
    parser.add_argument("--budget-cost", type=float, default=2.0, help="USD (2.0)")
    parser.add_argument("--budget-wall-s", type=float, default=None, help="seconds (none)")
    parser.add_argument("--wait", action="store_true", help="show progress until the run ends")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait (600)")


def workers_answering() -> list[str]:
    """Return the names of the live workers that take agent work (the registry)."""
    alive = workers.workers_alive()
    return sorted(str(i.get("name")) for i in alive.values() if "agents" in i.get("queues", []))


def bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else 0
    return "[" + "#" * filled + "-" * (width - filled) + f"] {done}/{total} jobs"


def wait_for(cmd: BaseCommand, run_id: Any, timeout: float) -> Run:
    """Draw a progress bar of finished jobs until the run ends (or time runs out)."""
    deadline = time.monotonic() + timeout
    tty = sys.stdout.isatty()
    last = ""
    while True:
        run = Run.objects.get(pk=run_id)
        done, total = run_progress(run.pk)
        line = f"{bar(done, total)}  {run.status}"
        if line != last:
            cmd.stdout.write(("\r" + line) if tty else line, ending="" if tty else "\n")
            cmd.stdout.flush()
            last = line
        if run.status in (Run.Status.COMPLETED, Run.Status.FAILED):
            if tty:
                cmd.stdout.write("")
            return run
        if time.monotonic() > deadline:
            if tty:
                cmd.stdout.write("")
            raise CommandError(f"run {run_id} still {run.status} after {timeout:.0f}s")
        time.sleep(0.25)


def summary(cmd: BaseCommand, run: Run) -> None:
    cmd.stdout.write(f"run {run.run_id}: {run.status} in {run.duration_s or 0:.1f}s")
    if run.message:
        cmd.stdout.write(f"  {run.message}")
    reports = lane_reports(run)
    for lane, state in lane_states(run).items():
        cmd.stdout.write(f"  lane {lane:<10} {state}")
        report = reports.get(lane) if isinstance(reports.get(lane), dict) else {}
        for check in (report or {}).get("checks") or []:
            cmd.stdout.write(f"    check {check_line(check)}")
    cmd.stdout.write(f"  artifacts: {settings.PAS_ARTIFACTS_DIR}/runs/{run.run_id}/")
    if run.branch:
        cmd.stdout.write(f"  branch: {run.branch} (from {run.base_commit[:10]})")
        cmd.stdout.write(f"  to take it: git -C {run.repo_root} merge {run.branch}")


def check_line(check: dict[str, Any]) -> str:
    """Return one check's result in a line: name, status, exit code, time, verdict."""
    line = f"{check.get('name')}: {check.get('status')} (exit {check.get('exit_code')}"
    if check.get("duration_s") is not None:
        line += f", {float(check['duration_s']):.1f} s"
    line += ")"
    if check.get("note"):
        line += f" - {check['note']}"
    return line


def checks_option(items: list[str]) -> dict[str, str]:
    """Return ``--check NAME=COMMAND`` options as ``{name: command}``."""
    out = {}
    for item in items:
        name, sep, command = item.partition("=")
        if not sep or not name.strip():
            raise CommandError(f"--check {item!r}: expected NAME=COMMAND")
        out[name.strip()] = command
    return out


def run(cmd: BaseCommand, options: dict[str, Any]) -> None:
    if options["wait"] and not workers_answering():
        raise CommandError("no Celery worker answers: start PAS with `make run` first")
    try:
        new = run_submit(
            title=options["title"],
            goal=options["goal"],
            description=options["description"],
            repo_root=options["repo_root"],
            entry_files=options["entry_files"],
            budget_tokens_max=options["budget_tokens"],
            budget_cost_usd_max=options["budget_cost"],
            budget_wall_s=options["budget_wall_s"],
            checks=checks_option(options["checks"]),
            submitted_by="cli",
        )
    except ServiceError as exc:
        raise CommandError(str(exc)) from None
    cmd.stdout.write(f"run {new.run_id} submitted: {new.title}")
    if new.branch:
        cmd.stdout.write(f"  working on {new.repo_root} in branch {new.branch}")
    if not options["wait"]:
        return
    finished = wait_for(cmd, new.run_id, options["timeout"])
    summary(cmd, finished)
    if finished.status != Run.Status.COMPLETED:
        raise CommandError(f"run {finished.run_id} failed: {finished.message}")
