"""GET /api/agents and /api/agents/{id}/health."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.django_db


def test_it_lists_the_24_agents(user_client: Any, tree: Any) -> None:
    response = user_client.get("/api/agents")

    assert response.status_code == 200
    agents = {a["agent_id"]: a for a in response.json()["agents"]}
    assert len(agents) == 24
    for agent in agents.values():
        assert {"agent_id", "role", "lane", "parent", "current_model", "status"} <= set(agent)
    assert agents["Dir-Code"]["role"] == "director"
    assert agents["Dir-Code"]["lane"] == "Code"
    assert agents["Dir-Code"]["parent"] == "Architect"
    assert agents["Dir-Code"]["current_model"] == "google/gemini-2.5-flash"
    assert agents["Dir-Code"]["status"] == "idle"
    assert agents["PAS Root"]["parent"] is None
    assert agents["Mgr-Models-01"]["parent"] == "Dir-Models"


def test_it_lists_the_tree_in_order(user_client: Any, tree: Any) -> None:
    ids = [a["agent_id"] for a in user_client.get("/api/agents").json()["agents"]]

    assert ids[:3] == ["PAS Root", "Architect", "Dir-Code"]


def test_an_agents_health_names_its_role_parent_and_children(user_client: Any, tree: Any) -> None:
    response = user_client.get("/api/agents/Dir-Code/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["agent"] == "Dir-Code"
    assert body["llm_model"] == "google/gemini-2.5-flash"
    assert body["agent_metadata"]["role"] == "director"
    assert body["agent_metadata"]["parent"] == "Architect"
    assert body["agent_metadata"]["grandparent"] == "PAS Root"
    assert sorted(body["agent_metadata"]["children"]) == [
        "Mgr-Code-01",
        "Mgr-Code-02",
        "Mgr-Code-03",
    ]


def test_an_agent_id_with_a_space_is_found(user_client: Any, tree: Any) -> None:
    response = user_client.get("/api/agents/PAS%20Root/health")

    assert response.status_code == 200
    assert response.json()["agent_metadata"]["children"] == ["Architect"]


def test_an_unknown_agent_is_404(user_client: Any, tree: Any) -> None:
    response = user_client.get("/api/agents/Dir-Nobody/health")

    assert response.status_code == 404
    assert "detail" in response.json()


def test_it_works_with_a_bearer_token(client: Any, tree: Any, api_token: str) -> None:
    response = client.get("/api/agents/Architect/health", HTTP_AUTHORIZATION=f"Bearer {api_token}")

    assert response.status_code == 200
    assert response.json()["llm_model"] == "anthropic/claude-sonnet-4-5"
