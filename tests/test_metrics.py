"""GET /metrics: who may read it, its format, and numbers that match what happened."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pas_core import tron
from pas_core.auth import token_create
from pas_core.models import Agent
from pas_core.stores import heartbeats
from pas_core.stores import metrics as counters
from pas_core.stores.redis import _client
from tests import procs
from tests.factories import AttemptFactory, EventFactory, JobFactory, RunFactory

pytestmark = pytest.mark.django_db

ELSEWHERE = "10.9.8.7"  # Not in the default networks (loopback only).


def scrape(client: Any, **extra: Any) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """GET /metrics; return ``{sample name: {sorted labels: value}}`` as prometheus parses it."""
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_an_anonymous_caller_outside_the_networks_is_refused(client: Any) -> None:
    response = client.get("/metrics", REMOTE_ADDR=ELSEWHERE)
    assert response.status_code == 401
    assert "PAS_METRICS_NETWORKS" in response.json()["detail"]


def test_an_agent_bound_token_is_refused(client: Any, tree: dict[str, Agent]) -> None:
    raw, _ = token_create(name="beats", agent_id="Dir-Code")
    response = client.get("/metrics", REMOTE_ADDR=ELSEWHERE, HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 403
    # Refused even from an allowed network: a token that is sent is the one that counts.
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 403


def test_an_unknown_token_is_refused(client: Any) -> None:
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer pas_nothing")
    assert response.status_code == 401


def test_a_full_token_reads_from_anywhere(client: Any, api_token: str) -> None:
    families = scrape(client, REMOTE_ADDR=ELSEWHERE, HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert families["pas_up"][(("component", "database"),)] == 1


def test_loopback_reads_without_a_token_by_default(client: Any) -> None:
    assert scrape(client)["pas_up"][(("component", "redis"),)] == 1  # REMOTE_ADDR 127.0.0.1
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::ffff:127.0.0.1").status_code == 200


def test_the_networks_come_from_the_environment(client: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("PAS_METRICS_NETWORKS", "10.9.0.0/16, not-a-network")
    assert client.get("/metrics", REMOTE_ADDR=ELSEWHERE).status_code == 200
    assert client.get("/metrics").status_code == 401  # Loopback is no longer listed.
    monkeypatch.setenv("PAS_METRICS_NETWORKS", "")
    assert client.get("/metrics", REMOTE_ADDR=ELSEWHERE).status_code == 401  # Tokens only.


def test_only_get_reads_them(client: Any) -> None:
    assert client.post("/metrics").status_code == 405


def test_the_numbers_match_what_happened(client: Any, tree: dict[str, Agent], redis: Any) -> None:
    # The event log: 2 timeouts and a restart of Dir-Code, a model switch, an
    # escalation and a permanent failure of Mgr-Code-01; other events are not counted.
    for event_type, agent_id, data in [
        ("hhmrs_timeout", "Dir-Code", {}),
        ("hhmrs_timeout", "Dir-Code", {}),
        ("hhmrs_restart", "Dir-Code", {}),
        ("hhmrs_restart", "Mgr-Code-01", {"retry_type": "llm_change"}),
        ("hhmrs_escalation", "Mgr-Code-01", {}),
        ("hhmrs_failure", "Mgr-Code-01", {}),
        ("job_started", "Dir-Code", {}),
    ]:
        EventFactory(event_type=event_type, agent_id=agent_id, data=data)
    # Attempts: one running, two succeeded, one timed out; tokens and cost by model.
    job = JobFactory(run=RunFactory(), agent=tree["Dir-Code"], job_id="jc-metrics-1")
    for number, status, model, tokens, cost in [
        (1, "timed_out", "google/gemini-2.5-flash", 100, 0.01),
        (2, "succeeded", "google/gemini-2.5-flash", 250, 0.02),
        (3, "succeeded", "ollama/llama3.1:8b", 40, 0.0),
        (4, "running", "ollama/llama3.1:8b", 0, 0.0),
    ]:
        attempt = AttemptFactory(
            job=job, number=number, status=status, model=model, tokens=tokens, cost_usd=cost
        )
    # The running one is supervised (in flight).
    heartbeats.hb_register(attempt.pk, agent_id="Dir-Code", job_id=job.pk)
    # Redis: 3 beats accepted, one sweep (the supervised attempt is not overdue), and
    # messages waiting in the broker's queues.
    for status in (202, 202, 409, 202):
        counters.beat_counted(status)
    assert counters.beats.flush() == 3
    assert tron.sweep() == 0
    redis.lpush("agents", "m1", "m2")
    redis.lpush("hhmrs", "m3")

    m = scrape(client)

    agent = (("agent", "Dir-Code"),)
    mgr = (("agent", "Mgr-Code-01"),)
    assert m["pas_hhmrs_timeouts_total"] == {agent: 2}
    assert m["pas_hhmrs_restarts_total"] == {agent: 1}  # The switch is not a restart.
    assert m["pas_hhmrs_model_switches_total"] == {mgr: 1}
    assert m["pas_hhmrs_escalations_total"] == {mgr: 1}
    assert m["pas_hhmrs_permanent_failures_total"] == {mgr: 1}
    assert m["pas_attempts"][(("status", "succeeded"),)] == 2
    assert m["pas_attempts"][(("status", "timed_out"),)] == 1
    assert m["pas_attempts"][(("status", "running"),)] == 1
    assert m["pas_attempts"][(("status", "killed"),)] == 0
    assert m["pas_runs"][(("status", "queued"),)] == 1
    gemini, llama = (("model", "google/gemini-2.5-flash"),), (("model", "ollama/llama3.1:8b"),)
    assert m["pas_llm_tokens_total"] == {gemini: 350, llama: 40}
    assert m["pas_llm_cost_usd_total"][gemini] == pytest.approx(0.03)
    assert m["pas_heartbeats_accepted_total"][()] == 3
    assert m["pas_tron_sweep_duration_seconds_count"][()] == 1
    assert m["pas_tron_sweep_duration_seconds_bucket"][(("le", "+Inf"),)] == 1
    assert m["pas_tron_overdue_found_bucket"][(("le", "0.0"),)] == 1  # It found none.
    assert m["pas_tron_overdue_found_sum"][()] == 0
    assert m["pas_attempts_in_flight"][()] == 1
    assert m["pas_queue_depth"] == {(("queue", "agents"),): 2, (("queue", "hhmrs"),): 1}
    assert m["pas_workers_alive"][(("queue", "agents"),)] == 0  # No worker in this test.
    assert m["pas_retry_queue_jobs"][()] == 0
    assert all(v == 1 for v in m["pas_up"].values())


def test_an_overdue_attempt_is_counted_by_the_sweep_that_finds_it(
    client: Any, tree: dict[str, Agent]
) -> None:
    job = JobFactory(run=RunFactory(), agent=tree["Dir-Code"], job_id="jc-metrics-2")
    attempt = AttemptFactory(job=job, number=1)
    heartbeats.hb_register(attempt.pk, agent_id="Dir-Code", job_id=job.pk, now=1.0)
    assert tron.sweep() == 1  # Its last beat was at the epoch's first second.
    m = scrape(client)
    assert m["pas_tron_overdue_found_sum"][()] == 1
    assert m["pas_tron_overdue_found_bucket"][(("le", "0.0"),)] == 0
    assert m["pas_tron_overdue_found_bucket"][(("le", "1.0"),)] == 1
    assert m["pas_hhmrs_timeouts_total"] == {(("agent", "Dir-Code"),): 1}


@pytest.fixture
def redis_down(settings: Any) -> Iterator[None]:
    settings.REDIS_URL = f"redis://127.0.0.1:{procs.free_port()}/0"  # Nothing listens there.
    settings.CELERY_BROKER_URL = settings.REDIS_URL
    _client.cache_clear()
    yield
    _client.cache_clear()


def test_it_answers_without_redis(client: Any, redis_down: None) -> None:
    m = scrape(client)
    # The database's families are there; Redis' and the broker's are said to be away.
    assert m["pas_up"] == {
        (("component", "database"),): 1,
        (("component", "redis"),): 0,
        (("component", "broker"),): 0,
    }
    assert "pas_attempts" in m
    assert "pas_heartbeats_accepted_total" not in m
