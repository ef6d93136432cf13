"""Live mode against a real OpenAI-compatible server on 127.0.0.1 (tests/llm_server.py)."""

from __future__ import annotations

import socket
import time

import pytest

from pas_core.bootstrap import BootstrapReport, providers_load
from pas_core.errors import AttemptError
from pas_core.llm.providers import llm_chat, llm_complete, model_split, providers_status
from pas_core.llm.schemas import wire_schema
from pas_core.models import Provider
from tests.llm_server import llm_server

MESSAGES = [{"role": "user", "content": "Say hello"}]

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def providers(db):
    """The built-in providers, as bootstrap creates them (providers are rows)."""
    providers_load(BootstrapReport())


@pytest.fixture
def server(monkeypatch, settings):
    settings.PAS_LLM_MODE = "live"
    with llm_server() as srv:
        monkeypatch.setenv("PAS_CUSTOM_BASE_URL", srv.base_url)
        monkeypatch.delenv("PAS_CUSTOM_API_KEY", raising=False)
        yield srv


def _kind(model_id, **kwargs):
    with pytest.raises(AttemptError) as caught:
        llm_complete(model_id, MESSAGES, **kwargs)
    return caught.value


def test_model_ids_split_on_the_first_slash():
    assert model_split("openrouter/deepseek/deepseek-chat") == (
        "openrouter",
        "deepseek/deepseek-chat",
    )
    assert model_split("ollama/llama3.1:8b") == ("ollama", "llama3.1:8b")


def test_the_answer_streams_in_and_beats_on_every_chunk(server):
    beats = []
    started = time.monotonic()
    reply = llm_complete(
        "custom/echo", MESSAGES, beat=lambda p, m: beats.append((time.monotonic(), p, m))
    )
    assert reply.text == "Hello from the test server"
    assert (reply.tokens_in, reply.tokens_out) == (12, 5)
    assert reply.model == "custom/echo"
    assert reply.produced_by == "custom/echo"
    # One beat per chunk (5 text chunks and the usage chunk), while the stream ran.
    assert len(beats) >= 5
    assert all(m == "streaming" for _, _, m in beats)
    assert beats[-1][0] - beats[0][0] >= 0.6  # Spread over the stream, not at the end.
    assert time.monotonic() - started >= 0.8
    assert [p for _, p, _ in beats] == sorted(p for _, p, _ in beats)
    # It asked for a stream with usage, and sent the placeholder key, never a real one.
    body = server.requests[-1]["body"]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert server.requests[-1]["headers"]["Authorization"] == "Bearer none"


def test_a_provider_that_promises_json_gets_json_mode(server):
    llm_complete("custom/echo", MESSAGES, schema=wire_schema("ProgrammerOutput"))
    assert server.requests[-1]["body"]["response_format"] == {"type": "json_object"}


def test_a_provider_that_constrains_decoding_gets_the_replys_schema(server):
    Provider.objects.filter(name="custom").update(structured="json_schema")
    schema = wire_schema("ManagerPlan", {"programmer_id": ["Prog-GPT-001"]})

    llm_complete("custom/echo", MESSAGES, schema=schema, max_tokens=300)

    body = server.requests[-1]["body"]
    assert body["response_format"]["type"] == "json_schema"
    sent = body["response_format"]["json_schema"]
    assert sent["name"] == "ManagerPlan"
    task = sent["schema"]["properties"]["programmer_tasks"]["items"]
    # The ids it may name are the only ones it can write.
    assert task["properties"]["programmer_id"] == {"type": "string", "enum": ["Prog-GPT-001"]}
    assert body["max_tokens"] == 300


def test_a_provider_without_structured_outputs_gets_no_response_format(server):
    Provider.objects.filter(name="custom").update(structured="none")
    llm_complete("custom/echo", MESSAGES, schema=wire_schema("ProgrammerOutput"))
    assert "response_format" not in server.requests[-1]["body"]


def test_a_rate_limit_carries_the_providers_retry_after(server):
    err = _kind("custom/busy")
    assert err.kind == "rate_limit"
    assert err.retry_after_s == 3.0  # The test server's Retry-After header.
    assert "Retry-After 3 s" in err.message


def test_the_custom_key_is_sent_but_never_shown(server, monkeypatch):
    monkeypatch.setenv("PAS_CUSTOM_API_KEY", "sk-test-secret-123")
    err = _kind("custom/unauthorized")
    assert server.requests[-1]["headers"]["Authorization"] == "Bearer sk-test-secret-123"
    assert err.kind == "auth"
    assert "sk-test-secret-123" not in err.message


def test_a_server_answering_garbage_is_bad_output(server):
    assert _kind("custom/garbage").kind == "bad_output"
    assert _kind("custom/html").kind == "bad_output"


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        ("unauthorized", "auth"),
        ("forbidden", "auth"),
        ("missing", "model_not_found"),
        ("busy", "rate_limit"),
        ("broken", "crash"),
    ],
)
def test_http_errors_map_to_attempt_error_kinds(server, model, kind):
    assert _kind(f"custom/{model}").kind == kind


def test_a_server_that_stalls_past_the_read_timeout_is_a_timeout(server):
    started = time.monotonic()
    err = _kind("custom/stall", timeout_s=0.5)
    assert err.kind == "timeout"
    assert time.monotonic() - started < 2.5  # It gave up before the server's 3 s stall ended.


def test_a_refused_connection_is_a_crash(settings, monkeypatch):
    settings.PAS_LLM_MODE = "live"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # Free once closed: nothing listens there.
    monkeypatch.setenv("OLLAMA_BASE_URL", f"http://127.0.0.1:{port}")
    assert _kind("ollama/llama3.1:8b").kind == "crash"


def test_ollama_base_url_gets_v1_appended(server, monkeypatch):
    monkeypatch.setenv("OLLAMA_BASE_URL", server.base_url.removesuffix("/v1"))
    reply = llm_chat("ollama/echo", MESSAGES)
    assert reply.text == "Hello from the test server"
    assert server.requests[-1]["headers"]["Authorization"] == "Bearer none"  # No key needed.


def test_a_missing_key_is_auth_naming_the_variable(settings, monkeypatch):
    settings.PAS_LLM_MODE = "live"
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    err = _kind("anthropic/claude-sonnet-4-5")
    assert err.kind == "auth"
    assert "ANTHROPIC_API_KEY" in err.message


def test_an_unconfigured_custom_provider_is_auth_naming_the_variable(settings, monkeypatch):
    settings.PAS_LLM_MODE = "live"
    monkeypatch.delenv("PAS_CUSTOM_BASE_URL", raising=False)
    err = _kind("custom/anything")
    assert (err.kind, "PAS_CUSTOM_BASE_URL" in err.message) == ("auth", True)


def test_an_unknown_provider_is_model_not_found(settings):
    settings.PAS_LLM_MODE = "live"
    assert _kind("acme/model-1").kind == "model_not_found"
    assert _kind("no-slash").kind == "model_not_found"


def test_offline_mode_needs_no_network_or_key(settings, monkeypatch):
    settings.PAS_LLM_MODE = "offline"
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    reply = llm_complete("anthropic/claude-sonnet-4-5", MESSAGES)
    assert reply.produced_by == "offline-planner"


def test_providers_status_says_which_are_configured_without_showing_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-visible-nowhere")
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("PAS_CUSTOM_BASE_URL", raising=False)
    rows = {r["provider"]: r for r in providers_status()}
    assert list(rows) == [
        "anthropic",
        "custom",
        "google",
        "local",
        "ollama",
        "openai",
        "openrouter",
    ]
    assert rows["openai"]["configured"] is True
    assert rows["openai"]["env_var"] == "OPENAI_API_KEY"
    assert rows["google"]["configured"] is False
    assert rows["google"]["env_var"] == "GEMINI_API_KEY"
    assert rows["ollama"]["configured"] is True  # A local server needs no key.
    assert rows["custom"]["configured"] is False
    assert "sk-visible-nowhere" not in repr(rows)
