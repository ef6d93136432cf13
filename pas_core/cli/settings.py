from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from .. import config

help = "Export or import the settings file (pas_settings.json)"


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("action", choices=["export", "import"])
    parser.add_argument("file", nargs="?", default=None)


def run(cmd: BaseCommand, options: dict[str, Any]) -> None:
    if options["action"] == "export":
        path = config.settings_export(options["file"])
        cmd.stdout.write(f"settings exported to {path}")
        return
    try:
        doc = config.settings_import(options["file"])
    except config.SettingsError as exc:
        lines = "\n".join(f"  {k}: {v}" for k, v in exc.errors.items())
        raise CommandError(f"settings refused, nothing changed:\n{lines}") from None
    cmd.stdout.write(f"settings imported: {doc['hhmrs']}")
