"""``GET /metrics``: Prometheus' text format, read from the database and Redis at scrape time.

PAS runs as many processes (web, workers, beat, on several hosts), so no process's own
memory holds the numbers: a custom collector asks the shared stores when Prometheus
scrapes. From the database (the event log and the attempts): interventions by kind
and agent, attempts by status, runs by status, the retry queue, tokens and cost by
model. From Redis: beats accepted, TRON's sweep durations and overdue attempts found
per sweep (``stores.metrics``), attempts in flight, live workers, and the depth of the
Celery queues in the broker. A store that does not answer is reported as
``pas_up{component=...} 0`` and its families are left out: the scrape still answers.

Access: a bearer token (not one bound to an agent), or a request from a network of
``PAS_METRICS_NETWORKS`` (comma-separated CIDRs; default ``127.0.0.1/32,::1/128``;
empty: tokens only). Behind a proxy the address is the proxy's: restrict ``/metrics``
there, or scrape with a token.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from .auth import bearer, token_check
from .models import Attempt, Job, Run
from .selectors import INTERVENTION_KINDS, interventions_by_agent
from .stores import heartbeats, workers
from .stores import metrics as counters
from .stores.redis import broker_client, redis_client, rkey

log = logging.getLogger(__name__)

DEFAULT_NETWORKS = "127.0.0.1/32,::1/128"
QUEUES = ("agents", "hhmrs")
# Kombu's Redis transport keeps a queue's prioritised messages in lists named after
# it with these suffixes (priority steps 3, 6, 9; priority 0 is the bare name).
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
# One counter family per intervention kind (selectors.intervention_kind).
INTERVENTIONS = {
    "timeout": ("pas_hhmrs_timeouts", "Attempts TRON timed out (hhmrs_timeout events)"),
    "restart": ("pas_hhmrs_restarts", "Jobs restarted by their parent (hhmrs_restart)"),
    "switch": (
        "pas_hhmrs_model_switches",
        "Jobs re-sent on another model by their grandparent (hhmrs_restart, llm_change)",
    ),
    "escalation": ("pas_hhmrs_escalations", "Jobs escalated to the grandparent"),
    "failure": ("pas_hhmrs_permanent_failures", "Jobs failed for good (hhmrs_failure)"),
}


def networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Return the networks of ``PAS_METRICS_NETWORKS`` (read now); bad entries are skipped."""
    raw = os.environ.get("PAS_METRICS_NETWORKS", DEFAULT_NETWORKS)
    out = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            log.error("PAS_METRICS_NETWORKS: %r is not a network; ignored", item)
    return out


def _from_allowed_network(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # A dual-stack socket's view of an IPv4 client.
    return any(ip.version == net.version and ip in net for net in networks())


def access_refusal(request: HttpRequest) -> JsonResponse | None:
    """Return the refusal for a request that may not read the metrics, else None."""
    raw = bearer(request.headers.get("Authorization"))
    if raw is not None:
        found = token_check(raw)
        if found is None:
            return JsonResponse({"detail": "token: unknown or revoked"}, status=401)
        if found[1]:
            detail = f"token: bound to agent {found[1]}; it may only send heartbeats"
            return JsonResponse({"detail": detail}, status=403)
        return None
    if _from_allowed_network(request.META.get("REMOTE_ADDR") or ""):
        return None
    detail = "authentication required: a bearer token, or a network of PAS_METRICS_NETWORKS"
    return JsonResponse({"detail": detail}, status=401)


class PasCollector:
    """Collect every PAS metric from the database and Redis, once per scrape."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "pas_up", "Whether a store answered this scrape (1) or not (0)", labels=["component"]
        )
        away: set[str] = set()
        for component, part in (
            ("database", self._database),
            ("redis", self._redis),
            ("broker", self._broker),
        ):
            if component == "broker" and "redis" in away and _broker_is_redis():
                up.add_metric([component], 0)  # The same server: do not wait for it twice.
                continue
            try:
                families = list(part())
            except Exception as exc:  # noqa: BLE001 - a store away is a metric, not an error
                log.warning("/metrics: the %s did not answer: %s", component, exc)
                up.add_metric([component], 0)
                away.add(component)
                continue
            up.add_metric([component], 1)
            yield from families
        yield up

    def _database(self) -> Iterator[Metric]:
        by_agent = interventions_by_agent()
        for kind in INTERVENTION_KINDS:
            name, doc = INTERVENTIONS[kind]
            family = CounterMetricFamily(name, doc, labels=["agent"])
            for agent_id, kinds in sorted(by_agent.items()):
                if kinds[kind]:
                    family.add_metric([agent_id], kinds[kind])
            yield family
        yield _by_status(
            "pas_attempts", "Attempts by status (stored rows)", Attempt, Attempt.Status.values
        )
        yield _by_status("pas_runs", "Runs by status (stored rows)", Run, Run.Status.values)
        retry = Job.objects.filter(status=Job.Status.FAILED, retryable=True).count()
        yield GaugeMetricFamily(
            "pas_retry_queue_jobs", "Jobs failed for good that wait for a person", value=retry
        )
        tokens = CounterMetricFamily(
            "pas_llm_tokens", "Tokens spent, by model (Attempt.tokens)", labels=["model"]
        )
        cost = CounterMetricFamily(
            "pas_llm_cost_usd", "Cost in US dollars, by model (Attempt.cost_usd)", labels=["model"]
        )
        rows = Attempt.objects.values("model").annotate(t=Sum("tokens"), c=Sum("cost_usd"))
        for row in sorted(rows, key=lambda r: r["model"]):
            tokens.add_metric([row["model"] or "-"], row["t"] or 0)
            cost.add_metric([row["model"] or "-"], row["c"] or 0.0)
        yield tokens
        yield cost

    def _redis(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "pas_heartbeats_accepted",
            "Heartbeats accepted (counted per process, added to Redis every second)",
            value=counters.beats.read(),
        )
        for name, key, doc in (
            ("pas_tron_sweep_duration_seconds", counters.SWEEP_S, "How long TRON's sweeps took"),
            ("pas_tron_overdue_found", counters.OVERDUE, "Overdue attempts found per sweep"),
        ):
            buckets, total = counters.histogram_read(key)
            yield HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)
        skipped = int(redis_client().get(rkey("tron", "skipped")) or 0)
        yield GaugeMetricFamily(
            "pas_tron_lock_skips",
            "Sweeps in a row that found TRON's lock held (a slow or dead sweeper)",
            value=skipped,
        )
        yield GaugeMetricFamily(
            "pas_attempts_in_flight",
            "Running attempts TRON supervises (the heartbeat store)",
            value=heartbeats.hb_supervised_count(),
        )
        alive = workers.workers_alive()
        family = GaugeMetricFamily(
            "pas_workers_alive", "Worker processes that ticked lately, by queue", labels=["queue"]
        )
        for queue in QUEUES:
            count = sum(1 for info in alive.values() if queue in info.get("queues", []))
            family.add_metric([queue], count)
        yield family

    def _broker(self) -> Iterator[Metric]:
        client = broker_client()
        pipe = client.pipeline(transaction=False)
        for queue in QUEUES:
            for suffix in PRIORITY_SUFFIXES:
                pipe.llen(queue + suffix)
        lengths = iter(pipe.execute())
        family = GaugeMetricFamily(
            "pas_queue_depth", "Messages waiting in a Celery queue (broker LLEN)", labels=["queue"]
        )
        for queue in QUEUES:
            family.add_metric([queue], sum(next(lengths) for _ in PRIORITY_SUFFIXES))
        yield family


def _broker_is_redis() -> bool:
    return bool(settings.CELERY_BROKER_URL == settings.REDIS_URL)


def _by_status(name: str, doc: str, model: Any, statuses: list[str]) -> GaugeMetricFamily:
    counts = dict(model.objects.values_list("status").annotate(n=Count("pk")).order_by())
    family = GaugeMetricFamily(name, doc, labels=["status"])
    for status in statuses:
        family.add_metric([status], counts.get(status, 0))
    return family


def metrics_text() -> bytes:
    """Return every metric in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PasCollector())
    return generate_latest(registry)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    refusal = access_refusal(request)
    if refusal is not None:
        return refusal
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)


# Included by pas_core/urls.py as ``path("metrics", include("pas_core.metrics"))``.
urlpatterns = [path("", metrics, name="metrics")]
