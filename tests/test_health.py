"""GET /health: the database, Redis and the Celery workers, without authentication."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from pas_core.stores.redis import _client
from tests import procs


@pytest.fixture
def redis_down(settings: Any) -> Iterator[None]:
    settings.REDIS_URL = f"redis://127.0.0.1:{procs.free_port()}/0"  # Nothing listens there.
    _client.cache_clear()
    yield
    _client.cache_clear()


@pytest.mark.django_db
def test_it_reports_the_database_and_redis_without_login(client: Any) -> None:
    response = client.get("/health")

    body = response.json()
    assert body["db"] == "ok"
    assert body["redis"] == "ok"
    # No worker runs in this test: the answer says so, and is not "ok".
    assert body["workers"] == 0
    assert body["status"] == "degraded"
    assert response.status_code == 503
    assert any(p.startswith("workers:") for p in body["problems"])


@pytest.mark.django_db
def test_it_reports_redis_down_as_degraded(client: Any, redis_down: None) -> None:
    response = client.get("/health")

    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "degraded"
    assert body["db"] == "ok"
    assert body["redis"] == "error"
    assert any(p.startswith("redis:") for p in body["problems"])


def get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_daphne_reports_ok_with_a_worker_on_each_queue(
    proc_env: Any, tree: Any, api_token: str
) -> None:
    env = proc_env()
    with (
        procs.celery_worker(env, queues="agents", name="agents", concurrency=1) as agents,
        procs.celery_worker(env, queues="hhmrs", name="hhmrs", concurrency=1) as hhmrs,
        procs.daphne_server(env) as web,
    ):
        status, body = get_json(web.url + "/health")
        # Daphne reads this test's database: the tree and the token made here.
        listed = get_json(web.url + "/api/agents", {"Authorization": f"Bearer {api_token}"})

    assert status == 200
    assert body["status"] == "ok"
    assert (body["db"], body["redis"]) == ("ok", "ok")
    assert body["workers"] == 2
    assert body["worker_names"] == sorted([agents.nodename, hhmrs.nodename])
    assert body["queues"] == {"agents": 1, "hhmrs": 1}
    assert body["problems"] == []
    assert listed[0] == 200
    assert len(listed[1]["agents"]) == 24
