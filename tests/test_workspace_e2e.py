"""Runs on a real git repository, through real workers: branch, checks, the ladder.

The fixture repository lives in ``tmp_path``; ``PAS_REPO_ROOTS`` names ``tmp_path``
here (submission) and in the workers (where the worktree is made).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from pas_core.models import Attempt, Event, Job, Notification, Run
from pas_core.selectors import retry_queue
from pas_core.services.faults import fault_inject
from pas_core.services.submit import run_submit
from tests.e2e import short_timings, stack, wait_run
from tests.test_workspace_fixtures import checkout_state, git, make_repo

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

GOAL = "Fix the bug in parser.py and add a test"
PROGRAMMER = "Prog-Qwen-001"  # Mgr-Code-01's first Programmer: the Code lane's one task.


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PAS_REPO_ROOTS", str(tmp_path))
    return make_repo(tmp_path / "repo")


@pytest.fixture
def env(proc_env, tmp_path: Path) -> dict[str, str]:
    return proc_env(PAS_REPO_ROOTS=str(tmp_path))


def _fast_restarts(**more: int) -> None:
    short_timings(restart_backoff_initial_s=0.2, restart_backoff_jitter=0, **more)


def _programmer_attempts(run: Run) -> list[Attempt]:
    job = Job.objects.get(run=run, agent_id=PROGRAMMER)
    return list(job.attempts.order_by("number"))


def test_a_run_completes_on_its_branch_with_checks_passing_and_the_checkout_untouched(
    tree, repo, env
):
    before = checkout_state(repo)
    short_timings()
    out = io.StringIO()
    with stack(env, beat=False):
        call_command(
            "pas", "submit", "Parser", "--goal", GOAL, "--repo-root", str(repo), "--wait",
            "--timeout", "240", stdout=out,
        )  # fmt: skip

    run = Run.objects.get()
    assert run.status == Run.Status.COMPLETED, run.message
    assert checkout_state(repo) == before  # Same HEAD, same current branch, clean status.
    # pytest takes seconds here, longer than the 2 s timeout: the attempt beat all along.
    assert not Event.objects.filter(event_type="hhmrs_timeout").exists()
    report = Job.objects.get(run=run, agent_id="Dir-Code").result
    assert [(c["name"], c["status"]) for c in report["checks"]] == [("tests", "passed")]
    # The lane's change is on the run's branch, committed by the agent that made it.
    authors = git(repo, "log", "--format=%an", f"{run.base_commit}..{run.branch}")
    assert authors.splitlines() == [PROGRAMMER]
    assert git(repo, "show", f"{run.branch}:pas_offline/parser.py").startswith("# Produced by")
    # `pas submit --wait` says where the work is and how to take it.
    text = out.getvalue()
    assert f"branch: {run.branch}" in text
    assert f"git -C {run.repo_root} merge {run.branch}" in text
    assert "check tests: passed (exit 0" in text


def test_a_failed_check_restarts_the_programmer_with_the_failure_in_its_prompt(tree, repo, env):
    _fast_restarts()
    fault_inject(PROGRAMMER, "failing_output", count=1)
    with stack(env):
        run = run_submit(title="Parser", goal=GOAL, repo_root=str(repo))
        run = wait_run(run.run_id, timeout=240)

    assert run.status == Run.Status.COMPLETED, run.message
    first, second = _programmer_attempts(run)
    assert (first.status, first.error_kind) == (Attempt.Status.ERRORED, "acceptance_failed")
    assert "test_injected_failing_output" in first.error
    assert second.status == Attempt.Status.SUCCEEDED and second.model == first.model
    restart = Event.objects.get(event_type="hhmrs_restart", agent_id=PROGRAMMER)
    assert restart.data["reason"] == "acceptance_failed"
    # The restarted attempt's prompt carried the failed check's command and output.
    prompts = Path(settings.PAS_ARTIFACTS_DIR) / "runs" / str(run.run_id) / "prompts"
    job_id = first.job_id
    assert "test_injected_failing_output" not in (prompts / f"{job_id}.1.json").read_text()
    told = json.loads((prompts / f"{job_id}.2.json").read_text())[1]["content"]
    assert "python -m pytest -q" in told and "test_injected_failing_output" in told
    # Only the good change reached the branch.
    assert git(repo, "rev-list", "--count", f"{run.base_commit}..{run.branch}") == "1"


def test_a_change_that_keeps_failing_climbs_the_ladder_to_the_retry_queue(tree, repo, env):
    _fast_restarts(max_restarts=1, max_llm_retries=1)
    fault_inject(PROGRAMMER, "failing_output", count=10)
    with stack(env):
        run = run_submit(title="Parser", goal=GOAL, repo_root=str(repo))
        run = wait_run(run.run_id, timeout=300)

    assert run.status == Run.Status.FAILED
    attempts = _programmer_attempts(run)
    # Restarted once, escalated and switched to another model, restarted, then failed.
    assert [a.error_kind for a in attempts] == ["acceptance_failed"] * 4
    assert len({a.model for a in attempts}) == 2
    assert Event.objects.filter(event_type="hhmrs_escalation", agent_id=PROGRAMMER).exists()
    job = Job.objects.get(run=run, agent_id=PROGRAMMER)
    assert job.status == Job.Status.FAILED and job in retry_queue()
    # What the retry queue and the notification show is the check's output.
    assert "check 'tests' failed: `python -m pytest -q`" in job.error
    assert "test_injected_failing_output" in job.error
    assert "test_injected_failing_output" in Notification.objects.get(job=job).body
    assert git(repo, "rev-list", "--count", f"{run.base_commit}..{run.branch}") == "0"


def test_two_runs_on_one_repository_get_their_own_branches_and_worktrees(tree, repo, env):
    before = checkout_state(repo)
    short_timings()
    with stack(env):
        first = run_submit(title="Parser", goal=GOAL, repo_root=str(repo))
        second = run_submit(
            title="Lexer", goal="Add a lexer module with tests", repo_root=str(repo)
        )
        runs = [wait_run(r.run_id, timeout=300) for r in (first, second)]

    assert [r.status for r in runs] == [Run.Status.COMPLETED] * 2, [r.message for r in runs]
    assert runs[0].branch != runs[1].branch
    listed = git(repo, "worktree", "list", "--porcelain")
    for run in runs:
        tree_dir = (
            Path(settings.PAS_ARTIFACTS_DIR).resolve() / "runs" / str(run.run_id) / "worktree"
        )
        assert f"worktree {tree_dir}" in listed
        assert git(tree_dir, "rev-parse", "--abbrev-ref", "HEAD") == run.branch
        assert git(repo, "rev-list", "--count", f"{run.base_commit}..{run.branch}") == "1"
    assert checkout_state(repo) == before
