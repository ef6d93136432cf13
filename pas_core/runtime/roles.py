"""One step function per role, and the aggregates that roll children up (DESIGN 4).

``step(ctx)`` plans and delegates (Delegate) or does the work (Complete);
``aggregate(ctx)`` runs once every child job has ended and returns the role's report.
Neither writes comms lines or job rows: the runtime (execute.py) does, from what these
return. Plans and reports are also written under ``ctx.artifacts_dir`` (the run's
folder), each lane's work under ``<lane>/``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from django.db.models import QuerySet
from django.utils import timezone
from pydantic import BaseModel

from ..llm.providers import LlmReply, llm_complete
from ..llm.schemas import (
    ArchitectPlan,
    DirectorPlan,
    ManagerPlan,
    ProgrammerOutput,
    parse_json,
    paths_of,
    schema_instructions,
)
from ..models import Agent, Job, Role
from .types import AttemptError, ChildCard, Complete, Delegate, StepContext

S = TypeVar("S", bound=BaseModel)

PRIORITY_NORMAL = 5
GARBAGE = "<<injected fault: bad_output>> this reply is not JSON {"
MAX_FILES = 50
MAX_BYTES = 2_000_000
NOT_RUN = "PAS does not execute generated code; run this check in CI"
ARTIFACT_CHECKS = ("artifacts_exist", "expected_artifacts", "artifacts")

# -- dispatch ----------------------------------------------------------------------


def step(ctx: StepContext) -> Delegate | Complete:
    """Run the step of ``ctx.agent``'s role."""
    handler = _STEPS.get(ctx.agent.role)
    if handler is None:
        raise AttemptError("error", f"no step for role {ctx.agent.role!r}")
    return handler(ctx)


def aggregate(ctx: StepContext) -> Complete:
    """Roll up ``ctx.children`` (all ended) into the role's report."""
    if ctx.fault == "bad_output":
        raise AttemptError("bad_output", "injected bad_output (aggregate step)")
    handler = _AGGREGATES.get(ctx.agent.role)
    if handler is None:
        raise AttemptError("error", f"no aggregate for role {ctx.agent.role!r}")
    ctx.beat(0.3, "aggregating")
    return handler(ctx)


# -- helpers -----------------------------------------------------------------------


def _subordinates(agent: Agent, role: str) -> QuerySet[Agent]:
    return Agent.objects.filter(parent=agent, role=role, enabled=True).order_by(
        "position", "agent_id"
    )


def _ask(
    ctx: StepContext, schema: type[S], duty: str, payload: dict[str, Any]
) -> tuple[S, LlmReply]:
    """Ask the attempt's model for ``schema``; beats map onto progress 0.1..0.8."""
    messages = [
        {
            "role": "system",
            "content": f"You are {ctx.agent.agent_id}, {duty}\n\n{schema_instructions(schema)}",
        },
        {
            "role": "user",
            "content": "Input:\n```json\n"
            + json.dumps(payload, indent=1, ensure_ascii=False, default=str)
            + "\n```",
        },
    ]

    def beat(progress: float, message: str) -> None:
        ctx.beat(0.1 + 0.7 * progress, message)

    ctx.beat(0.1, f"asking {ctx.model or 'the model'} for a {schema.__name__}")
    reply = llm_complete(ctx.model, messages, beat=beat, json_mode=True)
    text = GARBAGE if ctx.fault == "bad_output" else reply.text
    return parse_json(text, schema), reply


def _usage(reply: LlmReply) -> dict[str, Any]:
    return {
        "produced_by": reply.produced_by,
        "model": reply.model,
        "tokens_in": reply.tokens_in,
        "tokens_out": reply.tokens_out,
        "tokens": reply.tokens_in + reply.tokens_out,
        "cost_usd": reply.cost_usd,
    }


def _write_atomic(path: Path, data: bytes) -> None:
    # Write then rename: a reader (or a killed attempt) never leaves half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n"
    _write_atomic(path, text.encode())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _lane(ctx: StepContext) -> str:
    lane = ctx.job.lane or str(ctx.job.card.get("lane") or "") or ctx.agent.lane
    return lane if re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,31}", lane) else "misc"


def safe_relpath(path: str) -> str:
    """Return ``path`` normalised to a relative POSIX path; refuse escapes with bad_output."""
    raw = (path or "").strip().replace("\\", "/")
    if not raw or "\x00" in raw:
        raise AttemptError("bad_output", f"empty or invalid file path {path!r}")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise AttemptError("bad_output", f"absolute file path refused: {path!r}")
    parts = [p for p in PurePosixPath(raw).parts if p not in ("", ".")]
    if ".." in parts:
        raise AttemptError("bad_output", f"file path leaves the artifacts folder: {path!r}")
    if not parts:
        raise AttemptError("bad_output", f"empty file path {path!r}")
    return "/".join(parts)


def _inside(base: Path, rel: str) -> Path:
    target = (base / rel).resolve()
    if not target.is_relative_to(base.resolve()):  # A symlink pointing out.
        raise AttemptError("bad_output", f"file path leaves the artifacts folder: {rel!r}")
    return target


def _remap(wanted: str, allowed: list[str], index: int) -> str:
    """Return ``wanted`` if allowed, else the round-robin pick (LLMs invent ids)."""
    return wanted if wanted in allowed else allowed[index % len(allowed)]


# -- steps -------------------------------------------------------------------------


def _root_step(ctx: StepContext) -> Delegate:
    """PAS Root (no LLM): the directive becomes one Architect job."""
    if ctx.fault == "bad_output":
        raise AttemptError("bad_output", "injected bad_output (PAS Root has no LLM)")
    architect = _subordinates(ctx.agent, Role.ARCHITECT).first()
    if architect is None:
        raise AttemptError("error", f"{ctx.agent.agent_id} has no enabled Architect")
    run = ctx.run
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
    _write_json(ctx.artifacts_dir / "prime_directive.json", card)
    ctx.beat(0.9, f"delegating to {architect.agent_id}")
    return Delegate([ChildCard(agent_id=architect.agent_id, card=card)])


ARCHITECT_DUTY = (
    "the Architect of PAS, a tree of agents. Split the Prime Directive in the input into "
    "lanes (Code, Models, Data, DevSecOps, Docs), only those it needs. For each lane give "
    "the task, input files, the artifacts to produce (paths relative to the lane's folder), "
    "acceptance checks and risks. Checks PAS evaluates: artifacts_exist, exists:<path>, "
    "python_syntax, json_valid; others (e.g. pytest>=0.90) are reported as not run."
)


def _architect_step(ctx: StepContext) -> Delegate:
    card = ctx.job.card
    directive = {
        "title": card.get("title") or ctx.run.title,
        "goal": card.get("goal") or ctx.run.goal,
        "description": card.get("description", ctx.run.description),
        "entry_files": card.get("entry_files", ctx.run.entry_files),
    }
    ctx.beat(0.05, "planning lanes")
    plan, reply = _ask(ctx, ArchitectPlan, ARCHITECT_DUTY, directive)
    directors: dict[str, Agent] = {}
    for agent in _subordinates(ctx.agent, Role.DIRECTOR):
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
    _write_json(
        ctx.artifacts_dir / "architect_plan.json",
        {**_usage(reply), "plan": plan.model_dump(), "skipped_lanes": skipped},
    )
    if not children:
        raise AttemptError("error", f"no enabled Director for lanes {', '.join(skipped)}")
    ctx.beat(0.9, f"delegating to {len(children)} director(s)")
    return Delegate(children)


def _director_step(ctx: StepContext) -> Delegate:
    card, lane = ctx.job.card, _lane(ctx)
    managers = [a.agent_id for a in _subordinates(ctx.agent, Role.MANAGER)]
    if not managers:
        raise AttemptError("error", f"{ctx.agent.agent_id} has no enabled Manager")
    duty = (
        f"the Director of the {lane} lane. Split the job card in the input among the "
        "managers listed in 'managers' (only those ids; one is enough for a small task). "
        "Paths are relative to the lane's folder."
    )
    ctx.beat(0.05, "planning manager tasks")
    plan, reply = _ask(ctx, DirectorPlan, duty, {**card, "managers": managers})
    merged: dict[str, dict[str, Any]] = {}
    for i, task in enumerate(plan.manager_tasks):
        manager = _remap(task.manager_id, managers, i)
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
    _write_json(
        ctx.artifacts_dir / "plans" / f"{ctx.job.pk}.json",
        {**_usage(reply), "plan": plan.model_dump()},
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


def _manager_step(ctx: StepContext) -> Delegate:
    card, lane = ctx.job.card, _lane(ctx)
    programmers = [a.agent_id for a in _subordinates(ctx.agent, Role.PROGRAMMER)]
    if not programmers:
        raise AttemptError("error", f"{ctx.agent.agent_id} has no enabled Programmer")
    duty = (
        f"a Manager in the {lane} lane. Split the job card in the input into tasks for the "
        "programmers listed in 'programmers' (only those ids), naming the files each writes."
    )
    ctx.beat(0.05, "planning programmer tasks")
    plan, reply = _ask(ctx, ManagerPlan, duty, {**card, "programmers": programmers})
    _write_json(
        ctx.artifacts_dir / "plans" / f"{ctx.job.pk}.json",
        {**_usage(reply), "plan": plan.model_dump()},
    )
    children = [
        ChildCard(
            agent_id=_remap(task.programmer_id, programmers, i),
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


def _programmer_step(ctx: StepContext) -> Complete:
    card, lane = ctx.job.card, _lane(ctx)
    duty = (
        f"a Programmer in the {lane} lane. Write every file the task asks for, complete, "
        "with paths relative to the lane's folder (no absolute paths, no '..')."
    )
    ctx.beat(0.05, "writing")
    out, reply = _ask(ctx, ProgrammerOutput, duty, dict(card))
    if len(out.files) > MAX_FILES:
        raise AttemptError("bad_output", f"{len(out.files)} files (at most {MAX_FILES})")
    if sum(len(f.content.encode()) for f in out.files) > MAX_BYTES:
        raise AttemptError("bad_output", f"files larger than {MAX_BYTES} bytes in all")
    lane_dir = ctx.artifacts_dir / lane
    # Check every path before writing any file: a refused reply leaves nothing behind.
    targets = [(safe_relpath(f.path), f.content) for f in out.files]
    lane_dir.mkdir(parents=True, exist_ok=True)
    resolved = [(rel, _inside(lane_dir, rel), content) for rel, content in targets]
    ctx.beat(0.85, f"saving {len(resolved)} file(s)")
    for _, path, content in resolved:
        _write_atomic(path, content.encode())
    artifacts = sorted({rel for rel, _, _ in resolved})
    return Complete(
        {
            "state": "completed",
            "lane": lane,
            "artifacts": artifacts,
            "summary": out.summary,
            **_usage(reply),
        }
    )


_STEPS: dict[str, Callable[[StepContext], Delegate | Complete]] = {
    Role.ROOT: _root_step,
    Role.ARCHITECT: _architect_step,
    Role.DIRECTOR: _director_step,
    Role.MANAGER: _manager_step,
    Role.PROGRAMMER: _programmer_step,
}

# -- aggregates --------------------------------------------------------------------


def _child_ok(job: Job) -> bool:
    result = job.result if isinstance(job.result, dict) else {}
    return job.status == Job.Status.SUCCEEDED and result.get("state", "completed") == "completed"


def _child_error(job: Job) -> dict[str, Any]:
    result = job.result if isinstance(job.result, dict) else {}
    reason = job.error or result.get("message") or f"state {result.get('state', job.status)}"
    return {"job_id": job.pk, "agent_id": job.agent_id, "status": job.status, "error": reason}


def _child_actuals(job: Job) -> tuple[int, float]:
    result = job.result if isinstance(job.result, dict) else {}
    nested = result.get("actuals")
    actuals: dict[str, Any] = nested if isinstance(nested, dict) else result
    return int(actuals.get("tokens", 0) or 0), float(actuals.get("cost_usd", 0) or 0)


def _actuals(ctx: StepContext, own: dict[str, Any]) -> dict[str, Any]:
    """Sum the children's tokens and cost with this job's own planning usage."""
    tokens, cost = int(own.get("tokens", 0) or 0), float(own.get("cost_usd", 0) or 0)
    for child in ctx.children:
        t, c = _child_actuals(child)
        tokens, cost = tokens + t, cost + c
    duration = (timezone.now() - ctx.job.created_at).total_seconds() if ctx.job.created_at else 0
    return {"tokens": tokens, "cost_usd": round(cost, 6), "duration_s": round(duration, 3)}


def _manager_aggregate(ctx: StepContext) -> Complete:
    ok = [c for c in ctx.children if _child_ok(c)]
    if ctx.children and len(ok) == len(ctx.children):
        state = "completed"
    else:
        state = "partial" if ok else "failed"
    artifacts = sorted({a for c in ok for a in (c.result or {}).get("artifacts", [])})
    own = _read_json(ctx.artifacts_dir / "plans" / f"{ctx.job.pk}.json")
    return Complete(
        {
            "manager": ctx.agent.agent_id,
            "state": state,
            "lane": _lane(ctx),
            "artifacts": artifacts,
            "programmers_used": sorted({c.agent_id for c in ctx.children}),
            "actuals": _actuals(ctx, own),
            "errors": [_child_error(c) for c in ctx.children if not _child_ok(c)],
        }
    )


def acceptance_evaluate(
    lane_dir: Path, checks: list[str], expected: list[str], artifacts: list[str]
) -> dict[str, dict[str, Any]]:
    """Evaluate each acceptance check against the files that exist; run no code.

    ``artifacts_exist`` passes when every expected artifact is a file (or, with none
    expected, when some artifact was made); ``exists:<path>`` checks one file;
    ``python_syntax`` and ``json_valid`` parse (never run) the artifacts. Checks that need
    code to run (pytest, lint, coverage...) or that PAS does not know are ``not_run``,
    with the reason, never a made-up number.
    """
    results: dict[str, dict[str, Any]] = {}
    present = [a for a in artifacts if _is_file(lane_dir, a)]
    for check in checks:
        name = check.strip()
        if name in ARTIFACT_CHECKS:
            if expected:
                missing = [p for p in expected if not _is_file(lane_dir, p)]
                results[check] = (
                    {"status": "fail", "detail": "missing: " + ", ".join(missing)}
                    if missing
                    else {"status": "pass", "detail": f"{len(expected)}/{len(expected)} present"}
                )
            else:
                results[check] = (
                    {"status": "pass", "detail": f"{len(present)} artifact(s)"}
                    if present
                    else {"status": "fail", "detail": "no artifacts"}
                )
        elif name.startswith("exists:"):
            path = name.removeprefix("exists:").strip()
            found = _is_file(lane_dir, path)
            results[check] = {"status": "pass" if found else "fail", "detail": path}
        elif name in ("python_syntax", "json_valid"):
            results[check] = _parse_check(lane_dir, present, name)
        else:
            known = re.match(r"(pytest|tests?|lint|ruff|flake8|mypy|coverage)\b", name)
            reason = NOT_RUN if known else "unknown check: PAS has no way to evaluate it"
            results[check] = {"status": "not_run", "reason": reason}
    return results


def _is_file(lane_dir: Path, path: str) -> bool:
    try:
        return _inside(lane_dir, safe_relpath(path)).is_file()
    except AttemptError:
        return False


def _parse_check(lane_dir: Path, present: list[str], name: str) -> dict[str, Any]:
    suffix = ".py" if name == "python_syntax" else ".json"
    files = [p for p in present if p.endswith(suffix)]
    if not files:
        return {"status": "not_run", "reason": f"no {suffix} artifacts"}
    bad = []
    for rel in files:
        text = (lane_dir / rel).read_text(errors="replace")
        try:
            if suffix == ".py":
                compile(text, rel, "exec", dont_inherit=True)  # Parses; runs nothing.
            else:
                json.loads(text)
        except (SyntaxError, ValueError) as exc:
            bad.append(f"{rel}: {exc.__class__.__name__}")
    if bad:
        return {"status": "fail", "detail": "; ".join(bad)}
    return {"status": "pass", "detail": f"{len(files)} file(s) parse"}


def _director_aggregate(ctx: StepContext) -> Complete:
    card, lane = ctx.job.card, _lane(ctx)
    lane_dir = ctx.artifacts_dir / lane
    ok = [c for c in ctx.children if _child_ok(c)]
    artifacts = sorted({a for c in ok for a in (c.result or {}).get("artifacts", [])})
    expected = paths_of(card.get("expected_artifacts"))
    checks = [c["check"] if isinstance(c, dict) else str(c) for c in card.get("acceptance") or []]
    if expected and not any(c.strip() in ARTIFACT_CHECKS for c in checks):
        checks.insert(0, "artifacts_exist")  # Expected artifacts are always checked.
    acceptance = acceptance_evaluate(lane_dir, checks, expected, artifacts)
    passed = all(r["status"] != "fail" for r in acceptance.values())
    all_ok = bool(ctx.children) and len(ok) == len(ctx.children)
    state = "completed" if all_ok and passed else "failed"
    own = _read_json(ctx.artifacts_dir / "plans" / f"{ctx.job.pk}.json")
    report = {
        "run_id": str(ctx.run.run_id),
        "lane": lane,
        "state": state,
        "artifacts": artifacts,
        "expected_artifacts": expected,
        "acceptance_results": acceptance,
        "actuals": _actuals(ctx, own),
        "managers_used": {c.agent_id: str(c.card.get("task", ""))[:80] for c in ctx.children},
        "errors": [_child_error(c) for c in ctx.children if not _child_ok(c)],
        "produced_by": own.get("produced_by", ""),
    }
    _write_json(lane_dir / "lane_report.json", report)
    ctx.beat(0.9, f"lane {lane}: {state}")
    return Complete(report)


def _architect_aggregate(ctx: StepContext) -> Complete:
    plan_file = _read_json(ctx.artifacts_dir / "architect_plan.json")
    lanes: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for child in ctx.children:
        lane = child.lane or str(child.card.get("lane") or child.agent_id)
        lanes[lane] = "completed" if _child_ok(child) else "failed"
        if not _child_ok(child):
            reasons[lane] = _child_error(child)["error"]
    for lane, reason in (plan_file.get("skipped_lanes") or {}).items():
        lanes.setdefault(lane, "failed")
        reasons.setdefault(lane, reason)
    failed = [lane for lane, state in lanes.items() if state != "completed"]
    summary = {
        "run_id": str(ctx.run.run_id),
        "state": "failed" if failed or not lanes else "completed",
        "lanes": lanes,
        "failed_lanes": failed,
        "reasons": reasons,
        "executive_summary": (plan_file.get("plan") or {}).get("executive_summary", ""),
        "actuals": _actuals(ctx, plan_file),
        "produced_by": plan_file.get("produced_by", ""),
    }
    _write_json(ctx.artifacts_dir / "run_summary.json", summary)
    return Complete(summary)


def _root_aggregate(ctx: StepContext) -> Complete:
    architect = ctx.children[0] if ctx.children else None
    result = architect.result if architect and isinstance(architect.result, dict) else {}
    lanes = dict(result.get("lanes") or {})
    failed = list(result.get("failed_lanes") or [])
    if architect is None or architect.status != Job.Status.SUCCEEDED:
        error = architect.error if architect else "no Architect job"
        state, message = "failed", f"Architect failed: {error or 'no report'}"
    elif failed or result.get("state") != "completed":
        state, message = "failed", "Lanes failed: " + (", ".join(failed) or "none reported")
    else:
        state, message = "completed", "All lanes completed: " + ", ".join(lanes)
    return Complete(
        {
            "state": state,
            "lanes": lanes,
            "failed_lanes": failed,
            "message": message,
            "executive_summary": result.get("executive_summary", ""),
            "actuals": result.get("actuals", {}),
        }
    )


_AGGREGATES: dict[str, Callable[[StepContext], Complete]] = {
    Role.ROOT: _root_aggregate,
    Role.ARCHITECT: _architect_aggregate,
    Role.DIRECTOR: _director_aggregate,
    Role.MANAGER: _manager_aggregate,
}
