"""The retry queue, notifications, and the Events and Comms pages with their live tails."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from pas_core import config
from pas_core import selectors as core
from pas_core.models import CommsMessage, Event, Job, Notification
from pas_core.services import retry
from pas_core.services.notifications import notifications_mark_read
from pas_core.stores.comms import comms_path

from ..forms import CommsFilterForm, EventFilterForm, RetryForm
from ..permissions import operator_required
from .common import call, fragment, page, user_name

# -- retry queue ------------------------------------------------------------------


def _retry_jobs() -> list[Job]:
    return core.retry_queue()


@login_required
@require_GET
def retry_queue(request: HttpRequest) -> HttpResponse:
    return page(request, "hmi/retry.html", {"jobs": _retry_jobs(), "errors": {}})


@operator_required
@require_POST
def job_retry(request: HttpRequest, job_id: str) -> HttpResponse:
    form = RetryForm(request.POST)
    errors: dict[str, str] = {}
    status = 400
    if form.is_valid():
        model = form.cleaned_data["model"].strip() or None
        job, errors, status = call(retry.job_retry, job_id, model=model, by=user_name(request))
        if not errors:
            messages.success(
                request, f"{job_id} re-sent on {job.agent.current_model or 'its model'}"
            )
            return redirect("hmi:retry")
    else:
        errors = {k: "; ".join(str(e) for e in v) for k, v in form.errors.items()}
    jobs = _retry_jobs()
    listed = any(j.job_id == job_id for j in jobs)
    ctx = {"jobs": jobs, "errors": errors, "error_job": job_id, "error_listed": listed}
    return page(request, "hmi/retry.html", ctx, status=status)


# -- notifications ----------------------------------------------------------------


@login_required
@require_GET
def notifications(request: HttpRequest) -> HttpResponse:
    rows = list(Notification.objects.select_related("run", "job")[:200])
    return page(request, "hmi/notifications.html", {"notifications": rows})


@login_required
@require_POST
def notification_read(request: HttpRequest, pk: int) -> HttpResponse:
    """Mark one notification read (any logged-in user: reading is not acting)."""
    get_object_or_404(Notification, pk=pk)
    notifications_mark_read(pk)
    return redirect("hmi:notifications")


@login_required
@require_POST
def notifications_read_all(request: HttpRequest) -> HttpResponse:
    notifications_mark_read()
    return redirect("hmi:notifications")


def _query(request: HttpRequest) -> str:
    """Return the page's filters as a query string, without ``partial``."""
    query = request.GET.copy()
    query.pop("partial", None)
    return query.urlencode()


# -- events -----------------------------------------------------------------------


def _page_size() -> int:
    return int(config.document_get()["hmi_display"].get("events_page_size") or 100)


def _events(filters: dict[str, str]) -> list[Event]:
    qs = Event.objects.all()
    if filters.get("type"):
        qs = qs.filter(event_type=filters["type"])
    if filters.get("agent"):
        qs = qs.filter(agent_id=filters["agent"])
    if filters.get("run"):
        qs = qs.filter(run_id=filters["run"])
    return list(qs.order_by("-id")[: _page_size()])


@login_required
@require_GET
def events(request: HttpRequest) -> HttpResponse:
    form = EventFilterForm(request.GET)
    filters = form.cleaned_data if form.is_valid() else {}
    ctx: dict[str, Any] = {
        "form": form,
        "events": _events(filters),
        "query": _query(request),
    }
    if request.GET.get("partial") == "rows":
        return fragment(request, "hmi/events.html#rows", {**ctx, "live": True})
    types = Event.objects.values_list("event_type", flat=True).distinct().order_by("event_type")
    return page(request, "hmi/events.html", {**ctx, "types": list(types)})


# -- comms ------------------------------------------------------------------------


def _comms(filters: dict[str, str]) -> list[CommsMessage]:
    qs = CommsMessage.objects.all()
    if filters.get("kind"):
        qs = qs.filter(kind=filters["kind"])
    if filters.get("agent"):
        qs = qs.filter(Q(sender=filters["agent"]) | Q(recipient=filters["agent"]))
    if filters.get("run"):
        qs = qs.filter(run_id=filters["run"])
    return list(qs.order_by("-id")[: _page_size()])


@login_required
@require_GET
def comms(request: HttpRequest) -> HttpResponse:
    form = CommsFilterForm(request.GET)
    filters = form.cleaned_data if form.is_valid() else {}
    ctx: dict[str, Any] = {"form": form, "rows": _comms(filters), "query": _query(request)}
    if request.GET.get("partial") == "rows":
        return fragment(request, "hmi/comms.html#rows", {**ctx, "live": True})
    today = timezone.now().date()
    ctx["today"] = today.isoformat()
    ctx["today_exists"] = comms_path().exists()
    return page(request, "hmi/comms.html", ctx)


@login_required
@require_GET
def comms_download(request: HttpRequest) -> FileResponse:
    """Download one day's comms file (``?day=YYYY-MM-DD``, today by default)."""
    raw = request.GET.get("day", "")
    try:
        day = dt.datetime.strptime(raw, "%Y-%m-%d") if raw else timezone.now()
    except ValueError:
        raise Http404("day must be YYYY-MM-DD") from None
    path = comms_path(day)
    if not path.is_file():
        raise Http404(f"no comms file for {day:%Y-%m-%d}")
    response = FileResponse(
        path.open("rb"), as_attachment=True, filename=path.name, content_type="text/plain"
    )
    response["X-Content-Type-Options"] = "nosniff"
    return response
