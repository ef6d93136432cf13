"""Who may point PAS at what, through the API; and what a repository run's JSON says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pas_core.auth import token_create
from pas_core.models import Event, Run
from tests.test_roles import drive
from tests.test_workspace_fixtures import make_repo

pytestmark = pytest.mark.django_db

CHECKS = {"tests": "python -m pytest -q"}


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PAS_REPO_ROOTS", str(tmp_path))
    return make_repo(tmp_path / "repo")


def _post(client: Any, body: dict[str, Any], **headers: str) -> Any:
    return client.post("/api/runs", json.dumps(body), content_type="application/json", **headers)


def _directive(repo: Path, **more: Any) -> dict[str, Any]:
    return {"title": "Parser", "goal": "Fix the bug in parser.py", "repo_root": str(repo), **more}


def test_an_operator_may_give_checks_and_is_recorded_as_asking(operator, repo):
    response = _post(operator, _directive(repo, checks=CHECKS))
    assert response.status_code == 202, response.content
    run = Run.objects.get(pk=response.json()["run_id"])
    assert run.checks == CHECKS and run.branch
    asked = Event.objects.get(event_type="run_submitted").data
    assert asked["checks"] == {"tests": {"command": "python -m pytest -q", "by": "operator"}}


def test_a_full_token_may_give_checks(client, tree, repo):
    raw, _ = token_create(name="ci")
    response = _post(client, _directive(repo, checks=CHECKS), HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 202, response.content


def test_a_viewer_gets_403(viewer, repo):
    response = _post(viewer, _directive(repo, checks=CHECKS))
    assert response.status_code == 403
    assert not Run.objects.exists()


def test_an_agent_bound_token_gets_403_naming_why(client, tree, repo):
    raw, _ = token_create(name="beats", agent_id="Prog-Qwen-001")
    response = _post(client, _directive(repo, checks=CHECKS), HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 403
    assert response.json()["errors"][0]["field"] == "authorization"
    assert not Run.objects.exists()


@pytest.mark.parametrize("where", ["missing", "outside"])
def test_an_unusable_repo_root_is_a_400_naming_the_field(operator, repo, tmp_path, where):
    path = str(tmp_path / "nowhere") if where == "missing" else "/"
    response = _post(operator, _directive(Path(path)))
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "repo_root"


def test_a_bad_check_name_is_refused(operator, repo):
    response = _post(operator, _directive(repo, checks={"no spaces": "true"}))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "checks"


def test_the_run_json_has_the_branch_and_each_lanes_checks_and_diff_stat(operator, repo):
    created = _post(operator, _directive(repo, checks=CHECKS)).json()
    run = Run.objects.get(pk=created["run_id"])
    drive(run, "PAS Root", {})

    body = operator.get(f"/api/runs/{run.run_id}").json()
    assert body["branch"] == run.branch
    assert body["lanes"] == {"Code": "completed"}  # The contract: lane -> state.
    assert body["merge"] == f"git -C {run.repo_root} merge {run.branch}"
    code = body["lane_details"]["Code"]
    [check] = code["checks"]
    assert {k: check[k] for k in ("name", "command", "status", "exit_code")} == {
        "name": "tests",
        "command": "python -m pytest -q",
        "status": "passed",
        "exit_code": 0,
    }
    assert check["duration_s"] > 0 and "passed" in check["output_tail"]
    assert check["source"] == "directive" and check["by"] == "operator"
    assert code["diff_stat"]["added"] > 0 and code["diff_stat"]["files"]


def test_the_run_page_shows_each_lanes_checks_with_output_and_its_highlighted_diff(operator, repo):
    created = _post(operator, _directive(repo, checks=CHECKS)).json()
    run = Run.objects.get(pk=created["run_id"])
    drive(run, "PAS Root", {})

    html = operator.get(f"/runs/{run.run_id}/").content.decode()
    assert run.branch in html and f"merge {run.branch}" in html
    assert "python -m pytest -q" in html and "check-passed" in html
    assert "passed in" in html  # The check's output tail.
    assert '<span class="d-add">+def handle() -&gt; dict[str, str]:</span>' in html
    assert '<span class="d-file">+++ b/pas_offline/parser.py</span>' in html
    # The lane's files link into the worktree.
    assert f"/runs/{run.run_id}/files/worktree/pas_offline/parser.py" in html
