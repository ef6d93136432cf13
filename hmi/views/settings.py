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

from pas_core import config, policy
from pas_core.config import Hhmrs
from pas_core.llm.providers import providers_status
from pas_core.models import Agent
from pas_core.services.providers import provider_cap_set, provider_save

from ..forms import SECTION_LABELS, SETTINGS_FORMS, ProviderForm, SettingsSectionForm
from ..permissions import operator_required
from .common import call, page, user_name

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
    since its last beat; the sweep may take one more interval to notice. Restarts back
    off: after a timeout from the second on, after an error from the first (at full
    jitter: the longest it can be).
    """
    cfg = Hhmrs(**{k: hhmrs[k] for k in config.HHMRS_FIELDS})
    stages = int(hhmrs["max_llm_retries"]) + 1
    restarts = int(hhmrs["max_restarts"])
    attempts = (restarts + 1) * stages
    missed_s = math.ceil(hhmrs["missed_heartbeat_threshold"]) * float(hhmrs["heartbeat_interval_s"])
    timeout_s = float(hhmrs["timeout_threshold_s"])
    detect = max(timeout_s, missed_s) + float(hhmrs["sweep_interval_s"])
    hang_backoff = stages * policy.backoff_total(cfg, max(0, restarts - 1))
    return {
        "attempts": attempts,
        "detect_s": detect,
        "total_s": attempts * detect + hang_backoff,
        "error_backoff_s": stages * policy.backoff_total(cfg, restarts),
        "missed_s": missed_s,
        # Both rules must hold (DESIGN 5): a shorter timeout is silently the longer one.
        "timeout_short": timeout_s < missed_s,
    }


def _providers() -> list[dict[str, Any]] | None:
    try:
        return providers_status()
    except Exception:  # noqa: BLE001 - the tab still shows the models
        return None


def _context(
    tab: str,
    bound: SettingsSectionForm | None = None,
    *,
    provider_form: ProviderForm | None = None,
    provider_errors: dict[str, str] | None = None,
) -> dict[str, Any]:
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
        "provider_form": provider_form or ProviderForm(),
        "provider_errors": provider_errors or {},
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
            hhmrs = config.document_get()["hhmrs"]
            if section == "hhmrs" and worst_case(hhmrs)["timeout_short"]:
                messages.warning(
                    request,
                    f"The timeout threshold ({hhmrs['timeout_threshold_s']} s) is shorter than "
                    "heartbeat interval × missed heartbeats: attempts time out after the "
                    "longer of the two.",
                )
            return redirect(reverse("hmi:settings") + f"?tab={section}")
    return page(request, "hmi/settings.html", _context(section, form), status=400)


def _models_tab(
    request: HttpRequest,
    *,
    form: ProviderForm | None = None,
    errors: dict[str, str] | None = None,
    status: int = 400,
) -> HttpResponse:
    ctx = _context("models", provider_form=form, provider_errors=errors)
    return page(request, "hmi/settings.html", ctx, status=status)


@operator_required
@require_POST
def provider_save_view(request: HttpRequest) -> HttpResponse:
    """Add or change a provider (as ``pas provider add`` does); errors shown in place."""
    form = ProviderForm(request.POST)
    if not form.is_valid():
        return _models_tab(request, form=form)
    data = form.cleaned_data
    row, errors, status = call(
        provider_save,
        data["name"],
        base_url=data["base_url"],
        key_env=data["key_env"],
        max_concurrency=data["max_concurrency"],
        structured=data["structured"],
        by=user_name(request),
    )
    if errors:
        for field, reason in errors.items():
            form.add_error(field if field in form.fields else None, reason)
        return _models_tab(request, form=form, status=status)
    created = row[1]
    messages.success(request, f"Provider {data['name']} {'added' if created else 'saved'}")
    return redirect(reverse("hmi:settings") + "?tab=models")


@operator_required
@require_POST
def provider_cap(request: HttpRequest, name: str) -> HttpResponse:
    """Set how many calls to a provider may be in flight at once."""
    raw = request.POST.get("max_concurrency", "")
    if not raw.strip().isdigit():
        return _models_tab(request, errors={"max_concurrency": "must be a whole number"})
    _row, errors, status = call(provider_cap_set, name, int(raw), by=user_name(request))
    if errors:
        return _models_tab(request, errors=errors, status=status)
    messages.success(request, f"{name}: up to {int(raw)} calls in flight at once")
    return redirect(reverse("hmi:settings") + "?tab=models")
