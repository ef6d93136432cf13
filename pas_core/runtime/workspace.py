"""A run's workspace: its own git worktree on branch ``pas/<run8>`` (DESIGN 4).

PAS Root's step makes it (``workspace_prepare``), from the commit the repository's
HEAD was at when the run was submitted, under the run's artifacts folder:
``<PAS_ARTIFACTS_DIR>/runs/<run_id>/worktree``. The person's checkout is never
touched: no checkout, no index write, no branch switch there.

Programmers change the worktree one at a time (``workspace_locked``, a file lock
every process and thread honours): each starts from the branch tip (``reset``),
applies its change, runs the checks, and commits it (author: the agent) or puts it
back. So every commit on the branch is one checked change of one job, and a change
killed halfway is swept away by the next holder.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AttemptError, ServiceError
from ..models import Run
from ..services.submit import repo_root_resolve
from .files import read_json, write_json
from .gitops import GitError, file_lock, git, repo_lock_path

MAX_DIFF_BYTES = 400_000


@dataclass(frozen=True)
class Workspace:
    run_dir: Path  # <PAS_ARTIFACTS_DIR>/runs/<run_id>, absolute
    repo: Path  # the person's repository (repo_root)
    branch: str
    base_commit: str

    @property
    def tree(self) -> Path:
        return self.run_dir / "worktree"

    @property
    def base_tree(self) -> Path:
        return self.run_dir / "base"

    @property
    def artifacts_root(self) -> Path:
        return self.run_dir.parent.parent

    def scratch(self, *parts: str) -> Path:
        """Return a folder of the run outside the worktree (check logs, patches)."""
        path = self.run_dir.joinpath("work", *parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


def workspace_of(run: Run, artifacts_dir: Path) -> Workspace | None:
    """Return the run's workspace, or None when it works in a plain artifacts folder."""
    if not run.branch:
        return None
    return Workspace(artifacts_dir.resolve(), Path(run.repo_root), run.branch, run.base_commit)


def workspace_prepare(ws: Workspace) -> str:
    """Make the worktree on a new branch from the base commit; return what was done.

    Idempotent: a restarted PAS Root finds it made (``ready``). The repository is
    checked against ``PAS_REPO_ROOTS`` again, here, where the work happens.
    """
    try:
        repo_root_resolve(str(ws.repo))
    except ServiceError as exc:
        raise AttemptError("error", f"repo_root: {exc.message}") from None
    if (ws.tree / ".git").exists():
        head = git(ws.tree, "rev-parse", "--abbrev-ref", "HEAD", check=False).stdout.strip()
        if head == ws.branch:
            return "ready"
        raise AttemptError("error", f"{ws.tree} is on {head!r}, not on {ws.branch}")
    try:
        with file_lock(repo_lock_path(ws.artifacts_root, ws.repo), what="the repository"):
            git(ws.repo, "worktree", "prune")
            if ws.tree.exists():
                shutil.rmtree(ws.tree)  # Half made by an attempt that died: made again.
            exists = git(
                ws.repo, "show-ref", "--verify", "-q", f"refs/heads/{ws.branch}", check=False
            )
            if exists.returncode == 0:
                git(ws.repo, "worktree", "add", "-q", str(ws.tree), ws.branch)
            else:
                git(ws.repo, "worktree", "add", "-q", "-b", ws.branch, str(ws.tree), ws.base_commit)
    except GitError as exc:
        raise AttemptError("error", f"could not make the worktree: {exc}") from None
    return "created"


@contextlib.contextmanager
def workspace_locked(ws: Workspace, beat: Callable[[str], None]) -> Iterator[None]:
    """Hold the worktree for one change (waiting, beating, while another job has it)."""
    with file_lock(ws.run_dir / "workspace.lock", beat=beat, what="the worktree"):
        yield


def reset(ws: Workspace) -> None:
    """Put the worktree back to the branch tip: tracked files restored, new ones removed.

    Ignored files (``.gitignore``) stay: caches, virtual environments.
    """
    git(ws.tree, "reset", "-q", "--hard", "HEAD")
    git(ws.tree, "clean", "-q", "-f", "-d")


def changed(ws: Workspace, paths: list[str]) -> list[str]:
    """Return which of ``paths`` differ from the branch tip (new files included)."""
    if not paths:
        return []
    out = git(ws.tree, "status", "--porcelain", "-z", "--untracked-files=all", "--", *paths)
    found = []
    for entry in out.stdout.split("\0"):
        if len(entry) > 3:
            found.append(entry[3:])
    return sorted(set(found))


def commit(ws: Workspace, paths: list[str], *, agent_id: str, message: str) -> str:
    """Commit ``paths`` on the run's branch as ``agent_id``; return the commit id."""
    email = f"{agent_id.lower().replace(' ', '-')}@pas.invalid"
    git(ws.tree, "add", "-A", "--", *paths)
    git(ws.tree, "commit", "-q", "--no-verify", "-m", message, author=(agent_id, email))
    return git(ws.tree, "rev-parse", "HEAD").stdout.strip()


def commits_diff(ws: Workspace, shas: list[str]) -> tuple[str, dict[str, Any]]:
    """Return the diff of these commits (in order) and its stat: files, lines +/-."""
    parts: list[str] = []
    files: dict[str, list[int]] = {}
    for sha in shas:
        show = ["show", "--no-ext-diff", "--no-textconv", "--no-color", "--format="]
        parts.append(git(ws.tree, *show, sha, check=False).stdout)
        numstat = git(ws.tree, *show, "--numstat", sha, check=False).stdout
        for line in numstat.splitlines():
            fields = line.split("\t", 2)
            if len(fields) < 3:
                continue
            added, removed, path = fields
            counts = files.setdefault(path, [0, 0])
            counts[0] += int(added) if added.isdigit() else 0
            counts[1] += int(removed) if removed.isdigit() else 0
    text = "".join(parts)
    if len(text.encode()) > MAX_DIFF_BYTES:
        text = text.encode()[:MAX_DIFF_BYTES].decode("utf-8", "ignore") + "\n... (diff cut)\n"
    return text, {
        "files": [{"path": p, "added": a, "removed": r} for p, (a, r) in sorted(files.items())],
        "added": sum(a for a, _ in files.values()),
        "removed": sum(r for _, r in files.values()),
        "commits": list(shas),
    }


def branch_order(ws: Workspace, shas: list[str]) -> list[str]:
    """Return ``shas`` in the order they sit on the branch (oldest first)."""
    listed = git(ws.tree, "rev-list", "--reverse", f"{ws.base_commit}..HEAD", check=False)
    order = {sha: i for i, sha in enumerate(listed.stdout.split())}
    return sorted((s for s in shas if s in order), key=order.__getitem__)


@contextlib.contextmanager
def base_checkout(ws: Workspace) -> Iterator[Path]:
    """Yield a detached worktree at the base commit; remove it afterwards."""
    lock = repo_lock_path(ws.artifacts_root, ws.repo)
    try:
        with file_lock(lock, what="the repository"):
            git(ws.repo, "worktree", "prune")
            if ws.base_tree.exists():
                shutil.rmtree(ws.base_tree)
            git(ws.repo, "worktree", "add", "-q", "--detach", str(ws.base_tree), ws.base_commit)
    except GitError as exc:
        raise AttemptError("error", f"could not check out the base commit: {exc}") from None
    try:
        yield ws.base_tree
    finally:
        with file_lock(lock, what="the repository"):
            git(ws.repo, "worktree", "remove", "--force", str(ws.base_tree), check=False)


def info_write(ws: Workspace, data: dict[str, Any]) -> None:
    write_json(ws.run_dir / "workspace.json", data)


def info_read(ws: Workspace) -> dict[str, Any]:
    """Return what PAS Root recorded of the workspace (its checks), {} before that."""
    return read_json(ws.run_dir / "workspace.json")
