"""The ``pas`` command line: submit, status, fault, demo (the last two end to end)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import uuid

import pytest
from django.core.management import CommandError, call_command

from pas_core import config
from pas_core.models import Agent, Attempt, Fault, Job, Provider, Run
from pas_core.runtime import worker
from pas_core.services.submit import run_submit
from tests.e2e import stack
from tests.procs import PROJECT_DIR

pytestmark = pytest.mark.django_db(transaction=True)


def pas(*args: str) -> str:
    """Run ``manage.py pas ARGS`` in this process; return what it printed."""
    out = io.StringIO()
    call_command("pas", *args, stdout=out)
    return out.getvalue()


def drain() -> None:
    """Run every queued attempt here, in this process, until none is left (no worker)."""
    while ids := list(
        Attempt.objects.filter(status=Attempt.Status.QUEUED).values_list("pk", flat=True)
    ):
        for pk in ids:
            worker.attempt_execute(pk)


# -- submit ------------------------------------------------------------------------


def test_submit_refuses_an_empty_goal_with_a_message_and_exit_status_1(tree, proc_env):
    done = subprocess.run(
        [sys.executable, "manage.py", "pas", "submit", "Add a health endpoint", "--goal", "  "],
        cwd=PROJECT_DIR,
        env=proc_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "goal: must not be empty" in done.stderr
    assert not Run.objects.exists()


def test_submit_without_a_worker_refuses_to_wait(tree):
    with pytest.raises(CommandError, match="no Celery worker answers"):
        pas("submit", "Docs", "--goal", "Write the guide", "--wait")
    assert not Run.objects.exists()  # Refused before anything was stored.


@pytest.mark.e2e
def test_submit_wait_shows_progress_and_ends_with_a_completed_run_summary(tree, proc_env):
    with stack(proc_env(), beat=False):
        out = pas(
            "submit",
            "Add a health endpoint",
            "--goal",
            "Add /health with tests and docs",
            "--wait",
            "--timeout",
            "90",
        )

    run = Run.objects.get()
    assert run.status == Run.Status.COMPLETED
    lines = out.splitlines()
    assert lines[0] == f"run {run.run_id} submitted: Add a health endpoint"
    bars = [line for line in lines if line.startswith("[")]
    # Not a terminal: one progress line per change, ending full with the run completed.
    assert len(bars) >= 2
    total = Job.objects.filter(run=run).count()
    assert bars[-1] == f"[{'#' * 30}] {total}/{total} jobs  completed"
    assert f"run {run.run_id}: completed in " in out
    assert re.search(r"lane Code +completed", out)
    assert re.search(r"lane Docs +completed", out)
    assert lines[-1].startswith("  artifacts: ") and lines[-1].endswith(f"/runs/{run.run_id}/")


# -- status ------------------------------------------------------------------------


def test_status_prints_every_agent_of_the_tree_with_its_state(tree):
    lines = pas("status").splitlines()
    assert len(lines) == 24
    by_id = {agent_id: line for line in lines for agent_id in tree if line.split()[0] == agent_id}
    by_id["PAS Root"] = lines[0]
    assert set(by_id) == set(tree)
    # Indented by depth: PAS Root, the Architect under it, a Director under that.
    assert lines[0].startswith("PAS Root ")
    assert lines[1].startswith("  Architect ")
    assert "    Dir-Code " in by_id["Dir-Code"]
    assert "idle" in by_id["Dir-Code"] and "google/gemini-2.5-flash" in by_id["Dir-Code"]


def test_status_marks_an_agent_whose_model_was_switched(tree):
    Agent.objects.filter(pk="Dir-Code").update(current_model="ollama/llama3.1:8b")
    line = next(line for line in pas("status").splitlines() if "Dir-Code" in line)
    assert "ollama/llama3.1:8b (switched)" in line


def test_status_of_a_run_prints_its_job_tree(tree):
    run = run_submit(title="User guide", goal="Write the user guide documentation")
    drain()
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED

    lines = pas("status", str(run.run_id)).splitlines()
    assert lines[0] == f"run {run.run_id} completed: User guide"
    jobs = {job.agent_id: job.job_id for job in Job.objects.filter(run=run)}
    assert lines[1] == "  All lanes completed"
    assert len(lines) == 2 + len(jobs)  # Then one line per job.
    depth = {}
    for agent_id, job_id in jobs.items():
        line = next(line for line in lines if line.strip().startswith(job_id + " "))
        assert f" {agent_id} " in line and " succeeded " in line
        depth[agent_id] = len(line) - len(line.lstrip())
    # Indented under its parent: PAS Root > Architect > Director > Manager > Programmer.
    assert depth == {
        "PAS Root": 2,
        "Architect": 4,
        "Dir-Docs": 6,
        "Mgr-Docs-01": 8,
        "Prog-GPT-001": 10,
    }


@pytest.mark.parametrize(
    ("run_id", "message"),
    [("not-a-run", "is not a run id"), (str(uuid.UUID(int=7)), "no run")],
)
def test_status_refuses_a_bad_run_id(tree, run_id, message):
    with pytest.raises(CommandError, match=f"^run_id: .*{message}"):
        pas("status", run_id)


# -- fault -------------------------------------------------------------------------


def test_fault_stores_the_fault(tree):
    out = pas("fault", "Dir-Code", "hang", "--count", "2")
    fault = Fault.objects.get()
    assert (fault.agent_id, fault.kind, fault.remaining, fault.model) == (
        "Dir-Code",
        "hang",
        2,
        "",
    )
    assert "armed hang for the next 2 attempt(s) of Dir-Code on any model" in out


def test_fault_refuses_a_bad_kind_naming_the_field(tree):
    with pytest.raises(CommandError, match="argument kind: invalid choice: 'explode'"):
        pas("fault", "Dir-Code", "explode")
    assert not Fault.objects.exists()


# -- demo --------------------------------------------------------------------------


@pytest.mark.e2e
def test_demo_walks_through_restart_escalation_switch_and_completion(tree, proc_env):
    before = config.hhmrs_get().as_dict()
    with stack(proc_env()):
        out = pas("demo", "--timeout", "150")

    lines = out.splitlines()
    events = [line.split()[0] for line in lines if line.startswith("  hhmrs_")]
    # Four hangs: three timeouts each restarted by the Architect, the fourth escalated
    # to PAS Root, which re-sends the job on the next model.
    assert events == [
        "hhmrs_timeout",
        "hhmrs_restart",
        "hhmrs_timeout",
        "hhmrs_restart",
        "hhmrs_timeout",
        "hhmrs_restart",
        "hhmrs_timeout",
        "hhmrs_escalation",
        "hhmrs_restart",
    ]
    assert "injected: Dir-Code hangs on its next 4 attempts" in out
    assert out.count("Dir-Code: injected hang (attempt") == 4  # Each hang, as it fires.
    assert "Escalated Dir-Code to PAS Root" in out
    assert "Retrying Dir-Code with different LLM: gemini-2.5-flash → llama3.1:8b" in out
    assert any(line.startswith("  run_completed") for line in lines)
    run = Run.objects.get()
    assert run.status == Run.Status.COMPLETED
    assert f"run {run.run_id}: completed in " in out
    # The short demo timings are gone again.
    assert lines[-1] == "settings restored"
    assert config.hhmrs_get().as_dict() == before


# -- providers and models ----------------------------------------------------------


def test_provider_add_is_idempotent_and_keeps_the_key_in_the_environment(tree):
    first = pas(
        "provider",
        "add",
        "vllm",
        "--base-url",
        "http://127.0.0.1:8001/v1/",
        "--key-env",
        "VLLM_API_KEY",
        "--max-concurrency",
        "6",
        "--structured",
        "json_schema",
    )
    again = pas(
        "provider",
        "add",
        "vllm",
        "--base-url",
        "http://127.0.0.1:8001/v1",
        "--key-env",
        "VLLM_API_KEY",
    )

    assert "provider vllm added: http://127.0.0.1:8001/v1 (key from $VLLM_API_KEY" in first
    assert "provider vllm saved" in again
    row = Provider.objects.get(name="vllm")
    assert (row.max_concurrency, row.structured, row.key_required) == (6, "json_schema", True)
    assert Provider.objects.filter(name="vllm").count() == 1
    # Only the variable's name is stored; the settings export knows no providers.
    assert "VLLM_API_KEY" == row.key_env
    call_command("pas", "settings", "export", stdout=io.StringIO())
    assert "vllm" not in config.settings_path().read_text()
    listed = pas("provider", "list")
    assert re.search(r"vllm\s+http://127.0.0.1:8001/v1\s+cap 6 ", listed)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad Name", "--base-url", "http://x/v1"], "name: lower-case"),
        (["ok", "--base-url", "ftp://x"], "base_url: must be an http"),
        (["ok", "--base-url", "http://x", "--key-env", "not a var"], "key_env: must be"),
        (["ok", "--base-url", "http://x", "--max-concurrency", "0"], "max_concurrency"),
    ],
)
def test_provider_add_refuses_bad_input_naming_the_field(tree, args, message):
    with pytest.raises(CommandError, match=message):
        pas("provider", "add", *args)
    assert not Provider.objects.filter(name="ok").exists()


def test_models_set_moves_one_agent_or_all_of_them(tree):
    one = pas("models", "set", "Dir-Code", "local/smollm2-135m", "--fallback", "ollama/qwen")
    every = pas("models", "set", "--all", "local/smollm2-135m")

    assert one == "Dir-Code now on local/smollm2-135m → ollama/qwen\n"
    assert every.startswith("23 agents now on local/smollm2-135m")  # All but PAS Root.
    code = Agent.objects.get(pk="Dir-Code")
    assert (code.primary_model, code.current_model) == ("local/smollm2-135m",) * 2
    assert code.fallback_models == ["ollama/qwen"]  # --all without --fallback kept it.
    assert Agent.objects.get(pk="PAS Root").current_model == ""
    assert set(Agent.objects.exclude(role="root").values_list("current_model", flat=True)) == {
        "local/smollm2-135m"
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Dir-Code", "no-slash"], "is not provider/model"),
        (["Dir-Code", "acme/x"], "unknown provider 'acme'"),
        (["Dir-Nobody", "local/x"], "no agent 'Dir-Nobody'"),
        (["--all", "Dir-Code", "local/x"], "with --all, give only the model"),
    ],
)
def test_models_set_refuses_bad_input(tree, args, message):
    with pytest.raises(CommandError, match=message):
        pas("models", "set", *args)
    assert Agent.objects.get(pk="Dir-Code").current_model == "google/gemini-2.5-flash"
