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
from .common import lane_of


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
            "actuals": _actuals(ctx, own),
            "errors": [_child_error(c) for c in ctx.children if not _child_ok(c)],
        }
    )


def director_aggregate(ctx: StepContext) -> Complete:
    card, lane = ctx.job.card, lane_of(ctx)
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
    write_json(lane_dir / "lane_report.json", report)
    ctx.beat(0.9, f"lane {lane}: {state}")
    return Complete(report)


def architect_aggregate(ctx: StepContext) -> Complete:
    plan_file = read_json(ctx.artifacts_dir / "architect_plan.json")
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
