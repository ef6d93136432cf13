"""The run page's lane section: one ``LaneReport`` per lane, from its Director job.

To show more per lane, add a field here, fill it in :func:`lane_report`, and add a
``{% partialdef %}`` to ``templates/hmi/_lane.html`` that the ``lane`` partial
includes: the lane section renders each lane through that one partial, on the page
and on every live refresh. On a repository a lane also shows the checks run on its
work (command, verdict, output) and its diff, highlighted here, line by line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from pas_core.models import Job

from .labels import status_label


@dataclass
class Check:
    """One acceptance result of a lane report: ``{"status", "detail"|"reason"}``."""

    name: str
    status: str  # pass, fail, not_run, error (as the report says)
    detail: str


@dataclass
class CheckRun:
    """A check run for real on the lane's work (a repository): ``runtime.checks``."""

    name: str
    command: str
    status: str  # passed, failed, error, not_run
    exit_code: int | None
    duration_s: float | None
    output_tail: str
    verdict: str  # regression, pre-existing, or "" (passed, or could not run)
    note: str
    asked_by: str  # e.g. "directive: alice", "repository: pyproject.toml [tool.pas.checks]"


@dataclass
class DiffLine:
    kind: str  # file, hunk, add, del, ctx
    text: str


@dataclass
class LaneReport:
    lane: str
    job: Job
    state: str  # The report's state once the lane ended, else the job's status.
    artifacts: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    tokens: int | None = None
    cost_usd: float | None = None
    duration_s: float | None = None
    managers: list[tuple[str, str]] = field(default_factory=list)  # (agent, task)
    errors: list[dict[str, Any]] = field(default_factory=list)
    produced_by: str = ""
    raw: dict[str, Any] | None = None
    state_reason: str = ""
    work_checks: list[CheckRun] = field(default_factory=list)
    diff_stat: dict[str, Any] | None = None
    diff: list[DiffLine] = field(default_factory=list)
    files_prefix: str = ""  # Where its files are under the run's folder (links).

    @property
    def state_label(self) -> str:
        return status_label(self.state)


def _managers(value: Any) -> list[tuple[str, str]]:
    # A mapping agent -> task (what Directors write), or a plain list of agents.
    if isinstance(value, dict):
        return [(str(k), str(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [(str(v), "") for v in value]
    return []


def _checks(value: Any) -> list[Check]:
    if not isinstance(value, dict):
        return []
    out = []
    for name, result in value.items():
        result = result if isinstance(result, dict) else {"status": str(result)}
        detail = str(result.get("detail") or result.get("reason") or "")
        out.append(Check(name=str(name), status=str(result.get("status", "")), detail=detail))
    return out


def _work_checks(value: Any) -> list[CheckRun]:
    out = []
    for c in value if isinstance(value, list) else []:
        if not isinstance(c, dict):
            continue
        verdict = "regression" if c.get("regression") else ""
        if not verdict and c.get("status") == "failed":
            verdict = "pre-existing"
        code = c.get("exit_code")
        out.append(
            CheckRun(
                name=str(c.get("name") or ""),
                command=str(c.get("command") or ""),
                status=str(c.get("status") or ""),
                exit_code=code if isinstance(code, int) else None,
                duration_s=_number(c.get("duration_s")),
                output_tail=str(c.get("output_tail") or ""),
                verdict=verdict,
                note=str(c.get("note") or ""),
                asked_by=f"{c.get('source', '')}: {c.get('by', '')}".strip(": "),
            )
        )
    return out


DIFF_MAX_LINES = 2000


def diff_lines(text: str) -> list[DiffLine]:
    """Return a unified diff's lines, each with its kind (the highlighting is CSS)."""
    out = []
    for line in text.splitlines()[:DIFF_MAX_LINES]:
        if line.startswith(("diff --git", "+++ ", "--- ", "index ", "new file", "deleted file")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        out.append(DiffLine(kind, line))
    if len(text.splitlines()) > DIFF_MAX_LINES:
        out.append(DiffLine("hunk", f"... (more than {DIFF_MAX_LINES} lines: see the file)"))
    return out


def _diff(job: Job, rel: Any) -> list[DiffLine]:
    """Return the lane's diff, read from its file in the run's folder (never outside)."""
    if not rel:
        return []
    root = (Path(settings.PAS_ARTIFACTS_DIR) / "runs" / str(job.run_id)).resolve()
    path = (root / str(rel)).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return []
    try:
        return diff_lines(path.read_text(errors="replace"))
    except OSError:
        return []


def _number(value: Any) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def lane_report(job: Job) -> LaneReport:
    """Return what the lane section shows for one Director job."""
    result = job.result if isinstance(job.result, dict) else None
    report = LaneReport(lane=job.lane or job.agent_id, job=job, state=job.status, raw=result)
    if result is None:
        return report
    report.state = str(result.get("state") or job.status)
    report.artifacts = [str(a) for a in result.get("artifacts") or []]
    report.expected = [str(a) for a in result.get("expected_artifacts") or []]
    report.checks = _checks(result.get("acceptance_results"))
    actuals = result.get("actuals")
    actuals = actuals if isinstance(actuals, dict) else {}
    tokens = _number(actuals.get("tokens"))
    report.tokens = int(tokens) if tokens is not None else None
    report.cost_usd = _number(actuals.get("cost_usd"))
    report.duration_s = _number(actuals.get("duration_s"))
    report.managers = _managers(result.get("managers_used"))
    report.errors = [e for e in result.get("errors") or [] if isinstance(e, dict)]
    report.produced_by = str(result.get("produced_by") or "")
    report.state_reason = str(result.get("state_reason") or "")
    report.work_checks = _work_checks(result.get("checks"))
    stat = result.get("diff_stat")
    report.diff_stat = stat if isinstance(stat, dict) else None
    report.diff = _diff(job, result.get("diff_file"))
    # On a repository the files are in the run's worktree, else in the lane's folder.
    report.files_prefix = "worktree/" if result.get("branch") else f"{report.lane}/"
    return report


def lane_reports(jobs: list[Job]) -> list[LaneReport]:
    """Return a report per lane, from the run's Director jobs (in the order given)."""
    return [lane_report(j) for j in jobs if j.agent.role == "director"]
