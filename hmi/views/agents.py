"""One agent's page: its node live, heartbeat, armed faults, interventions, history."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from ..agent_view import agent_or_404, agent_page
from ..forms import CursorForm, FaultForm
from .common import fragment, page


@login_required
@require_GET
def agent(request: HttpRequest, agent_id: str) -> HttpResponse:
    """Show the agent; ``?before=<attempt id>`` pages its attempts back."""
    found = agent_or_404(agent_id)
    form = CursorForm(request.GET)
    status = 200 if form.is_valid() else 400
    cursor = form.cleaned_data if status == 200 else {}
    ctx = {
        **agent_page(found, before=cursor.get("before"), after=cursor.get("after")),
        "cursor_form": form,
        "fault_form": FaultForm(),
        "errors": {},
    }
    if request.GET.get("partial") == "live":
        return fragment(request, "hmi/agent.html#live", ctx, status=status)
    return page(request, "hmi/agent.html", ctx, status=status)
