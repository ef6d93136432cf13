"""``pas provider add NAME --base-url URL [--key-env VAR] [--max-concurrency N]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ..errors import ServiceError
from ..llm.providers import providers_status
from ..models import Provider
from ..services.providers import provider_save

help = "Add or change an OpenAI-compatible provider (its key stays in the environment)"


def add_arguments(parser: CommandParser) -> None:
    sub = parser.add_subparsers(dest="provider_action", required=True)
    add = sub.add_parser("add", help="add a provider, or change one (idempotent)")
    add.add_argument("name", help="the prefix of its model ids: NAME/model")
    add.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8000/v1")
    add.add_argument("--key-env", default="", help="the environment variable holding its key")
    add.add_argument("--max-concurrency", type=int, default=None, help="calls in flight at once")
    add.add_argument(
        "--structured",
        choices=Provider.Structured.values,
        default=None,
        help="what response_format it supports (default json_object)",
    )
    sub.add_parser("list", help="list the providers and whether each is configured")


def run(cmd: BaseCommand, options: dict[str, Any]) -> None:
    if options["provider_action"] == "list":
        for info in providers_status():
            state = "configured" if info["configured"] else f"not configured ({info['env_var']})"
            cmd.stdout.write(
                f"{info['provider']:<12} {info['base_url'] or '-':<48} "
                f"cap {info['max_concurrency']:<4} {info['structured']:<11} {state}"
            )
        return
    try:
        row, created = provider_save(
            options["name"],
            base_url=options["base_url"],
            key_env=options["key_env"],
            max_concurrency=options["max_concurrency"],
            structured=options["structured"],
            by="cli",
        )
    except ServiceError as exc:
        raise CommandError(str(exc)) from None
    key = f"key from ${row.key_env}" if row.key_env else "no key"
    cmd.stdout.write(
        f"provider {row.name} {'added' if created else 'saved'}: {row.base_url} ({key}, "
        f"{row.max_concurrency} in flight, {row.structured}); model ids: {row.name}/<model>"
    )
