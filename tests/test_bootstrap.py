"""Bootstrap: the default tree of 24 agents, the settings row, the sweep, the admin user."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.forms.models import model_to_dict
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from pas_core import config
from pas_core.bootstrap import bootstrap
from pas_core.models import Agent, HhmrsSettings

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _private_base_dir(settings: Any, tmp_path: Any) -> None:
    # bootstrap writes the admin password to <BASE_DIR>/.run/admin-password: keep the
    # developer's file out of reach.
    settings.BASE_DIR = tmp_path / "base"


def run_bootstrap_command() -> str:
    out = io.StringIO()
    call_command("pas", "bootstrap", stdout=out)
    return out.getvalue()


def dump() -> dict[str, Any]:
    """Return every stored field bootstrap touches, for before/after comparisons."""
    sweep = PeriodicTask.objects.get(name="tron-sweep")
    return {
        "agents": list(Agent.objects.order_by("agent_id").values()),
        "settings": list(HhmrsSettings.objects.values()),
        "sweep": {**model_to_dict(sweep), "date_changed": sweep.date_changed},
        "users": list(get_user_model().objects.values("username", "password", "is_superuser")),
    }


def test_it_builds_the_default_tree_of_24_agents() -> None:
    bootstrap()

    agents = {a.agent_id: a for a in Agent.objects.all()}
    assert len(agents) == 24
    by_role: dict[str, list[str]] = {}
    for agent in agents.values():
        by_role.setdefault(agent.role, []).append(agent.agent_id)
    assert by_role["root"] == ["PAS Root"]
    assert by_role["architect"] == ["Architect"]
    assert sorted(by_role["director"]) == [
        "Dir-Code",
        "Dir-Data",
        "Dir-DevSecOps",
        "Dir-Docs",
        "Dir-Models",
    ]
    assert len(by_role["manager"]) == 7
    assert len(by_role["programmer"]) == 10
    assert agents["PAS Root"].parent_id is None
    assert agents["Architect"].parent_id == "PAS Root"


def test_directors_sit_under_the_architect_with_their_lane_and_models() -> None:
    bootstrap()

    code = Agent.objects.get(agent_id="Dir-Code")
    assert (code.role, code.lane, code.parent_id) == ("director", "Code", "Architect")
    assert code.primary_model == "google/gemini-2.5-flash"
    assert code.current_model == "google/gemini-2.5-flash"
    assert code.fallback_models[0] == "ollama/llama3.1:8b"
    models = Agent.objects.get(agent_id="Dir-Models")
    assert (models.lane, models.parent_id) == ("Models", "Architect")
    assert models.primary_model == "anthropic/claude-sonnet-4-5"
    assert models.fallback_models[0] == "ollama/llama3.1:8b"
    assert Agent.objects.get(agent_id="Dir-DevSecOps").primary_model == "google/gemini-2.5-flash"
    assert Agent.objects.get(agent_id="Dir-Docs").primary_model == "anthropic/claude-sonnet-4-5"
    assert Agent.objects.get(agent_id="Architect").primary_model == "anthropic/claude-sonnet-4-5"
    # The first fallback of every agent with a model is the local one.
    firsts = {a.fallback_models[0] for a in Agent.objects.exclude(primary_model="")}
    assert firsts == {"ollama/llama3.1:8b"}


def test_managers_sit_under_their_directors() -> None:
    bootstrap()

    managers = {
        a.agent_id: (a.parent_id, a.lane, a.primary_model)
        for a in Agent.objects.filter(role="manager")
    }
    assert managers == {
        "Mgr-Code-01": ("Dir-Code", "Code", "google/gemini-2.5-flash"),
        "Mgr-Code-02": ("Dir-Code", "Code", "google/gemini-2.5-flash"),
        "Mgr-Code-03": ("Dir-Code", "Code", "google/gemini-2.5-flash"),
        "Mgr-Models-01": ("Dir-Models", "Models", "google/gemini-2.5-flash"),
        "Mgr-Data-01": ("Dir-Data", "Data", "google/gemini-2.5-flash"),
        "Mgr-DevSecOps-01": ("Dir-DevSecOps", "DevSecOps", "google/gemini-2.5-flash"),
        "Mgr-Docs-01": ("Dir-Docs", "Docs", "google/gemini-2.5-flash"),
    }


def test_ten_programmers_sit_under_managers_of_their_lane() -> None:
    bootstrap()

    programmers = list(Agent.objects.filter(role="programmer").select_related("parent"))
    assert len(programmers) == 10
    for prog in programmers:
        assert prog.parent is not None and prog.parent.role == "manager"
        assert prog.lane == prog.parent.lane
    per_manager = {
        m: Agent.objects.filter(parent_id=m).count()
        for m in ("Mgr-Code-01", "Mgr-Code-02", "Mgr-Code-03", "Mgr-Models-01", "Mgr-Docs-01")
    }
    assert per_manager == {
        "Mgr-Code-01": 2,
        "Mgr-Code-02": 2,
        "Mgr-Code-03": 2,
        "Mgr-Models-01": 1,
        "Mgr-Docs-01": 1,
    }


def test_a_second_run_changes_nothing_and_prints_no_password() -> None:
    first = run_bootstrap_command()
    before = dump()

    second = run_bootstrap_command()

    assert dump() == before
    assert "admin user created: admin / " in first
    password = first.split("admin user created: admin / ", 1)[1].split()[0]
    assert get_user_model().objects.get(username="admin").check_password(password)
    # The password is shown once, when the user is created.
    assert "admin user created" not in second
    assert password not in second
    assert "agents: 0 created, 0 repaired" in second


def test_it_keeps_a_live_model_switch() -> None:
    bootstrap()
    Agent.objects.filter(agent_id="Dir-Code").update(current_model="ollama/llama3.1:8b")

    bootstrap()

    # Bootstrap repairs the structure, never the live state.
    assert Agent.objects.get(agent_id="Dir-Code").current_model == "ollama/llama3.1:8b"


def test_it_repairs_a_moved_agent() -> None:
    bootstrap()
    Agent.objects.filter(agent_id="Mgr-Docs-01").update(parent_id="Dir-Code", lane="Code")

    report = bootstrap()

    assert report.agents_updated == ["Mgr-Docs-01"]
    agent = Agent.objects.get(agent_id="Mgr-Docs-01")
    assert (agent.parent_id, agent.lane) == ("Dir-Docs", "Docs")


def test_it_schedules_the_tron_sweep_every_sweep_interval() -> None:
    bootstrap()

    task = PeriodicTask.objects.get(name="tron-sweep")
    assert task.task == "pas_core.tasks.tron_sweep"
    assert task.queue == "hhmrs"
    assert task.enabled
    assert (task.interval.every, task.interval.period) == (5_000_000, IntervalSchedule.MICROSECONDS)


def test_changing_the_sweep_interval_reschedules_the_beat_entry() -> None:
    bootstrap()

    config.hhmrs_update({"sweep_interval_s": 0.5})

    task = PeriodicTask.objects.get(name="tron-sweep")
    # Half a second, in the scheduler's microseconds.
    assert (task.interval.every, task.interval.period) == (500_000, IntervalSchedule.MICROSECONDS)
    assert PeriodicTask.objects.filter(task="pas_core.tasks.tron_sweep").count() == 1


def test_it_imports_an_existing_settings_file(settings: Any) -> None:
    path = settings.PAS_ARTIFACTS_DIR / "pas_settings.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"hhmrs": {"max_restarts": 5, "sweep_interval_s": 2}}')

    report = bootstrap()

    assert report.settings_imported
    assert config.hhmrs_get().max_restarts == 5
    task = PeriodicTask.objects.get(name="tron-sweep")
    assert task.interval.every == 2_000_000


def test_it_creates_the_settings_row_and_exports_the_file(settings: Any) -> None:
    bootstrap()

    row = HhmrsSettings.objects.get()
    assert (row.heartbeat_interval_s, row.timeout_threshold_s, row.max_restarts) == (30, 60, 3)
    assert row.tron_chime["sound"] == "ping"
    assert (settings.PAS_ARTIFACTS_DIR / "pas_settings.json").exists()


@pytest.mark.django_db
def test_it_keeps_an_operators_model_choice(settings, tmp_path) -> None:
    settings.BASE_DIR = tmp_path
    bootstrap()
    Agent.objects.filter(agent_id="Dir-Code").update(
        primary_model="ollama/llama3.1:8b", fallback_models=["openai/gpt-4.1-mini"]
    )

    bootstrap()

    code = Agent.objects.get(agent_id="Dir-Code")
    # Bootstrap repairs structure, not an operator's choice of models.
    assert code.primary_model == "ollama/llama3.1:8b"
    assert code.fallback_models == ["openai/gpt-4.1-mini"]
