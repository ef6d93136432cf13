"""HHMRS settings: validation, the live row, the exported file, the beat schedule.

The settings document has the seed's shape::

    {"hhmrs": {...}, "tron_chime": {...}, "notifications": {...}, "hmi_display": {...}}

Every save writes it to ``<PAS_ARTIFACTS_DIR>/pas_settings.json`` and re-schedules the
TRON sweep, so a change takes effect at the next sweep with no restart.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from .errors import SettingsError
from .models import HhmrsSettings
from .stores import effects, statements

__all__ = ["Hhmrs", "SettingsError", "document_get", "document_save", "hhmrs_get", "hhmrs_update"]

log = logging.getLogger(__name__)

SWEEP_TASK_NAME = "tron-sweep"
SWEEP_TASK = "pas_core.tasks.tron_sweep"

# key: (type, default, low, high); the contract of DESIGN section 6.
HHMRS_FIELDS: dict[str, tuple[type, Any, float | None, float | None]] = {
    "heartbeat_interval_s": (float, 30, 1, 120),
    "timeout_threshold_s": (float, 60, 2, 300),
    "missed_heartbeat_threshold": (int, 2, 1, 10),
    "max_restarts": (int, 3, 0, 10),
    "max_llm_retries": (int, 3, 0, 10),
    "enable_auto_restart": (bool, True, None, None),
    "enable_llm_switching": (bool, True, None, None),
    "sweep_interval_s": (float, 5, 0.2, 60),
    # Restarts after an error back off: initial x factor^(n-1), capped, with jitter.
    "restart_backoff_initial_s": (float, 1, 0, 60),
    "restart_backoff_factor": (float, 2, 1, 10),
    "restart_backoff_max_s": (float, 60, 0, 600),
    "restart_backoff_jitter": (float, 0.2, 0, 1),
}

TRON_CHIME_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "sound": "ping",
    "volume": 50,
    "on_timeout": True,
    "on_restart": False,
    "on_escalation": True,
    "on_permanent_failure": True,
}
CHIME_SOUNDS = ("ping", "bell", "chime", "beep", "alert")
NOTIFICATIONS_DEFAULTS: dict[str, Any] = {
    "webhook_url": "",
    "email": "",
    "notify_on_permanent_failure": True,
}
HMI_DISPLAY_DEFAULTS: dict[str, Any] = {
    "theme": "light",
    "show_programmers": True,
    "banner_auto_clear_s": 30,
    "events_page_size": 100,
}
SECTIONS = {
    "tron_chime": TRON_CHIME_DEFAULTS,
    "notifications": NOTIFICATIONS_DEFAULTS,
    "hmi_display": HMI_DISPLAY_DEFAULTS,
}


@dataclass(frozen=True)
class Hhmrs:
    heartbeat_interval_s: float = 30
    timeout_threshold_s: float = 60
    missed_heartbeat_threshold: int = 2
    max_restarts: int = 3
    max_llm_retries: int = 3
    enable_auto_restart: bool = True
    enable_llm_switching: bool = True
    sweep_interval_s: float = 5
    restart_backoff_initial_s: float = 1
    restart_backoff_factor: float = 2
    restart_backoff_max_s: float = 60
    restart_backoff_jitter: float = 0.2

    def as_dict(self) -> dict[str, Any]:
        # Whole numbers print as integers, as in the seed's settings file.
        return {
            k: int(v) if isinstance(v, float) and v.is_integer() else v
            for k, v in asdict(self).items()
        }

    @property
    def worst_case_attempts(self) -> int:
        return (self.max_restarts + 1) * (self.max_llm_retries + 1)


def _number(key: str, value: Any, kind: type, low: float, high: float) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"must be a number from {_fmt(low)} to {_fmt(high)}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"must be a number from {_fmt(low)} to {_fmt(high)}") from None
    if not math.isfinite(number):
        raise ValueError(f"must be a number from {_fmt(low)} to {_fmt(high)}")
    if kind is int and number != int(number):
        raise ValueError(f"must be a whole number from {_fmt(low)} to {_fmt(high)}")
    if not low <= number <= high:
        raise ValueError(f"must be between {_fmt(low)} and {_fmt(high)} (got {_fmt(number)})")
    return int(number) if kind is int else number


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "on", "off", "1", "0"):
        return value.lower() in ("true", "on", "1")
    raise ValueError("must be true or false")


def hhmrs_validate(values: Any, *, base: Hhmrs | None = None) -> Hhmrs:
    """Return ``base`` updated with ``values``; raise SettingsError naming every bad field.

    Unknown keys are refused too, so a typo never silently does nothing.
    """
    if not isinstance(values, dict):
        raise SettingsError({"hhmrs": "must be a JSON object"})
    current = (base or Hhmrs()).as_dict()
    errors: dict[str, str] = {}
    for key, value in values.items():
        spec = HHMRS_FIELDS.get(key)
        if spec is None:
            errors[key] = "unknown setting"
            continue
        kind, _default, low, high = spec
        try:
            if kind is bool:
                current[key] = _boolean(value)
            else:
                assert low is not None and high is not None
                current[key] = _number(key, value, kind, low, high)
        except ValueError as exc:
            errors[key] = str(exc)
    if errors:
        raise SettingsError(errors)
    return Hhmrs(**current)


def section_validate(name: str, values: Any, base: dict[str, Any]) -> dict[str, Any]:
    """Validate one of the free-form sections (tron_chime, notifications, hmi_display)."""
    defaults = SECTIONS[name]
    if not isinstance(values, dict):
        raise SettingsError({name: "must be a JSON object"})
    out = {**defaults, **base}
    errors: dict[str, str] = {}
    for key, value in values.items():
        field = f"{name}.{key}"
        if key not in defaults:
            errors[field] = "unknown setting"
            continue
        default = defaults[key]
        try:
            if isinstance(default, bool):
                out[key] = _boolean(value)
            elif isinstance(default, int):
                low, high = {"volume": (0, 100), "banner_auto_clear_s": (0, 3600)}.get(
                    key, (1, 1000)
                )
                out[key] = _number(field, value, int, low, high)
            else:
                if not isinstance(value, str) or len(value) > 500:
                    raise ValueError("must be text of at most 500 characters")
                out[key] = value.strip()
        except ValueError as exc:
            errors[field] = str(exc)
    if name == "tron_chime" and out.get("sound") not in CHIME_SOUNDS:
        errors["tron_chime.sound"] = f"must be one of {', '.join(CHIME_SOUNDS)}"
    if name == "notifications":
        url = out.get("webhook_url", "")
        if url and not url.startswith(("http://", "https://")):
            errors["notifications.webhook_url"] = "must start with http:// or https://"
        email = out.get("email", "")
        if email and ("@" not in email or " " in email):
            errors["notifications.email"] = "must be an email address"
    if name == "hmi_display" and out.get("theme") not in ("light", "dark"):
        errors["hmi_display.theme"] = "must be light or dark"
    if errors:
        raise SettingsError(errors)
    return out


def _row() -> HhmrsSettings:
    row, _ = HhmrsSettings.objects.get_or_create(pk=1)
    return row


def _settings_row() -> HhmrsSettings | None:
    return next(iter(HhmrsSettings.objects.filter(pk=1)), None)


def hhmrs_get() -> Hhmrs:
    """Return the live HHMRS settings (one query; read them at call time).

    Every attempt and every sweep reads them: a statement built once, its values
    converted here (SQLite answers 0/1 for a boolean).
    """
    row = statements.row_values(HhmrsSettings, list(HHMRS_FIELDS), 1)
    if row is None:
        return Hhmrs()
    return Hhmrs(
        **{
            key: spec[0](value)
            for (key, spec), value in zip(HHMRS_FIELDS.items(), row, strict=True)
        }
    )


def document_get() -> dict[str, Any]:
    """Return the whole settings document in the seed's shape."""
    row = _settings_row()
    doc: dict[str, Any] = {"hhmrs": hhmrs_get().as_dict()}
    for name, defaults in SECTIONS.items():
        doc[name] = {**defaults, **(getattr(row, name) if row else {})}
    return doc


def document_validate(doc: Any) -> dict[str, Any]:
    """Validate a whole (or partial) settings document against the stored one."""
    if not isinstance(doc, dict):
        raise SettingsError({"settings": "must be a JSON object"})
    current = document_get()
    errors: dict[str, str] = {}
    out = dict(current)
    for key, values in doc.items():
        try:
            if key == "hhmrs":
                out[key] = hhmrs_validate(values, base=Hhmrs(**current["hhmrs"])).as_dict()
            elif key in SECTIONS:
                out[key] = section_validate(key, values, current[key])
            else:
                errors[key] = "unknown section"
        except SettingsError as exc:
            errors.update(
                {
                    (k if "." in k or k in SECTIONS else f"{key}.{k}"): v
                    for k, v in exc.errors.items()
                }
            )
    if errors:
        raise SettingsError(errors)
    return out


def document_save(doc: dict[str, Any], *, export: bool = True) -> dict[str, Any]:
    """Validate and store a settings document; export the file and reschedule the sweep."""
    full = document_validate(doc)
    values = {**full["hhmrs"], **{name: full[name] for name in SECTIONS}}
    with transaction.atomic():
        row = _row()
        # Saving unchanged values would still move updated_at: bootstrap, which
        # re-imports the file on every run, would then never be a no-op.
        changed = [key for key, value in values.items() if getattr(row, key) != value]
        for key in changed:
            setattr(row, key, values[key])
        if changed:
            row.save(update_fields=[*changed, "updated_at"])
        sweep_schedule(full["hhmrs"]["sweep_interval_s"])
    if export:
        transaction.on_commit(_export_or_warn, robust=True)
    return full


def hhmrs_update(values: Any) -> Hhmrs:
    """Validate and store HHMRS values (partial updates allowed); return the result."""
    if not isinstance(values, dict):
        raise SettingsError({"hhmrs": "must be a JSON object"})
    hhmrs_validate(values, base=hhmrs_get())  # Errors name the bare keys the caller sent.
    return Hhmrs(**document_save({"hhmrs": values})["hhmrs"])


def _export_or_warn() -> None:
    """Export after a save; a failure (a full disk) is told, the save stands."""
    try:
        settings_export()
    except OSError as exc:
        log.warning("settings saved, but %s could not be written: %s", settings_path(), exc)
        effects.failed("settings file", f"{exc.strerror or exc}: {settings_path()} not written")


def settings_path() -> Path:
    return Path(settings.PAS_ARTIFACTS_DIR) / "pas_settings.json"


def settings_export(path: Path | str | None = None) -> Path:
    """Write the settings document (atomically) and return where it went."""
    target = Path(path) if path else settings_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(json.dumps(document_get(), indent=2, sort_keys=True) + "\n")
    tmp.replace(target)
    return target


def settings_import(path: Path | str | None = None) -> dict[str, Any]:
    """Read a settings file and store it; raise SettingsError and store nothing when bad."""
    source = Path(path) if path else settings_path()
    try:
        text = source.read_text()
    except OSError as exc:
        raise SettingsError({"file": f"cannot read {source}: {exc.strerror}"}) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(
            {"file": f"{source} line {exc.lineno} column {exc.colno}: {exc.msg}"}
        ) from None
    try:
        return document_save(doc)
    except SettingsError as exc:
        errors = {}
        for key, reason in exc.errors.items():
            line = _line_of(text, key)
            errors[f"{source} line {line}: {key}" if line else f"{source}: {key}"] = reason
        raise SettingsError(errors) from None


def _line_of(text: str, dotted: str) -> int | None:
    """Return the line (1-based) of a settings key such as ``hhmrs.max_restarts``.

    The key of each level is looked for after the line of the level above, so the
    same name in two sections is told apart; None when a level is not in the text.
    """
    pos = 0
    for part in dotted.split("."):
        found = re.compile(r'"' + re.escape(part) + r'"\s*:').search(text, pos)
        if found is None:
            return None
        pos = found.start()
    return text.count("\n", 0, pos) + 1


def sweep_schedule(interval_s: float) -> None:
    """Create or update the beat entry that runs the TRON sweep every ``interval_s``."""
    micros = max(1, round(interval_s * 1_000_000))
    schedule, _ = IntervalSchedule.objects.get_or_create(
        every=micros, period=IntervalSchedule.MICROSECONDS
    )
    task = PeriodicTask.objects.filter(name=SWEEP_TASK_NAME).first()
    # A sweep message older than two intervals is useless: the next one is on its way.
    expires = max(1, math.ceil(interval_s * 2))
    if task is None:
        PeriodicTask.objects.create(
            name=SWEEP_TASK_NAME,
            task=SWEEP_TASK,
            interval=schedule,
            queue="hhmrs",
            expire_seconds=expires,
            description="TRON: time out attempts whose heartbeats stopped",
        )
    elif (
        task.interval_id != schedule.id
        or task.expire_seconds != expires
        or task.queue != "hhmrs"
        or task.task != SWEEP_TASK
        or not task.enabled
    ):
        task.interval = schedule
        task.expire_seconds = expires
        task.queue = "hhmrs"
        task.task = SWEEP_TASK
        task.enabled = True
        task.save()
