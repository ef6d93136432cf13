"""`make run`'s banner: the dashboard's address is printed once `/health` says ok."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pas_core.scripts import devrun

DEGRADED = {"status": "degraded", "problems": ["workers: none for the agents queue"]}


class Honcho:
    """Stands for honcho's process: running until ``ended`` is set."""

    def __init__(self) -> None:
        self.ended = False

    def poll(self) -> int | None:
        return 0 if self.ended else None


class Health:
    """A web process whose ``/health`` answers 503 degraded until ``up`` is set."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.asked = 0
        health = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                health.asked += 1
                ok = health.up.is_set()
                body = json.dumps({"status": "ok", "problems": []} if ok else DEGRADED).encode()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def web() -> Iterator[Health]:
    health = Health()
    yield health
    health.server.shutdown()
    health.server.server_close()


def _announce(port: int, honcho: Honcho, wait_s: float) -> threading.Thread:
    thread = threading.Thread(
        target=devrun.announce_when_up, args=(port, honcho, wait_s), daemon=True
    )
    thread.start()
    return thread


def test_the_banner_waits_until_health_says_ok(
    web: Health, capsys: pytest.CaptureFixture[str]
) -> None:
    thread = _announce(web.port, Honcho(), 60.0)
    thread.join(1.5)
    assert thread.is_alive() and web.asked >= 2  # Asked, answered 503, still waiting.
    assert "PAS dashboard" not in capsys.readouterr().out
    web.up.set()
    thread.join(5)
    assert not thread.is_alive()
    out = capsys.readouterr().out
    assert f"PAS dashboard: http://127.0.0.1:{web.port}/" in out
    assert "not ready" not in out


def test_past_its_wait_the_banner_says_what_is_not_up(
    web: Health, capsys: pytest.CaptureFixture[str]
) -> None:
    _announce(web.port, Honcho(), 1.0).join(5)
    out = capsys.readouterr().out
    assert f"PAS dashboard: http://127.0.0.1:{web.port}/" in out
    assert "not ready: workers: none for the agents queue" in out


def test_a_web_process_that_never_answers_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # Bound, then closed: nothing answers there.
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _announce(port, Honcho(), 1.0).join(5)
    out = capsys.readouterr().out
    assert f"not ready: the web process does not answer on port {port}" in out


def test_nothing_is_printed_when_honcho_ends_first(
    web: Health, capsys: pytest.CaptureFixture[str]
) -> None:
    honcho = Honcho()
    thread = _announce(web.port, honcho, 60.0)
    thread.join(1.0)
    honcho.ended = True
    thread.join(5)
    assert not thread.is_alive()
    assert capsys.readouterr().out == ""
