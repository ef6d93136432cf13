"""The seed's HHMRS handlers through the HTTP API: its two curl examples, exactly.

``POST /api/agents/{id}/handle_child_timeout`` and ``.../handle_grandchild_failure``
with a bearer token made by ``manage.py pas token create`` (DESIGN sections 5 and 8).
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command

from pas_core.models import Agent, Attempt, Event, Job, Run
from pas_core.stores import heartbeats

pytestmark = pytest.mark.django_db

# The seed's request body, as its curl example sends it (restart_count varies).
SEED_BODY = {
    "type": "child_timeout",
    "child_id": "Dir-Code",
    "reason": "missed_heartbeats",
    "restart_count": 0,
    "last_seen_timestamp": 1699999999.0,
    "timeout_duration_s": 60.0,
}


@pytest.fixture
def post(client: Any, tree: Any, django_capture_on_commit_callbacks: Callable[..., Any]) -> Any:
    """Return ``post(path, body)``: a JSON POST with a token from the CLI, commits run."""
    out = io.StringIO()
    call_command("pas", "token", "create", "--name", "seed-curl", stdout=out)
    token = out.getvalue().strip().splitlines()[-1]  # The token is the last line printed.

    def send(path: str, body: Any) -> Any:
        data = body if isinstance(body, str) else json.dumps(body)
        # on_commit work (the comms file lines, the Celery sends) runs as on a server.
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                path, data, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
            )

    return send


def hhmrs_events() -> list[Event]:
    return list(Event.objects.filter(event_type__startswith="hhmrs_").order_by("id"))


def comms_lines() -> list[str]:
    logs = Path(settings.PAS_ARTIFACTS_DIR) / "logs"
    return [
        line for f in sorted(logs.glob("pas_comms_*.txt")) for line in f.read_text().splitlines()
    ]


def test_the_first_curl_example_restarts_dir_code(post: Any) -> None:
    response = post("/api/agents/Architect/handle_child_timeout", SEED_BODY)

    assert response.status_code == 200
    assert response.json() == {
        "status": "restarted",
        "message": "Successfully restarted Dir-Code (no active task to resend)",
        "restart_count": 1,
    }
    (restart,) = hhmrs_events()
    assert restart.event_type == "hhmrs_restart"
    assert restart.data["agent_id"] == "Dir-Code"
    assert restart.data["parent_id"] == "Architect"
    assert restart.data["restart_count"] == 1
    # A restart keeps the model.
    assert Agent.objects.get(pk="Dir-Code").current_model == "google/gemini-2.5-flash"


def test_the_second_curl_example_escalates_and_switches_the_model(post: Any) -> None:
    response = post("/api/agents/Architect/handle_child_timeout", {**SEED_BODY, "restart_count": 3})

    assert response.status_code == 200
    assert response.json() == {
        "status": "escalated",
        "message": "Escalated Dir-Code to PAS Root",
        "restart_count": 3,  # On escalation the answer echoes the request's count.
    }
    escalation, switch = hhmrs_events()
    assert escalation.event_type == "hhmrs_escalation"
    assert escalation.data["agent_id"] == "Dir-Code"
    assert escalation.data["parent_id"] == "Architect"
    assert escalation.data["grandparent_id"] == "PAS Root"
    assert escalation.data["restart_count"] == 3
    assert escalation.data["reason"] == "max_restarts_exceeded"
    # PAS Root re-sends on the next model of Dir-Code's chain.
    assert switch.event_type == "hhmrs_restart"
    assert switch.data["retry_type"] == "llm_change"
    assert switch.data["old_llm"] == "google/gemini-2.5-flash"
    assert switch.data["new_llm"] == "ollama/llama3.1:8b"
    assert switch.data["failure_count"] == 1
    assert Agent.objects.get(pk="Dir-Code").current_model == "ollama/llama3.1:8b"
    # The comms log lines the seed shows, word for word (models without their provider).
    text = "\n".join(comms_lines())
    assert "|Architect|PAS Root|STATUS|Grandchild escalation: Dir-Code (failure_count=0)|" in text
    assert (
        "|PAS Root|Dir-Code|STATUS|Retrying Dir-Code with different LLM: "
        "gemini-2.5-flash → llama3.1:8b|" in text
    )


def test_dir_models_escalation_gives_the_seeds_comms_lines(post: Any) -> None:
    body = {**SEED_BODY, "child_id": "Dir-Models", "restart_count": 3}

    response = post("/api/agents/Architect/handle_child_timeout", body)

    assert response.json()["message"] == "Escalated Dir-Models to PAS Root"
    text = "\n".join(comms_lines())
    assert "|Architect|PAS Root|STATUS|Grandchild escalation: Dir-Models (failure_count=0)|" in text
    assert (
        "|PAS Root|Dir-Models|STATUS|Retrying Dir-Models with different LLM: "
        "claude-sonnet-4-5 → llama3.1:8b|" in text
    )


@pytest.mark.parametrize(
    ("restart_count", "status"), [(2, "restarted"), (3, "escalated"), (4, "escalated")]
)
def test_the_parent_restarts_below_max_restarts_and_escalates_from_it(
    post: Any, restart_count: int, status: str
) -> None:
    body = {**SEED_BODY, "restart_count": restart_count}

    response = post("/api/agents/Architect/handle_child_timeout", body)

    assert response.json()["status"] == status


def test_the_grandparent_retries_with_a_different_llm(post: Any) -> None:
    body = {
        "type": "grandchild_failure",
        "grandchild_id": "Dir-Code",
        "parent_id": "Architect",
        "failure_count": 0,
        "reason": "max_restarts_exceeded",
    }

    response = post("/api/agents/PAS%20Root/handle_grandchild_failure", body)

    assert response.status_code == 200
    assert response.json() == {
        "status": "retrying_with_different_llm",
        "grandchild_id": "Dir-Code",
        "old_llm": "google/gemini-2.5-flash",
        "new_llm": "ollama/llama3.1:8b",
        "failure_count": 1,  # This switch counted.
    }
    (switch,) = hhmrs_events()
    assert switch.data["retry_type"] == "llm_change"


def test_the_grandparent_retries_up_to_max_llm_retries_minus_one(post: Any) -> None:
    body = {"grandchild_id": "Dir-Code", "parent_id": "Architect", "failure_count": 2}

    response = post("/api/agents/PAS%20Root/handle_grandchild_failure", body)

    assert response.json()["status"] == "retrying_with_different_llm"
    assert response.json()["failure_count"] == 3


@pytest.mark.parametrize("failure_count", [3, 4])
def test_the_grandparent_fails_for_good_from_max_llm_retries(post: Any, failure_count: int) -> None:
    body = {"grandchild_id": "Dir-Code", "parent_id": "Architect", "failure_count": failure_count}

    response = post("/api/agents/PAS%20Root/handle_grandchild_failure", body)

    assert response.status_code == 200
    assert response.json() == {"status": "permanently_failed", "agent_id": "Dir-Code"}
    (failure,) = hhmrs_events()
    assert failure.event_type == "hhmrs_failure"
    assert failure.data["agent_id"] == "Dir-Code"
    assert failure.data["parent_id"] == "Architect"
    assert failure.data["grandparent_id"] == "PAS Root"
    assert failure.data["failure_count"] == failure_count
    assert failure.data["reason"] == "max_llm_retries_exceeded"
    # No model switch on a permanent failure.
    assert Agent.objects.get(pk="Dir-Code").current_model == "google/gemini-2.5-flash"


def active_dir_code_job(restart_count: int = 0) -> Job:
    """Create a run where the Architect waits on a running Dir-Code job."""
    run = Run.objects.create(title="Active", goal="Be supervised", status=Run.Status.RUNNING)
    run8 = str(run.run_id)[:8]
    architect = Job.objects.create(
        job_id=f"jc-{run8}-architect", run=run, agent_id="Architect", status=Job.Status.WAITING
    )
    job = Job.objects.create(
        job_id=f"jc-{run8}-code",
        run=run,
        parent=architect,
        agent_id="Dir-Code",
        lane="Code",
        status=Job.Status.RUNNING,
        restart_count=restart_count,
    )
    attempt = Attempt.objects.create(
        job=job,
        number=1,
        agent_id="Dir-Code",
        model="google/gemini-2.5-flash",
        status=Attempt.Status.RUNNING,
        started_at=datetime.now(tz=UTC),
        celery_task_id=uuid.uuid4().hex,
    )
    Job.objects.filter(pk=job.pk).update(current_attempt=attempt)
    heartbeats.hb_register(attempt.pk, agent_id="Dir-Code", job_id=job.pk)
    return job


def test_with_an_active_job_the_parent_restarts_and_resends_it(post: Any) -> None:
    job = active_dir_code_job()

    response = post("/api/agents/Architect/handle_child_timeout", SEED_BODY)

    assert response.status_code == 200
    answer = response.json()
    assert answer["status"] == "restarted_and_resent"
    assert answer["restart_count"] == 1  # The job's new count.
    job.refresh_from_db()
    assert job.restart_count == 1
    # The hung attempt is killed and a new one, current and queued, replaces it.
    assert [(a.number, a.status) for a in job.attempts.order_by("number")] == [
        (1, "killed"),
        (2, "queued"),
    ]
    assert job.current_attempt is not None
    assert job.current_attempt.number == 2


def test_with_an_active_job_its_own_counter_decides(post: Any) -> None:
    job = active_dir_code_job(restart_count=3)

    # The request says 0, but the job has been restarted 3 times already.
    response = post("/api/agents/Architect/handle_child_timeout", SEED_BODY)

    assert response.json()["status"] == "escalated"
    job.refresh_from_db()
    assert job.llm_failure_count == 1
    assert job.current_attempt is not None
    assert job.current_attempt.model == "ollama/llama3.1:8b"


def test_an_unknown_agent_is_404(post: Any) -> None:
    response = post("/api/agents/Dir-Nobody/handle_child_timeout", SEED_BODY)

    assert response.status_code == 404
    assert response.json()["errors"][0]["field"] == "agent_id"


def test_an_unknown_child_is_404(post: Any) -> None:
    response = post("/api/agents/Architect/handle_child_timeout", {**SEED_BODY, "child_id": "X"})

    assert response.status_code == 404
    assert response.json()["errors"][0]["field"] == "child_id"


def test_a_child_of_another_agent_is_400_naming_child_id(post: Any) -> None:
    body = {**SEED_BODY, "child_id": "Mgr-Code-01"}  # Dir-Code's child, not the Architect's.

    response = post("/api/agents/Architect/handle_child_timeout", body)

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "child_id"
    assert "Mgr-Code-01 is not a child of Architect" in response.json()["detail"]


def test_a_non_grandchild_is_400_naming_grandchild_id(post: Any) -> None:
    body = {"grandchild_id": "Mgr-Code-01", "parent_id": "Dir-Code", "failure_count": 0}

    response = post("/api/agents/PAS%20Root/handle_grandchild_failure", body)

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "grandchild_id"


def test_a_negative_restart_count_is_422_naming_the_field(post: Any) -> None:
    response = post(
        "/api/agents/Architect/handle_child_timeout", {**SEED_BODY, "restart_count": -1}
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "restart_count"


def test_malformed_json_is_400(post: Any) -> None:
    response = post("/api/agents/Architect/handle_child_timeout", '{"child_id": "Dir-Code",')

    assert response.status_code == 400


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/agents/Architect/handle_child_timeout", "[]"),
        ("/api/agents/Architect/handle_child_timeout", '"Dir-Code"'),
        ("/api/agents/Architect/handle_child_timeout", {"child_id": ""}),
        (
            "/api/agents/Architect/handle_child_timeout",
            {"child_id": "Dir-Code", "restart_count": "x"},
        ),
        (
            "/api/agents/Architect/handle_child_timeout",
            {"child_id": "Dir-Code", "restart_count": 1e9},
        ),
        ("/api/agents/Architect/handle_child_timeout", {"child_id": ["Dir-Code"]}),
        ("/api/agents/Architect/handle_child_timeout", {"child_id": "x" * 1000}),
        ("/api/agents/PAS%20Root/handle_grandchild_failure", {}),
        (
            "/api/agents/PAS%20Root/handle_grandchild_failure",
            {"grandchild_id": "Dir-Code", "failure_count": -1},
        ),
        ("/api/agents/PAS%20Root/handle_grandchild_failure", {"grandchild_id": "Architect"}),
        ("/api/agents/PAS%20Root/handle_grandchild_failure", {"grandchild_id": "PAS Root"}),
        ("/api/agents/Dir-Nobody/handle_grandchild_failure", {"grandchild_id": "Dir-Code"}),
        ("/api/agents/PAS%20Root/handle_child_timeout", {"child_id": "PAS Root"}),
    ],
)
def test_bad_input_is_refused_never_a_500(post: Any, path: str, body: Any) -> None:
    response = post(path, body)

    # A 4xx that says what is wrong; nothing was changed.
    assert 400 <= response.status_code < 500
    assert response.json()["detail"]
    assert hhmrs_events() == []


def test_it_needs_authentication(client: Any, tree: Any) -> None:
    response = client.post(
        "/api/agents/Architect/handle_child_timeout",
        json.dumps(SEED_BODY),
        content_type="application/json",
    )

    assert response.status_code == 401


def test_without_a_job_the_agents_own_counter_grows_then_escalates(post: Any) -> None:
    # A caller that keeps reporting 0: the server's own count decides, like a job's.
    answers = [
        post("/api/agents/Architect/handle_child_timeout", SEED_BODY).json() for _ in range(4)
    ]

    assert [(a["status"], a["restart_count"]) for a in answers] == [
        ("restarted", 1),
        ("restarted", 2),
        ("restarted", 3),
        ("escalated", 3),
    ]
    agent = Agent.objects.get(pk="Dir-Code")
    # The escalation really switched the model, and the switch started the count over.
    assert agent.current_model == "ollama/llama3.1:8b"
    assert (agent.restart_count, agent.llm_failure_count) == (0, 1)


def test_without_a_job_the_grandparent_counts_its_switches_too(post: Any) -> None:
    body = {"grandchild_id": "Dir-Code", "parent_id": "Architect", "failure_count": 0}
    url = "/api/agents/PAS%20Root/handle_grandchild_failure"

    answers = [post(url, body).json() for _ in range(4)]

    # The caller says 0 each time; the agent's own count says 0, 1, 2, then 3: the end.
    assert [a["status"] for a in answers] == [
        "retrying_with_different_llm",
        "retrying_with_different_llm",
        "retrying_with_different_llm",
        "permanently_failed",
    ]
    assert [a.get("failure_count") for a in answers[:3]] == [1, 2, 3]
    agent = Agent.objects.get(pk="Dir-Code")
    assert agent.status == Agent.Status.FAILED
    assert agent.llm_failure_count == 3
