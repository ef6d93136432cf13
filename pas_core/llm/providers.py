"""LLM providers: one OpenAI-compatible client for every endpoint, streaming always.

Model ids are ``provider/model`` split on the first slash, so
``openrouter/deepseek/deepseek-chat`` is OpenRouter's ``deepseek/deepseek-chat``.
Environment variables are read at call time: a key exported after the worker started
is picked up by the next attempt. Keys never appear in messages or logs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
from django.conf import settings

from .. import inflight
from ..errors import AttemptError
from ..models import Provider
from .offline import offline_complete
from .reply import Beat, LlmReply


@dataclass(frozen=True)
class Endpoint:
    """Where a provider's calls go, as configured now (its row and the environment)."""

    name: str
    base_url: str
    key: str  # "none" when the provider takes no key (the SDK insists on one).
    structured: str  # Provider.Structured: json_schema, json_object or none.


# List prices in USD per million tokens (input, output) where known; other models are
# reported at 0 (local models cost nothing; unknown cloud models are not guessed).
PRICES: dict[str, tuple[float, float]] = {
    "anthropic/claude-sonnet-4-5": (3.0, 15.0),
    "google/gemini-2.5-flash": (0.30, 2.50),
    "openai/gpt-4.1-mini": (0.40, 1.60),
}

CONNECT_TIMEOUT_S = 5.0
# A stream that trickles forever beats forever; cut it off after this many read timeouts.
TOTAL_TIMEOUT_FACTOR = 5


def model_split(model_id: str) -> tuple[str, str]:
    """Return ``(provider, model)``; raise AttemptError("model_not_found") when malformed."""
    provider, sep, model = (model_id or "").partition("/")
    if not sep or not provider or not model:
        raise AttemptError("model_not_found", f"model id {model_id!r} is not provider/model")
    if not Provider.objects.filter(name=provider).exists():
        known = ", ".join(Provider.objects.values_list("name", flat=True))
        raise AttemptError("model_not_found", f"unknown provider {provider!r} (known: {known})")
    return provider, model


def base_url_of(row: Provider) -> str:
    """Return the provider's base URL: its variable's value if set, else its own.

    An overriding URL without a path takes the default's (``OLLAMA_BASE_URL`` is
    usually ``http://host:11434``; the API lives under ``/v1``).
    """
    url = os.environ.get(row.base_url_env, "").strip() if row.base_url_env else ""
    if not url:
        return row.base_url
    url = url.rstrip("/")
    default_path = urlsplit(row.base_url).path.rstrip("/")
    if default_path and not urlsplit(url).path:
        url += default_path
    return url


def provider_endpoint(provider: str) -> Endpoint:
    """Return where ``provider``'s calls go, from its row and the environment, now.

    Raises AttemptError("auth") naming the variable to set when the provider is not
    configured (a required key missing, or no base URL at all).
    """
    row = Provider.objects.filter(name=provider).first()
    if row is None:
        raise AttemptError("model_not_found", f"unknown provider {provider!r}")
    base_url = base_url_of(row)
    if not base_url:
        hint = f"set {row.base_url_env}" if row.base_url_env else "give it a base URL"
        raise AttemptError("auth", f"provider {provider} is not configured: {hint}")
    key = os.environ.get(row.key_env, "").strip() if row.key_env else ""
    if not key and row.key_env and row.key_required:
        raise AttemptError("auth", f"no API key for {provider}: set {row.key_env}")
    return Endpoint(row.name, base_url, key or "none", row.structured)


def providers_status() -> list[dict[str, Any]]:
    """Return each provider's configuration as the HMI's Models tab shows it (no keys)."""
    rows = []
    for row in Provider.objects.all():
        base_url = base_url_of(row)
        has_key = bool(row.key_env and os.environ.get(row.key_env, "").strip())
        configured = bool(base_url) and (has_key or not (row.key_env and row.key_required))
        rows.append(
            {
                "provider": row.name,
                "env_var": row.key_env or row.base_url_env,
                "key_env": row.key_env,
                "base_url_env": row.base_url_env,
                "configured": configured,
                "key_set": has_key,
                "base_url": base_url,
                "max_concurrency": row.max_concurrency,
                "structured": row.structured,
                "builtin": row.builtin,
            }
        )
    return rows


def _price(model_id: str, tokens_in: int, tokens_out: int) -> float:
    rate = PRICES.get(model_id)
    if rate is None:
        return 0.0
    return round((tokens_in * rate[0] + tokens_out * rate[1]) / 1_000_000, 6)


def _scrub(text: str, key: str) -> str:
    if key and len(key) > 4:
        text = text.replace(key, "***")
    return text[:500]


def _retry_after(value: str | None) -> float | None:
    """Return a Retry-After header's seconds (a number, or an HTTP date), capped at an hour."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(seconds, 3600.0))


def _error(exc: BaseException, model_id: str, key: str) -> AttemptError:
    """Map an SDK or transport exception to the attempt error kind supervision routes."""
    detail = _scrub(str(exc), key)
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
        return AttemptError("timeout", f"{model_id}: no answer within the read timeout")
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return AttemptError("auth", f"{model_id}: {exc.status_code} {detail}")
    if isinstance(exc, openai.NotFoundError):
        return AttemptError("model_not_found", f"{model_id}: 404 {detail}")
    if isinstance(exc, openai.RateLimitError):
        wait = _retry_after(exc.response.headers.get("retry-after"))
        said = f" (Retry-After {wait:g} s)" if wait is not None else ""
        return AttemptError("rate_limit", f"{model_id}: 429 {detail}{said}", retry_after_s=wait)
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return AttemptError("crash", f"{model_id}: cannot reach the provider ({detail})")
    if isinstance(exc, openai.APIError):
        # Some providers answer an unknown model with 400, or with an error event.
        status = getattr(exc, "status_code", "error")
        lowered = detail.lower()
        if "model" in lowered and ("not found" in lowered or "does not exist" in lowered):
            return AttemptError("model_not_found", f"{model_id}: {status} {detail}")
        return AttemptError("crash", f"{model_id}: {status} {detail}")
    if isinstance(exc, ValueError | AttributeError | TypeError):
        # The stream was not chat.completion.chunk JSON (json errors are ValueErrors).
        return AttemptError("bad_output", f"{model_id}: unreadable stream ({detail})")
    return AttemptError("crash", f"{model_id}: {exc.__class__.__name__}: {detail}")


def _mapped(stream: Any, model_id: str, key: str, deadline: float) -> Iterator[Any]:
    """Yield the stream's chunks, turning its failures into AttemptErrors.

    Only the SDK's own iteration is guarded: an exception raised by the caller's beat
    (e.g. a fenced attempt told to stop) passes through unchanged.
    """
    iterator = iter(stream)
    while True:
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - every failure maps to a kind
            raise _error(exc, model_id, key) from None
        yield chunk
        if time.monotonic() > deadline:
            raise AttemptError("timeout", f"{model_id}: the stream did not finish in time")


def _abortable_client(timeout: httpx.Timeout) -> httpx.Client:
    """Return an HTTP client whose open response a kill of the attempt can cut.

    A read blocked on a server that stopped answering (frozen, partitioned) returns only
    at the read timeout; shutting the socket down ends it at once, so the attempt's
    thread is free the moment supervision kills it.
    """

    def on_response(response: httpx.Response) -> None:
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            inflight.on_abort(lambda: _shut(sock))

    return httpx.Client(timeout=timeout, event_hooks={"response": [on_response]})


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _collect(
    chunks: Iterator[Any], beat: Beat | None, *, default_model: str
) -> tuple[list[str], Any, str]:
    """Gather a stream's text, its usage (the last chunk carries it) and who answered."""
    parts: list[str] = []
    usage: Any = None
    answered_by = default_model
    for n, chunk in enumerate(chunks, start=1):
        answered_by = getattr(chunk, "model", None) or answered_by
        usage = getattr(chunk, "usage", None) or usage
        for choice in getattr(chunk, "choices", None) or []:
            content = getattr(getattr(choice, "delta", None), "content", None)
            if isinstance(content, str):
                parts.append(content)
        if beat is not None:
            beat(n / (n + 20), "streaming")
    return parts, usage, answered_by


def response_format(structured: str, schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """Return the ``response_format`` to send: the reply's schema where the provider
    constrains decoding to one, JSON mode where it only promises JSON, else nothing.

    ``schema`` is ``{"name", "schema"}``; the reply is validated either way.
    """
    if schema is None or structured == "none":
        return None
    if structured == "json_schema":
        return {"type": "json_schema", "json_schema": {**schema, "strict": False}}
    return {"type": "json_object"}


def llm_chat(
    model_id: str,
    messages: list[dict[str, Any]],
    *,
    beat: Beat | None = None,
    schema: dict[str, Any] | None = None,
    max_tokens: int | None = None,
    timeout_s: float = 120,
) -> LlmReply:
    """Stream one chat completion from a real provider and return the whole reply.

    ``beat(progress, "streaming")`` is called on every chunk (it throttles itself);
    progress rises towards 1 with the number of chunks. ``timeout_s`` is the read
    timeout (the longest silence allowed); connecting may take 5 s. Failures raise
    AttemptError: timeout, auth, model_not_found, rate_limit (with the provider's
    Retry-After), crash, or bad_output for a stream with no text.
    """
    provider, model = model_split(model_id)
    endpoint = provider_endpoint(provider)
    timeout = httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S)
    client = openai.OpenAI(
        base_url=endpoint.base_url,
        api_key=endpoint.key,
        timeout=timeout,
        max_retries=0,  # Supervision retries, visibly; the SDK must not retry silently.
        http_client=_abortable_client(timeout),
    )
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if (fmt := response_format(endpoint.structured, schema)) is not None:
        kwargs["response_format"] = fmt
    if max_tokens:
        kwargs["max_tokens"] = max_tokens
    deadline = time.monotonic() + timeout_s * TOTAL_TIMEOUT_FACTOR
    key = endpoint.key
    try:
        try:
            stream = client.chat.completions.create(**kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure maps to a kind
            raise _error(exc, model_id, key) from None
        try:
            parts, usage, answered_by = _collect(
                _mapped(stream, model_id, key, deadline), beat, default_model=model
            )
        finally:
            stream.close()
    finally:
        client.close()
    text = "".join(parts)
    if not text.strip():
        raise AttemptError("bad_output", f"{model_id}: the stream carried no text")
    tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
    tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
    return LlmReply(
        text=text,
        model=f"{provider}/{answered_by}",
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cost_usd=_price(model_id, tokens_in, tokens_out),
        produced_by=model_id,
    )


def llm_complete(
    model_id: str,
    messages: list[dict[str, Any]],
    *,
    beat: Beat | None = None,
    schema: dict[str, Any] | None = None,
    max_tokens: int | None = None,
    timeout_s: float = 120,
) -> LlmReply:
    """Answer ``messages`` as ``model_id`` would, in the mode ``PAS_LLM_MODE`` selects.

    ``offline`` (the default): the built-in offline planner serves every model id, no
    network. ``live``: the real provider, through :func:`llm_chat`.
    """
    mode = settings.PAS_LLM_MODE
    if mode == "live":
        return llm_chat(
            model_id,
            messages,
            beat=beat,
            schema=schema,
            max_tokens=max_tokens,
            timeout_s=timeout_s,
        )
    if mode == "offline":
        return offline_complete(model_id, messages, beat=beat)
    # The system check pas_core.E001 refuses this at start; a worker started anyway fails
    # every attempt visibly rather than quietly planning offline.
    raise AttemptError("error", f"PAS_LLM_MODE {mode!r} is neither offline nor live")
