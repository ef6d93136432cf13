from __future__ import annotations

from django.apps import AppConfig


class PasCoreConfig(AppConfig):
    name = "pas_core"
    verbose_name = "PAS control plane"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks (pas_core.E001, ...) with Django.
        from . import checks  # noqa: F401
