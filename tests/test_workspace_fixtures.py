"""Helpers, no tests: a small git repository to point PAS at (a package with a test)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Tester",
    "GIT_AUTHOR_EMAIL": "tester@example.invalid",
    "GIT_COMMITTER_NAME": "Tester",
    "GIT_COMMITTER_EMAIL": "tester@example.invalid",
}

PARSER = '''def parse(text):
    """Return the comma-separated fields of ``text``."""
    return [field.strip() for field in text.split(",")]
'''
PARSER_TEST = """from calc.parser import parse


def test_it_splits_on_commas():
    assert parse("a, b") == ["a", "b"]
"""


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` as a person would; return its output (raise on failure)."""
    out = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **GIT_ENV},
    )
    return out.stdout.strip()


def make_repo(root: Path, files: dict[str, str] | None = None) -> Path:
    """Create a git repository at ``root`` with ``files`` (default: a package and its test)."""
    root.mkdir(parents=True)
    files = files or {
        "calc/__init__.py": "",
        "calc/parser.py": PARSER,
        "tests/test_parser.py": PARSER_TEST,
        ".gitignore": "__pycache__/\n*.log\n",
        "README.md": "# calc\n",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return root


def checkout_state(repo: Path) -> tuple[str, str, str]:
    """Return what a person sees of their checkout: HEAD, current branch, status."""
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "rev-parse", "--abbrev-ref", "HEAD"),
        git(repo, "status", "--porcelain"),
    )
