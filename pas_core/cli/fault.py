"""``pas fault AGENT KIND [--count N] [--model M]``: arm an injected fault."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ..errors import ServiceError
from ..models import Agent, Fault
from ..services.faults import MAX_COUNT, fault_inject, faults_clear

help = "Make an agent's next N attempts misbehave (" + ", ".join(Fault.Kind.values) + ")"


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("agent", help="agent id, e.g. Dir-Code (quote ids with spaces)")
    parser.add_argument(
        "kind", choices=[*Fault.Kind.values, "clear"], help="fault kind, or clear to disarm all"
    )
    parser.add_argument(
        "--count", type=int, default=1, help=f"how many attempts (1-{MAX_COUNT}, default 1)"
    )
    parser.add_argument("--model", default="", help="only attempts on this model id")


def run(cmd: BaseCommand, options: dict[str, Any]) -> None:
    agent_id = options["agent"]
    if not Agent.objects.filter(agent_id=agent_id).exists():
        raise CommandError(f"no agent {agent_id!r}")
    if options["kind"] == "clear":
        n = faults_clear(agent_id, by="cli")
        cmd.stdout.write(f"cleared {n} fault(s) on {agent_id}")
        return
    try:
        fault = fault_inject(
            agent_id, options["kind"], options["count"], model=options["model"], by="cli"
        )
    except ServiceError as exc:
        raise CommandError(str(exc)) from None
    scope = f"on model {fault.model}" if fault.model else "on any model"
    cmd.stdout.write(
        f"armed {fault.kind} for the next {fault.remaining} attempt(s) of {agent_id} {scope}"
        f" (fault {fault.pk})"
    )
