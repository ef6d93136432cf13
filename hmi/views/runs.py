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
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from pas_core.models import Run
from pas_core.services import retry
from pas_core.services.submit import run_submit

from ..forms import RunsFilterForm, RunSubmitForm
from ..lists import runs_page
from ..permissions import is_operator, operator_required
from ..run_view import run_live, run_log_counts, run_logs
from .common import call, fragment, page, user_name


def _runs_ctx(request: HttpRequest) -> tuple[dict[str, Any], int]:
    """Return the runs list's context (filters, one page of rows) and its status."""
    form = RunsFilterForm(request.GET)
    query = request.GET.copy()
    for key in ("partial", "page"):
        query.pop(key, None)
    ctx: dict[str, Any] = {"filter_form": form, "filters": query.urlencode()}
    if not form.is_valid():
        return {**ctx, "runs": [], "page": None}, 400
    page_obj, rows = runs_page(form.cleaned_data)
    return {**ctx, "runs": rows, "page": page_obj}, 200


@login_required
@require_http_methods(["GET", "POST"])
def runs(request: HttpRequest) -> HttpResponse:
    """GET: the list and the submit form. POST (operators): submit a directive."""
    if request.method == "GET":
        ctx, status = _runs_ctx(request)
        if request.GET.get("partial") == "rows":
            return fragment(request, "hmi/runs.html#rows", ctx, status=status)
        return page(request, "hmi/runs.html", {"form": RunSubmitForm(), **ctx}, status=status)
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
    ctx, _ = _runs_ctx(request)
    return page(request, "hmi/runs.html", {"form": form, **ctx}, status=status)


def _zoom(request: HttpRequest) -> tuple[tuple[float | None, float | None], dict[str, str]]:
    """Return the timeline's zoom window (``tl_from``, ``tl_to`` in seconds) and errors."""
    values: list[float | None] = []
    errors: dict[str, str] = {}
    for key in ("tl_from", "tl_to"):
        raw = request.GET.get(key, "").strip()
        try:
            value = float(raw) if raw else None
        except ValueError:
            value = None
        if raw and (value is None or not 0 <= value <= 1e7):
            errors[key] = f"{key}: seconds from the run's start, 0 or more (got {raw[:20]!r})"
            value = None
        values.append(value)
    return (values[0], values[1]), errors


def _detail(request: HttpRequest, run: Run) -> tuple[dict[str, Any], int]:
    zoom, errors = _zoom(request)
    query = request.GET.copy()
    query.pop("partial", None)
    ctx = {**run_live(run, zoom=zoom), "zoom_errors": errors, "zoom_query": query.urlencode()}
    return ctx, 400 if errors else 200


@login_required
@require_GET
def run_detail(request: HttpRequest, run_id: str) -> HttpResponse:
    run = get_object_or_404(Run, run_id=run_id)
    part = request.GET.get("partial")
    if part == "logs":
        return fragment(request, "hmi/run_detail.html#logs", run_logs(run))
    ctx, status = _detail(request, run)
    if part == "live":
        return fragment(request, "hmi/run_detail.html#live", ctx, status=status)
    return page(request, "hmi/run_detail.html", {**ctx, **run_log_counts(run)}, status=status)


@operator_required
@require_POST
def run_retry(request: HttpRequest, run_id: str) -> HttpResponse:
    run = get_object_or_404(Run, run_id=run_id)
    jobs, errors, status = call(retry.run_retry, run.run_id, by=user_name(request))
    if errors:
        ctx, _ = _detail(request, run)
        ctx = {**ctx, **run_log_counts(run), "retry_errors": errors}
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
