"""The aggregates: a parent's report once every child job has ended (DESIGN 4).

A Manager rolls up its Programmers, a Director writes the lane report (with its
acceptance checks), the Architect the run summary, PAS Root the run's outcome.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from ...llm.schemas import paths_of
from ...models import Job
from ..acceptance import ARTIFACT_CHECKS, acceptance_evaluate
from ..files import read_json, write_json
from ..types import Complete, StepContext
from ..workspace import workspace_of
from .common import lane_of
from .lane_work import label_results, lane_work, work_state


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


def manager_aggregate(ctx: StepContext) -> Complete:
    ok = [c for c in ctx.children if _child_ok(c)]
    if ctx.children and len(ok) == len(ctx.children):
        state = "completed"
    else:
        state = "partial" if ok else "failed"
    artifacts = sorted({a for c in ok for a in (c.result or {}).get("artifacts", [])})
    own = read_json(ctx.artifacts_dir / "plans" / f"{ctx.job.pk}.json")
    return Complete(
        {
            "manager": ctx.agent.agent_id,
            "state": state,
            "lane": lane_of(ctx),
            "artifacts": artifacts,
            "programmers_used": sorted({c.agent_id for c in ctx.children}),
            # On a repository: each Programmer's commit and the checks it passed.
            "work": [_work(c) for c in ok if (c.result or {}).get("commit")],
            "actuals": _actuals(ctx, own),
            "errors": [_child_error(c) for c in ctx.children if not _child_ok(c)],
        }
    )


def _work(job: Job) -> dict[str, Any]:
    result = job.result if isinstance(job.result, dict) else {}
    keys = ("commit", "checks", "artifacts")
    return {"job_id": job.pk, "agent_id": job.agent_id, **{k: result.get(k) for k in keys}}


def director_aggregate(ctx: StepContext) -> Complete:
    card, lane = ctx.job.card, lane_of(ctx)
    lane_dir = ctx.artifacts_dir / lane
    ws = workspace_of(ctx.run, ctx.artifacts_dir)
    ok = [c for c in ctx.children if _child_ok(c)]
    artifacts = sorted({a for c in ok for a in (c.result or {}).get("artifacts", [])})
    expected = paths_of(card.get("expected_artifacts"))
    checks = [c["check"] if isinstance(c, dict) else str(c) for c in card.get("acceptance") or []]
    if expected and not any(c.strip() in ARTIFACT_CHECKS for c in checks):
        checks.insert(0, "artifacts_exist")  # Expected artifacts are always checked.
    work = lane_work(ws, lane, ctx.children, lane_dir) if ws is not None else None
    named = label_results(checks, work["checks"]) if work is not None else {}
    others = [c for c in checks if c not in named]
    files_dir = ws.tree if ws is not None else lane_dir  # Where the lane's files are.
    acceptance = {**acceptance_evaluate(files_dir, others, expected, artifacts), **named}
    all_ok = bool(ctx.children) and len(ok) == len(ctx.children)
    state, why = _lane_state(all_ok, acceptance, work)
    own = read_json(ctx.artifacts_dir / "plans" / f"{ctx.job.pk}.json")
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
    if why:
        report["state_reason"] = why
    if work is not None:
        report.update(work)
    write_json(lane_dir / "lane_report.json", report)
    ctx.beat(0.9, f"lane {lane}: {state}")
    return Complete(report)


def _lane_state(
    all_ok: bool, acceptance: dict[str, dict[str, Any]], work: dict[str, Any] | None
) -> tuple[str, str]:
    """Return the lane's state and why it is not ``completed``.

    ``failed``: a job of the lane failed, or a check failed. ``unchecked``: its work
    was not checked for real: on a repository, a check could not run; in an artifacts
    folder, the plan asked for a check PAS cannot run there.
    """
    if not all_ok:
        return "failed", "a job of the lane failed"
    failing = [name for name, r in acceptance.items() if r.get("status") == "fail"]
    if failing:
        return "failed", "acceptance failed: " + ", ".join(failing)
    if work is not None:
        return work_state(work)
    not_run = [name for name, r in acceptance.items() if r.get("status") == "not_run"]
    if not_run:
        return "unchecked", "not run: " + ", ".join(not_run)
    return "completed", ""


def architect_aggregate(ctx: StepContext) -> Complete:
    plan_file = read_json(ctx.artifacts_dir / "architect_plan.json")
    lanes: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for child in ctx.children:
        lane = child.lane or str(child.card.get("lane") or child.agent_id)
        result = child.result if isinstance(child.result, dict) else {}
        succeeded = child.status == Job.Status.SUCCEEDED
        lanes[lane] = str(result.get("state", "completed")) if succeeded else "failed"
        if lanes[lane] != "completed":
            reasons[lane] = str(result.get("state_reason") or _child_error(child)["error"])
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
    write_json(ctx.artifacts_dir / "run_summary.json", summary)
    return Complete(summary)


def root_aggregate(ctx: StepContext) -> Complete:
    architect = ctx.children[0] if ctx.children else None
    result = architect.result if architect and isinstance(architect.result, dict) else {}
    lanes = dict(result.get("lanes") or {})
    failed = list(result.get("failed_lanes") or [])
    if architect is None or architect.status != Job.Status.SUCCEEDED:
        error = architect.error if architect else "no Architect job"
        state, message = "failed", f"Architect failed: {error or 'no report'}"
    elif failed or result.get("state") != "completed":
        named = [
            f"{lane} ({lanes[lane]})" if lanes.get(lane, "failed") != "failed" else lane
            for lane in failed
        ]
        state, message = "failed", "Lanes failed: " + (", ".join(named) or "none reported")
    else:
        state, message = "completed", "All lanes completed: " + ", ".join(lanes)
    outcome = {
        "state": state,
        "lanes": lanes,
        "failed_lanes": failed,
        "message": message,
        "executive_summary": result.get("executive_summary", ""),
        "actuals": result.get("actuals", {}),
    }
    ws = workspace_of(ctx.run, ctx.artifacts_dir)
    if ws is not None:  # Where the work is, and how to take it.
        outcome.update(branch=ws.branch, merge=f"git -C {ws.repo} merge {ws.branch}")
    return Complete(outcome)
