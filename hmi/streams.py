"""Server-sent events (filled in by the HMI work)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse


@login_required
def event_stream(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status=204)
