"""git as PAS runs it on a person's repository: nothing of theirs runs, nothing waits.

Every command gets a small environment (no PAS secrets) and ``-c`` overrides that
keep the repository's own programs out: no hooks (``core.hooksPath``), no signing, no
fsmonitor; diffs are asked with ``--no-ext-diff --no-textconv`` by the callers. The
person's checkout is only ever read (``rev-parse``) or given a new worktree and a
branch: its index, its HEAD and its files are never touched, because every command
that changes files runs with ``-C <the run's worktree>``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from .. import inflight

GIT_TIMEOUT_S = 300
SAFE = [
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "advice.detachedHead=false",
]
ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ")


class GitError(Exception):
    """A git command failed; the message carries its stderr (bounded)."""


def git_env(author: tuple[str, str] | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in ENV_KEEP if k in os.environ}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0")
    if author:
        name, email = author
        env.update(
            GIT_AUTHOR_NAME=name,
            GIT_AUTHOR_EMAIL=email,
            GIT_COMMITTER_NAME="PAS",
            GIT_COMMITTER_EMAIL="pas@pas.invalid",
        )
    return env


def git(
    cwd: Path,
    *args: str,
    check: bool = True,
    author: tuple[str, str] | None = None,
    timeout: float = GIT_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run ``git -C cwd args``; raise GitError when it fails and ``check`` is set."""
    try:
        proc = subprocess.run(
            ["git", *SAFE, "-C", str(cwd), *args],
            capture_output=True,
            text=True,
            errors="replace",
            env=git_env(author),
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git {args[0]}: {exc}") from None
    if check and proc.returncode != 0:
        raise GitError(f"git {args[0]}: {(proc.stderr or proc.stdout).strip()[-800:]}")
    return proc


@contextlib.contextmanager
def file_lock(
    path: Path, *, beat: Callable[[str], None] | None = None, what: str = "the lock"
) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the block, waiting (and beating) for it.

    Each holder opens the file itself, so two threads of one process exclude each
    other as two processes do; closing the file (also when the process dies) lets go.
    A kill of the attempt ends the wait (AttemptKilled).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        waited = 0.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if beat is not None:
                    beat(f"waiting for {what} ({waited:.0f} s)")
                inflight.wait(0.5)
                waited += 0.5
        yield
    finally:
        os.close(fd)


def repo_lock_path(artifacts_root: Path, repo: Path) -> Path:
    """Return the lock that serialises worktree changes of one repository across runs."""
    digest = hashlib.sha1(str(repo).encode(), usedforsecurity=False).hexdigest()[:16]
    return artifacts_root / "locks" / f"repo-{digest}.lock"
