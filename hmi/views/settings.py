"""Settings: HHMRS, Models, Notifications, Chimes, Display; saved through config."""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings as django_settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from pas_core import config
from pas_core.llm.providers import providers_status
from pas_core.models import Agent

from ..forms import SECTION_LABELS, SETTINGS_FORMS, SettingsSectionForm
from ..permissions import operator_required
from .common import page

TABS = [
    ("hhmrs", "HHMRS"),
    ("models", "Models"),
    ("notifications", "Notifications"),
    ("tron_chime", "Chimes"),
    ("hmi_display", "Display"),
]


def worst_case(hhmrs: dict[str, Any]) -> dict[str, Any]:
    """Return the most attempts a job can take, and how long a job that always hangs lasts.

    An attempt is overdue once ``max(timeout_threshold_s, missed x interval)`` passed
    since its last beat; the sweep may take one more interval to notice.
    """
    attempts = (int(hhmrs["max_restarts"]) + 1) * (int(hhmrs["max_llm_retries"]) + 1)
    detect = max(
        float(hhmrs["timeout_threshold_s"]),
        math.ceil(hhmrs["missed_heartbeat_threshold"]) * float(hhmrs["heartbeat_interval_s"]),
    ) + float(hhmrs["sweep_interval_s"])
    return {"attempts": attempts, "detect_s": detect, "total_s": attempts * detect}


def _providers() -> list[dict[str, Any]] | None:
    try:
        return providers_status()
    except Exception:  # noqa: BLE001 - the tab still shows the models
        return None


def _context(tab: str, bound: SettingsSectionForm | None = None) -> dict[str, Any]:
    doc = config.document_get()
    forms = {
        name: (bound if bound is not None and bound.section == name else cls(initial=doc[name]))
        for name, cls in SETTINGS_FORMS.items()
    }
    return {
        "tab": tab,
        "tabs": TABS,
        "forms": forms,
        "form": forms.get(tab),
        "doc": doc,
        "worst": worst_case(doc["hhmrs"]),
        "ranges": config.HHMRS_FIELDS,
        "agents": list(Agent.objects.all()),
        "providers": _providers() if tab == "models" else None,
        "pas_llm_mode": django_settings.PAS_LLM_MODE,
    }


@login_required
@require_GET
def settings_page(request: HttpRequest) -> HttpResponse:
    tab = request.GET.get("tab", "hhmrs")
    if tab not in dict(TABS):
        tab = "hhmrs"
    return page(request, "hmi/settings.html", _context(tab))


@operator_required
@require_POST
def settings_save(request: HttpRequest, section: str) -> HttpResponse:
    """Save one section; errors (from the form or from config) are shown in place."""
    form_class = SETTINGS_FORMS.get(section)
    if form_class is None:
        raise Http404(f"no settings section {section!r}")
    form = form_class(request.POST)
    valid = form.is_valid()
    try:
        if valid:
            config.document_save({section: form.cleaned_data})
        else:
            # Let config judge the fields that parsed, so every reason shows at once.
            config.document_validate({section: form.cleaned_data})
    except config.SettingsError as exc:
        form.settings_errors(exc.errors)
    else:
        if valid:
            messages.success(request, f"{SECTION_LABELS[section]} settings saved")
            return redirect(reverse("hmi:settings") + f"?tab={section}")
    return page(request, "hmi/settings.html", _context(section, form), status=400)
