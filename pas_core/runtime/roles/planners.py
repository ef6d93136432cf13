"""The planning roles' steps: PAS Root, the Architect, Directors and Managers.

Each plans with its model (PAS Root has none) and delegates: it returns the child
cards, and the runtime creates their jobs. Plans are written under the run's folder.

On a repository, PAS Root makes the run's worktree and settles its checks; the
Architect and Directors are shown the repository's map, Managers the contents of the
entry files and of the files their task names (``runtime.context``, within a byte
budget per prompt).
"""

from __future__ import annotations

from typing import Any

from ...errors import AttemptError
from ...llm.schemas import ArchitectPlan, DirectorPlan, ManagerPlan, paths_of
from ...models import Agent, Role
from ...stores.events import event_emit
from ..checks import checks_resolve, specs_from
from ..context import context_budget, repo_map, task_files
from ..files import write_json
from ..types import ChildCard, Delegate, StepContext
from ..workspace import Workspace, info_read, info_write, workspace_of, workspace_prepare
from .common import (
    PRIORITY_NORMAL,
    ask,
    card_paths,
    lane_of,
    remap,
    subordinate_ids,
    subordinates,
    usage,
)

# -- steps -------------------------------------------------------------------------


def root_step(ctx: StepContext) -> Delegate:
    """PAS Root (no LLM): the directive becomes one Architect job."""
    if ctx.fault == "bad_output":
        raise AttemptError("bad_output", "injected bad_output (PAS Root has no LLM)")
    architect = subordinates(ctx.agent, Role.ARCHITECT).first()
    if architect is None:
        raise AttemptError("error", f"{ctx.agent.agent_id} has no enabled Architect")
    run = ctx.run
    ws = workspace_of(run, ctx.artifacts_dir)
    repository = _workspace_start(ctx, ws) if ws is not None else None
    card = {
        "run_id": str(run.run_id),
        "title": run.title,
        "goal": run.goal,
        "description": run.description,
        "repo_root": run.repo_root,
        "entry_files": list(run.entry_files or []),
        "budget": {"tokens_max": run.budget_tokens_max, "cost_usd_max": run.budget_cost_usd_max},
        "task": f"Plan the Prime Directive '{run.title}'",
        "priority": PRIORITY_NORMAL,
        "submitted_by": ctx.agent.agent_id,
    }
    if repository is not None:
        card["repository"] = repository
    write_json(ctx.artifacts_dir / "prime_directive.json", card)
    ctx.beat(0.9, f"delegating to {architect.agent_id}")
    return Delegate([ChildCard(agent_id=architect.agent_id, card=card)])


def _workspace_start(ctx: StepContext, ws: Workspace) -> dict[str, Any]:
    """Make the run's worktree, settle its checks and record them (with who asked)."""
    ctx.beat(0.2, f"making the worktree on {ws.branch}")
    done = workspace_prepare(ws)
    specs = checks_resolve(ctx.run, ws.tree)
    checks = [s.as_dict() for s in specs]
    info_write(
        ws,
        {
            "branch": ws.branch,
            "base_commit": ws.base_commit,
            "worktree": str(ws.tree),
            "checks": checks,
        },
    )
    names = ", ".join(f"{s.name} ({s.source})" for s in specs) or "none"
    event_emit(
        "workspace_ready",
        {
            "run_id": str(ctx.run.run_id),
            "agent_id": ctx.agent.agent_id,
            "branch": ws.branch,
            "base_commit": ws.base_commit,
            "repo_root": str(ws.repo),
            "worktree": done,  # created, or ready (a restarted PAS Root found it made)
            # Every command that will run, where it came from and who asked for it.
            "checks": checks,
            "message": f"Worktree on {ws.branch} from {ws.base_commit[:10]}; checks: {names}",
        },
    )
    return {"branch": ws.branch, "checks": {s.name: s.command for s in specs}}


def _repository(ctx: StepContext, *, files: list[str] | None = None) -> dict[str, Any] | None:
    """Return what a planning role is shown of the repository (None: no repository).

    The map by default; with ``files``, the contents of those that exist instead.
    """
    ws = workspace_of(ctx.run, ctx.artifacts_dir)
    if ws is None:
        return None
    checks = {s.name: s.command for s in specs_from(info_read(ws).get("checks"))}
    if files is None:
        return {"branch": ws.branch, "checks": checks, "map": repo_map(ws.tree, context_budget())}
    text = f"{ctx.job.card.get('task', '')}\n{ctx.run.goal}"
    shown = task_files(ws.tree, entry_files=ctx.run.entry_files, paths=files, text=text)
    return {"branch": ws.branch, "checks": checks, "files": shown}


REPO_NOTE = (
    " You work on a git repository: input.repository has its map (or files) and the "
    "checks that will run on every change; paths are relative to the repository root."
)

ARCHITECT_DUTY = (
    "the Architect of PAS, a tree of agents. Split the Prime Directive in the input into "
    "lanes (Code, Models, Data, DevSecOps, Docs), only those it needs. For each lane give "
    "the task, input files, the artifacts to produce (paths relative to the lane's folder), "
    "acceptance checks and risks. Checks PAS evaluates: artifacts_exist, exists:<path>, "
    "python_syntax, json_valid; PAS runs no other check on an artifacts folder, so any "
    "other check leaves the lane unchecked."
)
ARCHITECT_REPO_DUTY = (
    "the Architect of PAS, a tree of agents. Split the Prime Directive in the input into "
    "lanes (Code, Models, Data, DevSecOps, Docs), only those it needs. For each lane give "
    "the task, the input files (existing files to read), the files to write or change, the "
    "acceptance checks (artifacts_exist, exists:<path>, and the names of "
    "input.repository.checks) and risks." + REPO_NOTE
)


def architect_step(ctx: StepContext) -> Delegate:
    card = ctx.job.card
    directive = {
        "title": card.get("title") or ctx.run.title,
        "goal": card.get("goal") or ctx.run.goal,
        "description": card.get("description", ctx.run.description),
        "entry_files": card.get("entry_files", ctx.run.entry_files),
    }
    repository = _repository(ctx)
    duty = ARCHITECT_DUTY
    if repository is not None:
        directive["repository"] = repository
        duty = ARCHITECT_REPO_DUTY
    ctx.beat(0.05, "planning lanes")
    plan, reply = ask(ctx, ArchitectPlan, duty, directive)
    directors: dict[str, Agent] = {}
    for agent in subordinates(ctx.agent, Role.DIRECTOR):
        if agent.lane not in directors or agent.agent_id == f"Dir-{agent.lane}":
            directors[agent.lane] = agent
    children, skipped = [], {}
    for lane, alloc in plan.lane_allocations.items():
        director = directors.get(lane)
        if director is None:
            skipped[lane] = "no enabled Director for this lane"
            continue
        lane_card = {
            "run_id": str(ctx.run.run_id),
            "lane": lane,
            "title": directive["title"],
            "goal": directive["goal"],
            **alloc.model_dump(),
            "priority": PRIORITY_NORMAL,
            "submitted_by": ctx.agent.agent_id,
        }
        children.append(ChildCard(agent_id=director.agent_id, card=lane_card, lane=lane))
    write_json(
        ctx.artifacts_dir / "architect_plan.json",
        {**usage(reply), "plan": plan.model_dump(), "skipped_lanes": skipped},
    )
    if not children:
        raise AttemptError("error", f"no enabled Director for lanes {', '.join(skipped)}")
    ctx.beat(0.9, f"delegating to {len(children)} director(s)")
    return Delegate(children)


def director_step(ctx: StepContext) -> Delegate:
    card, lane = ctx.job.card, lane_of(ctx)
    managers = subordinate_ids(ctx.agent, Role.MANAGER)
    if not managers:
        raise AttemptError("error", f"{ctx.agent.agent_id} has no enabled Manager")
    duty = (
        f"the Director of the {lane} lane. Split the job card in the input among the "
        "managers listed in 'managers' (only those ids; one is enough for a small task). "
        "Paths are relative to the lane's folder."
    )
    payload = {**card, "managers": managers}
    repository = _repository(ctx)
    if repository is not None:
        payload["repository"] = repository
        duty = duty.replace(" Paths are relative to the lane's folder.", REPO_NOTE)
    ctx.beat(0.05, "planning manager tasks")
    plan, reply = ask(
        ctx,
        DirectorPlan,
        duty,
        payload,
        choices={"manager_id": managers, "file": card_paths(card)},
    )
    merged: dict[str, dict[str, Any]] = {}
    for i, task in enumerate(plan.manager_tasks):
        manager = remap(task.manager_id, managers, i)
        m = merged.setdefault(
            manager,
            {"tasks": [], "files": [], "expected_artifacts": [], "acceptance": []},
        )
        m["tasks"].append(task.task)
        m["files"] += [f for f in task.files if f not in m["files"]]
        for ref in task.expected_artifacts:
            if ref.path not in paths_of(m["expected_artifacts"]):
                m["expected_artifacts"].append({"path": ref.path})
        for chk in task.acceptance:
            if chk.check not in [c["check"] for c in m["acceptance"]]:
                m["acceptance"].append({"check": chk.check})
    write_json(
        ctx.artifacts_dir / "plans" / f"{ctx.job.pk}.json",
        {**usage(reply), "plan": plan.model_dump()},
    )
    children = [
        ChildCard(
            agent_id=manager,
            lane=lane,
            card={
                "run_id": str(ctx.run.run_id),
                "lane": lane,
                "title": card.get("title", ctx.run.title),
                "task": "\n".join(m["tasks"]),
                "files": m["files"],
                "expected_artifacts": m["expected_artifacts"],
                "acceptance": m["acceptance"],
                "priority": card.get("priority", PRIORITY_NORMAL),
                "submitted_by": ctx.agent.agent_id,
            },
        )
        for manager, m in merged.items()
    ]
    ctx.beat(0.9, f"delegating to {len(children)} manager(s)")
    return Delegate(children)


def manager_step(ctx: StepContext) -> Delegate:
    card, lane = ctx.job.card, lane_of(ctx)
    programmers = subordinate_ids(ctx.agent, Role.PROGRAMMER)
    if not programmers:
        raise AttemptError("error", f"{ctx.agent.agent_id} has no enabled Programmer")
    duty = (
        f"a Manager in the {lane} lane. Split the job card in the input into tasks for the "
        "programmers listed in 'programmers' (only those ids), naming the files each writes. "
        "Give a module and its tests to the same programmer: each change is checked alone."
    )
    payload = {**card, "programmers": programmers}
    repository = _repository(ctx, files=card_paths(card))
    if repository is not None:
        payload["repository"] = repository
        duty += REPO_NOTE
    ctx.beat(0.05, "planning programmer tasks")
    plan, reply = ask(
        ctx,
        ManagerPlan,
        duty,
        payload,
        choices={"programmer_id": programmers, "file": card_paths(card)},
    )
    write_json(
        ctx.artifacts_dir / "plans" / f"{ctx.job.pk}.json",
        {**usage(reply), "plan": plan.model_dump()},
    )
    children = [
        ChildCard(
            agent_id=remap(task.programmer_id, programmers, i),
            lane=lane,
            card={
                "run_id": str(ctx.run.run_id),
                "lane": lane,
                "title": card.get("title", ctx.run.title),
                "task": task.task,
                "files": task.files,
                "operation": task.operation,
                "acceptance": card.get("acceptance", []),
                "priority": card.get("priority", PRIORITY_NORMAL),
                "submitted_by": ctx.agent.agent_id,
            },
        )
        for i, task in enumerate(plan.programmer_tasks)
    ]
    ctx.beat(0.9, f"delegating to {len(children)} programmer task(s)")
    return Delegate(children)
