"""Acceptance checks a lane's report evaluates on the files its Programmers wrote.

Nothing here runs code: checks that parse (``python_syntax``, ``json_valid``) parse;
checks that would need code to run are reported ``not_run`` with the reason, and a
lane with a check not run is ``unchecked``, never ``completed``. Commands run for
real only on a repository (``runtime.checks``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .files import is_file

NOT_RUN = (
    "PAS runs no command on an artifacts folder: give the run a git repository "
    "(repo_root) and checks to run it for real"
)
ARTIFACT_CHECKS = ("artifacts_exist", "expected_artifacts", "artifacts")


def acceptance_evaluate(
    lane_dir: Path, checks: list[str], expected: list[str], artifacts: list[str]
) -> dict[str, dict[str, Any]]:
    """Evaluate each acceptance check against the files that exist; run no code.

    ``artifacts_exist`` passes when every expected artifact is a file (or, with none
    expected, when some artifact was made); ``exists:<path>`` checks one file;
    ``python_syntax`` and ``json_valid`` parse (never run) the artifacts. Checks that need
    code to run (pytest, lint, coverage...) or that PAS does not know are ``not_run``,
    with the reason, never a made-up number.
    """
    results: dict[str, dict[str, Any]] = {}
    present = [a for a in artifacts if is_file(lane_dir, a)]
    for check in checks:
        name = check.strip()
        if name in ARTIFACT_CHECKS:
            if expected:
                missing = [p for p in expected if not is_file(lane_dir, p)]
                results[check] = (
                    {"status": "fail", "detail": "missing: " + ", ".join(missing)}
                    if missing
                    else {"status": "pass", "detail": f"{len(expected)}/{len(expected)} present"}
                )
            else:
                results[check] = (
                    {"status": "pass", "detail": f"{len(present)} artifact(s)"}
                    if present
                    else {"status": "fail", "detail": "no artifacts"}
                )
        elif name.startswith("exists:"):
            path = name.removeprefix("exists:").strip()
            found = is_file(lane_dir, path)
            results[check] = {"status": "pass" if found else "fail", "detail": path}
        elif name in ("python_syntax", "json_valid"):
            results[check] = parse_check(lane_dir, present, name)
        else:
            known = re.match(r"(pytest|tests?|lint|ruff|flake8|mypy|coverage)\b", name)
            reason = NOT_RUN if known else "unknown check: PAS has no way to evaluate it"
            results[check] = {"status": "not_run", "reason": reason}
    return results


def parse_check(lane_dir: Path, present: list[str], name: str) -> dict[str, Any]:
    suffix = ".py" if name == "python_syntax" else ".json"
    files = [p for p in present if p.endswith(suffix)]
    if not files:
        return {"status": "skipped", "detail": f"no {suffix} artifacts to parse"}
    bad = []
    for rel in files:
        text = (lane_dir / rel).read_text(errors="replace")
        try:
            if suffix == ".py":
                compile(text, rel, "exec", dont_inherit=True)  # Parses; runs nothing.
            else:
                json.loads(text)
        except (SyntaxError, ValueError) as exc:
            bad.append(f"{rel}: {exc.__class__.__name__}")
    if bad:
        return {"status": "fail", "detail": "; ".join(bad)}
    return {"status": "pass", "detail": f"{len(files)} file(s) parse"}
