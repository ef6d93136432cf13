"""The retry queue: jobs that failed for good, live; retry, retry on a model, discard."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from pas_core import selectors as core
from pas_core.services import retry

from ..forms import BulkForm, RetryForm
from ..permissions import operator_required
from .common import call, fragment, page, user_name


def _models(jobs: list[Any]) -> list[str]:
    """Return every model in the queued jobs' agents' chains, for the bulk model choice."""
    seen: dict[str, None] = {}
    for job in jobs:
        for model in job.agent.model_chain:
            seen.setdefault(model, None)
    return list(seen)


def _queue(request: HttpRequest, *, status: int = 200, **extra: Any) -> HttpResponse:
    jobs = core.retry_queue()
    ctx = {"jobs": jobs, "models": _models(jobs), "errors": {}, **extra}
    # A row's own error shows in its row; only errors about no listed row go on top.
    ctx["error_listed"] = any(j.job_id == extra.get("error_job") for j in jobs)
    if request.GET.get("partial") == "rows":
        return fragment(request, "hmi/retry.html#queue", ctx)
    return page(request, "hmi/retry.html", ctx, status=status)


@login_required
@require_GET
def retry_queue(request: HttpRequest) -> HttpResponse:
    return _queue(request)


def _errors(form: Any) -> dict[str, str]:
    return {k: "; ".join(str(e) for e in v) for k, v in form.errors.items()}


@operator_required
@require_POST
def job_retry(request: HttpRequest, job_id: str) -> HttpResponse:
    form = RetryForm(request.POST)
    if not form.is_valid():
        return _queue(request, status=400, errors=_errors(form), error_job=job_id)
    model = form.cleaned_data["model"].strip() or None
    job, errors, status = call(retry.job_retry, job_id, model=model, by=user_name(request))
    if errors:
        return _queue(request, status=status, errors=errors, error_job=job_id)
    messages.success(request, f"{job_id} re-sent on {job.agent.current_model or 'its model'}")
    return redirect("hmi:retry")


@operator_required
@require_POST
def job_discard(request: HttpRequest, job_id: str) -> HttpResponse:
    _jobs, errors, status = call(retry.jobs_discard, [job_id], by=user_name(request))
    if errors:
        return _queue(request, status=status, errors=errors, error_job=job_id)
    messages.success(request, f"{job_id} discarded: it stays failed, out of the queue")
    return redirect("hmi:retry")


@operator_required
@require_POST
def retry_bulk(request: HttpRequest) -> HttpResponse:
    """Retry or discard the ticked jobs, all or none."""
    form = BulkForm(request.POST)
    if not form.is_valid():
        return _queue(request, status=400, errors=_errors(form), error_job="")
    data, by = form.cleaned_data, user_name(request)
    if data["action"] == "discard":
        jobs, errors, status = call(retry.jobs_discard, data["selected"], by=by)
        done = "discarded"
    else:
        model = data["model"].strip() or None
        jobs, errors, status = call(retry.jobs_retry, data["selected"], model=model, by=by)
        done = "re-sent"
    if errors:
        return _queue(request, status=status, errors=errors, error_job="")
    messages.success(request, f"{len(jobs)} job{'s' if len(jobs) != 1 else ''} {done}")
    return redirect("hmi:retry")
