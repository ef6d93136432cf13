"""The Programmer's step: the job that produces a change, and answers for its checks.

In a repository (the run has a branch): it is shown the files its task names, answers
with whole files or a diff, and then, holding the worktree, applies the change, runs
the run's checks on it and commits it, or puts it back and fails ``acceptance_failed``
when a check found a regression. Supervision then restarts this job (the one that
produced the change), and its next prompt carries the failed check's command and
output (``checks.feedback_read``); then escalation and a model switch; then the retry
queue, whose error text is the check's output.

In a plain artifacts folder: it writes the files its task names inside its lane's
folder, and the checks that parse its own files (``python_syntax``, ``json_valid``)
fail the attempt the same way.
"""

from __future__ import annotations

from typing import Any

from django.db import connection

from ...errors import AttemptError
from ...llm.schemas import ProgrammerOutput
from ...stores.events import event_emit
from ..acceptance import parse_check
from ..changes import Change, change_apply, change_from
from ..checks import CheckSpec, checks_run, failure_text, feedback_read, feedback_write, specs_from
from ..context import task_files, tracked
from ..files import inside, safe_relpath, write_atomic
from ..gitops import GitError
from ..types import Complete, StepContext
from ..workspace import Workspace, changed, commit, info_read, reset, workspace_locked, workspace_of
from .common import ask, card_paths, lane_of, usage

OWN_FILE_CHECKS = ("python_syntax", "json_valid")
INJECTED_TEST = (
    "# Injected by PAS (fault failing_output): this test fails on purpose, so the change\n"
    "# fails its checks and the job is restarted with the failure as feedback.\n\n\n"
    "def test_injected_failing_output():\n"
    '    assert 1 + 1 == 3, "injected failing_output"\n'
)


def programmer_step(ctx: StepContext) -> Complete:
    ws = workspace_of(ctx.run, ctx.artifacts_dir)
    return _repo_step(ctx, ws) if ws is not None else _folder_step(ctx)


def _tag(ctx: StepContext) -> str:
    return f"{ctx.job.pk}.{ctx.attempt.number}"


# -- in a repository -----------------------------------------------------------------


def _repo_step(ctx: StepContext, ws: Workspace) -> Complete:
    card, lane = ctx.job.card, lane_of(ctx)
    specs = specs_from(info_read(ws).get("checks"))
    text = f"{card.get('task', '')}\n{ctx.run.goal}"
    files = task_files(ws.tree, entry_files=ctx.run.entry_files, paths=card_paths(card), text=text)
    payload: dict[str, Any] = {
        **card,
        "repository": {
            "branch": ws.branch,
            "files": files,
            "checks": {s.name: s.command for s in specs},
        },
    }
    feedback = feedback_read(ws.run_dir, ctx.job.pk)
    if feedback:
        payload["feedback"] = feedback
    duty = (
        f"a Programmer in the {lane} lane, working in a git repository. Paths are relative "
        "to the repository root. The current contents of the files your task names are in "
        "input.repository.files. Return whole files, or a unified diff of existing files; "
        "the checks in input.repository.checks run on your change. If input.feedback is "
        "there, your last change failed them: fix the cause."
    )
    ctx.beat(0.05, "writing a change")
    out, reply = ask(
        ctx, ProgrammerOutput, duty, payload, choices={"file": card_paths(card)}, repo=True
    )
    change = change_from([(f.path, f.content) for f in out.files], out.diff)
    if ctx.fault == "failing_output":
        change.files.append((_injected_test_path(tracked(ws.tree)), INJECTED_TEST))
    if not connection.in_atomic_block:
        connection.close()  # Checks take a while: hold no idle database connection.
    try:
        with workspace_locked(ws, beat=lambda m: ctx.beat(0.82, m)):
            result = _apply_check_commit(ctx, ws, change, specs, summary=out.summary)
    except GitError as exc:
        raise AttemptError("error", str(exc)) from None
    return Complete({**result, "lane": lane, "summary": out.summary, **usage(reply)})


def _apply_check_commit(
    ctx: StepContext, ws: Workspace, change: Change, specs: list[CheckSpec], *, summary: str
) -> dict[str, Any]:
    """Holding the worktree: apply, check, then commit, or put back and fail."""
    reset(ws)  # From the branch tip: whatever a killed attempt left is swept away.
    change_apply(ws.tree, change, ws.scratch("patches", _tag(ctx)))
    touched = changed(ws, change.paths)
    if not touched:
        return {"state": "completed", "artifacts": [], "commit": "", "checks": []}
    ctx.beat(0.85, f"checking the change ({len(specs)} check(s))")
    results = checks_run(ws, specs, tag=_tag(ctx), beat=lambda m: ctx.beat(0.88, m))
    for r in results:
        _emit_check(ctx, r)
    failed = [r for r in results if r["regression"]]
    if failed:
        reset(ws)  # Put back: the next attempt starts from the tip, not from this.
        feedback_write(ws.run_dir, ctx.job.pk, ctx.attempt.number, failed)
        raise AttemptError("acceptance_failed", failure_text(failed))
    task = str(ctx.job.card.get("task") or summary or "change").splitlines()[0][:72]
    message = (
        f"{lane_of(ctx)}: {task}\n\n{summary}\n\nPAS job {ctx.job.pk}, attempt {ctx.attempt.number}"
    )
    sha = commit(ws, touched, agent_id=ctx.agent.agent_id, message=message)
    ctx.beat(0.95, f"committed {sha[:10]} on {ws.branch}")
    return {"state": "completed", "artifacts": touched, "commit": sha, "checks": results}


def _emit_check(ctx: StepContext, r: dict[str, Any]) -> None:
    verdict = "regression" if r["regression"] else r["status"]
    event_emit(
        "check_finished",
        {
            "run_id": str(ctx.run.run_id),
            "job_id": ctx.job.pk,
            "agent_id": ctx.agent.agent_id,
            "lane": lane_of(ctx),
            "attempt": ctx.attempt.number,
            **{k: r.get(k) for k in ("name", "command", "source", "by", "status", "exit_code")},
            "duration_s": r.get("duration_s"),
            "regression": r["regression"],
            "message": f"{ctx.agent.agent_id}: check {r['name']} {verdict} ({r.get('command')})",
        },
    )


def _injected_test_path(known: list[str]) -> str:
    for folder in ("tests", "test"):
        if any(p.startswith(f"{folder}/") for p in known):
            return f"{folder}/test_pas_injected_failure.py"
    return "test_pas_injected_failure.py"


# -- in an artifacts folder ----------------------------------------------------------


def _folder_step(ctx: StepContext) -> Complete:
    card, lane = ctx.job.card, lane_of(ctx)
    duty = (
        f"a Programmer in the {lane} lane. Write every file the task asks for, complete, "
        "with paths relative to the lane's folder (no absolute paths, no '..')."
    )
    payload = dict(card)
    feedback = feedback_read(ctx.artifacts_dir, ctx.job.pk)
    if feedback:
        payload["feedback"] = feedback
    ctx.beat(0.05, "writing")
    out, reply = ask(ctx, ProgrammerOutput, duty, payload, choices={"file": card_paths(card)})
    if out.diff.strip():
        raise AttemptError("bad_output", "a diff needs a repository: write whole files here")
    change = change_from([(f.path, f.content) for f in out.files], "")
    lane_dir = ctx.artifacts_dir / lane
    lane_dir.mkdir(parents=True, exist_ok=True)
    # Check every path before writing any file: a refused reply leaves nothing behind.
    resolved = [(rel, inside(lane_dir, safe_relpath(rel)), text) for rel, text in change.files]
    ctx.beat(0.85, f"saving {len(resolved)} file(s)")
    for rel, path, text in resolved:
        if ctx.fault == "failing_output" and rel.endswith((".py", ".json")):
            text += "\n<<< injected failing_output: this file no longer parses >>>\n"
        write_atomic(path, text.encode())
    artifacts = sorted({rel for rel, _, _ in resolved})
    _own_checks(ctx, lane_dir, artifacts)
    return Complete(
        {"state": "completed", "lane": lane, "artifacts": artifacts, "summary": out.summary}
        | usage(reply)
    )


def _own_checks(ctx: StepContext, lane_dir: Any, artifacts: list[str]) -> None:
    """Fail the attempt when a parse check its card asks for fails on its own files."""
    asked = [
        str(c.get("check") if isinstance(c, dict) else c)
        for c in ctx.job.card.get("acceptance") or []
    ]
    failed = []
    for name in (n for n in OWN_FILE_CHECKS if n in asked):
        result = parse_check(lane_dir, artifacts, name)
        if result["status"] == "fail":
            failed.append(
                {"name": name, "command": name, "exit_code": 1, "output_tail": result["detail"]}
            )
    if failed:
        feedback_write(ctx.artifacts_dir, ctx.job.pk, ctx.attempt.number, failed)
        raise AttemptError("acceptance_failed", failure_text(failed))
