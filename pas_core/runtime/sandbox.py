"""Running a check's command as a sandboxed subprocess (DESIGN 4).

- **Limits**: wall time (enforced here and, as a backstop, by the check's first
  process, ``sandbox_init``), CPU time, address space, file size, processes. At the
  limit, or when the attempt is killed (an ``inflight`` abort hook), the command's
  whole process group is killed and reaped; so it is when the worker process dies
  (the control pipe closes).
- **No secrets**: the environment is built from an allow-list (``ENV_ALLOW``), never
  by deleting names from PAS's own: provider keys, ``DJANGO_SECRET_KEY``,
  ``DATABASE_URL``, ``REDIS_URL`` and whatever else PAS holds never reach a check.
  ``HOME`` and ``TMPDIR`` are a scratch folder of the run.
- **No network** where the operating system allows it: ``unshare`` puts the check in
  new user and network namespaces (only a loopback, down) and, where it can, a PID
  namespace with its own ``/proc`` (the check cannot read other processes'
  environments). ``isolation()`` says which was possible; ``none`` elsewhere (macOS,
  kernels without unprivileged user namespaces): the README says so.

A check runs with the user id PAS runs with: files that user can read, a check can
read. Run PAS as a user of its own for repositories you do not trust.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import inflight

INIT = Path(__file__).with_name("sandbox_init.py")
ENV_ALLOW = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "VIRTUAL_ENV")
POLL_S = 0.25
TAIL_BYTES = 4000
REAP_S = 10.0
BACKSTOP_S = 5.0  # The first process's own deadline comes this much after ours.
# Strongest first; the first that runs ``true`` on this machine is used.
ISOLATIONS: tuple[tuple[str, list[str]], ...] = (
    (
        "network+pid",
        ["unshare", "--user", "--map-root-user", "--net", "--pid", "--mount", "--fork"]
        + ["--mount-proc"],
    ),
    ("network", ["unshare", "--user", "--map-root-user", "--net"]),
)

_probe_lock = threading.Lock()
_probed: dict[str, tuple[str, list[str]]] = {}


@dataclass(frozen=True)
class Limits:
    wall_s: float = 600.0
    cpu_s: int = 600
    memory_mb: int = 4096
    file_mb: int = 256
    procs: int = 512


def _env_number(name: str, default: float, low: float, high: float) -> float:
    try:
        value = float(os.environ.get(name) or default)
    except ValueError:
        return default
    return max(low, min(value, high))


def limits_from_env() -> Limits:
    """Return the check limits, from ``PAS_CHECK_*`` (read at call time) or defaults."""
    wall = _env_number("PAS_CHECK_TIMEOUT_S", 600, 1, 86400)
    return Limits(
        wall_s=wall,
        cpu_s=int(_env_number("PAS_CHECK_CPU_S", wall, 1, 86400)),
        memory_mb=int(_env_number("PAS_CHECK_MEMORY_MB", 4096, 64, 1 << 20)),
        file_mb=int(_env_number("PAS_CHECK_FILE_MB", 256, 1, 1 << 20)),
        procs=int(_env_number("PAS_CHECK_PROCS", 512, 8, 1 << 16)),
    )


def isolation() -> tuple[str, list[str]]:
    """Return ``(name, command prefix)`` of the strongest isolation this machine allows.

    Probed once per process (``unshare ... true``). ``PAS_CHECK_ISOLATION=none``
    turns it off.
    """
    if (os.environ.get("PAS_CHECK_ISOLATION") or "").strip().lower() == "none":
        return "none", []
    with _probe_lock:
        if "found" not in _probed:
            _probed["found"] = ("none", [])
            for name, prefix in ISOLATIONS:
                try:
                    probe = subprocess.run(
                        [*prefix, "true"], capture_output=True, timeout=15, check=False
                    )
                except (OSError, subprocess.TimeoutExpired):
                    continue
                if probe.returncode == 0:
                    _probed["found"] = (name, prefix)
                    break
        return _probed["found"]


def sandbox_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Return a check's environment: the allow-listed names, a scratch home, ``extra``."""
    env = {k: os.environ[k] for k in ENV_ALLOW if k in os.environ}
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        TMPDIR=str(home / "tmp"),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
        CI="1",
        NO_COLOR="1",
    )
    env.update(extra or {})
    return env


@dataclass
class Outcome:
    exit_code: int | None  # None: it never started.
    duration_s: float
    timed_out: bool
    output_tail: str
    error: str  # Why it could not run, or how it was stopped; "" when it ended by itself.
    isolation: str
    pgid: int = 0  # The check's process group (gone once this returns).


class _Control:
    """The write end of the control pipe: closing it tells the check to stop.

    Closed once, under a lock: by the thread running the check, or by an abort hook
    from the thread that kills the attempt (never twice: the fd number could be
    someone else's by then).
    """

    def __init__(self, fd: int) -> None:
        self.fd, self.lock, self.closed = fd, threading.Lock(), False

    def stop(self) -> None:
        with self.lock:
            if not self.closed:
                self.closed = True
                os.close(self.fd)


def _tail(log: Path) -> str:
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _reap(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=REAP_S)
    except subprocess.TimeoutExpired:
        # The first process did not clean up in time: kill its group from here.
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def sandbox_run(
    command: str,
    *,
    cwd: Path,
    env: dict[str, str],
    limits: Limits,
    log: Path,
    beat: Callable[[float], None] | None = None,
) -> Outcome:
    """Run ``command`` (``/bin/sh -c``) in ``cwd`` within ``limits``; output to ``log``.

    ``beat(elapsed_s)`` is called while it runs (the attempt's heartbeat). A kill of
    the current attempt stops it at once and raises AttemptKilled here as anywhere.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    name, prefix = isolation()
    backstop = {
        "wall_s": limits.wall_s + BACKSTOP_S,
        "cpu_s": limits.cpu_s,
        "memory_mb": limits.memory_mb,
        "file_mb": limits.file_mb,
        "procs": limits.procs,
    }
    read_fd, write_fd = os.pipe()
    control = _Control(write_fd)
    argv = [*prefix, sys.executable, "-I", "-S", str(INIT), json.dumps(backstop), str(read_fd)]
    argv += ["--", "/bin/sh", "-c", command]
    started = time.monotonic()
    try:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=(read_fd,),
                start_new_session=True,
            )
    except OSError as exc:
        control.stop()
        return Outcome(None, 0.0, False, "", f"could not start: {exc}", name)
    finally:
        os.close(read_fd)
    forget = inflight.on_abort(control.stop)
    timed_out = False
    try:
        while proc.poll() is None:
            elapsed = time.monotonic() - started
            if elapsed >= limits.wall_s:
                timed_out = True
                break
            if beat is not None:
                beat(elapsed)
            inflight.wait(POLL_S)
    finally:
        forget()
        control.stop()
        _reap(proc)
    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    error = f"stopped at its time limit ({limits.wall_s:.0f} s)" if timed_out else ""
    duration = round(time.monotonic() - started, 3)
    return Outcome(code, duration, timed_out, _tail(log), error, name, proc.pid)
