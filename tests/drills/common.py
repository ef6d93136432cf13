"""Helpers the drills share: figures, process trees, SSE clients, a private Redis, logs,
and faults of the machine: a cut TCP path, immutable files, a small disk, a netns."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

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


# -- faults of the machine: a cut TCP path, an unwritable file, a small disk, a netns ------


def run_cmd(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a system command (ip, chattr, mount) with a bound wait; raise on failure if ``check``."""
    out = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr.strip()}")
    return out


class TcpForwarder:
    """A TCP relay from ``listen_host:port`` to ``target``, in threads of this process.

    ``cut()`` closes every relayed connection (the client reads EOF, as when a server
    dies) and stops listening (new connections are refused); ``restore()`` listens again
    on the same port. Drills put one between their processes and a server they must not
    stop (the shared PostgreSQL), or on the host side of a network namespace's veth.
    """

    def __init__(self, target: tuple[str, int], *, listen_host: str = "127.0.0.1"):
        self.target = target
        self.listen_host = listen_host
        self.port = 0
        self.connections = 0
        self._listener: socket.socket | None = None
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def start(self) -> TcpForwarder:
        self._listen()
        return self

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.listen_host, self.port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True, name="fwd").start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return  # Closed by cut() or stop().
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._live.update((client, upstream))
                self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._live.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()

    def cut(self) -> int:
        """Refuse new connections and close the open ones; return how many were open."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        with self._lock:
            live = list(self._live)
        for sock in live:
            self._close(sock)
        return len(live) // 2

    def restore(self) -> None:
        if self._listener is None and not self._stopped.is_set():
            self._listen()

    def stop(self) -> None:
        self._stopped.set()
        self.cut()

    @contextlib.contextmanager
    def running(self) -> Iterator[TcpForwarder]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


@contextlib.contextmanager
def immutable(paths: list[Path]) -> Iterator[list[Path]]:
    """Make files immutable (``chattr +i``: even root cannot write them) for the block.

    Root writes through ``chmod``; not through the immutable flag. The flag is always
    taken off again, whatever happens in the block.
    """
    present = [p for p in paths if p.exists()]
    try:
        for path in present:
            run_cmd("chattr", "+i", str(path))
        yield present
    finally:
        for path in present:
            run_cmd("chattr", "-i", str(path), check=False)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (``4m``) at ``path`` for the block; always unmounted."""
    path.mkdir(parents=True, exist_ok=True)
    run_cmd("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    try:
        yield path
    finally:
        if run_cmd("umount", str(path), check=False).returncode != 0:
            run_cmd("umount", "-l", str(path), check=False)  # Busy: detach it now.


def fill_disk(folder: Path, name: str = "filler") -> Path:
    """Write zeros into ``folder/name`` until the file system is full; return the file."""
    path = folder / name
    chunk = b"\0" * 65536
    with open(path, "ab", buffering=0) as out:
        with contextlib.suppress(OSError):
            while True:
                out.write(chunk)
        with contextlib.suppress(OSError):
            while True:  # The last few pages, a block at a time.
                out.write(b"\0" * 4096)
    return path


class NetNs:
    """A network namespace joined to this host by a veth pair: a second "host".

    The host side is ``10.200.<n>.1/30``, the namespace side ``10.200.<n>.2/30``.
    ``cut()`` takes the host side of the link down (packets are dropped, nothing is
    refused: a partition, not a crash); ``restore()`` brings it up. ``delete()`` (always
    call it, in a ``finally``) removes the namespace and the pair.
    """

    def __init__(self, index: int):
        self.index = index
        self.name = f"pas-drill-{index}"
        self.host_if = f"pasd{index}h"
        self.ns_if = f"pasd{index}n"
        self.host_ip = f"10.200.{index}.1"
        self.ns_ip = f"10.200.{index}.2"

    def create(self) -> NetNs:
        self.delete()  # A crashed drill's leftovers under the same name.
        run_cmd("ip", "netns", "add", self.name)
        run_cmd("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        run_cmd("ip", "link", "set", self.ns_if, "netns", self.name)
        run_cmd("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        run_cmd("ip", "link", "set", self.host_if, "up")
        inside = ["ip", "netns", "exec", self.name]
        run_cmd(*inside, "ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
        run_cmd(*inside, "ip", "link", "set", self.ns_if, "up")
        run_cmd(*inside, "ip", "link", "set", "lo", "up")
        return self

    def argv(self, command: list[str]) -> list[str]:
        """Return ``command`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def cut(self) -> None:
        run_cmd("ip", "link", "set", self.host_if, "down")

    def restore(self) -> None:
        run_cmd("ip", "link", "set", self.host_if, "up")

    def delete(self) -> None:
        run_cmd("ip", "link", "del", self.host_if, check=False)
        run_cmd("ip", "netns", "del", self.name, check=False)


def ended(run_ids: list[Any]) -> bool:
    """Return whether every run of ``run_ids`` has ended (completed or failed)."""
    from pas_core.models import Run

    open_runs = Run.objects.filter(pk__in=run_ids).exclude(status__in=["completed", "failed"])
    return not open_runs.exists()


def needs_root(what: str) -> None:
    """Skip the calling drill, naming ``what``, unless this process runs as root."""
    if os.geteuid() != 0:
        pytest.skip(f"this drill needs root ({what})")
