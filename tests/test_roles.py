"""Role steps and aggregates, run by hand with StepContexts built from real rows."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from django.conf import settings

from pas_core.bootstrap import BootstrapReport, default_tree, tree_load
from pas_core.llm.offline import HEADER
from pas_core.llm.reply import LlmReply
from pas_core.models import Agent, Attempt, Job, Run
from pas_core.runtime import acceptance, roles
from pas_core.runtime.roles import common
from pas_core.runtime.types import AttemptError, Complete, Delegate, StepContext

_ids = itertools.count(1)


@pytest.fixture
def agents(db):
    tree_load(default_tree(), BootstrapReport())
    return {a.agent_id: a for a in Agent.objects.all()}


@pytest.fixture
def run(agents):
    return Run.objects.create(
        title="Add /health with tests and docs",
        goal="Expose a health endpoint",
        entry_files=["app/main.py"],
    )


def make_ctx(run, agent_id, card, *, parent=None, lane="", fault=None):
    agent = Agent.objects.get(pk=agent_id)
    job = Job.objects.create(
        job_id=f"jc-test-{next(_ids)}",
        run=run,
        agent=agent,
        card=card,
        parent=parent,
        lane=lane or agent.lane,
    )
    attempt = Attempt.objects.create(job=job, number=1, agent=agent, model=agent.current_model)
    beats: list[tuple[float, str]] = []
    ctx = StepContext(
        run=run,
        job=job,
        attempt=attempt,
        agent=agent,
        model=agent.current_model,
        beat=lambda p, m: beats.append((p, m)),
        artifacts_dir=Path(settings.PAS_ARTIFACTS_DIR) / "runs" / str(run.run_id),
        fault=fault,
    )
    return ctx, beats


def drive(run, agent_id, card, *, parent=None, lane="", fail=()):
    """Run a job's step, its children's (recursively), then its aggregate, like the runtime.

    Agents in ``fail`` do not run: their jobs end failed, as after a permanent failure.
    """
    ctx, _ = make_ctx(run, agent_id, card, parent=parent, lane=lane)
    job = ctx.job
    if agent_id in fail:
        job.status, job.error = Job.Status.FAILED, "Permanently failed: timeout"
        job.save()
        return job
    outcome = roles.step(ctx)
    if isinstance(outcome, Delegate):
        for child in outcome.children:
            drive(run, child.agent_id, child.card, parent=job, lane=child.lane, fail=fail)
        ctx.children = list(job.children.order_by("created_at", "job_id"))
        outcome = roles.aggregate(ctx)
    job.status, job.result = Job.Status.SUCCEEDED, outcome.result
    job.save()
    return job


def _fake_llm(monkeypatch, payload):
    def fake(model_id, messages, **kwargs):
        return LlmReply(text=json.dumps(payload), model=model_id, produced_by="test")

    monkeypatch.setattr(common, "llm_complete", fake)


def test_pas_root_delegates_the_directive_to_the_architect(run):
    ctx, beats = make_ctx(run, "PAS Root", {})
    outcome = roles.step(ctx)
    assert isinstance(outcome, Delegate)
    [child] = outcome.children
    assert child.agent_id == "Architect"
    assert child.card["title"] == "Add /health with tests and docs"
    assert child.card["goal"] == "Expose a health endpoint"
    assert child.card["entry_files"] == ["app/main.py"]
    assert child.card["budget"] == {"tokens_max": 25000, "cost_usd_max": 2.0}
    assert beats  # It beat at its step boundary.


def test_the_architect_sends_one_card_per_lane_to_its_directors(run):
    ctx, beats = make_ctx(run, "Architect", {"title": run.title, "goal": run.goal})
    outcome = roles.step(ctx)
    assert [(c.agent_id, c.lane) for c in outcome.children] == [
        ("Dir-Code", "Code"),
        ("Dir-Docs", "Docs"),
    ]
    card = outcome.children[0].card
    assert card["run_id"] == str(run.run_id)
    assert card["submitted_by"] == "Architect"
    assert card["priority"] == 5
    assert [a["path"] for a in card["expected_artifacts"]] == [
        "src/health.py",
        "tests/test_health.py",
    ]
    # Only checks PAS evaluates on an artifacts folder: none it would report as not run.
    assert card["acceptance"] == [{"check": "artifacts_exist"}, {"check": "python_syntax"}]
    assert card["risks"]
    plan = json.loads((ctx.artifacts_dir / "architect_plan.json").read_text())
    assert plan["produced_by"] == "offline-planner"
    assert list(plan["plan"]["lane_allocations"]) == ["Code", "Docs"]
    # Beats at the boundaries and while the (offline) model "streamed", rising.
    assert len(beats) >= 4 and [p for p, _ in beats] == sorted(p for p, _ in beats)


def test_a_director_delegates_only_to_its_enabled_managers(run):
    Agent.objects.filter(pk="Mgr-Code-01").update(enabled=False)
    card = {"lane": "Code", "task": "t", "expected_artifacts": [{"path": "src/a.py"}]}
    ctx, _ = make_ctx(run, "Dir-Code", card)
    outcome = roles.step(ctx)
    assert [c.agent_id for c in outcome.children] == ["Mgr-Code-02"]
    assert outcome.children[0].card["files"] == ["src/a.py"]


def test_dir_code_spreads_a_bigger_task_over_its_three_managers(run):
    paths = [f"src/m{i}.py" for i in range(6)]
    card = {"lane": "Code", "task": "t", "expected_artifacts": [{"path": p} for p in paths]}
    ctx, _ = make_ctx(run, "Dir-Code", card)
    outcome = roles.step(ctx)
    assert [c.agent_id for c in outcome.children] == ["Mgr-Code-01", "Mgr-Code-02", "Mgr-Code-03"]
    assert outcome.children[1].card["files"] == ["src/m1.py", "src/m4.py"]


def test_a_director_maps_an_invented_manager_onto_a_real_one(run, monkeypatch):
    _fake_llm(monkeypatch, {"manager_tasks": [{"manager_id": "Mgr-Nope", "task": "t"}]})
    ctx, _ = make_ctx(run, "Dir-Docs", {"lane": "Docs", "task": "t"})
    assert [c.agent_id for c in roles.step(ctx).children] == ["Mgr-Docs-01"]


def test_a_manager_delegates_to_its_own_programmers(run):
    card = {"lane": "Code", "task": "t", "files": ["a.py", "b.py", "c.py"]}
    ctx, _ = make_ctx(run, "Mgr-Code-01", card)
    outcome = roles.step(ctx)
    assert [(c.agent_id, c.card["files"]) for c in outcome.children] == [
        ("Prog-Qwen-001", ["a.py"]),
        ("Prog-Qwen-002", ["b.py"]),
        ("Prog-Qwen-001", ["c.py"]),
    ]
    assert all(c.card["operation"] == "create" for c in outcome.children)


def test_the_programmer_writes_labelled_files_under_the_lane_folder(run):
    card = {"lane": "Code", "task": "Add /health", "files": ["src/health.py", "docs/x.md"]}
    ctx, beats = make_ctx(run, "Prog-Qwen-001", card)
    outcome = roles.step(ctx)
    assert isinstance(outcome, Complete)
    assert outcome.result["artifacts"] == ["docs/x.md", "src/health.py"]
    assert outcome.result["produced_by"] == "offline-planner"
    assert outcome.result["state"] == "completed"
    written = ctx.artifacts_dir / "Code" / "src" / "health.py"
    assert HEADER in written.read_text()
    assert HEADER in (ctx.artifacts_dir / "Code" / "docs" / "x.md").read_text()
    assert beats


@pytest.mark.parametrize(
    "path", ["../escape.py", "src/../../escape.py", "/abs/escape.py", "C:/x.py"]
)
def test_a_programmer_refuses_paths_outside_the_artifacts_folder(run, monkeypatch, path):
    _fake_llm(
        monkeypatch,
        {"files": [{"path": "ok.py", "content": "x = 1\n"}, {"path": path, "content": "x"}]},
    )
    ctx, _ = make_ctx(run, "Prog-Qwen-001", {"lane": "Code", "task": "t"})
    with pytest.raises(AttemptError) as caught:
        roles.step(ctx)
    assert caught.value.kind == "bad_output"
    # Nothing was written, not even the good file: paths are checked first.
    assert not (ctx.artifacts_dir / "Code" / "ok.py").exists()
    assert not (ctx.artifacts_dir / "escape.py").exists()


def test_an_injected_bad_output_fails_the_architect_step(run):
    ctx, _ = make_ctx(run, "Architect", {"title": run.title, "goal": run.goal}, fault="bad_output")
    with pytest.raises(AttemptError) as caught:
        roles.step(ctx)
    assert caught.value.kind == "bad_output"
    assert "ArchitectPlan" in caught.value.message


def test_a_whole_run_completes_with_evaluated_acceptance(run):
    root = drive(run, "PAS Root", {})
    assert root.result["state"] == "completed"
    assert root.result["lanes"] == {"Code": "completed", "Docs": "completed"}
    assert root.result["failed_lanes"] == []
    base = Path(settings.PAS_ARTIFACTS_DIR) / "runs" / str(run.run_id)
    report = json.loads((base / "Code" / "lane_report.json").read_text())
    assert report["state"] == "completed"
    assert report["artifacts"] == ["src/health.py", "tests/test_health.py"]
    assert report["managers_used"].keys() == {"Mgr-Code-01"}
    assert set(report["actuals"]) == {"tokens", "duration_s", "cost_usd"}
    results = report["acceptance_results"]
    assert results["artifacts_exist"]["status"] == "pass"
    assert results["python_syntax"]["status"] == "pass"
    assert set(results) == {"artifacts_exist", "python_syntax"}
    summary = json.loads((base / "run_summary.json").read_text())
    assert summary["lanes"] == {"Code": "completed", "Docs": "completed"}
    assert "offline planner" in summary["executive_summary"]


def test_a_failed_programmer_fails_its_lane_and_the_run(run):
    root = drive(run, "PAS Root", {}, fail={"Prog-GPT-001"})
    assert root.result["state"] == "failed"
    assert root.result["failed_lanes"] == ["Docs"]
    assert root.result["message"] == "Lanes failed: Docs"
    assert root.result["lanes"] == {"Code": "completed", "Docs": "failed"}
    docs_dir = Path(settings.PAS_ARTIFACTS_DIR) / "runs" / str(run.run_id) / "Docs"
    report = json.loads((docs_dir / "lane_report.json").read_text())
    assert report["state"] == "failed"
    assert report["acceptance_results"]["artifacts_exist"] == {
        "status": "fail",
        "detail": "missing: docs/health.md",
    }
    manager_job = Job.objects.get(agent_id="Mgr-Docs-01")
    assert manager_job.result["state"] == "failed"
    assert manager_job.result["errors"][0]["error"] == "Permanently failed: timeout"


def test_a_check_pas_cannot_run_leaves_the_lane_unchecked_not_completed(run):
    card = {
        "lane": "Code",
        "task": "t",
        "expected_artifacts": [{"path": "src/a.py"}],
        "acceptance": [{"check": "artifacts_exist"}, {"check": "pytest>=0.90"}],
    }
    ctx, _ = make_ctx(run, "Dir-Code", card)
    child, _ = make_ctx(run, "Mgr-Code-01", {"task": "t"}, parent=ctx.job)
    (ctx.artifacts_dir / "Code" / "src").mkdir(parents=True)
    (ctx.artifacts_dir / "Code" / "src" / "a.py").write_text("x = 1\n")
    Job.objects.filter(pk=child.job.pk).update(
        status=Job.Status.SUCCEEDED, result={"state": "completed", "artifacts": ["src/a.py"]}
    )
    ctx.children = list(ctx.job.children.all())
    report = roles.aggregate(ctx).result
    # Reported as not run, with the reason, and not counted as passed.
    assert report["acceptance_results"]["pytest>=0.90"] == {
        "status": "not_run",
        "reason": acceptance.NOT_RUN,
    }
    assert report["state"] == "unchecked"
    assert report["state_reason"] == "not run: pytest>=0.90"


def test_a_lane_whose_expected_artifact_is_missing_fails_though_its_children_succeeded(run):
    card = {
        "lane": "Data",
        "task": "t",
        "expected_artifacts": [{"path": "data/x.sql"}],
        "acceptance": [{"check": "exists:data/x.sql"}],
    }
    ctx, _ = make_ctx(run, "Dir-Data", card)
    child, _ = make_ctx(run, "Mgr-Data-01", {"task": "t"}, parent=ctx.job)
    Job.objects.filter(pk=child.job.pk).update(
        status=Job.Status.SUCCEEDED, result={"state": "completed", "artifacts": ["data/x.sql"]}
    )
    ctx.children = list(ctx.job.children.all())
    report = roles.aggregate(ctx).result
    assert report["state"] == "failed"
    assert report["acceptance_results"]["exists:data/x.sql"]["status"] == "fail"
    assert report["acceptance_results"]["artifacts_exist"]["status"] == "fail"
