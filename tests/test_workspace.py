"""A run on a git repository, step by step: submission, worktree, context, changes.

The whole tree runs here by hand (``test_roles.drive``), with the real offline
planner, real git and real sandboxed checks; tests/test_workspace_e2e.py runs it
through the workers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.conf import settings

from pas_core.errors import AttemptError, ServiceError
from pas_core.models import Event, Job, Run
from pas_core.runtime import roles
from pas_core.runtime.changes import change_apply, change_from
from pas_core.runtime.context import file_contents, named_paths, repo_map
from pas_core.services.submit import run_submit
from tests.test_roles import _fake_llm, drive, make_ctx
from tests.test_workspace_fixtures import checkout_state, git, make_repo

pytestmark = pytest.mark.django_db


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PAS_REPO_ROOTS", str(tmp_path))
    return make_repo(tmp_path / "repo")


@pytest.fixture
def agents(tree):
    return tree


def _submit(repo: Path, **more) -> Run:
    return run_submit(
        title="Parser", goal="Fix the bug in parser.py and add a test", repo_root=str(repo), **more
    )


# -- submission -------------------------------------------------------------------


def test_a_repository_run_gets_a_branch_and_its_base_commit(agents, repo):
    run = _submit(repo)
    assert run.branch == f"pas/{str(run.run_id)[:8]}"
    assert run.base_commit == git(repo, "rev-parse", "HEAD")
    assert run.repo_root == str(repo.resolve())


def test_a_folder_that_is_not_a_repository_keeps_the_artifacts_folder(
    agents, tmp_path, monkeypatch
):
    monkeypatch.setenv("PAS_REPO_ROOTS", str(tmp_path))
    (tmp_path / "plain").mkdir()
    run = run_submit(title="t", goal="g", repo_root=str(tmp_path / "plain"))
    assert (run.branch, run.base_commit) == ("", "")


@pytest.mark.parametrize(
    "raw, words",
    [
        ("missing", "does not exist"),
        ("relative/path", "must be an absolute path"),
        ("outside", "not under a directory PAS may work in"),
    ],
)
def test_an_unusable_repo_root_is_refused_naming_the_field(agents, repo, tmp_path, raw, words):
    paths = {
        "missing": str(tmp_path / "nowhere"),
        "relative/path": "relative/path",
        "outside": str(Path(os.sep, "usr")),
    }
    with pytest.raises(ServiceError) as caught:
        run_submit(title="t", goal="g", repo_root=paths[raw])
    assert caught.value.field == "repo_root" and caught.value.status == 400
    assert words in caught.value.message
    assert not Run.objects.exists()


def test_an_unreadable_repo_root_is_refused(agents, repo, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ServiceError) as caught:
        _submit(repo)
    assert (caught.value.field, caught.value.status) == ("repo_root", 400)
    assert "not readable" in caught.value.message


def test_checks_need_a_repository(agents, tmp_path):
    with pytest.raises(ServiceError) as caught:
        run_submit(title="t", goal="g", checks={"tests": "pytest"})
    assert caught.value.field == "checks"


# -- a whole run, by hand ---------------------------------------------------------


def test_a_run_commits_checked_work_on_its_branch_and_leaves_the_checkout_alone(agents, repo):
    before = checkout_state(repo)
    run = _submit(repo)
    root = drive(run, "PAS Root", {})

    assert root.result["state"] == "completed", root.result
    assert root.result["branch"] == run.branch
    assert checkout_state(repo) == before  # Same HEAD, same branch, clean status.
    report = Job.objects.get(run=run, agent_id="Dir-Code").result
    assert report["state"] == "completed"
    [check] = report["checks"]
    assert (check["name"], check["command"], check["status"]) == (
        "tests",
        "python -m pytest -q",
        "passed",
    )
    assert check["source"] == "default" and check["regression"] is False
    slug = "parser"
    assert report["artifacts"] == [f"pas_offline/{slug}.py", f"tests/test_pas_offline_{slug}.py"]
    # One commit on the branch, by the Programmer that made the change.
    log = git(repo, "log", "--format=%an|%s", f"{run.base_commit}..{run.branch}")
    assert [line.split("|")[0] for line in log.splitlines()] == ["Prog-Qwen-001"]
    assert report["commits"] == [git(repo, "rev-parse", run.branch)]
    assert report["diff_stat"]["added"] > 0 and report["diff_stat"]["removed"] == 0
    run_dir = Path(settings.PAS_ARTIFACTS_DIR) / "runs" / str(run.run_id)
    assert "+def handle()" in (run_dir / report["diff_file"]).read_text()
    # The worktree lives under the run's artifacts folder, on the run's branch.
    worktree = run_dir / "worktree"
    assert git(worktree, "rev-parse", "--abbrev-ref", "HEAD") == run.branch
    assert str(worktree.resolve()) in git(repo, "worktree", "list")
    # Who asked for which command is on record.
    ready = Event.objects.get(event_type="workspace_ready")
    assert ready.data["checks"][0]["by"].startswith("PAS")
    assert Event.objects.filter(event_type="check_finished").count() == 1


def test_the_repository_map_skips_what_gitignore_skips_and_lists_links(agents, repo, tmp_path):
    (repo / "debug.log").write_text("ignored\n")
    (repo / "secret.txt").write_text("outside\n")
    os.symlink(tmp_path, repo / "escape")
    shown = repo_map(repo, 10_000)
    paths = dict(line.split("\t") for line in shown["files"].splitlines())
    assert "debug.log" not in paths  # .gitignore says *.log
    assert paths["escape"] == "link"  # Listed as a link, never followed.
    assert paths["calc/parser.py"] == str(len((repo / "calc/parser.py").read_bytes()))


def test_file_contents_never_follow_a_link_out_and_keep_to_the_budget(repo, tmp_path):
    (tmp_path / "outside.txt").write_text("the host's secret\n")
    os.symlink(tmp_path / "outside.txt", repo / "link.txt")
    (repo / "big.txt").write_text("x" * 5000)
    shown = file_contents(repo, ["link.txt", "../outside.txt", "calc/parser.py", "big.txt"], 1200)
    assert "link.txt" not in shown and "../outside.txt" not in shown
    assert shown["calc/parser.py"].startswith("def parse")
    assert "cut:" in shown["big.txt"]
    assert sum(len(v) for v in shown.values()) < 1400
    assert named_paths("fix the bug in parser.py", ["calc/parser.py", "README.md"]) == [
        "calc/parser.py"
    ]


# -- changes --------------------------------------------------------------------


@pytest.mark.parametrize("path", ["../escape.py", "/etc/passwd", ".git/config", "a/../../x.py"])
def test_a_file_path_that_leaves_the_repository_is_bad_output(path):
    with pytest.raises(AttemptError) as caught:
        change_from([(path, "x")], "")
    assert caught.value.kind == "bad_output"


@pytest.mark.parametrize(
    "diff",
    [
        "--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n",
        "--- /dev/null\n+++ /tmp/evil.py\n@@ -0,0 +1 @@\n+x\n",
        "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+/etc\n",
        "--- a/.git/hooks/pre-commit\n+++ b/.git/hooks/pre-commit\n@@ -0,0 +1 @@\n+x\n",
    ],
)
def test_a_diff_that_leaves_the_repository_is_bad_output(diff):
    with pytest.raises(AttemptError) as caught:
        change_from([], diff)
    assert caught.value.kind == "bad_output"


def test_a_diff_that_does_not_apply_is_bad_output_and_a_good_one_applies(repo, tmp_path):
    stale = (
        "--- a/calc/parser.py\n+++ b/calc/parser.py\n"
        "@@ -1,1 +1,1 @@\n-def nope(text):\n+def parse(text):\n"
    )
    with pytest.raises(AttemptError) as caught:
        change_apply(repo, change_from([], stale), tmp_path / "scratch")
    assert caught.value.kind == "bad_output" and "does not apply" in caught.value.message
    good = (
        "--- a/calc/parser.py\n+++ b/calc/parser.py\n@@ -1,3 +1,3 @@\n def parse(text):\n"
        '     """Return the comma-separated fields of ``text``."""\n'
        '-    return [field.strip() for field in text.split(",")]\n'
        '+    return [field.strip() for field in text.split(",") if field.strip()]\n'
    )
    assert change_apply(repo, change_from([], good), tmp_path / "scratch") == ["calc/parser.py"]
    assert "if field.strip()" in (repo / "calc/parser.py").read_text()


def test_a_whole_file_through_a_link_pointing_out_is_refused(repo, tmp_path):
    os.symlink(tmp_path, repo / "out")
    with pytest.raises(AttemptError) as caught:
        change_apply(repo, change_from([("out/x.py", "x = 1\n")], ""), tmp_path / "scratch")
    assert caught.value.kind == "bad_output"
    assert not (tmp_path / "x.py").exists()


def test_a_programmer_diff_is_applied_checked_and_committed(agents, repo, monkeypatch):
    run = _submit(repo)
    drive_root = roles.step(make_ctx(run, "PAS Root", {})[0])  # Makes the worktree.
    assert drive_root.children
    diff = (
        "--- a/calc/parser.py\n+++ b/calc/parser.py\n@@ -1,3 +1,3 @@\n def parse(text):\n"
        '     """Return the comma-separated fields of ``text``."""\n'
        '-    return [field.strip() for field in text.split(",")]\n'
        '+    return [field.strip() for field in text.split(",") if field.strip()]\n'
    )
    _fake_llm(monkeypatch, {"files": [], "diff": diff, "summary": "skip empty fields"})
    card = {"lane": "Code", "task": "Fix parser.py", "files": ["calc/parser.py"]}
    ctx, _ = make_ctx(run, "Prog-Qwen-001", card)
    outcome = roles.step(ctx)
    assert outcome.result["artifacts"] == ["calc/parser.py"]
    assert outcome.result["checks"][0]["status"] == "passed"
    assert git(repo, "show", f"{run.branch}:calc/parser.py").count("if field.strip()") == 1
    # The model was shown the file it changes.
    prompt = json.loads((ctx.artifacts_dir / "prompts" / f"{ctx.job.pk}.1.json").read_text())
    assert "def parse(text)" in prompt[1]["content"]


# -- checks: the repository's own, old debts, a failing change ---------------------


def test_a_test_that_failed_before_the_run_is_reported_and_not_blamed(
    agents, tmp_path, monkeypatch
):
    monkeypatch.setenv("PAS_REPO_ROOTS", str(tmp_path))
    files = {
        "calc/__init__.py": "",
        "tests/test_ok.py": "def test_ok():\n    assert True\n",
        # Real repositories carry these: a module this machine does not have.
        "tests/test_needs_numpy.py": "def test_numpy():\n    import numpy_not_here  # noqa\n",
    }
    repo = make_repo(tmp_path / "repo", files)
    run = _submit(repo)
    root = drive(run, "PAS Root", {})

    report = Job.objects.get(run=run, agent_id="Dir-Code").result
    assert report["state"] == "completed", report.get("state_reason")
    assert root.result["state"] == "completed"
    [check] = report["checks"]
    assert check["status"] == "failed" and check["regression"] is False
    assert check["pre_existing"] == ["tests.test_needs_numpy::test_numpy"]
    assert "failed on the base commit too" in check["note"]


def test_the_repositorys_own_checks_run_and_a_directive_adds_to_them(agents, tmp_path, monkeypatch):
    monkeypatch.setenv("PAS_REPO_ROOTS", str(tmp_path))
    files = {
        "pyproject.toml": '[tool.pas.checks]\nsyntax = "python -m compileall -q ."\n',
        "app.py": "x = 1\n",
    }
    repo = make_repo(tmp_path / "repo", files)
    run = _submit(repo, checks={"listing": "ls app.py"})
    drive(run, "PAS Root", {})

    report = Job.objects.get(run=run, agent_id="Dir-Code").result
    got = {c["name"]: (c["source"], c["status"]) for c in report["checks"]}
    assert got == {"syntax": ("repository", "passed"), "listing": ("directive", "passed")}
    assert report["state"] == "completed"


def test_a_check_that_cannot_run_leaves_the_lane_unchecked(agents, repo):
    run = _submit(repo, checks={"lint": "no-such-linter-pas ."})
    root = drive(run, "PAS Root", {})
    report = Job.objects.get(run=run, agent_id="Dir-Code").result
    lint = next(c for c in report["checks"] if c["name"] == "lint")
    assert lint["status"] == "error" and lint["exit_code"] == 127
    assert report["state"] == "unchecked"  # Never "completed".
    assert root.result["lanes"] == {"Code": "unchecked"} and root.result["state"] == "failed"


def test_failing_output_fails_the_change_puts_it_back_and_feeds_the_failure_back(agents, repo):
    run = _submit(repo)
    roles.step(make_ctx(run, "PAS Root", {})[0])  # Makes the worktree, settles the checks.
    card = {
        "lane": "Code",
        "task": "Write pas_offline/p.py, tests/test_pas_offline_p.py",
        "files": ["pas_offline/p.py", "tests/test_pas_offline_p.py"],
    }
    ctx, _ = make_ctx(run, "Prog-Qwen-001", card, fault="failing_output")
    with pytest.raises(AttemptError) as caught:
        roles.step(ctx)

    assert caught.value.kind == "acceptance_failed"
    assert "check 'tests' failed: `python -m pytest -q` exited 1" in caught.value.message
    assert "test_injected_failing_output" in caught.value.message
    worktree = ctx.artifacts_dir / "worktree"
    assert git(worktree, "status", "--porcelain") == ""  # Put back: nothing left.
    assert git(worktree, "rev-parse", "HEAD") == run.base_commit  # Nothing committed.

    # The job's next attempt is told what failed, and this time it passes.
    ctx.attempt.number = 2
    ctx.fault = None
    outcome = roles.step(ctx)
    prompt = json.loads((ctx.artifacts_dir / "prompts" / f"{ctx.job.pk}.2.json").read_text())
    assert "test_injected_failing_output" in prompt[1]["content"]
    assert "python -m pytest -q" in prompt[1]["content"]
    assert outcome.result["checks"][0]["status"] == "passed"
    assert "after failed checks (tests)" in outcome.result["summary"]
