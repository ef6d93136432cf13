"""Runs: submit a Prime Directive, the list, one run live, its artifact files."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from pas_core.models import Agent, Attempt, CommsMessage, Event, Job, Run
from pas_core.selectors import runs_lanes
from pas_core.services import retry
from pas_core.services.submit import run_submit

from ..forms import RunSubmitForm
from ..permissions import is_operator, operator_required
from ..timeline import Span, timeline_build
from .common import call, fragment, page, user_name

RUNS_PAGE = 100
LOG_ROWS = 100


def _runs_rows() -> dict[str, Any]:
    runs = list(Run.objects.all()[:RUNS_PAGE])
    lanes = runs_lanes(runs)
    return {"runs": [(run, lanes[str(run.run_id)]) for run in runs]}


@login_required
@require_http_methods(["GET", "POST"])
def runs(request: HttpRequest) -> HttpResponse:
    """GET: the list and the submit form. POST (operators): submit a directive."""
    if request.method == "GET":
        if request.GET.get("partial") == "rows":
            return fragment(request, "hmi/runs.html#rows", _runs_rows())
        return page(request, "hmi/runs.html", {"form": RunSubmitForm(), **_runs_rows()})
    if not is_operator(request.user):
        raise PermissionDenied("Only operators may submit directives.")
    form = RunSubmitForm(request.POST)
    if form.is_valid():
        run, errors, status = call(
            run_submit,
            **form.cleaned_data,
            submitted_by=user_name(request),
        )
        if not errors:
            return redirect("hmi:run-detail", run_id=run.run_id)
        for field, reason in errors.items():
            form.add_error(field if field in form.fields else None, reason)
    else:
        status = 400
    return page(request, "hmi/runs.html", {"form": form, **_runs_rows()}, status=status)


def _job_tree(jobs: list[Job]) -> list[dict[str, Any]]:
    by_parent: dict[str | None, list[Job]] = {}
    for job in jobs:
        by_parent.setdefault(job.parent_id, []).append(job)

    def build(job: Job) -> dict[str, Any]:
        return {"job": job, "children": [build(c) for c in by_parent.get(job.job_id, [])]}

    ids = {j.job_id for j in jobs}
    return [build(j) for j in jobs if j.parent_id is None or j.parent_id not in ids]


def _artifacts(run: Run) -> list[dict[str, Any]]:
    root = Path(settings.PAS_ARTIFACTS_DIR) / "runs" / str(run.run_id)
    if not root.is_dir():
        return []
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        files.append({"path": rel, "size": path.stat().st_size})
        if len(files) >= 500:
            break
    return files


def run_live(run: Run) -> dict[str, Any]:
    """Return everything the live part of a run's page shows."""
    now = timezone.now()
    jobs = list(run.jobs.select_related("agent", "current_attempt").order_by("created_at"))
    attempts = list(
        Attempt.objects.filter(job__run=run).select_related("job").order_by("created_at")
    )
    order = list(Agent.objects.values_list("agent_id", flat=True))
    spans = [
        Span(
            agent_id=a.agent_id,
            number=a.number,
            status=a.status,
            model=a.model,
            start=a.started_at or a.created_at,
            end=a.finished_at if a.status not in ("queued", "running") else None,
            job_id=a.job_id,
            error_kind=a.error_kind,
        )
        for a in attempts
    ]
    timeline = timeline_build(spans, order=order, start=run.started_at or run.created_at, now=now)
    directors = [j for j in jobs if j.agent.role == "director"]
    return {
        "run": run,
        "job_tree": _job_tree(jobs),
        "jobs_count": len(jobs),
        "attempts_count": len(attempts),
        "timeline": timeline,
        "lanes": [(j.lane or j.agent_id, j) for j in directors],
        "artifacts": _artifacts(run),
        "retryable": sum(1 for j in jobs if j.status == Job.Status.FAILED and j.retryable),
    }


def run_logs(run: Run) -> dict[str, Any]:
    run_id = str(run.run_id)
    comms = list(CommsMessage.objects.filter(run_id=run_id).order_by("-id")[:LOG_ROWS])
    events = list(Event.objects.filter(run_id=run_id).order_by("-id")[:LOG_ROWS])
    return {"run": run, "comms": comms, "events": events}


@login_required
@require_GET
def run_detail(request: HttpRequest, run_id: str) -> HttpResponse:
    run = get_object_or_404(Run, run_id=run_id)
    part = request.GET.get("partial")
    if part == "live":
        return fragment(request, "hmi/run_detail.html#live", run_live(run))
    if part == "logs":
        return fragment(request, "hmi/run_detail.html#logs", run_logs(run))
    return page(request, "hmi/run_detail.html", {**run_live(run), **run_logs(run)})


@operator_required
@require_POST
def run_retry(request: HttpRequest, run_id: str) -> HttpResponse:
    run = get_object_or_404(Run, run_id=run_id)
    jobs, errors, status = call(retry.run_retry, run.run_id, by=user_name(request))
    if errors:
        ctx = {**run_live(run), **run_logs(run), "retry_errors": errors}
        return page(request, "hmi/run_detail.html", ctx, status=status)
    messages.success(request, f"Retrying {len(jobs)} job(s)")
    return redirect("hmi:run-detail", run_id=run.run_id)


def artifact_resolve(run_id: str, relpath: str) -> Path:
    """Return the file ``relpath`` under the run's artifacts directory; 404 otherwise.

    The resolved path (symlinks followed) must stay inside the run's directory, so
    ``..``, absolute paths and links pointing out are all refused.
    """
    root = (Path(settings.PAS_ARTIFACTS_DIR) / "runs" / str(run_id)).resolve()
    if not relpath or "\x00" in relpath:
        raise Http404("no such file")
    target = (root / relpath).resolve()
    if not target.is_relative_to(root) or target == root or not target.is_file():
        raise Http404("no such file")
    return target


TEXT_SUFFIXES = {
    ".py",
    ".md",
    ".txt",
    ".json",
    ".yaml",
    ".yml",
    ".toml",
    ".cfg",
    ".ini",
    ".csv",
    ".sh",
    ".js",
    ".ts",
    ".css",
    ".html",
    ".sql",
    ".patch",
    ".diff",
    ".rst",
    ".xml",
    ".log",
}


@login_required
@require_GET
def artifact(request: HttpRequest, run_id: str, relpath: str) -> FileResponse:
    """Serve one artifact: text shown as plain text (never rendered), the rest downloaded."""
    get_object_or_404(Run, run_id=run_id)
    path = artifact_resolve(run_id, relpath)
    guessed, _ = mimetypes.guess_type(path.name)
    is_text = path.suffix.lower() in TEXT_SUFFIXES or (guessed or "").startswith("text/")
    response = FileResponse(
        path.open("rb"),
        as_attachment=not is_text,
        filename=path.name,
        content_type="text/plain; charset=utf-8" if is_text else "application/octet-stream",
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response
