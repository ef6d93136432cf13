"""The header's search box: jump to a run, a job or an agent, or list the matches."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET

from ..search import search
from .common import page


@login_required
@require_GET
def search_page(request: HttpRequest) -> HttpResponse:
    found = search(request.GET.get("q", ""))
    if found.url:
        return redirect(found.url)
    return page(request, "hmi/search.html", {"found": found, "search_q": found.query})
