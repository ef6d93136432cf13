"""A Programmer's change to a repository: whole files and unified diffs, checked first.

Every path a reply names must stay inside the workspace: no absolute path, no ``..``,
nothing under ``.git``, no symlink created, none followed out (``files.inside``).
A diff must also apply (``git apply --check``). Anything else is ``bad_output``, and
nothing of a refused reply is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AttemptError
from .files import inside, safe_relpath, write_atomic
from .gitops import GitError, git

MAX_FILES = 50
MAX_BYTES = 2_000_000
_HEADER = re.compile(r"^(?:---|\+\+\+) (\S.*?)(?:\t.*)?$")
_GIT_HEADER = re.compile(r"^diff --git (\S+) (\S+)$")
_MOVE = re.compile(r"^(?:rename|copy) (?:from|to) (.+)$")
_SYMLINK_MODE = re.compile(r"^(?:new file mode|new mode|index \S+) 120000\b")


@dataclass
class Change:
    files: list[tuple[str, str]] = field(default_factory=list)  # (relative path, content)
    diff: str = ""
    strip: int = 1  # ``git apply -p``: 1 for a/ b/ prefixes, 0 without.
    diff_paths: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        out: list[str] = []
        for path in [*self.diff_paths, *(p for p, _ in self.files)]:
            if path not in out:
                out.append(path)
        return out


def repo_relpath(path: str) -> str:
    """Return ``path`` as a safe repository path; refuse ``.git`` (bad_output)."""
    rel = safe_relpath(path)
    if ".git" in rel.split("/"):
        raise AttemptError("bad_output", f"a path inside .git is refused: {path!r}")
    return rel


def diff_paths(diff: str) -> tuple[list[str], int]:
    """Return the paths a unified diff touches and its ``-p`` level; refuse unsafe ones.

    Refused (bad_output): absolute or escaping paths, ``.git``, symlinks (mode 120000),
    binary patches, a diff that names no file. Header paths (``---``, ``+++``,
    ``diff --git``) carry ``a/`` ``b/`` prefixes when all of them do; rename and copy
    lines never do.
    """
    headers: list[str] = []
    moves: list[str] = []
    for line in diff.splitlines():
        if _SYMLINK_MODE.match(line):
            raise AttemptError("bad_output", "a diff that makes a symlink is refused")
        if line.startswith("GIT binary patch"):
            raise AttemptError("bad_output", "binary patches are refused")
        found = _HEADER.match(line) or _GIT_HEADER.match(line)
        if found:
            headers += [g.strip() for g in found.groups()]
        elif found := _MOVE.match(line):
            moves.append(found.group(1).strip())
    headers = [p for p in headers if p != "/dev/null"]
    if not headers and not moves:
        raise AttemptError("bad_output", "the diff names no file (expected ---/+++ headers)")
    strip = 1 if headers and all(p.startswith(("a/", "b/")) for p in headers) else 0
    paths: list[str] = []
    for path in [p[2:] if strip else p for p in headers] + moves:
        rel = repo_relpath(path)
        if rel not in paths:
            paths.append(rel)
    return paths, strip


def change_from(files: list[tuple[str, str]], diff: str) -> Change:
    """Return the change a reply describes, every path checked; refuse it (bad_output)."""
    if len(files) > MAX_FILES:
        raise AttemptError("bad_output", f"{len(files)} files (at most {MAX_FILES})")
    size = sum(len(content.encode()) for _, content in files) + len(diff.encode())
    if size > MAX_BYTES:
        raise AttemptError("bad_output", f"the change is larger than {MAX_BYTES} bytes")
    change = Change(files=[(repo_relpath(path), content) for path, content in files])
    if diff.strip():
        change.diff = diff if diff.endswith("\n") else diff + "\n"
        change.diff_paths, change.strip = diff_paths(change.diff)
    if not change.files and not change.diff:
        raise AttemptError("bad_output", "the reply changes nothing (no files, no diff)")
    return change


def change_apply(tree: Path, change: Change, scratch: Path) -> list[str]:
    """Apply ``change`` in the worktree ``tree``; return the paths it touched.

    The diff goes first, checked by ``git apply --check`` (which also refuses paths
    outside the tree and paths beyond a symlink); then the whole files, each written
    only where ``inside`` allows (a symlink pointing out is refused).
    """
    targets = [(inside(tree, rel), content) for rel, content in change.files]
    if change.diff:
        scratch.mkdir(parents=True, exist_ok=True)
        patch = scratch / "change.diff"
        patch.write_text(change.diff)
        args = ["apply", f"-p{change.strip}", "--whitespace=nowarn", "--recount"]
        try:
            git(tree, *args, "--check", str(patch))
        except GitError as exc:
            raise AttemptError("bad_output", f"the diff does not apply: {exc}") from None
        git(tree, *args, str(patch))
    for path, content in targets:
        write_atomic(path, content.encode())
    return change.paths
