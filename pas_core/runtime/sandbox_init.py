"""The first process of a sandboxed check: set the limits, run the command, clean up.

Run as a script (``python -I -S sandbox_init.py LIMITS FD -- ARGV...``), never
imported: standard library only. Why a process of its own rather than a
``preexec_fn``: the agents worker runs attempts on threads, and a ``preexec_fn`` in a
threaded process may deadlock between fork and exec (the subprocess docs say so).

It forks the command (in the process group PAS made for the check) with the limits
set (CPU time, address space, file size, processes, no core files), then watches:

- the command ending: anything it left behind (background processes) is killed;
- its own wall-clock backstop (``wall_s``), should its parent never say stop;
- the pipe ``FD`` from PAS: PAS closes it to say stop (the check ran out of time, or
  its attempt was killed), and it closes by itself when the worker process dies.

Then it kills everything under it and reaps it before it exits: it is the init of
the check's PID namespace (``unshare -p``: ``kill(-1)`` reaches every process in it)
or, on Linux without one, the child subreaper (orphans come back to it, and it kills
its children until none is left). So the group is gone, without a zombie, when it
exits with the command's status (128 + signal when killed; 124 at its backstop).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import select
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
REAP_GRACE_S = 5.0


def _limit(which: int, value: int) -> None:
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(which, (value, value))


def _child(limits: dict[str, int], argv: list[str]) -> None:
    try:
        # Python ignores these at start, and ignored signals stay ignored across exec:
        # give the command the defaults a shell would.
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        _limit(resource.RLIMIT_CPU, limits["cpu_s"])
        _limit(resource.RLIMIT_AS, limits["memory_mb"] * 2**20)
        _limit(resource.RLIMIT_FSIZE, limits["file_mb"] * 2**20)
        _limit(resource.RLIMIT_NPROC, limits["procs"])
        _limit(resource.RLIMIT_CORE, 0)
        os.execvp(argv[0], argv)
    except OSError as exc:
        sys.stderr.write(f"sandbox: cannot run {argv[0]!r}: {exc}\n")
    os._exit(127)


def _subreaper() -> None:
    if os.getpid() == 1 or not sys.platform.startswith("linux"):
        return  # The init of a PID namespace already gets every orphan.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _children() -> list[int]:
    """Return the pids whose parent is this process (orphans included, Linux /proc)."""
    me, found = os.getpid(), []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == me:
                    found.append(int(name))
    return found


def _kill_all() -> None:
    """Kill and reap every process under this one (the whole check)."""
    if os.getpid() == 1:
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)  # From a namespace's init: all but itself.
    elif not os.path.isdir("/proc"):
        os.killpg(os.getpgrp(), signal.SIGKILL)  # No way to spare itself: all of it.
    deadline = time.monotonic() + REAP_GRACE_S
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            for child in _children():
                with contextlib.suppress(OSError):
                    os.kill(child, signal.SIGKILL)
            time.sleep(0.02)


def _status(raw: int) -> int:
    if os.WIFSIGNALED(raw):
        return 128 + os.WTERMSIG(raw)
    return os.WEXITSTATUS(raw) if os.WIFEXITED(raw) else 1


def _reap(pid: int) -> int | None:
    """Reap every child that ended (orphans too); return ``pid``'s status if it did."""
    while True:
        try:
            done, raw = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return 127  # No child at all: the command is gone.
        if done == 0:
            return None
        if done == pid:
            return _status(raw)


def main(args: list[str]) -> int:
    limits = json.loads(args[0])
    control = int(args[1])
    argv = args[3:] if args[2:3] == ["--"] else args[2:]
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # PAS stops us through the pipe only.
    _subreaper()
    pid = os.fork()
    if pid == 0:
        os.close(control)
        _child(limits, argv)
    deadline = time.monotonic() + float(limits["wall_s"])
    status = 124  # What ``timeout`` answers when time ran out.
    while time.monotonic() < deadline:
        ready, _, _ = select.select([control], [], [], 0.1)
        if ready:
            os.read(control, 1)  # Closed: out of time, killed, or the worker died.
            status = 137
            break
        ended = _reap(pid)
        if ended is not None:
            status = ended
            break
    _kill_all()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
