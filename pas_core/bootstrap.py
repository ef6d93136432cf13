"""Bootstrap: the default tree, the settings row, the sweep schedule, an admin user."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from . import config
from .models import Agent, HhmrsSettings, Provider

TREE_FILE = Path(__file__).parent / "data" / "default_tree.json"
PROVIDERS_FILE = Path(__file__).parent / "data" / "providers.json"
OPERATORS = "operators"


@dataclass
class BootstrapReport:
    agents_created: list[str] = field(default_factory=list)
    agents_updated: list[str] = field(default_factory=list)
    providers_created: list[str] = field(default_factory=list)
    settings_imported: bool = False
    admin_password: str | None = None


def default_tree() -> list[dict[str, Any]]:
    return json.loads(TREE_FILE.read_text())["agents"]


def tree_load(agents: list[dict[str, Any]], report: BootstrapReport) -> None:
    """Create missing agents and repair the structure (role, lane, parent, order).

    Models are set when an agent is created and never after: an operator's choice of
    primary and fallbacks (admin, Settings) survives every later bootstrap, and so do
    the live current model and status.
    """
    for position, spec in enumerate(agents):
        defaults = {
            "role": spec["role"],
            "lane": spec.get("lane", ""),
            "parent_id": spec.get("parent"),
            "description": spec.get("description", ""),
            "position": position,
        }
        agent = Agent.objects.filter(agent_id=spec["agent_id"]).first()
        if agent is None:
            primary = spec.get("primary_model", "")
            Agent.objects.create(
                agent_id=spec["agent_id"],
                primary_model=primary,
                fallback_models=spec.get("fallback_models", []),
                current_model=primary,
                **defaults,
            )
            report.agents_created.append(spec["agent_id"])
            continue
        changed = [k for k, v in defaults.items() if getattr(agent, k) != v]
        if changed:
            for key in changed:
                setattr(agent, key, defaults[key])
            agent.save(update_fields=changed)
            report.agents_updated.append(spec["agent_id"])


def providers_load(report: BootstrapReport) -> None:
    """Create the built-in providers that are missing; never change an existing one."""
    for spec in json.loads(PROVIDERS_FILE.read_text())["providers"]:
        _, created = Provider.objects.get_or_create(
            name=spec["name"], defaults={**spec, "builtin": True}
        )
        if created:
            report.providers_created.append(spec["name"])


def bootstrap(*, admin_username: str = "admin") -> BootstrapReport:
    """Bring the database to a usable state; running it twice changes nothing."""
    report = BootstrapReport()
    with transaction.atomic():
        tree_load(default_tree(), report)
        providers_load(report)
        Group.objects.get_or_create(name=OPERATORS)
        if not HhmrsSettings.objects.filter(pk=1).exists():
            HhmrsSettings.objects.create(
                pk=1,
                tron_chime=dict(config.TRON_CHIME_DEFAULTS),
                notifications=dict(config.NOTIFICATIONS_DEFAULTS),
                hmi_display=dict(config.HMI_DISPLAY_DEFAULTS),
            )
    if config.settings_path().exists():
        config.settings_import()
        report.settings_imported = True
    else:
        config.sweep_schedule(config.hhmrs_get().sweep_interval_s)
        config.settings_export()
    User = get_user_model()
    if not User.objects.filter(username=admin_username).exists():
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser(admin_username, "", password)
        user.groups.add(Group.objects.get(name=OPERATORS))
        report.admin_password = password
        secret = Path(settings.BASE_DIR) / ".run" / "admin-password"
        try:
            secret.parent.mkdir(parents=True, exist_ok=True)
            secret.write_text(password + "\n")
            secret.chmod(0o600)
        except OSError:
            pass
    return report
