"""Find a Redis to use, or start a private `redis-server` for this run.

`ensure_redis()` is what `make run` and `make test` call. From the command line,
`python -m pas_core.scripts.redisctl` prints the URL a run would use and starts nothing.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

DEFAULT_URL = "redis://127.0.0.1:6379/0"
MISSING = "PAS needs Redis: install the 'redis-server' package (Debian/Ubuntu) or set REDIS_URL"
START_TIMEOUT = 10.0


def redis_url() -> str:
    """Return REDIS_URL from the environment, or the default local server."""
    return os.environ.get("REDIS_URL") or DEFAULT_URL


def answers_ping(url: str, timeout: float = 1.0) -> bool:
    """Return True if a Redis server at `url` answers PING within `timeout` seconds.

    A server that refuses us (wrong password, protected mode) counts as not answering.
    """
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False
    finally:
        client.close()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (a `preexec_fn`).

    Children run in their own session so a terminal Ctrl-C reaches only the runner,
    which stops them in order; this covers the runner itself being killed with SIGKILL.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 is PR_SET_PDEATHSIG.
    except (OSError, AttributeError):
        pass


def _apt_get(*args: str) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=120", *args]
    done = subprocess.run(
        cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return done.returncode == 0


def find_redis_server(install: bool = True) -> str:
    """Return the path of `redis-server`, installing it with apt-get when we are root.

    Exit with one line and status 1 when there is none and none can be installed.
    """
    found = shutil.which("redis-server")
    if not found and install and os.geteuid() == 0 and shutil.which("apt-get"):
        print("Installing redis-server with apt-get ...", file=sys.stderr, flush=True)
        if not _apt_get("install", "-y", "-q", "redis-server"):
            _apt_get("update", "-q")
            _apt_get("install", "-y", "-q", "redis-server")
        found = shutil.which("redis-server")
    if not found:
        sys.exit(MISSING)
    return found


def _log_tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_private(project_dir: Path, server: str) -> tuple[str, subprocess.Popen[bytes]]:
    """Start `server` on a free port of 127.0.0.1 and wait until it answers PING.

    It runs in the foreground as our child (no daemonizing, no persistence), with its
    working files and log in `.run/redis`. A port can be taken between our probe and
    Redis binding it, so a server that exits at once is retried on another port.
    """
    run_dir = (project_dir / ".run" / "redis").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    problem = ""
    for _ in range(3):
        port = free_port()
        url = f"redis://127.0.0.1:{port}/0"
        log = run_dir / "redis.log"  # Shared by concurrent runs; lines carry the pid.
        cmd = [server, "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no"]
        cmd += ["--dir", str(run_dir), "--logfile", str(log), "--save", "", "--appendonly", "no"]
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if answers_ping(url, timeout=0.5):
                    return url, proc
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
            else:
                stop_private(proc)
                sys.exit(f"PAS could not start redis-server in {START_TIMEOUT:.0f} s (log: {log})")
        except BaseException:
            stop_private(proc)
            raise
        problem = _log_tail(log, lines=1) or f"it exited with status {proc.returncode}"
    sys.exit(f"PAS could not start redis-server: {problem.strip()} (log: {run_dir})")


def stop_private(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a private redis-server (SIGTERM, then SIGKILL after 5 s); None is a no-op."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ensure_redis(project_dir: Path | str) -> tuple[str, subprocess.Popen[bytes] | None]:
    """Return (url, process): the Redis at REDIS_URL, else a private server we started.

    The process is None when REDIS_URL (or the default) answered; otherwise the caller
    owns the private server and stops it with `stop_private()`.
    """
    url = redis_url()
    if answers_ping(url):
        return url, None
    server = find_redis_server()
    private_url, proc = start_private(Path(project_dir), server)
    print(
        f"Redis: nothing answers at {url}; started a private redis-server at {private_url}",
        file=sys.stderr,
        flush=True,
    )
    return private_url, proc


def main() -> int:
    """Print the Redis URL a run would use; start and install nothing."""
    url = redis_url()
    if answers_ping(url):
        print(url)
        return 0
    server = find_redis_server(install=False)
    print(f"redis://127.0.0.1:{free_port()}/0")
    print(
        f"(nothing answers at {url}: a run starts a private {server} on a free port)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
