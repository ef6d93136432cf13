"""Who may use PAS: a logged-in session for the HMI, a session or a bearer token for the API."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest
from django.core.management import call_command
from django.forms.models import model_to_dict

from pas_core.models import ApiToken

pytestmark = pytest.mark.django_db


def create_token(*args: str) -> str:
    """Run ``manage.py pas token create ARGS``; return its last printed line."""
    out = io.StringIO()
    call_command("pas", "token", "create", *args, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_the_hmi_redirects_an_anonymous_visitor_to_the_login_page(client: Any) -> None:
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"


def test_the_login_page_is_served(client: Any) -> None:
    assert client.get("/login/").status_code == 200


def test_the_api_refuses_an_anonymous_caller(client: Any) -> None:
    response = client.get("/api/agents")

    assert response.status_code == 401
    assert response.json() == {"detail": "authentication required"}


def test_the_api_refuses_an_unknown_token(client: Any, tree: Any) -> None:
    response = client.get("/api/agents", **bearer("pas_not-a-real-token"))

    assert response.status_code == 401


def test_a_created_token_opens_the_api(client: Any, tree: Any) -> None:
    token = create_token("--name", "x")

    response = client.get("/api/agents", **bearer(token))

    assert response.status_code == 200
    assert len(response.json()["agents"]) == 24


def test_only_the_tokens_hash_is_stored(tree: Any) -> None:
    token = create_token("--name", "x")

    row = ApiToken.objects.get(name="x")
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    # The plain token appears in no column of the row.
    stored = " ".join(str(v) for v in model_to_dict(row).values())
    assert token not in stored
    assert row.agent_id is None


def test_a_revoked_token_is_refused(client: Any, tree: Any) -> None:
    token = create_token("--name", "x")
    ApiToken.objects.filter(name="x").update(revoked=True)

    assert client.get("/api/agents", **bearer(token)).status_code == 401


def test_a_token_bound_to_an_agent_is_refused_on_the_api(client: Any, tree: Any) -> None:
    token = create_token("--name", "beats", "--agent", "Dir-Code")

    response = client.get("/api/agents", **bearer(token))

    assert ApiToken.objects.get(name="beats").agent_id == "Dir-Code"
    assert response.status_code == 401


def test_a_token_for_an_unknown_agent_is_not_created(tree: Any) -> None:
    from django.core.management import CommandError

    with pytest.raises(CommandError):
        create_token("--name", "ghost", "--agent", "Dir-Nobody")

    assert not ApiToken.objects.filter(name="ghost").exists()


def test_the_api_token_fixture_works(client: Any, tree: Any, api_token: str) -> None:
    assert client.get("/api/agents", **bearer(api_token)).status_code == 200


def test_a_logged_in_session_opens_the_hmi_and_the_api(user_client: Any, tree: Any) -> None:
    assert user_client.get("/").status_code == 200
    assert user_client.get("/api/agents").status_code == 200


def test_the_openapi_document_is_served(client: Any, api_token: str) -> None:
    # Like the rest of the API, only to a session or a full token.
    assert client.get("/api/openapi.json").status_code == 401
    response = client.get("/api/openapi.json", HTTP_AUTHORIZATION=f"Bearer {api_token}")

    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    assert "/api/agents" in doc["paths"]
    assert "/api/settings/hhmrs" in doc["paths"]
