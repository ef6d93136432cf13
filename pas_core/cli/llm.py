from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ..llm import local

help = "Serve the bundled local model (SmolLM2-135M, llama.cpp) on 127.0.0.1"


def _port(raw: str) -> int:
    """Parse a TCP port number (argparse type)."""
    try:
        return local.check_port(int(raw))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a TCP port (1-65535)") from None


def _positive(raw: str) -> int:
    """Parse a positive integer (argparse type)."""
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a positive integer")
    return value


def add_arguments(parser: CommandParser) -> None:
    sub = parser.add_subparsers(dest="llm_action", required=True)
    serve = sub.add_parser(
        "serve",
        help="serve the model in the foreground until Ctrl-C or SIGTERM; print its base URL",
    )
    serve.add_argument(
        "--port",
        type=_port,
        default=None,
        help=f"port on 127.0.0.1 (default: ${local.PORT_ENV}, else {local.DEFAULT_PORT})",
    )
    serve.add_argument(
        "--alias",
        default=local.DEFAULT_ALIAS,
        help=f"model name clients ask for (default: {local.DEFAULT_ALIAS})",
    )
    serve.add_argument(
        "--slots",
        type=_positive,
        default=local.DEFAULT_SLOTS,
        help=f"requests decoded at once; more wait (default: {local.DEFAULT_SLOTS})",
    )
    serve.add_argument(
        "--slot-ctx",
        type=_positive,
        default=local.DEFAULT_SLOT_CTX,
        help=f"tokens per slot, prompt plus reply (default: {local.DEFAULT_SLOT_CTX})",
    )


def run(cmd: BaseCommand, options: dict[str, Any]) -> None:
    alias = options["alias"].strip()
    if not alias:
        raise CommandError("--alias: must not be empty")
    try:
        port = options["port"] or local.default_port()
        config = local.ServerConfig(
            port=port,
            alias=alias,
            slots=options["slots"],
            slot_ctx=options["slot_ctx"],
            verbosity=3 if options["verbosity"] >= 2 else 2,
        )

        def ready(url: str) -> None:
            cmd.stdout.write(f"serving {alias} at {url} (Ctrl-C stops it)")
            cmd.stdout.flush()

        local.serve(config, on_ready=ready)
    except local.LocalModelError as exc:
        raise CommandError(str(exc)) from None
