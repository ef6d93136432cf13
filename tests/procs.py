"""Real processes for end-to-end tests: Celery workers, Daphne, beat.

Each is a context manager; ``stop()`` (also run by the harness after every test) kills
its whole process group, so prefork children die too. Output goes to a log file under
the test's tmp directory; when a test fails, conftest attaches every log to the report.
Pass ``env`` from the ``proc_env`` fixture so the process shares the test database::

    @pytest.mark.django_db(transaction=True)
    def test_it_answers(proc_env, tmp_path):
        with procs.celery_worker(proc_env(), queues="agents", name="agents") as worker:
            ...
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

PROJECT_DIR = Path(__file__).resolve().parent.parent  # Holds manage.py.
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
LOG_TAIL_CHARS = 20_000

_started: list[Proc] = []  # Started during the current test (reported on failure).
_running: list[Proc] = []  # Every live process this session (killed at exit).


def free_port() -> int:
    """Return a TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def default_log_dir(env: Mapping[str, str]) -> Path:
    """Return ``<test tmp dir>/procs``: proc_env's artifacts directory is ``<tmp>/artifacts``."""
    return Path(env["PAS_ARTIFACTS_DIR"]).parent / "procs"


class ProcError(RuntimeError):
    """A process did not start; the message ends with its log."""


class Proc:
    """One child process in its own process group, its output in ``log_path``."""

    def __init__(
        self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path | None = None
    ):
        self.name = name
        self.argv = argv
        self.env = dict(env)
        log_dir = default_log_dir(env) if log_dir is None else Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> Self:
        """Launch the process and return once it serves (``wait_ready``)."""
        self.launch()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self) -> Self:
        """Launch the process without waiting for it to serve (see ``start_together``)."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            self.argv,
            cwd=PROJECT_DIR,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Its own process group: stop() kills the children too.
        )
        _started.append(self)
        _running.append(self)
        return self

    def wait_ready(self) -> None:
        """Return when the process serves; raise ProcError with its log if it does not."""

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise ProcError(f"{self.name} exited with {self.returncode}\n{self.log_text()}")
            if ready():
                return
            time.sleep(0.2)
        raise ProcError(f"{self.name}: no {what} within {timeout:g} s\n{self.log_text()}")

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def log_text(self, tail: int = LOG_TAIL_CHARS) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text if len(text) <= tail else "[...]\n" + text[-tail:]

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the process group (the process and its children)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def stop(self, grace: float = STOP_GRACE_S, *, signalled: bool = False) -> None:
        """Terminate the group, kill it after ``grace`` seconds; idempotent.

        ``signalled``: SIGTERM was sent already (``stop_together``), only wait.
        """
        if self.popen is not None:
            if self.popen.poll() is None:
                if not signalled:
                    self.signal_group(signal.SIGTERM)
                try:
                    self.popen.wait(grace)
                except subprocess.TimeoutExpired:
                    pass
            # Always sweep the group: the leader may be gone while children linger.
            self.signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(max(grace, 1.0))  # Killed: gone at once, unless the machine crawls.
        if self._log is not None:
            self._log.close()
            self._log = None
        if self in _running:
            _running.remove(self)

    def __enter__(self) -> Self:
        return self if self.popen is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class CeleryWorker(Proc):
    def __init__(
        self,
        env: Mapping[str, str],
        *,
        log_dir: Path | None = None,
        queues: str = "agents,hhmrs",
        concurrency: int = 2,
        name: str | None = None,
        extra_args: list[str] | None = None,
        pool: str = "prefork",
        supervised: bool = False,
    ):
        name = name or queues.replace(",", "-")
        self.nodename = f"{name}@{socket.gethostname()}"
        # Supervised: the worker runs under pas_core/scripts/supervise.py (as the Procfile's
        # agents worker does), which replaces it when it dies or stops ticking.
        supervisor = str(PROJECT_DIR / "pas_core" / "scripts" / "supervise.py")
        wrapper = [sys.executable, supervisor, "--"] if supervised else []
        argv = [
            *wrapper,
            sys.executable,
            "-m",
            "celery",
            "-A",
            "pas_core",
            "worker",
            "-Q",
            queues,
            "-c",
            str(concurrency),
            "-n",
            f"{name}@%h",
            "--without-mingle",
            "--without-gossip",
            "-P",
            pool,
            "-l",
            "INFO",
            *(extra_args or []),
        ]
        super().__init__(f"celery-worker-{name}", argv, env, log_dir)
        self.broker_url = env["REDIS_URL"]

    def ping(self, timeout: float = 0.5) -> bool:
        from celery import Celery

        # A private app: the worker's broker is the one in its env, whatever ours says.
        app = Celery("pas_core_ping", broker=self.broker_url, set_as_current=False)
        try:
            # limit=1: return at its reply, not at the end of the timeout.
            replies = app.control.ping(destination=[self.nodename], timeout=timeout, limit=1)
        finally:
            app.close()
        return any(self.nodename in reply for reply in replies or [])

    def wait_ready(self) -> None:
        self.wait_until(self.ping, f"answer to a ping from {self.nodename}", START_TIMEOUT_S)


class DaphneServer(Proc):
    def __init__(
        self, env: Mapping[str, str], *, log_dir: Path | None = None, port: int | None = None
    ):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(self.port),
            "pas_core.asgi:application",
        ]
        super().__init__(f"daphne-{self.port}", argv, env, log_dir)

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=5):
                return True
        except urllib.error.HTTPError:
            return True  # 503 (degraded) is an answer.
        except OSError:
            return False

    def wait_ready(self) -> None:
        self.wait_until(self.answers, "answer on GET /health", START_TIMEOUT_S)


class CeleryBeat(Proc):
    def __init__(self, env: Mapping[str, str], *, log_dir: Path | None = None):
        log_dir = default_log_dir(env) if log_dir is None else Path(log_dir)
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "pas_core",
            "beat",
            "-S",
            "django_celery_beat.schedulers:DatabaseScheduler",
            "--pidfile=",
            "-s",
            str(log_dir / "beat-schedule"),
            "-l",
            "INFO",
        ]
        super().__init__("celery-beat", argv, env, log_dir)

    def wait_ready(self) -> None:
        self.wait_until(
            lambda: "beat: Starting" in self.log_text(), "'beat: Starting' line", START_TIMEOUT_S
        )


def start_together(procs: list[Proc]) -> None:
    """Launch every process, then wait until each serves: their start-ups (imports,
    Django's set-up) overlap instead of adding up. On a failure every one is stopped."""
    try:
        for proc in procs:
            proc.launch()
        for proc in procs:
            proc.wait_ready()
    except BaseException:
        stop_together(procs)
        raise


def stop_together(procs: list[Proc], grace: float = STOP_GRACE_S) -> None:
    """Send every process group SIGTERM at once, then wait for each (killing what is
    left after ``grace``): their shutdowns overlap instead of adding up."""
    for proc in procs:
        if proc.alive:
            proc.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        proc.stop(max(0.1, deadline - time.monotonic()), signalled=True)


def celery_worker(
    env: Mapping[str, str],
    *,
    log_dir: Path | None = None,
    queues: str = "agents,hhmrs",
    concurrency: int = 2,
    name: str | None = None,
    extra_args: list[str] | None = None,
    pool: str = "prefork",
    supervised: bool = False,
) -> CeleryWorker:
    """Return a worker (not started: use ``with`` or ``.start()``) on ``queues``.

    ``name`` defaults to the queues joined by ``-``. The agents worker of the Procfile
    is ``pool="threads"`` and ``supervised`` (see ``agents_worker``).
    """
    return CeleryWorker(
        env,
        log_dir=log_dir,
        queues=queues,
        concurrency=concurrency,
        name=name,
        extra_args=extra_args,
        pool=pool,
        supervised=supervised,
    )


def agents_worker(
    env: Mapping[str, str], *, concurrency: int = 8, log_dir: Path | None = None
) -> CeleryWorker:
    """Return the agents worker as the Procfile runs it: threads, under its supervisor."""
    return celery_worker(
        env,
        log_dir=log_dir,
        queues="agents",
        name="agents",
        concurrency=concurrency,
        pool="threads",
        supervised=True,
    )


def daphne_server(
    env: Mapping[str, str], *, port: int | None = None, log_dir: Path | None = None
) -> DaphneServer:
    """Return a Daphne server (not started) on ``port`` (a free one by default); see ``.url``."""
    return DaphneServer(env, log_dir=log_dir, port=port)


def celery_beat(env: Mapping[str, str], *, log_dir: Path | None = None) -> CeleryBeat:
    """Return a beat with django-celery-beat's DatabaseScheduler (not started)."""
    return CeleryBeat(env, log_dir=log_dir)


def test_started() -> None:
    """Forget the processes of the previous test (called by the harness)."""
    _started.clear()


def stop_all() -> None:
    """Stop every process started during the current test (called by the harness)."""
    for proc in reversed(_started):
        proc.stop()


def log_sections() -> list[tuple[str, str]]:
    """Return ``(title, log)`` for each process started during the current test."""
    return [(f"log of {p.name} ({p.log_path})", p.log_text()) for p in _started]


def _kill_leftovers(*_args: Any) -> None:
    for proc in list(_running):
        proc.stop(grace=1.0)


atexit.register(_kill_leftovers)
