"""``python manage.py pas <subcommand>``: the PAS command line (names are contract).

Each subcommand lives in ``pas_core/cli/<name>.py`` with ``help``, ``add_arguments``
and ``run(command, options)``; errors are ``CommandError`` (a message, exit status 1).
"""

from __future__ import annotations

import importlib
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

SUBCOMMANDS = [
    "bootstrap",
    "token",
    "settings",
    "submit",
    "status",
    "fault",
    "demo",
    "llm",
    "provider",
    "models",
]


class Command(BaseCommand):
    help = "PAS control plane: bootstrap, submit, status, fault, token, settings, demo"

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        for name in SUBCOMMANDS:
            try:
                module = importlib.import_module(f"pas_core.cli.{name}")
            except ModuleNotFoundError:
                continue
            p = sub.add_parser(name, help=module.help)
            module.add_arguments(p)

    def handle(self, *args: Any, **options: Any) -> None:
        module = importlib.import_module(f"pas_core.cli.{options['subcommand']}")
        module.run(self, options)
