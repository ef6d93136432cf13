"""``pas models set (AGENT_ID | --all) MODEL [--fallback MODEL ...]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ..errors import ServiceError
from ..services.agents import agents_models_set

help = "Set an agent's primary model (and fallback chain), or every agent's"


def add_arguments(parser: CommandParser) -> None:
    sub = parser.add_subparsers(dest="models_action", required=True)
    put = sub.add_parser(
        "set",
        help="set the primary model and, optionally, the fallbacks",
        usage="pas models set (AGENT_ID | --all) MODEL [--fallback MODEL ...]",
    )
    put.add_argument("--all", action="store_true", help="every agent that calls a model")
    put.add_argument(
        "targets", nargs="+", metavar="AGENT_ID MODEL", help="e.g. Dir-Code local/smollm2-135m"
    )
    put.add_argument(
        "--fallback",
        action="append",
        default=None,
        help="a fallback model, in order (repeat it); left out: the chain is kept",
    )


def run(cmd: BaseCommand, options: dict[str, Any]) -> None:
    targets = options["targets"]
    if options["all"] and len(targets) != 1:
        raise CommandError("with --all, give only the model: pas models set --all MODEL")
    if not options["all"] and len(targets) != 2:
        raise CommandError("give an agent and a model: pas models set AGENT_ID MODEL")
    agents = None if options["all"] else [targets[0]]
    model = targets[-1]
    try:
        changed = agents_models_set(agents, model, fallbacks=options["fallback"], by="cli")
    except ServiceError as exc:
        raise CommandError(str(exc)) from None
    chain = " → ".join([model, *(options["fallback"] or [])])
    who = f"{len(changed)} agents" if options["all"] else changed[0]
    cmd.stdout.write(f"{who} now on {chain}")
