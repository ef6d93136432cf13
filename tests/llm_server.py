"""A tiny OpenAI-compatible chat server for tests: real HTTP, real SSE, on 127.0.0.1.

``POST /v1/chat/completions`` behaves according to the requested model name:

- ``echo`` (or anything else): streams ``CHUNKS`` (5) ``chat.completion.chunk`` events,
  ``DELAY_S`` (0.2 s) apart, then a usage chunk and ``[DONE]``. The text is
  ``REPLY``.
- ``garbage``: 200 with ``data:`` lines that are not JSON.
- ``html``: 200 with an HTML page instead of a stream.
- ``unauthorized``: 401; ``forbidden``: 403; ``missing``: 404; ``busy``: 429 with
  ``Retry-After: 3``; ``broken``: 500.
- ``planner-busy``: the first request gets ``busy``'s 429, the next ones ``planner``'s
  answer: a provider that asks once to be left alone.
- ``stall``: one chunk, then silence for ``STALL_S`` (3 s).
- ``planner``: streams what PAS's offline planner answers to the same messages (valid
  JSON for every role), spread over ``server.planner_delay_s`` (2 s): a slow, correct
  model. ``server.peak`` is the most requests the server served at once.

Every request body is kept in ``server.requests`` for assertions.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHUNKS = 5
DELAY_S = 0.2
STALL_S = 3.0
RETRY_AFTER_S = 3  # The Retry-After of every 429 (``busy``, and ``planner-busy``'s first).
REPLY = ["Hello", " from", " the", " test", " server"]

_ERRORS = {
    "unauthorized": (401, "Incorrect API key provided", "invalid_api_key"),
    "forbidden": (403, "Permission denied", "permission_denied"),
    "missing": (404, "The model `missing` does not exist", "model_not_found"),
    "busy": (429, "Rate limit reached", "rate_limit_exceeded"),
    "broken": (500, "Internal error", "server_error"),
}


def _chunk(model: str, content: str | None, *, usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": []
        if content is None
        else [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass  # Quiet: pytest shows only what the tests print.

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.requests.append(
            {"path": self.path, "body": body, "headers": dict(self.headers)}
        )
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._error(404, "no such route", "not_found")
        model = str(body.get("model", ""))
        if model == "planner-busy":
            with self.server.lock:
                first = not self.server.refused_once
                self.server.refused_once = True
            if first:
                return self._error(*_ERRORS["busy"])
            return self._planner(body)
        if model == "planner":
            return self._planner(body)
        if model in _ERRORS:
            return self._error(*_ERRORS[model])
        if model == "html":
            return self._send(200, b"<html><body>Not an API</body></html>", "text/html")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            if model == "garbage":
                self.wfile.write(b"data: this is not json\n\n")
                self.wfile.write(b"data: [DONE]\n\n")
            elif model == "stall":
                self.wfile.write(_chunk(model, REPLY[0]))
                self.wfile.flush()
                time.sleep(STALL_S)
            else:
                for part in REPLY[:CHUNKS]:
                    self.wfile.write(_chunk(model, part))
                    self.wfile.flush()
                    time.sleep(DELAY_S)
                usage = {
                    "prompt_tokens": 12,
                    "completion_tokens": CHUNKS,
                    "total_tokens": 12 + CHUNKS,
                }
                self.wfile.write(_chunk(model, None, usage=usage))
                self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # The client gave up (e.g. its read timeout): that is the point.
        self.close_connection = True

    def _planner(self, body: dict[str, Any]) -> None:
        from pas_core.llm.offline import offline_answer

        server = self.server
        with server.lock:
            server.in_flight += 1
            server.peak = max(server.peak, server.in_flight)
        try:
            text = offline_answer(body.get("messages") or [])
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            parts = [
                text[i : i + max(1, len(text) // 8)]
                for i in range(0, len(text), max(1, len(text) // 8))
            ]
            for part in parts:
                time.sleep(server.planner_delay_s / len(parts))
                self.wfile.write(_chunk("planner", part))
                self.wfile.flush()
            usage = {
                "prompt_tokens": 100,
                "completion_tokens": len(parts),
                "total_tokens": 100 + len(parts),
            }
            self.wfile.write(_chunk("planner", None, usage=usage))
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with server.lock:
                server.in_flight -= 1
        self.close_connection = True

    def _error(self, status: int, message: str, code: str) -> None:
        payload = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 429 else {}
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[dict[str, Any]]
    planner_delay_s = 2.0
    in_flight = 0
    peak = 0
    refused_once = False
    lock = threading.Lock()


@contextmanager
def llm_server() -> Iterator[_Server]:
    """Run the server on a free port of 127.0.0.1; ``server.base_url`` ends in ``/v1``."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.requests = []
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
