"""The overview: interventions over time, failure rates, run durations (SVG, no script)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from pas_core import selectors as core

from ..charts import rate_bars, stacked_bars
from ..labels import KIND_LABELS
from .common import fragment, page

# (name, span, bucket seconds, label every n-th bucket, label format)
PERIODS = [
    ("hour", timedelta(hours=1), 60, 10, "%H:%M"),
    ("day", timedelta(days=1), 3600, 4, "%H:%M"),
]


def _period(name: str, span: timedelta, bucket_s: int, every: int, fmt: str) -> dict[str, Any]:
    now = timezone.now()
    since = now - span
    buckets = core.interventions_by_bucket(since, bucket_s, now=now)
    totals = {k: sum(b[k] for b in buckets) for k in core.INTERVENTION_KINDS}
    return {
        "name": name,
        "chart": stacked_bars(buckets, core.INTERVENTION_KINDS, label_every=every, fmt=fmt),
        "totals": [(k, KIND_LABELS[k], totals[k]) for k in core.INTERVENTION_KINDS],
        "by_agent": rate_bars(core.failure_rates(since, by="agent")),
        "by_model": rate_bars(core.failure_rates(since, by="model")),
        "durations": core.run_durations(since),
    }


def overview_context() -> dict[str, Any]:
    return {"periods": [_period(*p) for p in PERIODS], "kinds": KIND_LABELS}


@login_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    ctx = overview_context()
    if request.GET.get("partial") == "charts":
        return fragment(request, "hmi/overview.html#charts", ctx)
    return page(request, "hmi/overview.html", ctx)
