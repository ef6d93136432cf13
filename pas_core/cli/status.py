from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ..config import hhmrs_get
from ..models import Agent, Job, Run
from ..selectors import agents_tree, open_jobs, run_get

help = "Print the agent tree with each agent's state, or one run's job tree"


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("run_id", nargs="?", default=None)


def _walk(children: dict[Any, list[Any]], key: Any, depth: int, line: Any, out: list[str]) -> None:
    for item in children.get(key, []):
        out.append("  " * depth + line(item))
        _walk(children, item.pk, depth + 1, line, out)


def tree_lines() -> list[str]:
    cfg = hhmrs_get()
    agents = agents_tree()
    jobs_by_agent = open_jobs()
    children: dict[Any, list[Agent]] = {}
    for agent in agents:
        children.setdefault(agent.parent_id, []).append(agent)

    def line(a: Agent) -> str:
        model = a.current_model or "-"
        mark = " (switched)" if a.model_switched else ""
        jobs = jobs_by_agent.get(a.agent_id, [])
        extra = ""
        if jobs:
            j = jobs[0]
            extra = (
                f"  jobs={len(jobs)} restarts={j.restart_count}/{cfg.max_restarts}"
                f" switches={j.llm_failure_count}/{cfg.max_llm_retries}"
            )
        return f"{a.agent_id:<22} {a.status:<11} {model}{mark}{extra}"

    out: list[str] = []
    _walk(children, None, 0, line, out)
    return out


def run_lines(run: Run) -> list[str]:
    jobs = list(run.jobs.all())
    children: dict[Any, list[Job]] = {}
    for job in jobs:
        children.setdefault(job.parent_id, []).append(job)

    def line(j: Job) -> str:
        return (
            f"{j.job_id:<34} {j.agent_id:<18} {j.status:<9} "
            f"restarts={j.restart_count} switches={j.llm_failure_count}"
        )

    out = [f"run {run.run_id} {run.status}: {run.title}"]
    if run.message:
        out.append(f"  {run.message}")
    _walk(children, None, 1, line, out)
    return out


def run(cmd: BaseCommand, options: dict[str, Any]) -> None:
    run_id = options["run_id"]
    if run_id is None:
        lines = tree_lines()
    else:
        try:
            uuid.UUID(run_id)
        except ValueError:
            raise CommandError(f"run_id: {run_id!r} is not a run id (a UUID)") from None
        found = run_get(run_id)
        if found is None:
            raise CommandError(f"run_id: no run {run_id}")
        lines = run_lines(found)
    for text in lines:
        cmd.stdout.write(text)
