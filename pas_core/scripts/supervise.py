"""Run a worker process and replace it when it dies or stops ticking.

Usage::

    python pas_core/scripts/supervise.py [--stall-s 5] -- celery -A pas_core worker ...

Run by its path, not with ``-m``: the package ``pas_core`` loads Celery on import, and
this process only needs the standard library (about 10 MiB, against 70 with the
project loaded). What needs the project (Redis, the broker) runs in a process of its
own when a worker is lost (``pas_core.scripts.worker_lost``).

The agents worker carries many attempts in one process (one thread each). A thread
stuck in a loop that never returns to the interpreter (the ``spin`` fault; a regular
expression gone exponential; a C extension spinning) holds the interpreter lock: no
other attempt of the process runs, beats, or can be killed. Only a process outside can
help. This one:

- gives the worker a pipe (``PAS_SUPERVISOR_FD``) down which its liveness thread
  writes a byte every half second (``pas_core.runtime.liveness``);
- when the bytes stop for ``--stall-s`` seconds, samples each thread's CPU time in
  ``/proc`` twice, finds the thread that burns it, and looks up which attempt that
  thread holds (``stores.workers``: the worker records ``attempt -> thread``);
- kills the process (SIGKILL), starts a new one, and tells supervision
  (``attempts_worker_lost`` on the hhmrs queue, from ``pas_core.scripts.worker_lost``
  while the new worker starts): the culprit's job counts a restart, the innocent
  attempts are re-sent without spending their budget;
- does the same when the worker dies on its own (a ``crash`` leaves a note naming its
  attempt) or is killed from outside (nobody is blamed), and on SIGTERM/SIGINT stops
  the worker, waits ``--grace-s``, and re-sends what it held.

Without a supervisor (``celery worker`` run by hand) everything else still works: TRON
times out the attempts of a process that stopped as a whole once they pass
``PAS_WORKER_GRACE_S`` (``pas_core.tron``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

log = logging.getLogger("pas.supervise")

ROOT = Path(__file__).resolve().parents[2]  # The project: where pas_core is imported from.
TICK_WAIT_S = 0.5
FIRST_TICK_S = 120.0  # Celery's start-up (imports, broker) before the first tick.
QUICK_DEATH_S = 10.0  # A worker that dies sooner than this is restarted after a pause.
REPORT_WAIT_S = 30.0  # On shutdown, how long the last reports may take.


def _clock_ticks() -> int:
    return int(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100


def thread_cpu(pid: int) -> dict[int, int]:
    """Return ``{native thread id: CPU ticks}`` of a process (Linux /proc; empty elsewhere)."""
    out: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(task.name)] = int(fields[11]) + int(fields[12])  # utime + stime
    return out


def hot_threads(pid: int, window_s: float = 0.4) -> list[int]:
    """Return the thread that burned the CPU over ``window_s`` (empty if none clearly did).

    In a stall one thread holds the interpreter lock and spins while every other one
    waits for it, so the culprit is the busiest by far: it must have used a fifth of a
    CPU at least (a loaded machine shares the CPU out) and twice the next busiest.
    """
    before = thread_cpu(pid)
    time.sleep(window_s)
    after = thread_cpu(pid)
    busy = sorted(((after[t] - before.get(t, after[t]), t) for t in after), reverse=True)
    if not busy or busy[0][0] < 0.2 * window_s * _clock_ticks():
        return []
    if len(busy) > 1 and busy[0][0] < 2 * busy[1][0]:
        return []
    return [busy[0][1]]


class Supervisor:
    def __init__(self, argv: list[str], *, stall_s: float, grace_s: float) -> None:
        self.argv = argv
        self.stall_s = stall_s
        self.grace_s = grace_s
        self.child: subprocess.Popen[bytes] | None = None
        self.read_fd = -1
        self.started = 0.0
        self.last_tick = 0.0
        self.ticked = False
        self.stopping = False
        self.quick_deaths = 0
        self.reports: list[subprocess.Popen[bytes]] = []

    @property
    def wid(self) -> str:
        assert self.child is not None
        return f"{socket.gethostname()}:{self.child.pid}"

    def start(self) -> None:
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, PAS_SUPERVISOR_FD=str(write_fd))
        # Same process group as ours (whoever stops the group stops both); and the worker
        # dies with us if we are killed outright, instead of running on unwatched.
        self.child = subprocess.Popen(
            self.argv, pass_fds=[write_fd], env=env, preexec_fn=_die_with_parent
        )
        os.close(write_fd)
        if self.read_fd >= 0:
            os.close(self.read_fd)
        self.read_fd = read_fd
        self.started = self.last_tick = time.monotonic()
        self.ticked = False
        log.info("supervise: started %s (pid %s)", self.argv[0], self.child.pid)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.start()
        while True:
            assert self.child is not None
            if self.stopping:
                return self._stop()
            ready, _, _ = select.select([self.read_fd], [], [], TICK_WAIT_S)
            if self.stopping:
                # A stop of the whole process group reaches the worker too: it may exit
                # while we wait here, and that is the stop, not a death.
                continue
            if ready:
                with contextlib.suppress(OSError):
                    if os.read(self.read_fd, 4096):
                        self.last_tick, self.ticked = time.monotonic(), True
            self.reports = [r for r in self.reports if r.poll() is None]
            if self.child.poll() is not None:
                self._replace("crash", killed=False)
                continue
            quiet = time.monotonic() - self.last_tick
            if (self.ticked and quiet > self.stall_s) or (not self.ticked and quiet > FIRST_TICK_S):
                self._replace("runaway", killed=True)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _replace(self, cause: str, *, killed: bool) -> None:
        """Blame, kill (if still there), report, and start a new worker."""
        assert self.child is not None
        wid, pid = self.wid, self.child.pid
        hot: list[int] = []
        code: int | None = None
        if killed:
            hot = hot_threads(pid)
            self._kill()
            log.error(
                "supervise: worker %s stopped ticking for %.0f s; replaced it (busy thread(s) %s)",
                pid,
                self.stall_s,
                hot or "none",
            )
        else:
            code = self.child.returncode
            cause = "crash" if code not in (0, -signal.SIGKILL, -signal.SIGTERM) else "killed"
        self._report(wid, cause, hot=hot, code=code)
        lived = time.monotonic() - self.started
        self.quick_deaths = self.quick_deaths + 1 if lived < QUICK_DEATH_S else 0
        if self.quick_deaths:
            time.sleep(min(30.0, 2.0**self.quick_deaths))  # Do not spin on a broken start.
        if not self.stopping:
            self.start()

    def _report(self, wid: str, cause: str, *, hot: list[int], code: int | None) -> None:
        """Start the report of a lost worker (``pas_core.scripts.worker_lost``); not waited."""
        argv = [sys.executable, "-m", "pas_core.scripts.worker_lost", wid, "--cause", cause]
        argv += ["--hot", ",".join(map(str, hot))] if hot else []
        argv += ["--exit-code", str(code)] if code is not None else []
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
        try:
            self.reports.append(subprocess.Popen(argv, env=dict(os.environ, PYTHONPATH=path)))
        except OSError:  # TRON times them out after the grace instead.
            log.warning("supervise: could not start the report of worker %s", wid, exc_info=True)

    def _kill(self) -> None:
        assert self.child is not None
        with contextlib.suppress(ProcessLookupError):
            self.child.kill()  # SIGKILL: a process stuck in C ignores anything gentler.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.child.wait(10)

    def _stop(self) -> int:
        """Stop the worker (SIGTERM, then SIGKILL after the grace) and re-send what it held."""
        assert self.child is not None
        if self.child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.child.send_signal(signal.SIGTERM)
            try:
                self.child.wait(self.grace_s)
            except subprocess.TimeoutExpired:
                self._kill()
        self._report(self.wid, "shutdown", hot=[], code=None)
        deadline = time.monotonic() + REPORT_WAIT_S
        for report in self.reports:
            with contextlib.suppress(subprocess.TimeoutExpired):
                report.wait(max(0.1, deadline - time.monotonic()))
        return 0


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL the worker when this supervisor dies (a ``preexec_fn``)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--stall-s", type=float, default=float(os.environ.get("PAS_WORKER_STALL_S") or 5)
    )
    parser.add_argument("--grace-s", type=float, default=20.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    opts = parser.parse_args(args)
    command = opts.command[1:] if opts.command[:1] == ["--"] else opts.command
    if not command:
        parser.error("give the worker's command after --")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return Supervisor(command, stall_s=opts.stall_s, grace_s=opts.grace_s).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
