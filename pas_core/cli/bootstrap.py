from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ..bootstrap import bootstrap
from ..config import SettingsError

help = "Create the default tree, settings, sweep schedule and admin user (idempotent)"


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("--admin", default="admin", help="admin username (default admin)")


def run(cmd: BaseCommand, options: dict[str, Any]) -> None:
    try:
        report = bootstrap(admin_username=options["admin"])
    except SettingsError as exc:
        raise CommandError(f"settings file refused: {exc}") from None
    out = cmd.stdout
    out.write(
        f"agents: {len(report.agents_created)} created, {len(report.agents_updated)} repaired"
    )
    if report.settings_imported:
        out.write("settings: imported from pas_settings.json")
    if report.admin_password:
        out.write(f"admin user created: {options['admin']} / {report.admin_password}")
    out.write("bootstrap done")
