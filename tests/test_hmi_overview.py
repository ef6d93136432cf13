"""The overview's read functions (pas_core.selectors, reused by /metrics later) and page,
and the settings page's warnings and words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from pas_core import config
from pas_core.models import Agent, Event, Run
from pas_core.selectors import failure_rates, interventions_by_bucket, run_durations
from tests.factories import AttemptFactory, EventFactory, JobFactory, RunFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 4, 12, 30, 30, tzinfo=UTC)


def _event_at(event_type: str, at: datetime, **data: Any) -> Event:
    event = EventFactory(event_type=event_type, agent_id="Dir-Code", data=data)
    Event.objects.filter(pk=event.pk).update(created_at=at)
    return event


def test_interventions_by_bucket_counts_each_kind_per_bucket() -> None:
    _event_at("hhmrs_timeout", NOW - timedelta(minutes=1))
    _event_at("hhmrs_timeout", NOW - timedelta(minutes=1, seconds=10))
    _event_at("hhmrs_restart", NOW - timedelta(minutes=1))
    _event_at("hhmrs_restart", NOW - timedelta(minutes=7), retry_type="llm_change")
    _event_at("hhmrs_failure", NOW - timedelta(minutes=40))
    _event_at("hhmrs_failure", NOW - timedelta(hours=3))  # Before the window.
    _event_at("job_started", NOW - timedelta(minutes=1))  # Not an intervention.
    buckets = interventions_by_bucket(NOW - timedelta(hours=1), 300, now=NOW)
    assert len(buckets) == 13  # 11:30 .. 12:30, five minutes each, empty ones included.
    assert buckets[0]["start"] == datetime(2025, 3, 4, 11, 30, tzinfo=UTC)
    by_start = {b["start"].strftime("%H:%M"): b for b in buckets}
    assert by_start["12:25"]["timeout"] == 2 and by_start["12:25"]["restart"] == 1
    assert by_start["12:20"]["switch"] == 1 and by_start["12:20"]["restart"] == 0
    assert by_start["11:50"]["failure"] == 1
    assert sum(b["failure"] for b in buckets) == 1


def test_interventions_by_bucket_of_a_day_groups_by_hour() -> None:
    _event_at("hhmrs_escalation", NOW - timedelta(hours=5, minutes=10))
    buckets = interventions_by_bucket(NOW - timedelta(days=1), 3600, now=NOW)
    assert len(buckets) == 25
    assert [b["start"].hour for b in buckets if b["escalation"]] == [7]


def test_failure_rates_per_agent_and_model(tree: dict[str, Agent]) -> None:
    since = timezone.now() - timedelta(hours=1)
    job = JobFactory(run=RunFactory(), agent=tree["Dir-Code"], job_id="jc-1")
    done = timezone.now()
    for n, (status, model) in enumerate(
        [
            ("timed_out", "google/gemini-2.5-flash"),
            ("errored", "google/gemini-2.5-flash"),
            ("succeeded", "ollama/llama3.1:8b"),
            ("killed", "google/gemini-2.5-flash"),
        ],
        start=1,
    ):
        AttemptFactory(job=job, number=n, status=status, model=model, finished_at=done)
    AttemptFactory(job=job, number=9, status="running", model="ollama/llama3.1:8b")
    by_model = {r["key"]: r for r in failure_rates(since, by="model")}
    assert by_model["google/gemini-2.5-flash"] == {
        "key": "google/gemini-2.5-flash",
        "ended": 3,
        "failed": 2,
        "rate": pytest.approx(2 / 3),
    }
    assert by_model["ollama/llama3.1:8b"]["rate"] == 0.0  # The running one is not counted.
    assert failure_rates(since, by="agent")[0]["key"] == "Dir-Code"
    with pytest.raises(ValueError):
        failure_rates(since, by="run")


def test_run_durations_are_nearest_rank_percentiles() -> None:
    now = timezone.now()
    for seconds in (10, 20, 30, 40, 100):
        Run.objects.create(
            title="r",
            goal="g",
            status="completed",
            started_at=now - timedelta(seconds=seconds),
            finished_at=now,
        )
    Run.objects.create(title="still going", goal="g", status="running", started_at=now)
    out = run_durations(now - timedelta(hours=1))
    assert out["count"] == 5
    assert out["p50_s"] == pytest.approx(30)
    assert out["p95_s"] == pytest.approx(100) and out["max_s"] == pytest.approx(100)
    assert run_durations(now + timedelta(hours=1)) == {
        "count": 0,
        "p50_s": None,
        "p95_s": None,
        "max_s": None,
    }


def test_the_overview_page_draws_its_charts(viewer: Any) -> None:
    EventFactory(event_type="hhmrs_timeout", agent_id="Dir-Code")
    EventFactory(event_type="hhmrs_restart", agent_id="Dir-Code", data={"retry_type": "llm_change"})
    response = viewer.get(reverse("hmi:overview"))
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('<svg class="chart bars"') == 2  # Last hour, last day.
    assert 'class="seg k-timeout"' in html and 'class="seg k-switch"' in html
    assert 'data-total="hour-timeout"' in html and "?hmi=overview" in html
    assert 'id="tron-counters"' in html  # The stream pushes counters to this page too.
    charts = viewer.get(reverse("hmi:overview"), {"partial": "charts"})
    assert charts.content.decode().lstrip().startswith('<div id="overview-charts"')


def test_settings_warn_when_the_timeout_is_shorter_than_the_missed_beats(
    operator: Any,
) -> None:
    config.hhmrs_update({"heartbeat_interval_s": 30, "missed_heartbeat_threshold": 2})
    html = operator.get(reverse("hmi:settings")).content.decode()
    assert "data-timeout-warning hidden" in html  # 60 s is not shorter than 30 x 2.
    values = {**config.hhmrs_get().as_dict(), "timeout_threshold_s": 20}
    post = {k: ("on" if v is True else "" if v is False else v) for k, v in values.items()}
    response = operator.post(reverse("hmi:settings-save", args=["hhmrs"]), post, follow=True)
    html = response.content.decode()
    assert "The timeout threshold (20 s) is shorter than" in html  # The flash after saving.
    assert "data-timeout-warning hidden" not in html
    assert config.hhmrs_get().timeout_threshold_s == 20  # A warning, not a refusal.


@pytest.mark.parametrize(
    ("tab", "label"),
    [
        ("notifications", "Webhook URL"),
        ("hmi_display", "Hide the TRON banner after (s)"),
        ("tron_chime", "On a permanent failure"),
        ("hhmrs", "Missed heartbeats before timeout"),
    ],
)
def test_settings_labels_read_as_words(viewer: Any, tab: str, label: str) -> None:
    html = viewer.get(reverse("hmi:settings"), {"tab": tab}).content.decode()
    assert label in html
    for raw in ("Webhook url", "Banner auto clear s", "Budget cost usd max"):
        assert raw not in html


def test_the_submit_form_reads_as_words(operator: Any) -> None:
    html = operator.get(reverse("hmi:runs")).content.decode()
    assert "Cost budget (USD)" in html and "Budget cost usd max" not in html
