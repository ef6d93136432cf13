"""What agents are shown of the repository, bounded by a byte budget per prompt.

The Architect and Directors see a map (paths and sizes of what git tracks, plus new
files ``.gitignore`` does not hide: ``git ls-files``); Managers and Programmers see
the contents of the entry files and of the files their task names. Neither follows
a symlink out of the worktree: the map lists a link as a link, the contents are read
only where ``files.inside`` allows. ``PAS_CONTEXT_BYTES`` (environment, read at call
time) sets the budget; what does not fit is cut, and the prompt says so.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

from ..errors import AttemptError
from .files import inside, safe_relpath
from .gitops import GitError, git

DEFAULT_BUDGET = 24_000
_PATHLIKE = re.compile(r"[\w./-]*\w\.\w{1,8}\b")


def context_budget() -> int:
    """Return the bytes of repository context one prompt may carry."""
    try:
        value = int(os.environ.get("PAS_CONTEXT_BYTES") or DEFAULT_BUDGET)
    except ValueError:
        value = DEFAULT_BUDGET
    return max(1000, min(value, 2_000_000))


def tracked(tree: Path) -> list[str]:
    """Return the repository's files (tracked, and new ones not ignored), sorted."""
    try:
        out = git(tree, "ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout
    except GitError:
        return []
    return sorted({p for p in out.split("\0") if p})


def repo_map(tree: Path, budget: int) -> dict[str, Any]:
    """Return ``{"files": "path<TAB>size" lines, "shown", "total"}`` within ``budget``."""
    paths = tracked(tree)
    lines: list[str] = []
    used = 0
    for path in paths:
        try:
            info = os.lstat(tree / path)  # lstat: a symlink is listed, never followed.
        except OSError:
            continue
        size = "link" if stat.S_ISLNK(info.st_mode) else str(info.st_size)
        line = f"{path}\t{size}"
        if used + len(line) + 1 > budget:
            break
        lines.append(line)
        used += len(line) + 1
    out: dict[str, Any] = {"files": "\n".join(lines), "shown": len(lines), "total": len(paths)}
    if len(lines) < len(paths):
        out["note"] = f"{len(paths) - len(lines)} more files not shown (context budget)"
    return out


def named_paths(text: str, known: list[str]) -> list[str]:
    """Return the files of ``known`` that ``text`` names, by path or by a unique file name."""
    by_name: dict[str, list[str]] = {}
    for path in known:
        by_name.setdefault(path.rsplit("/", 1)[-1], []).append(path)
    known_set = set(known)
    found: list[str] = []
    for token in _PATHLIKE.findall(text):
        token = token.removeprefix("./")
        hit = token if token in known_set else None
        if hit is None and len(by_name.get(token, [])) == 1:
            hit = by_name[token][0]
        if hit and hit not in found:
            found.append(hit)
    return found


def task_files(
    tree: Path, *, entry_files: list[str], paths: list[str], text: str
) -> dict[str, str]:
    """Return what a Manager or Programmer is shown: the contents of the entry files,
    of the files its card names, and of those its task or the goal name (``text``).
    """
    wanted = [*entry_files, *paths, *named_paths(text, tracked(tree))]
    return file_contents(tree, wanted, context_budget())


def file_contents(tree: Path, paths: list[str], budget: int) -> dict[str, str]:
    """Return ``{path: text}`` for the files that exist, within ``budget`` bytes in all.

    A path that escapes the worktree (``..``, a symlink pointing out) is skipped; a
    binary file is described, not shown; a file cut by the budget says so.
    """
    out: dict[str, str] = {}
    left = budget
    for raw in paths:
        if left <= 0:
            break
        try:
            rel = safe_relpath(raw)
            target = inside(tree, rel)
        except AttemptError:
            continue
        if rel in out or not target.is_file():
            continue
        try:
            size = target.stat().st_size
            with target.open("rb") as f:
                data = f.read(min(size, left))
        except OSError:
            continue
        if b"\0" in data[:8000]:
            out[rel] = f"(binary file, {size} bytes: not shown)"
            left -= 60
            continue
        text = data.decode("utf-8", "replace")
        if len(data) < size:
            text += f"\n... (cut: {len(data)} of {size} bytes shown, context budget)"
        out[rel] = text
        left -= len(data)
    return out
