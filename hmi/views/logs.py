"""Notifications, and the Events and Comms pages: live tails, filters, paging by id."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from pas_core import config
from pas_core.models import Notification
from pas_core.services.notifications import notifications_mark_read
from pas_core.stores.comms import comms_path

from ..forms import CommsFilterForm, EventFilterForm
from ..lists import Window, comms_filter, event_types, events_filter, window
from .common import fragment, page

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


def _query(request: HttpRequest, *drop: str) -> str:
    """Return the page's filters as a query string, without ``partial`` and ``drop``."""
    query = request.GET.copy()
    for key in ("partial", *drop):
        query.pop(key, None)
    return query.urlencode()


def _page_size() -> int:
    return int(config.document_get()["hmi_display"].get("events_page_size") or 100)


def _list_page(
    request: HttpRequest, form: Any, qs_of: Callable[[dict[str, Any]], Any]
) -> tuple[dict[str, Any], int]:
    """Return a list page's context and status: its window of rows, or the form's errors.

    Bad filters answer 400 with the reasons on the form, and no rows.
    """
    ctx: dict[str, Any] = {"form": form, "filters": _query(request, "before", "after")}
    if not form.is_valid():
        return {**ctx, "page": Window(rows=[])}, 400
    data = form.cleaned_data
    rows = window(
        qs_of(data), size=_page_size(), before=data.get("before"), after=data.get("after")
    )
    return {**ctx, "page": rows}, 200


# -- events -----------------------------------------------------------------------


@login_required
@require_GET
def events(request: HttpRequest) -> HttpResponse:
    ctx, status = _list_page(request, EventFilterForm(request.GET), events_filter)
    if request.GET.get("partial") == "rows":
        return fragment(request, "hmi/events.html#rows", {**ctx, "live": True}, status=status)
    return page(request, "hmi/events.html", {**ctx, "types": event_types()}, status=status)


# -- comms ------------------------------------------------------------------------


@login_required
@require_GET
def comms(request: HttpRequest) -> HttpResponse:
    ctx, status = _list_page(request, CommsFilterForm(request.GET), comms_filter)
    if request.GET.get("partial") == "rows":
        return fragment(request, "hmi/comms.html#rows", {**ctx, "live": True}, status=status)
    today = timezone.now().date()
    ctx["today"] = today.isoformat()
    ctx["today_exists"] = comms_path().exists()
    return page(request, "hmi/comms.html", ctx, status=status)


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
