"""`make run`: Redis, migrations, bootstrap, then every process of the Procfile.

Ctrl-C or SIGTERM stops honcho (which stops web, workers and beat), then the private
redis-server if we started one; Redis goes last so workers can finish their shutdown.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

from pas_core.scripts.redisctl import die_with_parent, ensure_redis, stop_private

PROJECT_DIR = Path(__file__).resolve().parents[2]
RESET_HINT = ".venv/bin/python manage.py changepassword admin"


class Stop(Exception):
    """Raised by the signal handler while we are still getting ready."""


def http_port() -> int:
    """Return PAS_HTTP_PORT [8000], exiting with one line if it is not a port number."""
    raw = os.environ.get("PAS_HTTP_PORT") or "8000"
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        sys.exit(f"PAS_HTTP_PORT must be a TCP port number, not {raw!r}")
    return int(raw)


def port_taken(port: int) -> bool:
    """Return True if something already listens on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR so a socket lingering in TIME_WAIT does not count as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def child_env(redis_url: str, port: int) -> dict[str, str]:
    """Return the environment for every child: venv first on PATH, REDIS_URL, the port."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env["REDIS_URL"] = redis_url
    env["PAS_HTTP_PORT"] = str(port)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def manage(env: dict[str, str], *args: str) -> None:
    """Run `python manage.py ARGS`; exit with its status if it fails."""
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT_DIR, env=env)
    if done.returncode != 0:
        print(f"PAS: 'manage.py {' '.join(args)}' failed (status {done.returncode})")
        raise SystemExit(done.returncode)


def admin_line() -> str:
    """Return how to log in as admin: the password on file, else how to reset it."""
    try:
        password = (PROJECT_DIR / ".run" / "admin-password").read_text().strip()
    except OSError:
        password = ""
    if password:
        return f"admin / {password}"
    return f"admin (password not on file; reset it with: {RESET_HINT})"


def banner(port: int) -> str:
    """Return the lines that tell the user where PAS is and how to log in."""
    rule = "=" * 72
    return "\n".join(
        [
            rule,
            f"  PAS dashboard: http://127.0.0.1:{port}/",
            f"  Admin login:   {admin_line()}",
            "  Stop:          Ctrl-C",
            rule,
        ]
    )


READY_WAIT_S = 120.0  # How long the banner waits for /health to say ok.


def health_now(port: int) -> dict[str, Any] | None:
    """Return the web process's ``/health`` document (ok or not), or None if it does not
    answer yet."""
    url = f"http://127.0.0.1:{port}/health"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # Never a proxy.
    try:
        with direct.open(url, timeout=2.0) as resp:
            doc = json.load(resp)
    except urllib.error.HTTPError as exc:  # 503: up, but some part is not (yet).
        try:
            doc = json.load(exc)
        except ValueError:
            return None
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def announce_when_up(
    port: int, honcho: subprocess.Popen[bytes], wait_s: float = READY_WAIT_S
) -> None:
    """Print the banner once ``/health`` says ok: the web process answers, and the
    database, Redis and a worker for each queue are up. After ``wait_s`` without that,
    print it anyway with what ``/health`` still reports missing. Nothing if honcho ends
    first (its output says why)."""
    deadline = time.monotonic() + wait_s
    while honcho.poll() is None:
        doc = health_now(port)
        if doc is not None and doc.get("status") == "ok":
            print("\n" + banner(port) + "\n", flush=True)
            return
        if time.monotonic() > deadline:
            if doc is None:
                missing = [f"the web process does not answer on port {port}"]
            else:
                missing = [str(p) for p in doc.get("problems") or []] or [str(doc.get("status"))]
            lines = "\n".join(f"  not ready: {m}" for m in missing)
            print(f"\n{banner(port)}\n{lines}\n", flush=True)
            return
        time.sleep(0.5)


LOCAL_MODEL = "local/smollm2-135m"


def local_mode() -> bool:
    """Return whether to run every agent on the bundled local model (``make run-local``)."""
    return os.environ.get("PAS_LOCAL_LLM", "").strip().lower() in ("1", "true", "yes")


def local_setup(env: dict[str, str]) -> Path:
    """Point every agent at the local model; return a Procfile that also serves it."""
    llm_port = env.setdefault("PAS_LOCAL_LLM_PORT", "8090")
    env["PAS_LLM_MODE"] = "live"
    env["PAS_LOCAL_BASE_URL"] = f"http://127.0.0.1:{llm_port}/v1"
    manage(env, "pas", "models", "set", "--all", LOCAL_MODEL, "--fallback", LOCAL_MODEL)
    procfile = PROJECT_DIR / ".run" / "Procfile.local"
    procfile.parent.mkdir(parents=True, exist_ok=True)
    serve = "llm: python manage.py pas llm serve --port ${PAS_LOCAL_LLM_PORT:-8090}"
    procfile.write_text((PROJECT_DIR / "Procfile").read_text().rstrip("\n") + "\n" + serve + "\n")
    return procfile


def run_honcho(env: dict[str, str], port: int, procfile: Path) -> tuple[int, bool]:
    """Run honcho until it exits; return (its status, whether we asked it to stop)."""
    honcho = str(Path(sys.executable).parent / "honcho")
    # Own session: a terminal Ctrl-C reaches only us, and we pass it on exactly once.
    proc = subprocess.Popen(
        [honcho, "start", "-f", str(procfile)],
        cwd=PROJECT_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    asked: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        asked.append(signum)
        if proc.poll() is None:
            proc.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    threading.Thread(target=announce_when_up, args=(port, proc), daemon=True).start()
    return proc.wait(), bool(asked)


def main() -> int:
    """Start PAS in the foreground; return the exit status."""
    port = http_port()
    if port_taken(port):
        print(f"PAS: port {port} on 127.0.0.1 is already in use; stop that or set PAS_HTTP_PORT")
        return 1

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Stop

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    redis_proc = None
    try:
        redis_url, redis_proc = ensure_redis(PROJECT_DIR)
        env = child_env(redis_url, port)
        print(f"PAS: Redis at {redis_url}", flush=True)
        manage(env, "migrate", "--noinput")
        manage(env, "pas", "bootstrap")
        procfile = PROJECT_DIR / "Procfile"
        if local_mode():
            procfile = local_setup(env)
            print(f"PAS: every agent on {LOCAL_MODEL}, served by `pas llm serve`", flush=True)
        print(
            "PAS: starting web, workers and beat; the dashboard's address follows"
            " once /health says they are up",
            flush=True,
        )
        status, asked = run_honcho(env, port, procfile)
        return 0 if asked else status
    except (Stop, KeyboardInterrupt):
        return 0
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if redis_proc is not None:
            print("PAS: stopping the private redis-server", flush=True)
            stop_private(redis_proc)


if __name__ == "__main__":
    sys.exit(main())
