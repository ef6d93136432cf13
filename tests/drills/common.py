"""Helpers the drills share: figures, process trees, SSE clients, a private Redis, logs."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests import procs

FIGURES: list[str] = []


def figure(line: str) -> str:
    """Print a drill's figure (``DRILL name: ...``) and keep it for the terminal summary."""
    print(line, flush=True)
    FIGURES.append(line)
    return line


def children(pid: int) -> list[int]:
    """Return the pids of ``pid``'s direct children (a prefork worker's pool processes)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, timeout=5)
    return [int(p) for p in out.stdout.split()]


def rss_kb(pid: int) -> int:
    """Return a process's resident memory in KiB (``VmRSS`` of /proc/<pid>/status), 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mb(pid: int) -> float:
    """Return the resident memory of a process and its direct children, in MiB."""
    return (rss_kb(pid) + sum(rss_kb(c) for c in children(pid))) / 1024


def session_cookie(user: Any) -> str:
    """Log ``user`` in through Django's session store; return the ``sessionid`` value.

    The drills share their secret key with the processes they start (proc_env), so the
    session is valid on a real Daphne too.
    """
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def duplicates(values: list[Any]) -> int:
    """Return how many values occur more than once (counting every extra occurrence)."""
    return sum(n - 1 for n in Counter(values).values() if n > 1)


def proc_logs() -> dict[str, str]:
    """Return the whole log of every process started during the current test."""
    out = {}
    for proc in procs._started:
        with contextlib.suppress(OSError):
            out[proc.name] = proc.log_path.read_text(errors="replace")
    return out


def log_lines_matching(pattern: str, extra: dict[str, str] | None = None) -> list[str]:
    """Return ``name: line`` for every line of the processes' logs matching ``pattern``."""
    regex = re.compile(pattern, re.IGNORECASE)
    found = []
    for name, text in {**proc_logs(), **(extra or {})}.items():
        found += [f"{name}: {line}" for line in text.splitlines() if regex.search(line)]
    return found


def percentile(values: list[float], q: float) -> float:
    """Return the ``q`` quantile (0..1) of ``values`` by nearest rank; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# -- a plain SSE client that resumes with Last-Event-ID ------------------------------


class SseClient:
    """One browser's stream: reads ``/events/stream``, reconnects with ``Last-Event-ID``.

    Records every event id it receives, in order (duplicates included: a drill counts
    them). Runs in a thread until :meth:`stop`; every wait is bounded.
    """

    def __init__(
        self,
        base_url: str,
        *,
        cookies: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        last_id: int | None = None,
        reconnect_s: float = 0.3,
        name: str = "sse",
    ):
        self.base_url = base_url
        self.cookies = cookies or {}
        self.headers = headers or {}
        self.last_id = last_id
        self.reconnect_s = reconnect_s
        self.ids: list[int] = []
        self.types: dict[int, str] = {}
        self.connects = 0
        self.errors: list[str] = []
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> SseClient:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to end and wait up to ``timeout`` s (0: do not wait).

        A read blocked on a silent stream ends when the server closes it (stop the
        server after the clients) or at the next keep-alive.
        """
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.close()
        if timeout:
            self._thread.join(timeout)

    def _loop(self) -> None:
        timeout = httpx.Timeout(connect=2.0, read=30.0, write=5.0, pool=5.0)
        with httpx.Client(base_url=self.base_url, cookies=self.cookies, timeout=timeout) as http:
            while not self._stop.is_set():
                headers = dict(self.headers, Accept="text/event-stream")
                if self.last_id is not None:
                    headers["Last-Event-ID"] = str(self.last_id)
                try:
                    with http.stream("GET", "/events/stream", headers=headers) as response:
                        self._response = response
                        if response.status_code != 200:
                            self.errors.append(f"HTTP {response.status_code}")
                            self._stop.wait(self.reconnect_s)
                            continue
                        self.connects += 1
                        self.connected.set()
                        self._read(response)
                except (httpx.HTTPError, OSError) as exc:
                    if not self._stop.is_set():
                        self.errors.append(exc.__class__.__name__)
                finally:
                    self._response = None
                    self.connected.clear()
                self._stop.wait(self.reconnect_s)

    def _read(self, response: httpx.Response) -> None:
        event_id: int | None = None
        event_type = ""
        has_data = False
        for line in response.iter_lines():
            if self._stop.is_set():
                return
            if line == "":
                if has_data and event_id is not None and event_type not in ("hmi", ""):
                    self.ids.append(event_id)
                    self.types[event_id] = event_type
                    self.last_id = event_id
                event_id, event_type, has_data = None, "", False
            elif line.startswith("id:"):
                with contextlib.suppress(ValueError):
                    event_id = int(line[3:].strip())
            elif line.startswith("event:"):
                event_type = line[6:].strip()
            elif line.startswith("data:"):
                has_data = True


def wait_for(check: Any, what: str, timeout: float, every: float = 0.2) -> Any:
    """Return ``check()``'s first truthy value; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


# -- a private Redis that a drill may stop and start -------------------------------


class PrivateRedis:
    """A ``redis-server`` on a free loopback port, without persistence, restartable.

    Never the shared server: the Redis-restart drill stops this one and starts it again
    on the same port, empty, as a server without persistence comes back after a crash.
    """

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = procs.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"redis-{self.port}.log"

    def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--logfile",
            str(self.log_path),
        ]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            wait_for(lambda: _pings(client), f"redis-server on port {self.port}", timeout, 0.1)
        finally:
            client.close()

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    @contextlib.contextmanager
    def running(self) -> Iterator[PrivateRedis]:
        self.start()
        try:
            yield self
        finally:
            self.stop(kill=True)


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False
