"""Checks: the commands that judge a change, run for real and judged against the base.

Where they come from (``checks_resolve``, once per run, recorded with who asked):
the repository's ``[tool.pas.checks]`` in its ``pyproject.toml``, the directive's
(operators only), else, for a Python repository with tests, ``python -m pytest -q``.

Each runs in the sandbox (``sandbox``) in the worktree after a change, and once per
run on the base commit (cached per commit). A change is blamed only for what it
did: for pytest the test ids are compared (JUnit XML, through ``PYTEST_ADDOPTS``, so
any command that runs pytest reports them): a test that fails now and did not fail
before is a regression; one that failed before too is reported as pre-existing. For
other commands the exit codes are compared. A check that could not run (not found,
out of time on both sides) is ``error``: the lane is then ``unchecked``.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from ..errors import AttemptError, ServiceError
from ..models import Run
from ..services.submit import checks_clean
from .context import tracked
from .files import inside, read_json, write_json
from .sandbox import limits_from_env, sandbox_env, sandbox_run
from .workspace import Workspace, base_checkout

DEFAULT_TESTS = "python -m pytest -q"
FEEDBACK_TAIL = 1500
MAX_JUNIT_BYTES = 50_000_000
_TESTS = re.compile(r"(^|/)(tests?/|test_[^/]*\.py$|[^/]*_test\.py$)")

Beat = Callable[[str], None]


@dataclass(frozen=True)
class CheckSpec:
    name: str
    command: str
    source: str  # repository, directive or default
    by: str  # who asked for it

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def repo_checks(tree: Path) -> dict[str, str]:
    """Return ``[tool.pas.checks]`` of the worktree's ``pyproject.toml`` ({} if none)."""
    try:
        path = inside(tree, "pyproject.toml")
        data = tomllib.loads(path.read_text()) if path.is_file() else {}
        table = data.get("tool", {}).get("pas", {}).get("checks", {})
        return checks_clean(table)
    except (AttemptError, OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ServiceError):
        return {}


def python_with_tests(paths: list[str]) -> bool:
    return any(p.endswith(".py") for p in paths) and any(_TESTS.search(p) for p in paths)


def checks_resolve(run: Run, tree: Path) -> list[CheckSpec]:
    """Return the run's checks: the repository's, then the directive's (same name wins)."""
    specs: dict[str, CheckSpec] = {}
    for name, command in repo_checks(tree).items():
        specs[name] = CheckSpec(name, command, "repository", "pyproject.toml [tool.pas.checks]")
    for name, command in (run.checks or {}).items():
        specs[name] = CheckSpec(name, str(command), "directive", run.submitted_by or "api")
    if not specs and python_with_tests(tracked(tree)):
        specs["tests"] = CheckSpec("tests", DEFAULT_TESTS, "default", "PAS: a Python repository")
    return list(specs.values())


def specs_from(items: Any) -> list[CheckSpec]:
    """Return the specs recorded in ``workspace.json`` (``checks_resolve``'s output)."""
    out = []
    for item in items or []:
        if isinstance(item, dict) and item.get("name") and item.get("command"):
            out.append(
                CheckSpec(*(str(item.get(k, "")) for k in ("name", "command", "source", "by")))
            )
    return out


def junit_outcomes(path: Path) -> dict[str, str] | None:
    """Return ``{test id: passed|failed|skipped}`` from a JUnit XML file (None: none)."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_JUNIT_BYTES:
            return None
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    out: dict[str, str] = {}
    for case in root.iter("testcase"):
        test = f"{case.get('classname', '')}::{case.get('name', '')}".lstrip(":")
        if case.find("failure") is not None or case.find("error") is not None:
            out[test] = "failed"
        elif out.get(test) != "failed":
            out[test] = "skipped" if case.find("skipped") is not None else "passed"
    return out


def check_execute(spec: CheckSpec, tree: Path, out_dir: Path, beat: Beat) -> dict[str, Any]:
    """Run one check in ``tree``; return its raw outcome (exit code, output, tests)."""
    junit = out_dir / f"{spec.name}.junit.xml"
    junit.unlink(missing_ok=True)
    addopts = f"--junitxml={shlex.quote(str(junit))} -p no:cacheprovider"
    outcome = sandbox_run(
        spec.command,
        cwd=tree,
        env=sandbox_env(out_dir / "home", {"PYTEST_ADDOPTS": addopts}),
        limits=limits_from_env(),
        log=out_dir / f"{spec.name}.log",
        beat=lambda s: beat(f"check {spec.name}: running ({s:.0f} s)"),
    )
    return {
        "exit_code": outcome.exit_code,
        "duration_s": outcome.duration_s,
        "timed_out": outcome.timed_out,
        "output_tail": outcome.output_tail,
        "error": outcome.error,
        "isolation": outcome.isolation,
        "tests": junit_outcomes(junit),
    }


def _could_not_run(raw: dict[str, Any] | None) -> bool:
    return raw is None or raw.get("exit_code") is None or raw.get("exit_code") in (126, 127)


def _failing(raw: dict[str, Any]) -> set[str]:
    return {t for t, outcome in (raw.get("tests") or {}).items() if outcome == "failed"}


def judge(spec: CheckSpec, after: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
    """Return the check's result: status, and whether the change is to blame."""
    res: dict[str, Any] = {
        **spec.as_dict(),
        "status": "passed" if after.get("exit_code") == 0 else "failed",
        "exit_code": after.get("exit_code"),
        "duration_s": after.get("duration_s"),
        "output_tail": after.get("output_tail", ""),
        "isolation": after.get("isolation", ""),
        "base": {
            "exit_code": (base or {}).get("exit_code"),
            "timed_out": bool((base or {}).get("timed_out")),
        },
        "regression": False,
        "regressions": [],
        "pre_existing": [],
        "note": "",
    }
    if after.get("timed_out"):
        if base is None or base.get("timed_out") or _could_not_run(base):
            return {**res, "status": "error", "note": after.get("error") or "timed out"}
        took = base.get("duration_s")
        note = f"{after.get('error')}; the base commit finished in {took} s"
        return {**res, "status": "failed", "regression": True, "note": note}
    if _could_not_run(after):
        code = after.get("exit_code")
        return {
            **res,
            "status": "error",
            "note": after.get("error") or f"could not run (exit {code})",
        }
    if res["status"] == "passed":
        return res
    _blame(res, after, base)
    return res


def _blame(res: dict[str, Any], after: dict[str, Any], base: dict[str, Any] | None) -> None:
    """Fill in a failed check's verdict: regression, or a failure that was there before."""
    if base is None or _could_not_run(base) or base.get("timed_out"):
        res.update(regression=True, note="fails, and the base commit could not be checked")
        return
    if after.get("tests") is not None and base.get("tests") is not None:
        now, before = _failing(after), _failing(base)
        res["regressions"], res["pre_existing"] = sorted(now - before), sorted(now & before)
        if res["regressions"]:
            n = len(res["regressions"])
            res.update(regression=True, note=f"{n} test(s) fail that did not fail before")
            return
        if res["pre_existing"]:
            n = len(res["pre_existing"])
            res["note"] = f"{n} test(s) failed on the base commit too: not blamed on this change"
            return
    if base.get("exit_code") == 0:
        res.update(regression=True, note="passes on the base commit, fails after this change")
    else:
        was = base.get("exit_code")
        res["note"] = f"failed on the base commit too (exit {was}): not blamed on this change"


def base_results(ws: Workspace, specs: list[CheckSpec], beat: Beat) -> dict[str, Any]:
    """Return each check's raw outcome on the base commit, run once per run and commit."""
    path = ws.run_dir / "checks" / f"base-{ws.base_commit[:12]}.json"
    cache = read_json(path)
    missing = [s for s in specs if (cache.get(s.name) or {}).get("command") != s.command]
    if missing:
        with base_checkout(ws) as tree:
            for spec in missing:
                beat(f"check {spec.name}: on the base commit")
                raw = check_execute(spec, tree, ws.scratch("checks", "base"), beat)
                cache[spec.name] = {"command": spec.command, **raw}
                write_json(path, cache)
    return cache


def checks_run(
    ws: Workspace, specs: list[CheckSpec], *, tag: str, beat: Beat
) -> list[dict[str, Any]]:
    """Run every check on the worktree as it is now; judge each against the base."""
    base = base_results(ws, specs, beat)
    out_dir = ws.scratch("checks", tag)
    return [judge(s, check_execute(s, ws.tree, out_dir, beat), base.get(s.name)) for s in specs]


# -- feedback: what a restarted job is told -----------------------------------------


def failure_text(results: list[dict[str, Any]]) -> str:
    """Return the error an attempt fails with: each failed check, its command, its output."""
    parts = []
    for r in results:
        head = f"check {r['name']!r} failed: `{r['command']}` exited {r.get('exit_code')}"
        if r.get("regressions"):
            head += "; new failures: " + ", ".join(r["regressions"][:10])
        elif r.get("note"):
            head += f"; {r['note']}"
        tail = str(r.get("output_tail") or "")[-FEEDBACK_TAIL:]
        parts.append(f"{head}\n--- output (tail) ---\n{tail}")
    return "\n\n".join(parts)


def feedback_write(run_dir: Path, job_id: str, attempt: int, results: list[dict[str, Any]]) -> None:
    checks = [
        {k: r.get(k) for k in ("name", "command", "exit_code", "regressions", "note")}
        | {"output_tail": str(r.get("output_tail") or "")[-FEEDBACK_TAIL:]}
        for r in results
    ]
    write_json(run_dir / "feedback" / f"{job_id}.json", {"attempt": attempt, "checks": checks})


def feedback_read(run_dir: Path, job_id: str) -> dict[str, Any] | None:
    """Return what the job's last rejected attempt was told, for its next prompt."""
    data = read_json(run_dir / "feedback" / f"{job_id}.json")
    if not data.get("checks"):
        return None
    return {
        "message": (
            f"Your change in attempt {data.get('attempt')} was rejected and put back: the "
            "checks below failed on it. The files are as they were before it. Fix the cause."
        ),
        "checks": data["checks"],
    }
