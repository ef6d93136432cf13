"""The bundled local model as a real process: ``python manage.py pas llm serve``.

``local_llm(log_dir)`` starts the server on a free port, yields its base URL once it
answers ``/health`` and has printed that URL, and stops it (SIGTERM, then SIGKILL)::

    with local_llm.local_llm(tmp_path) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="local")
        ...
        local_llm.freeze(base_url)  # SIGSTOP: streams stall, connections stay open.
        local_llm.thaw(base_url)  # SIGCONT: they resume.
        local_llm.kill(base_url)  # SIGKILL: connections drop mid-stream.

The server is one process (llama.cpp runs on threads inside it), so a signal to it
reaches the whole model server. ``skip_reason()`` says why it cannot run (xllamacpp
or the model not installed), for ``pytest.skip``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from tests import procs

DEFAULT_ALIAS = "smollm2-135m"
URL_LINE = re.compile(r"^serving (?P<alias>\S+) at (?P<url>http://127\.0\.0\.1:\d+/v1)\b", re.M)

_servers: dict[str, LocalLLMServer] = {}  # By base URL, for freeze/thaw/kill.


def skip_reason() -> str | None:
    """Return why the local model cannot be served here (one line), or None if it can."""
    from pas_core.llm import local

    return local.available()


def serve_argv(*args: str) -> list[str]:
    """Return the argv of ``python manage.py pas llm serve ARGS``."""
    return [sys.executable, "manage.py", "pas", "llm", "serve", *args]


def child_env(**extra: Any) -> dict[str, str]:
    """Return this process's environment for the server (no pytest variables), plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


class LocalLLMServer(procs.Proc):
    """``pas llm serve`` on a free port; ``base_url`` once started."""

    def __init__(
        self,
        log_dir: Path,
        *,
        alias: str = DEFAULT_ALIAS,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: list[str] | None = None,
    ):
        self.port = port or procs.free_port()
        self.alias = alias
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.printed_url: str | None = None
        argv = serve_argv("--port", str(self.port), "--alias", alias, *(extra_args or []))
        super().__init__(f"llm-{self.port}", argv, env or child_env(), log_dir)

    def answers(self) -> bool:
        """Return whether ``/health`` says ok (503 while the model loads is not ok)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return bool(json.load(r).get("status") == "ok")
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def url_printed(self) -> bool:
        match = URL_LINE.search(self.log_text())
        if match:
            self.printed_url = match["url"]
        return match is not None

    def wait_ready(self) -> None:
        self.wait_until(self.answers, "answer on GET /health", procs.START_TIMEOUT_S)
        # The command prints its URL once /health answers: a moment after, at most.
        self.wait_until(self.url_printed, "'serving ... at <url>' line", 10.0)

    def freeze(self) -> None:
        """Stop the server (SIGSTOP): it neither answers nor streams until thawed."""
        self.signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        """Resume a frozen server (SIGCONT)."""
        self.signal_group(signal.SIGCONT)

    def kill(self, timeout: float = 10.0) -> int | None:
        """Kill the server (SIGKILL, no clean-up) and return its exit status."""
        self.signal_group(signal.SIGKILL)
        if self.popen is not None:
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        return self.returncode

    def start(self) -> Self:
        super().start()
        _servers[self.base_url] = self
        return self

    def stop(self, grace: float = procs.STOP_GRACE_S) -> None:
        """Stop the server (a frozen one is thawed first, so SIGTERM lands); idempotent."""
        if self.alive:
            self.thaw()
        super().stop(grace)
        _servers.pop(self.base_url, None)


@contextmanager
def local_llm(
    log_dir: Path,
    *,
    alias: str = DEFAULT_ALIAS,
    env: Mapping[str, str] | None = None,
    extra_args: list[str] | None = None,
) -> Iterator[str]:
    """Start ``pas llm serve`` on a free port, yield its base URL, stop it afterwards."""
    server = LocalLLMServer(log_dir, alias=alias, env=env, extra_args=extra_args)
    with server:
        yield server.base_url


def server_for(base_url: str) -> LocalLLMServer:
    """Return the running server whose base URL is ``base_url``."""
    try:
        return _servers[base_url]
    except KeyError:
        raise LookupError(f"no local model server runs at {base_url}") from None


def freeze(base_url: str) -> None:
    """SIGSTOP the server at ``base_url``."""
    server_for(base_url).freeze()


def thaw(base_url: str) -> None:
    """SIGCONT the server at ``base_url``."""
    server_for(base_url).thaw()


def kill(base_url: str) -> int | None:
    """SIGKILL the server at ``base_url``; return its exit status."""
    return server_for(base_url).kill()
