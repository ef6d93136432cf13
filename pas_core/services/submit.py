"""Runs and job cards entering the tree: a Prime Directive, or a card sent to an agent.

A directive may name a repository (``repo_root``): it must be a readable directory under
one of ``PAS_REPO_ROOTS`` (a list like PATH; default: the home directory of the user
running PAS), else the submission is refused naming the field. When it is the top of a
git repository with commits, the run gets a branch ``pas/<run8>`` made from its HEAD
(the worktree itself is made by PAS Root's step, in ``runtime.workspace``).
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..errors import NotFound, ServiceError
from ..models import Agent, Job, Run
from ..stores.comms import comms_log
from ..stores.events import event_emit
from .attempts import attempt_create
from .jobs import job_create

REPO_ROOTS_ENV = "PAS_REPO_ROOTS"
CHECK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,39}")
MAX_CHECKS = 10
MAX_COMMAND = 2000
GIT_TIMEOUT_S = 30


def _refuse(field: str, message: str, status: int = 422) -> ServiceError:
    return ServiceError(field, message, status=status)


def repo_roots_allowed() -> list[Path]:
    """Return the directories a ``repo_root`` must lie under (``PAS_REPO_ROOTS``).

    Read at call time: a list separated like PATH; unset or empty, the home directory
    of the user running PAS.
    """
    raw = os.environ.get(REPO_ROOTS_ENV, "")
    parts = [p.strip() for p in raw.split(os.pathsep) if p.strip()] or [str(Path.home())]
    return [Path(p).expanduser().resolve() for p in parts]


def repo_root_resolve(raw: str) -> Path:
    """Return ``raw`` as a resolved directory PAS may work on; refuse it (400) otherwise."""
    path = Path(raw.strip()).expanduser()
    if not path.is_absolute():
        raise _refuse("repo_root", f"must be an absolute path, not {raw!r}", status=400)
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise _refuse("repo_root", f"{raw!r} does not exist", status=400) from None
    if not resolved.is_dir():
        raise _refuse("repo_root", f"{raw!r} is not a directory", status=400)
    if not os.access(resolved, os.R_OK | os.X_OK):
        raise _refuse("repo_root", f"{raw!r} is not readable by PAS", status=400)
    roots = repo_roots_allowed()
    if not any(resolved.is_relative_to(root) for root in roots):
        where = ", ".join(str(r) for r in roots)
        raise _refuse(
            "repo_root",
            f"{raw!r} is not under a directory PAS may work in ({REPO_ROOTS_ENV}: {where})",
            status=400,
        )
    return resolved


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL")}
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=GIT_TIMEOUT_S,
        check=False,
    )


def repo_head(repo: Path) -> str:
    """Return the HEAD commit when ``repo`` is the top of a git repository, else "".

    A repository without a commit is refused: there is nothing to branch from.
    """
    if not (repo / ".git").exists():
        return ""
    try:
        top = _git(repo, "rev-parse", "--show-toplevel")
        head = _git(repo, "rev-parse", "--verify", "-q", "HEAD^{commit}")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _refuse("repo_root", f"git cannot read it: {exc}", status=400) from None
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != repo:
        return ""  # Not the top of a repository: worked on as a plain folder.
    if head.returncode != 0:
        raise _refuse("repo_root", "is a git repository without a commit", status=400)
    return head.stdout.strip()


def checks_clean(checks: Any) -> dict[str, str]:
    """Return a directive's checks ``{name: command}`` validated; refuse them naming why."""
    if not checks:
        return {}
    if not isinstance(checks, dict):
        raise _refuse("checks", "must be an object {name: command}")
    if len(checks) > MAX_CHECKS:
        raise _refuse("checks", f"at most {MAX_CHECKS} checks")
    out = {}
    for name, command in checks.items():
        if not isinstance(name, str) or not CHECK_NAME.fullmatch(name):
            raise _refuse("checks", f"{name!r}: a name is a letter, then letters, digits, _.-")
        if not isinstance(command, str) or not command.strip():
            raise _refuse(f"checks.{name}", "must be a non-empty command")
        if len(command) > MAX_COMMAND or "\x00" in command:
            raise _refuse(f"checks.{name}", f"at most {MAX_COMMAND} characters, no NUL")
        out[name] = command.strip()
    return out


def _run_id_for(repo: Path | None) -> uuid.UUID:
    """Return a new run id whose branch ``pas/<run8>`` does not exist in ``repo`` yet."""
    for _ in range(20):
        run_id = uuid.uuid4()
        if repo is None:
            return run_id
        ref = f"refs/heads/pas/{str(run_id)[:8]}"
        if _git(repo, "show-ref", "--verify", "-q", ref).returncode != 0:
            return run_id
    raise _refuse("repo_root", "no free branch name pas/<run8> in 20 tries", status=409)


def _root_agent() -> Agent:
    root = Agent.objects.filter(role="root").first()
    if root is None:
        raise _refuse(
            "agents", "no PAS Root agent: run `python manage.py pas bootstrap`", status=503
        )
    return root


def run_submit(
    *,
    title: str,
    goal: str,
    description: str = "",
    repo_root: str = "",
    entry_files: list[str] | None = None,
    budget_tokens_max: int = 25000,
    budget_cost_usd_max: float = 2.0,
    budget_wall_s: float | None = None,
    checks: dict[str, str] | None = None,
    submitted_by: str = "",
) -> Run:
    """Create a run for a Prime Directive and send PAS Root its first job.

    Budgets: tokens and cost (from the providers' usage) and, optionally, wall time
    from the run's start; passing one stops the run (``services.budgets``).
    ``checks`` (name -> command) need a git repository at ``repo_root``; who may give
    them (operators) is the interface's to decide, and ``submitted_by`` is recorded
    with them in the ``run_submitted`` event.
    """
    title, goal = (title or "").strip(), (goal or "").strip()
    if not title:
        raise _refuse("title", "must not be empty")
    if not goal:
        raise _refuse("goal", "must not be empty")
    if len(title) > 200:
        raise _refuse("title", "must be at most 200 characters")
    commands = checks_clean(checks)
    repo = repo_root_resolve(repo_root) if (repo_root or "").strip() else None
    head = repo_head(repo) if repo is not None else ""
    if commands and not head:
        raise _refuse("checks", "checks run in a git repository: give its repo_root", status=400)
    root = _root_agent()
    run_id = _run_id_for(repo if head else None)
    with transaction.atomic():
        run = Run.objects.create(
            run_id=run_id,
            title=title,
            goal=goal,
            description=description or "",
            repo_root=str(repo) if repo is not None else "",
            checks=commands,
            branch=f"pas/{str(run_id)[:8]}" if head else "",
            base_commit=head,
            entry_files=list(entry_files or []),
            budget_tokens_max=budget_tokens_max,
            budget_cost_usd_max=budget_cost_usd_max,
            budget_wall_s=budget_wall_s or None,
            submitted_by=submitted_by,
            status=Run.Status.QUEUED,
        )
        job = job_create(
            run=run, agent=root, job_id=f"jc-{str(run.run_id)[:8]}-root", card=_root_card(run)
        )
        event_emit(
            "run_submitted",
            {
                "run_id": str(run.run_id),
                "title": title,
                "status": "queued",
                "by": submitted_by,
                "repo_root": run.repo_root,
                "branch": run.branch,
                # Every check command a person asked for, with who asked (DESIGN 4).
                "checks": {
                    name: {"command": c, "by": submitted_by} for name, c in commands.items()
                },
            },
        )
        comms_log(
            sender=submitted_by or "user",
            recipient=root.agent_id,
            kind="CMD",
            message=f"Prime Directive: {title}",
            run_id=run.run_id,
            status="queued",
        )
        attempt_create(job)
    return run


def _root_card(run: Run) -> dict[str, Any]:
    return {
        "role": "root",
        "task": run.goal,
        "title": run.title,
        "description": run.description,
        "entry_files": run.entry_files,
        "budget": {
            "tokens_max": run.budget_tokens_max,
            "cost_usd_max": run.budget_cost_usd_max,
            "wall_s": run.budget_wall_s,
        },
        "submitted_by": run.submitted_by,
    }


def job_submit(agent_id: str, card: dict[str, Any], *, submitted_by: str = "") -> Job:
    """Accept a job card sent straight to an agent (``POST /api/agents/{id}/submit``)."""
    agent = Agent.objects.filter(agent_id=agent_id).first()
    if agent is None:
        raise NotFound("agent_id", f"no agent {agent_id!r}")
    if not isinstance(card, dict):
        raise _refuse("job_card", "must be an object")
    job_id = str(card.get("id") or "").strip()
    task = str(card.get("task") or "").strip()
    if not task:
        raise _refuse("job_card.task", "must not be empty")
    if job_id and Job.objects.filter(pk=job_id).exists():
        raise _refuse("job_card.id", f"duplicate job card id {job_id!r}", status=400)
    with transaction.atomic():
        run_id = card.get("run_id")
        run = Run.objects.filter(pk=run_id).first() if run_id else None
        if run_id and run is None:
            raise NotFound("job_card.run_id", f"no run {run_id!r}")
        if run is None:
            run = Run.objects.create(
                title=str(card.get("title") or task)[:200],
                goal=task,
                status=Run.Status.RUNNING,
                started_at=timezone.now(),
                submitted_by=submitted_by,
            )
        job_id = job_id or f"jc-{str(run.run_id)[:8]}-{agent.agent_id.lower().replace(' ', '-')}"
        if Job.objects.filter(pk=job_id).exists():
            raise _refuse("job_card.id", f"duplicate job card id {job_id!r}", status=400)
        job = job_create(
            run=run, agent=agent, card=card, job_id=job_id, lane=str(card.get("lane") or "")
        )
        comms_log(
            sender=submitted_by or "user",
            recipient=agent.agent_id,
            kind="CMD",
            message=f"Job card {job_id}: {task[:200]}",
            run_id=run.run_id,
            status="queued",
        )
        attempt_create(job)
    return job
