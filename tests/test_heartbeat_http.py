"""POST /api/agents/{id}/heartbeat: the lean ASGI route on a real Daphne, and Django's fallback.

Bearer-token beats are answered by ``pas_core.heartbeat_asgi`` in front of Django;
anything else (no token, a session, another path) goes on to Django, which answers the
same way. Django's middleware adds ``X-Frame-Options`` to every answer and the lean route
does not: that header tells the two apart.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from pas_core.auth import token_create
from pas_core.models import Attempt, Job, Run
from pas_core.stores import heartbeats
from tests import procs
from tests.factories import time_out

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

STARTED_AGO_S = 10.0


def running_attempt(agent_id: str) -> Attempt:
    """Create a running job and attempt for ``agent_id``, supervised since 10 s ago."""
    run = Run.objects.create(title="Beating", goal="Send beats", status=Run.Status.RUNNING)
    job = Job.objects.create(
        job_id=f"jc-{str(run.run_id)[:8]}-{agent_id.lower()}",
        run=run,
        agent_id=agent_id,
        status=Job.Status.RUNNING,
    )
    attempt = Attempt.objects.create(
        job=job,
        number=1,
        agent_id=agent_id,
        model="google/gemini-2.5-flash",
        status=Attempt.Status.RUNNING,
        started_at=datetime.now(tz=UTC),
        celery_task_id=uuid.uuid4().hex,
    )
    Job.objects.filter(pk=job.pk).update(current_attempt=attempt)
    heartbeats.hb_register(
        attempt.pk, agent_id=agent_id, job_id=job.pk, now=time.time() - STARTED_AGO_S
    )
    return attempt


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def daphne(tree: Any, proc_env: Any) -> Any:
    with procs.daphne_server(proc_env()) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            yield client


@pytest.fixture
def agent_token(tree: Any) -> str:
    raw, _ = token_create(name="dir-code-agent", agent_id="Dir-Code")
    return raw


def test_the_lean_route_accepts_a_beat_and_moves_the_score(
    daphne: httpx.Client, agent_token: str, api_token: str
) -> None:
    attempt = running_attempt("Dir-Code")
    before = heartbeats.hb_last(attempt.pk)
    assert before is not None

    sent_at = time.time()
    response = daphne.post(
        "/api/agents/Dir-Code/heartbeat",
        json={"job_id": attempt.job_id, "progress": 0.5, "message": "halfway", "state": "plan"},
        headers=bearer(agent_token),
    )

    assert response.status_code == 202
    assert response.json() == {"status": "accepted"}
    assert "x-frame-options" not in response.headers  # Answered in front of Django.
    after = heartbeats.hb_last(attempt.pk)
    assert after is not None and after >= sent_at - 1  # Moved from 10 s ago to now.
    assert after - before >= STARTED_AGO_S - 1
    details = heartbeats.hb_details(attempt.pk)
    assert (details["progress"], details["message"], details["state"]) == ("0.5", "halfway", "plan")

    # A full-API token may beat for any agent; with no job it only marks the agent alive.
    full = daphne.post("/api/agents/Dir-Code/heartbeat", json={}, headers=bearer(api_token))
    assert full.status_code == 202


def test_a_bound_token_only_sends_its_own_agents_beats(
    daphne: httpx.Client, agent_token: str
) -> None:
    attempt = running_attempt("Dir-Code")

    other_agent = daphne.post(
        "/api/agents/Dir-Models/heartbeat",
        json={"job_id": attempt.job_id},
        headers=bearer(agent_token),
    )
    other_endpoint = daphne.get("/api/agents", headers=bearer(agent_token))
    no_token = daphne.post("/api/agents/Dir-Code/heartbeat", json={"job_id": attempt.job_id})
    bad_token = daphne.post(
        "/api/agents/Dir-Code/heartbeat", json={}, headers=bearer("pas_not-a-token")
    )

    assert other_agent.status_code == 403  # A good token, for another agent.
    assert other_agent.json()["detail"] == "token: may only send heartbeats for Dir-Code"
    assert other_endpoint.status_code == 401  # Nothing but heartbeats.
    assert no_token.status_code == 401
    assert "x-frame-options" in no_token.headers  # No token: Django answered.
    assert bad_token.status_code == 401


def test_the_lean_route_refuses_bad_beats_with_the_reason(
    daphne: httpx.Client, agent_token: str, api_token: str
) -> None:
    attempt = running_attempt("Dir-Code")
    timed_out = running_attempt("Dir-Code")
    time_out(timed_out.pk, now=time.time(), last_beat=time.time() - 61)
    url = "/api/agents/Dir-Code/heartbeat"
    auth = bearer(agent_token)

    bad_progress = daphne.post(url, json={"job_id": attempt.job_id, "progress": 1.5}, headers=auth)
    not_a_number = daphne.post(url, json={"progress": "half"}, headers=auth)
    malformed = daphne.post(url, content=b'{"job_id": ', headers=auth)
    unknown_job = daphne.post(url, json={"job_id": "jc-nope"}, headers=auth)
    ended = daphne.post(url, json={"job_id": timed_out.job_id}, headers=auth)
    unknown_field = daphne.post(url, json={"jobid": attempt.job_id}, headers=auth)
    too_big = daphne.post(url, json={"message": "x" * 20_000}, headers=auth)
    unknown_agent = daphne.post(
        "/api/agents/Dir-Nobody/heartbeat", json={}, headers=bearer(api_token)
    )

    assert bad_progress.status_code == 422
    assert bad_progress.json()["errors"][0]["field"] == "progress"
    assert not_a_number.status_code == 422
    assert not_a_number.json()["errors"][0]["field"] == "progress"
    assert malformed.status_code == 400
    assert unknown_job.status_code == 404
    assert unknown_job.json()["detail"].startswith("job_id:")
    assert ended.status_code == 409  # Timed out: the agent should stop working.
    assert unknown_field.status_code == 422
    assert unknown_field.json()["errors"][0]["field"] == "jobid"
    assert too_big.status_code == 413
    assert unknown_agent.status_code == 404
    # None of the refused beats touched the live attempt.
    assert heartbeats.hb_last(attempt.pk) == pytest.approx(time.time() - STARTED_AGO_S, abs=5)
    # The late beat did not bring the timed-out attempt back.
    assert heartbeats.hb_last(timed_out.pk) is None


def test_tokens_post_to_the_rest_of_the_api_through_a_real_server(
    daphne: httpx.Client, agent_token: str, api_token: str
) -> None:
    url = "/api/agents/Architect/handle_child_timeout"
    body = {"child_id": "Dir-Code", "restart_count": 0}

    full = daphne.post(url, json=body, headers=bearer(api_token))
    bound = daphne.post(url, json=body, headers=bearer(agent_token))
    no_token = daphne.post(url, json=body)

    assert full.status_code == 200  # The seed's curl example with a full-API token.
    assert bound.status_code == 401  # A bound token may only send heartbeats.
    assert no_token.status_code == 401


@pytest.mark.django_db
def test_the_django_fallback_with_a_session_gives_the_same_answers(
    user_client: Any, tree: Any
) -> None:
    attempt = running_attempt("Dir-Code")
    timed_out = running_attempt("Dir-Code")
    time_out(timed_out.pk, now=time.time(), last_beat=time.time() - 61)
    url = "/api/agents/Dir-Code/heartbeat"

    def beat(body: Any, path: str = url) -> Any:
        data = body if isinstance(body, str) else json.dumps(body)
        return user_client.post(path, data, content_type="application/json")

    accepted = beat({"job_id": attempt.job_id, "progress": 0.25})
    assert accepted.status_code == 202
    assert heartbeats.hb_last(attempt.pk) == pytest.approx(time.time(), abs=5)
    assert heartbeats.hb_details(attempt.pk)["progress"] == "0.25"

    bad_progress = beat({"job_id": attempt.job_id, "progress": -0.1})
    assert bad_progress.status_code == 422
    assert bad_progress.json()["errors"][0]["field"] == "progress"
    assert beat('{"job_id": ').status_code == 400
    assert beat({"job_id": "jc-nope"}).status_code == 404
    assert beat({"job_id": timed_out.job_id}).status_code == 409
    assert beat({}, path="/api/agents/Dir-Nobody/heartbeat").status_code == 404


@pytest.mark.django_db
def test_the_django_fallback_with_tokens_gives_the_same_answers(
    client: Any, agent_token: str
) -> None:
    attempt = running_attempt("Dir-Code")

    def beat(path: str, token: str) -> Any:
        return client.post(
            path,
            {"job_id": attempt.job_id},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )

    # The test client goes straight to Django, as a server without the lean route would.
    assert beat("/api/agents/Dir-Code/heartbeat", agent_token).status_code == 202
    assert beat("/api/agents/Dir-Models/heartbeat", agent_token).status_code == 403
    assert beat("/api/agents/Dir-Code/heartbeat", "pas_not-a-token").status_code == 401
    assert client.get("/api/agents", HTTP_AUTHORIZATION=f"Bearer {agent_token}").status_code == 401


def test_the_lean_route_reconnects_after_losing_its_redis_connection(
    agent_token: str, redis: Any
) -> None:
    from pas_core.heartbeat_asgi import CONNECTION_NAME, heartbeat_front

    attempt = running_attempt("Dir-Code")
    body = json.dumps({"job_id": attempt.job_id}).encode()

    async def django(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a bearer-token beat never reaches Django")

    async def beat(front: Any) -> int:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/api/agents/Dir-Code/heartbeat",
            "headers": [(b"authorization", f"Bearer {agent_token}".encode())],
        }
        await front(scope, receive, send)
        return int(sent[0]["status"])

    def route_connections() -> list[str]:
        db = redis.connection_pool.connection_kwargs["db"]  # Ours only: never another session's.
        return [
            c["id"]
            for c in redis.client_list()
            if c.get("name") == CONNECTION_NAME and int(c["db"]) == db
        ]

    async def scenario() -> tuple[list[int], int, list[int]]:
        front = heartbeat_front(django)
        before = [await beat(front) for _ in range(3)]
        killed = 0
        for client_id in route_connections():
            killed += redis.client_kill_filter(_id=client_id)
        await asyncio.sleep(0.2)  # The route's reader notices the closed connection.
        after = [await beat(front) for _ in range(3)]
        return before, killed, after

    # In a thread of its own: Playwright's sync API (tests/browser, package-scoped)
    # leaves an event loop marked running in this thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        before, killed, after = pool.submit(asyncio.run, scenario()).result()

    assert before == [202] * 3
    assert killed == 1  # One shared connection for every beat.
    assert after == [202] * 3  # A new connection, opened by the next beat.
