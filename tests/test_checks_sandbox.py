"""A check runs as a sandboxed subprocess: limits, no secrets, no network, nothing left.

These run the real sandbox (``unshare`` where the machine allows it) outside any
attempt, and inside a thread registered as one (``inflight.holding``) for the kill.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pas_core import inflight
from pas_core.runtime.sandbox import Limits, isolation, sandbox_env, sandbox_run

SECRET = "pas-test-secret-6c1f"
PROVIDER_KEY = "sk-test-provider-91aa"


@pytest.fixture(params=["strongest", "none"])
def isolated(request, monkeypatch) -> str:
    """Run the test with the strongest isolation here, and again with none at all."""
    if request.param == "none":
        monkeypatch.setenv("PAS_CHECK_ISOLATION", "none")
    return isolation()[0]


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _marked(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return out.stdout.split()


def _run(tmp_path: Path, command: str, **limits: float) -> tuple:
    env = sandbox_env(tmp_path / "home")
    lim = Limits(**{"wall_s": 30.0, **limits})  # type: ignore[arg-type]
    return sandbox_run(command, cwd=tmp_path, env=env, limits=lim, log=tmp_path / "check.log")


def test_a_check_that_sleeps_forever_ends_at_its_limit_with_its_group_gone(tmp_path, isolated):
    marker = f"pas-sleep-{os.getpid()}-{time.monotonic_ns()}"
    # A background child and a foreground one, both asleep "forever".
    command = f"echo started; (exec -a {marker} sleep 1000) & exec -a {marker} sleep 1000"
    started = time.monotonic()
    outcome = _run(tmp_path, f"bash -c '{command}'", wall_s=2)
    took = time.monotonic() - started

    assert outcome.timed_out and outcome.error.startswith("stopped at its time limit")
    assert 2 <= took < 15
    assert "started" in outcome.output_tail
    # Nothing of it is left: its process group is gone (no zombie either), the
    # sleeps with it.
    assert outcome.pgid and _group_gone(outcome.pgid)
    assert _marked(marker) == []


def test_a_killed_attempt_kills_its_check_at_once(tmp_path, isolated):
    marker = f"pas-kill-{os.getpid()}-{time.monotonic_ns()}"
    seen: dict[str, object] = {}

    def attempt() -> None:
        with inflight.holding(4242):
            try:
                _run(tmp_path, f"bash -c 'exec -a {marker} sleep 1000'", wall_s=120)
            except inflight.AttemptKilled:
                seen["killed"] = time.monotonic()

    thread = threading.Thread(target=attempt)
    thread.start()
    deadline = time.monotonic() + 20
    while not _marked(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _marked(marker), "the check never started"
    asked = time.monotonic()
    assert inflight.attempts_kill([4242]) == [4242]
    thread.join(30)

    assert "killed" in seen and float(seen["killed"]) - asked < 15  # type: ignore[arg-type]
    deadline = time.monotonic() + 15
    while _marked(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _marked(marker) == []


def test_a_check_cannot_read_pas_secrets(tmp_path, monkeypatch, isolated):
    monkeypatch.setenv("DJANGO_SECRET_KEY", SECRET)
    monkeypatch.setenv("OPENROUTER_API_KEY", PROVIDER_KEY)
    monkeypatch.setenv("DATABASE_URL", f"postgres://u:{SECRET}@db/pas")
    command = "env"
    if isolated == "network+pid":
        # With a PID namespace, /proc is its own: no other process's environment either
        # (without one, a check can read those of its user's processes: README).
        command += "; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'"
    outcome = _run(tmp_path, command)

    assert outcome.exit_code == 0
    log = (tmp_path / "check.log").read_text()
    assert "PATH=" in log and "HOME=" in log
    assert SECRET not in log and PROVIDER_KEY not in log
    assert "DJANGO_SECRET_KEY" not in log and "REDIS_URL" not in log


def test_a_check_has_no_network_where_the_machine_allows_it(tmp_path):
    name, _ = isolation()
    if name == "none":
        pytest.skip("no user namespaces here: checks keep the network (README)")
    probe = "import socket; socket.create_connection(('192.0.2.1', 80), timeout=3)"
    outcome = _run(tmp_path, f'python3 -c "{probe}" || python -c "{probe}"')
    assert outcome.exit_code != 0
    assert "unreachable" in outcome.output_tail.lower()


def test_memory_and_file_size_are_limited(tmp_path):
    grab = _run(tmp_path, "python3 -c 'x = bytearray(1 << 31)'", memory_mb=256)
    assert grab.exit_code != 0 and "MemoryError" in grab.output_tail
    big = _run(tmp_path, "head -c 20000000 /dev/zero > big.bin", file_mb=2)
    assert big.exit_code != 0
    assert (tmp_path / "big.bin").stat().st_size <= 2 * 2**20


def test_a_command_that_does_not_exist_exits_127(tmp_path):
    outcome = _run(tmp_path, "no-such-command-pas")
    assert outcome.exit_code == 127 and not outcome.timed_out
