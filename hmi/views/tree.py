"""The supervision tree and the operator's actions on a node."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from pas_core import config
from pas_core.services import agents, retry
from pas_core.services.faults import fault_inject, faults_clear, faults_pending

from .. import selectors
from ..forms import FaultForm
from ..permissions import operator_required
from .common import call, fragment, page, user_name


@login_required
@require_GET
def tree(request: HttpRequest) -> HttpResponse:
    roots, count = selectors.tree_nodes()
    cfg = config.hhmrs_get()
    return page(
        request,
        "hmi/tree.html",
        {
            "nodes": roots,
            "count": count,
            "statuses": selectors.STATUSES,
            # A working node turns "late" in the browser after one missed beat.
            "late_after_s": cfg.heartbeat_interval_s * 1.5,
        },
    )


@login_required
@require_GET
def tree_beats(request: HttpRequest) -> JsonResponse:
    """Return each busy node's last heartbeat epoch, for the ages the browser ticks.

    ``?agent=<id>`` asks for one agent only (its page polls every 2 s).
    """
    agent = request.GET.get("agent")
    states = selectors.node_states([agent] if agent else None)
    beats = {s.dom_id: s.beat_epoch for s in states.values() if s.beat_epoch is not None}
    return JsonResponse({"beats": beats})


def _agent_state(agent_id: str) -> selectors.NodeState:
    state = selectors.node_states([agent_id]).get(agent_id)
    if state is None:
        raise Http404(f"no agent {agent_id!r}")
    return state


def _next(request: HttpRequest) -> str:
    """Return the page an action came from (an agent's page), if it is one of ours."""
    back = request.POST.get("next", "") or request.GET.get("next", "")
    ok = url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()})
    return back if ok and back.startswith("/") else ""


def _actions(
    request: HttpRequest,
    agent_id: str,
    *,
    form: FaultForm | None = None,
    errors: dict[str, str] | None = None,
    message: str = "",
    status: int = 200,
) -> HttpResponse:
    """Answer an action: the actions panel (htmx) or a whole page."""
    state = _agent_state(agent_id)
    ctx: dict[str, Any] = {
        "node": state,
        "fault_form": form or FaultForm(),
        "faults": faults_pending(agent_id),
        "errors": errors or {},
        "message": message,
        "next_url": _next(request),
    }
    if request.headers.get("HX-Request") == "true":  # (django-htmx's request.htmx)
        return fragment(request, "hmi/agent_actions.html#actions", ctx, status=status)
    if status == 200 and request.method == "POST":
        messages.success(request, message)
        back = _next(request)
        if back:
            return redirect(back)
        return redirect("hmi:tree")
    return page(request, "hmi/agent_actions.html", ctx, status=status)


@operator_required
@require_GET
def agent_actions(request: HttpRequest, agent_id: str) -> HttpResponse:
    return _actions(request, agent_id)


@operator_required
@require_POST
def agent_restart(request: HttpRequest, agent_id: str) -> HttpResponse:
    result, errors, status = call(retry.agent_restart_now, agent_id, by=user_name(request))
    message = "" if errors else f"{agent_id}: {result.get('status', 'restarted')}"
    return _actions(request, agent_id, errors=errors, message=message, status=status)


@operator_required
@require_POST
def agent_fault(request: HttpRequest, agent_id: str) -> HttpResponse:
    form = FaultForm(request.POST)
    if not form.is_valid():
        return _actions(request, agent_id, form=form, status=400)
    data = form.cleaned_data
    _fault, errors, status = call(
        fault_inject,
        agent_id,
        data["kind"],
        count=data["count"],
        model=data["model"].strip(),
        by=user_name(request),
    )
    for field, reason in errors.items():
        form.add_error(field if field in form.fields else None, reason)
    message = "" if errors else f"{data['kind']} ×{data['count']} injected on {agent_id}"
    return _actions(request, agent_id, form=form, message=message, status=status)


@operator_required
@require_POST
def agent_model_reset(request: HttpRequest, agent_id: str) -> HttpResponse:
    agent, errors, status = call(agents.agent_model_reset, agent_id, by=user_name(request))
    message = "" if errors else f"{agent_id} back on {agent.current_model or 'no model'}"
    return _actions(request, agent_id, errors=errors, message=message, status=status)


@operator_required
@require_POST
def agent_enabled(request: HttpRequest, agent_id: str) -> HttpResponse:
    value = request.POST.get("enabled", "")
    if value not in ("0", "1"):
        errors = {"enabled": "must be 0 or 1"}
        return _actions(request, agent_id, errors=errors, status=400)
    agent, errors, status = call(
        agents.agent_set_enabled, agent_id, value == "1", by=user_name(request)
    )
    message = "" if errors else f"{agent_id} {'enabled' if agent.enabled else 'disabled'}"
    return _actions(request, agent_id, errors=errors, message=message, status=status)


@operator_required
@require_POST
def agent_faults_clear(request: HttpRequest, agent_id: str) -> HttpResponse:
    """Disarm every fault of the agent (recorded as ``faults_cleared`` with who did it)."""
    _agent_state(agent_id)
    count, errors, status = call(faults_clear, agent_id, by=user_name(request))
    message = "" if errors else f"{count} fault{'s' if count != 1 else ''} cleared on {agent_id}"
    return _actions(request, agent_id, errors=errors, message=message, status=status)
