from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ..auth import token_create

help = "Create an API token (printed once, as the last line; only its hash is kept)"


def add_arguments(parser: CommandParser) -> None:
    sub = parser.add_subparsers(dest="token_action", required=True)
    create = sub.add_parser("create", help="create a token")
    create.add_argument("--name", required=True)
    create.add_argument("--agent", default=None, help="bind the token to one agent's heartbeats")


def run(cmd: BaseCommand, options: dict[str, Any]) -> None:
    try:
        raw, token = token_create(name=options["name"], agent_id=options["agent"])
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    scope = f"heartbeats of {token.agent_id} only" if token.agent_id else "full API"
    cmd.stdout.write(f"token {token.name!r} created ({scope}); it is shown once:")
    cmd.stdout.write(raw)
