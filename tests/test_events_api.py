"""GET /api/events?after=ID&limit=N and POST /api/events/broadcast (DESIGN section 8)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings

from pas_core.models import Event
from pas_core.stores.events import GROUP, event_emit

pytestmark = pytest.mark.django_db


@pytest.fixture
def auth(api_token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {api_token}"}


def emit_three() -> list[Event]:
    return [
        event_emit("hhmrs_timeout", {"agent_id": "Dir-Code", "n": 1}),
        event_emit("hhmrs_restart", {"agent_id": "Dir-Code", "n": 2}),
        event_emit("agent_status", {"agent_id": "Architect", "n": 3}),
    ]


def test_it_lists_events_after_an_id_ascending(client: Any, auth: dict[str, str]) -> None:
    first, second, third = emit_three()

    response = client.get(f"/api/events?after={first.id}", **auth)

    assert response.status_code == 200
    listed = response.json()["events"]
    assert [e["id"] for e in listed] == [second.id, third.id]  # After the id, oldest first.
    restart = listed[0]
    assert {"id", "event_type", "data", "created_at"} <= set(restart)  # The contract's keys.
    assert restart["event_type"] == "hhmrs_restart"
    assert restart["data"]["agent_id"] == "Dir-Code"
    assert restart["data"]["n"] == 2
    assert restart["created_at"].startswith(str(second.created_at.date()))


def test_limit_caps_the_page_and_after_pages_on(client: Any, auth: dict[str, str]) -> None:
    first, second, third = emit_three()

    page = client.get(f"/api/events?after={first.id - 1}&limit=2", **auth).json()["events"]
    rest = client.get(f"/api/events?after={page[-1]['id']}&limit=2", **auth).json()["events"]

    assert [e["id"] for e in page] == [first.id, second.id]
    assert [e["id"] for e in rest] == [third.id]


def test_nothing_after_the_last_id_is_an_empty_list(client: Any, auth: dict[str, str]) -> None:
    *_, last = emit_three()

    response = client.get(f"/api/events?after={last.id}", **auth)

    assert response.json() == {"events": []}


def test_it_filters_by_event_type(client: Any, auth: dict[str, str]) -> None:
    emit_three()

    listed = client.get("/api/events?event_type=hhmrs_timeout", **auth).json()["events"]

    assert [e["data"]["n"] for e in listed] == [1]


@pytest.mark.parametrize("query", ["after=abc", "limit=many"])
def test_a_bad_query_is_422(client: Any, auth: dict[str, str], query: str) -> None:
    response = client.get(f"/api/events?{query}", **auth)

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == query.split("=")[0]


def test_broadcast_stores_the_event_and_answers_the_contract(
    client: Any, auth: dict[str, str], redis: Any, request: Any
) -> None:
    # A listener on the channel layer's group channel, as an open SSE stream is.
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    pubsub = redis.pubsub()
    pubsub.subscribe(f"{prefix}__group__{GROUP}")
    pubsub.get_message(timeout=1)  # The subscription's confirmation.
    request.addfinalizer(pubsub.close)  # Even when an assertion fails below.

    response = client.post(
        "/api/events/broadcast",
        json.dumps({"event_type": "operator_note", "data": {"message": "Hello, HMI"}}),
        content_type="application/json",
        **auth,
    )

    assert response.status_code == 200
    answer = response.json()
    assert answer["status"] == "broadcasted"
    assert answer["event_type"] == "operator_note"
    # A Redis subscriber is not a stream: ``clients`` counts the open SSE streams of the
    # web processes (none here; tests/test_stream.py opens some).
    assert answer["clients"] == 0
    stored = Event.objects.get(event_type="operator_note")
    assert stored.data["message"] == "Hello, HMI"
    assert answer["id"] == stored.id
    pushed = pubsub.get_message(timeout=2)
    assert pushed is not None and pushed["type"] == "message"
    pubsub.close()


def test_broadcast_without_listeners_counts_none(client: Any, auth: dict[str, str]) -> None:
    response = client.post(
        "/api/events/broadcast",
        json.dumps({"event_type": "operator_note"}),
        content_type="application/json",
        **auth,
    )

    assert response.json()["clients"] == 0
    assert Event.objects.get(event_type="operator_note").data["timestamp"] > 0


@pytest.mark.parametrize(
    "body",
    [
        {"event_type": "bad type!"},
        {"event_type": ""},
        {"event_type": "x" * 65},
        {"event_type": 5},
        {"data": {}},
        {"event_type": "ok", "data": "not an object"},
        {"event_type": "ok", "extra": 1},
    ],
)
def test_a_bad_broadcast_is_422(client: Any, auth: dict[str, str], body: dict[str, Any]) -> None:
    response = client.post(
        "/api/events/broadcast", json.dumps(body), content_type="application/json", **auth
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] in {"event_type", "data", "extra"}
    assert Event.objects.count() == 0  # Nothing stored.


def test_a_malformed_broadcast_is_400(client: Any, auth: dict[str, str]) -> None:
    response = client.post(
        "/api/events/broadcast", "{nope", content_type="application/json", **auth
    )

    assert response.status_code == 400


def test_events_need_authentication(client: Any) -> None:
    assert client.get("/api/events").status_code == 401
