"""Runs: submit a Prime Directive, follow it, retry what failed.

A directive's ``checks`` (commands PAS will run on the repository) are accepted from
operators only: a logged-in operator, or a full API token. An agent-bound token may
only send heartbeats: here it is told so (403), rather than taken for no one (401).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Field, Router, Schema
from ninja.security import HttpBearer
from pydantic import ConfigDict

from ..auth import token_check
from ..errors import ServiceError
from ..models import Job, Run
from ..selectors import lane_reports, lane_states, run_get
from ..services import retry
from ..services.submit import run_submit
from ..stores import effects
from .access import SessionAuth, TokenAuth, request_actor, user_may_act

router = Router(tags=["runs"])


class DirectiveIn(Schema):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(..., min_length=1, max_length=200)
    goal: str = Field(..., min_length=1, max_length=20000)
    description: str = Field("", max_length=20000)
    repo_root: str = Field("", max_length=500)
    entry_files: list[str] = Field(default_factory=list, max_length=200)
    budget_tokens_max: int = Field(25000, ge=1, le=10_000_000)
    budget_cost_usd_max: float = Field(2.0, ge=0, le=10_000)
    budget_wall_s: float | None = Field(None, gt=0, le=7 * 86400)
    checks: dict[str, str] | None = Field(None, max_length=10)


class AgentToken(HttpBearer):
    """An agent-bound token: refused with a reason (403), before its body is read."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        found = token_check(token)
        if found is None or not found[1]:
            return None
        raise ServiceError(
            "authorization", "an agent-bound token may only send heartbeats", status=403
        )


def _refused(field: str, message: str) -> dict[str, Any]:
    return {"detail": f"{field}: {message}", "errors": [{"field": field, "message": message}]}


def _operator(request: HttpRequest) -> bool:
    """Return whether the caller may give commands to run: an operator or a full token."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user_may_act(user)
    return getattr(request, "pas_token_id", None) is not None


CHECK_KEYS = ("name", "command", "status", "exit_code", "duration_s", "output_tail")
CHECK_MORE = ("source", "by", "regression", "regressions", "pre_existing", "note")


def lane_details(run: Run) -> dict[str, Any]:
    """Return per lane its state, its checks and its diff stat (a repository's run)."""
    out: dict[str, Any] = {}
    for lane, report in lane_reports(run).items():
        report = report if isinstance(report, dict) else {}
        checks = [c for c in report.get("checks") or [] if isinstance(c, dict)]
        out[lane] = {
            "state": report.get("state"),
            "checks": [{k: c.get(k) for k in (*CHECK_KEYS, *CHECK_MORE)} for c in checks],
            "diff_stat": report.get("diff_stat"),
            "commits": report.get("commits") or [],
        }
    return out


class RetryIn(Schema):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, max_length=128)


def run_as_dict(run: Run, *, detail: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "run_id": str(run.run_id),
        "title": run.title,
        "status": run.status,
        "message": run.message,
        "lanes": lane_states(run),
        "branch": run.branch or None,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "completed_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_s": run.duration_s,
    }
    if detail:
        out.update(
            goal=run.goal,
            description=run.description,
            repo_root=run.repo_root,
            entry_files=run.entry_files,
            budget={
                "tokens_max": run.budget_tokens_max,
                "cost_usd_max": run.budget_cost_usd_max,
                "wall_s": run.budget_wall_s,
            },
            spent={"tokens": run.tokens_used, "cost_usd": round(run.cost_usd, 6)},
            stop_reason=run.stop_reason,
            summary=run.summary,
            jobs=[
                {
                    "job_id": j.job_id,
                    "agent_id": j.agent_id,
                    "parent_id": j.parent_id,
                    "lane": j.lane,
                    "status": j.status,
                    "restart_count": j.restart_count,
                    "llm_failure_count": j.llm_failure_count,
                    "retryable": j.retryable,
                    "error": j.error,
                }
                for j in run.jobs.all()
            ],
            lane_reports=lane_reports(run),
            base_commit=run.base_commit or None,
            checks=run.checks,
            merge=f"git -C {run.repo_root} merge {run.branch}" if run.branch else None,
            lane_details=lane_details(run),
        )
    return out


@router.post(
    "",
    auth=[SessionAuth(), TokenAuth(), AgentToken()],
    response={202: dict, 400: dict, 403: dict, 422: dict, 503: dict},
    summary="Submit a Prime Directive",
)
def runs_create(request: HttpRequest, payload: DirectiveIn) -> Any:
    if payload.checks and not _operator(request):
        return 403, _refused("checks", "commands to run are accepted from operators only")
    with effects.collect() as failed:
        run = run_submit(**payload.dict(), submitted_by=request_actor(request))
    if failed:
        # Stored and accepted: answering an error now would make a retrying client
        # submit the directive twice. What did not happen yet is said, and TRON sends
        # the first job once Redis answers again.
        return 202, {"run_id": str(run.run_id), "status": "queued", "warnings": failed}
    return 202, {"run_id": str(run.run_id), "status": "queued"}


@router.get("", summary="List runs, newest first")
def runs_list(request: HttpRequest, limit: int = 50, status: str | None = None) -> dict[str, Any]:
    qs = Run.objects.all()
    if status:
        qs = qs.filter(status=status)
    limit = max(1, min(limit, 500))
    return {"runs": [run_as_dict(r) for r in qs[:limit]], "total": qs.count()}


@router.get("/{run_id}", response={200: dict, 404: dict}, summary="One run with its lanes")
def runs_detail(request: HttpRequest, run_id: str) -> Any:
    run = run_get(run_id)
    if run is None:
        return 404, {"detail": f"run_id: no run {run_id}"}
    return 200, run_as_dict(run, detail=True)


@router.post(
    "/{run_id}/retry",
    response={202: dict, 404: dict, 409: dict},
    summary="Retry every job of the run that waits in the retry queue",
)
def runs_retry(request: HttpRequest, run_id: str) -> Any:
    if run_get(run_id) is None:
        return 404, {"detail": f"run_id: no run {run_id}"}
    jobs = retry.run_retry(run_id, by=request_actor(request))
    return 202, {"status": "retrying", "run_id": run_id, "jobs": [j.job_id for j in jobs]}


@router.post(
    "/{run_id}/jobs/{job_id}/retry",
    response={202: dict, 404: dict, 409: dict},
    summary="Retry one job from the retry queue, optionally on a chosen model",
)
def job_retry(
    request: HttpRequest, run_id: str, job_id: str, payload: RetryIn | None = None
) -> Any:
    run = run_get(run_id)
    if run is None or not Job.objects.filter(pk=job_id, run=run).exists():
        return 404, {"detail": f"job_id: no job {job_id} in run {run_id}"}
    model = payload.model if payload else None
    job = retry.job_retry(job_id, model=model, by=request_actor(request))
    return 202, {"status": "retrying", "job_id": job.job_id, "llm_model": job.agent.current_model}
