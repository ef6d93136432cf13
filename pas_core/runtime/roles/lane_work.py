"""A lane's work on a repository, for its Director's report: commits, diff, checks.

Each of the lane's Programmers committed one checked change (``programmer``); the
lane's checks are those of its last commit on the branch (every commit before it
passed them too, or it would not be there). The lane's diff is its commits' diffs, in
branch order, written next to the lane report as ``lane.diff``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...models import Job
from ..checks import specs_from
from ..files import write_atomic
from ..gitops import GitError
from ..workspace import Workspace, branch_order, commits_diff, info_read

BLOCKING = ("error", "not_run")  # A check that did not run leaves the lane unchecked.


def programmer_work(managers: list[Job]) -> list[dict[str, Any]]:
    """Return what the lane's Programmers committed (from their Managers' reports)."""
    out = []
    for manager in managers:
        result = manager.result if isinstance(manager.result, dict) else {}
        out += [w for w in result.get("work") or [] if isinstance(w, dict)]
    return out


def lane_work(ws: Workspace, lane: str, managers: list[Job], lane_dir: Path) -> dict[str, Any]:
    """Return the lane's ``checks``, ``diff_stat``, ``commits`` and ``diff_file``."""
    work = programmer_work(managers)
    try:
        shas = branch_order(ws, [str(w["commit"]) for w in work if w.get("commit")])
        diff, stat = commits_diff(ws, shas)
    except GitError as exc:
        shas, diff, stat = [], f"(no diff: {exc})\n", {"files": [], "added": 0, "removed": 0}
    lane_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(lane_dir / "lane.diff", diff.encode())
    last = next((w for w in work if shas and w.get("commit") == shas[-1]), None)
    if last is not None:
        checks = list(last.get("checks") or [])
    else:
        reason = "the lane committed no change" if not shas else "no record of its checks"
        checks = [
            {**s.as_dict(), "status": "not_run", "exit_code": None, "duration_s": None}
            | {"output_tail": "", "regression": False, "note": reason}
            for s in specs_from(info_read(ws).get("checks"))
        ]
    return {
        "branch": ws.branch,
        "commits": shas,
        "checks": checks,
        "diff_stat": stat,
        "diff_file": f"{lane}/lane.diff",
    }


def work_state(work: dict[str, Any]) -> tuple[str, str]:
    """Return ``(state, why)`` from the lane's checks: ``completed`` or ``unchecked``."""
    checks = work.get("checks") or []
    if not checks:
        return "unchecked", "no check ran on this lane's work (none configured)"
    blocked = [c for c in checks if c.get("status") in BLOCKING]
    if blocked:
        names = ", ".join(f"{c.get('name')} ({c.get('note') or c.get('status')})" for c in blocked)
        return "unchecked", f"could not check: {names}"
    if any(c.get("regression") for c in checks):
        return "failed", "a check found a regression"
    return "completed", ""


def label_results(labels: list[str], checks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return the plan's acceptance labels that name a run check, with that check's result."""
    by_name = {str(c.get("name")): c for c in checks}
    out = {}
    for label in labels:
        check = by_name.get(label.strip())
        if check is None:
            continue
        status = check.get("status")
        verdict = (
            "fail"
            if check.get("regression")
            else "pass"
            if status in ("passed", "failed")
            else "not_run"
        )
        out[label] = {
            "status": verdict,
            "detail": f"check {label}: {status} ({check.get('command')})",
        }
    return out
