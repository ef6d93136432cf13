"""Fault injection: arming, taking, acting out, and the API and command that arm faults."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from pas_core.bootstrap import BootstrapReport, default_tree, tree_load
from pas_core.models import Event, Fault, Run
from pas_core.runtime import roles
from pas_core.runtime.faults import fault_act
from pas_core.runtime.types import AttemptError
from pas_core.services.faults import fault_inject, fault_take, faults_clear
from tests.test_roles import make_ctx

PROJECT_DIR = Path(__file__).resolve().parent.parent

CHILD = """
import sys
import django
django.setup()
from pas_core.runtime.faults import fault_act
print("ready", flush=True)
try:
    fault_act(sys.argv[1], lambda progress, message: print("beat", flush=True))
    print("returned", flush=True)
finally:
    print("finally", flush=True)
"""


@pytest.fixture
def agents(db):
    tree_load(default_tree(), BootstrapReport())


def _child(kind):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pas_core.settings", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, kind],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# -- arming and taking -------------------------------------------------------------


def test_injecting_a_fault_stores_it_and_emits_an_event(agents):
    fault = fault_inject("Dir-Code", "hang", count=2, model="", by="tester")
    assert (fault.agent_id, fault.kind, fault.remaining) == ("Dir-Code", "hang", 2)
    event = Event.objects.get(event_type="fault_injected")
    assert event.agent_id == "Dir-Code"
    assert {k: event.data[k] for k in ("agent_id", "kind", "count", "model", "by")} == {
        "agent_id": "Dir-Code",
        "kind": "hang",
        "count": 2,
        "model": "",
        "by": "tester",
    }


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("Dir-Code", "explode", 1), "kind:"),
        (("Dir-Code", "hang", 0), "count:"),
        (("Dir-Code", "hang", 101), "count:"),
        (("Nobody", "hang", 1), "agent_id:"),
    ],
)
def test_invalid_faults_are_refused_naming_the_field(agents, args, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        fault_inject(*args)
    assert not Fault.objects.exists()


def test_each_attempt_takes_one_unit_until_the_count_is_spent(agents):
    fault_inject("Mgr-Code-01", "error", count=2)
    assert fault_take("Mgr-Code-01", "google/gemini-2.5-flash") == "error"
    assert fault_take("Mgr-Code-01", "google/gemini-2.5-flash") == "error"
    assert fault_take("Mgr-Code-01", "google/gemini-2.5-flash") is None
    assert Fault.objects.get().remaining == 0
    # Another agent's attempts are untouched.
    fault_inject("Mgr-Code-02", "slow")
    assert fault_take("Mgr-Code-01", "google/gemini-2.5-flash") is None


def test_the_oldest_fault_is_taken_first(agents):
    fault_inject("Dir-Docs", "slow")
    fault_inject("Dir-Docs", "crash")
    assert [fault_take("Dir-Docs", "m/x") for _ in range(3)] == ["slow", "crash", None]


def test_a_model_scoped_fault_applies_only_on_that_model(agents):
    fault_inject("Dir-Models", "hang", model="ollama/llama3.1:8b")
    assert fault_take("Dir-Models", "anthropic/claude-sonnet-4-5") is None
    assert fault_take("Dir-Models", "ollama/llama3.1:8b") == "hang"
    # The model may also be named without its provider.
    fault_inject("Dir-Models", "error", model="llama3.1:8b")
    assert fault_take("Dir-Models", "google/gemini-2.5-flash") is None
    assert fault_take("Dir-Models", "ollama/llama3.1:8b") == "error"


def test_clearing_removes_every_fault_of_the_agent(agents):
    fault_inject("Dir-Data", "hang", count=5)
    fault_inject("Dir-Data", "slow")
    assert faults_clear("Dir-Data") == 2
    assert fault_take("Dir-Data", "m/x") is None


# -- acting out --------------------------------------------------------------------


def test_hang_never_returns_and_stops_beating():
    proc = _child("hang")
    try:
        assert proc.stdout.readline() == "ready\n"
        time.sleep(2)
        # Still inside fault_act after 2 s, and not one beat sent.
        assert proc.poll() is None
    finally:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    assert "beat" not in out and "returned" not in out


def test_crash_kills_the_process_with_status_70():
    proc = _child("crash")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 70, err
    # The process died on the spot: no finally block ran.
    assert out == "ready\n"


def test_error_raises_an_attempt_error_of_kind_error():
    with pytest.raises(AttemptError) as caught:
        fault_act("error", lambda p, m: None)
    assert (caught.value.kind, caught.value.message) == ("error", "injected error")


def test_slow_takes_about_three_seconds_beating_all_along():
    beats = []
    started = time.monotonic()
    fault_act("slow", lambda p, m: beats.append(time.monotonic()))
    elapsed = time.monotonic() - started
    assert 2.5 <= elapsed <= 5
    assert len(beats) >= 5
    assert max(b - a for a, b in zip(beats, beats[1:], strict=False)) < 1


def test_bad_output_returns_at_once_and_the_architect_step_then_fails(agents):
    started = time.monotonic()
    fault_act("bad_output", lambda p, m: None)
    assert time.monotonic() - started < 0.5
    fault_inject("Architect", "bad_output")
    kind = fault_take("Architect", "anthropic/claude-sonnet-4-5")
    run = Run.objects.create(title="Docs", goal="Write the README")
    ctx, _ = make_ctx(run, "Architect", {"title": run.title, "goal": run.goal}, fault=kind)
    with pytest.raises(AttemptError) as caught:
        roles.step(ctx)
    assert caught.value.kind == "bad_output"


# -- API and command line ----------------------------------------------------------


def _post(client, token, agent_id, body):
    return client.post(
        f"/api/agents/{agent_id}/faults",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def test_the_api_arms_a_fault(agents, client, api_token):
    response = _post(client, api_token, "Dir-Code", {"kind": "hang", "count": 3})
    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in ("agent_id", "kind", "remaining", "model")} == {
        "agent_id": "Dir-Code",
        "kind": "hang",
        "remaining": 3,
        "model": "",
    }
    assert Fault.objects.get(pk=body["id"]).created_by.startswith("token:")


def test_the_api_answers_404_for_an_unknown_agent(agents, client, api_token):
    assert _post(client, api_token, "Nobody", {"kind": "hang"}).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [({"kind": "explode"}, "kind"), ({"kind": "hang", "count": 0}, "count"), ({}, "kind")],
)
def test_the_api_answers_422_naming_the_bad_field(agents, client, api_token, body, field):
    response = _post(client, api_token, "Dir-Code", body)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_the_api_needs_authentication(agents, client):
    response = client.post(
        "/api/agents/Dir-Code/faults", {"kind": "hang"}, content_type="application/json"
    )
    assert response.status_code == 401


def test_the_command_arms_a_model_scoped_fault(agents, capsys):
    call_command(
        "pas", "fault", "Dir-Code", "slow", "--count", "2", "--model", "ollama/llama3.1:8b"
    )
    fault = Fault.objects.get()
    assert (fault.kind, fault.remaining, fault.model) == ("slow", 2, "ollama/llama3.1:8b")
    assert "armed slow" in capsys.readouterr().out


def test_the_command_refuses_an_unknown_agent_or_a_bad_count(agents):
    with pytest.raises(CommandError, match="no agent"):
        call_command("pas", "fault", "Nobody", "hang")
    with pytest.raises(CommandError, match="^count:"):
        call_command("pas", "fault", "Dir-Code", "hang", "--count", "0")
