"""Providers as data: any OpenAI-compatible endpoint, added without a code change.

A provider row holds where calls go and how many may be in flight; the key stays in
the environment (``key_env`` names the variable), never in the database or the
settings export.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from ..errors import ServiceError
from ..models import Provider
from ..stores.events import event_emit

NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
ENV_VAR = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")


def provider_save(
    name: str,
    *,
    base_url: str,
    key_env: str = "",
    max_concurrency: int | None = None,
    structured: str | None = None,
    by: str = "",
) -> tuple[Provider, bool]:
    """Create or update a provider; return it and whether it was created.

    Idempotent: the same arguments twice change nothing the second time. Fields left
    out (None) keep their value on an existing provider.
    """
    name = (name or "").strip()
    if not NAME.fullmatch(name):
        raise ServiceError("name", "lower-case letters, digits, '-', '_' or '.', up to 32")
    parts = urlsplit((base_url or "").strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ServiceError("base_url", "must be an http:// or https:// URL")
    key_env = (key_env or "").strip()
    if key_env and not ENV_VAR.fullmatch(key_env):
        raise ServiceError("key_env", "must be an environment variable name (e.g. MY_API_KEY)")
    if max_concurrency is not None and not 1 <= max_concurrency <= 1000:
        raise ServiceError("max_concurrency", "must be a whole number from 1 to 1000")
    if structured is not None and structured not in Provider.Structured.values:
        kinds = ", ".join(Provider.Structured.values)
        raise ServiceError("structured", f"must be one of {kinds}")
    values: dict[str, Any] = {"base_url": base_url.strip().rstrip("/"), "key_env": key_env}
    values["key_required"] = bool(key_env)
    if max_concurrency is not None:
        values["max_concurrency"] = max_concurrency
    if structured is not None:
        values["structured"] = structured
    row, created = Provider.objects.get_or_create(name=name, defaults=values)
    changed = [k for k, v in values.items() if getattr(row, k) != v]
    if changed and not created:
        for key in changed:
            setattr(row, key, values[key])
        row.save(update_fields=[*changed, "updated_at"])
    if created or changed:
        event_emit(
            "provider_saved",
            {"provider": name, "created": created, "changed": sorted(changed), "by": by},
        )
    return row, created


def provider_cap_set(name: str, max_concurrency: int, *, by: str = "") -> Provider:
    """Set how many calls to a provider may be in flight at once."""
    row = Provider.objects.filter(name=name).first()
    if row is None:
        raise ServiceError("provider", f"no provider {name!r}", status=404)
    if not 1 <= max_concurrency <= 1000:
        raise ServiceError("max_concurrency", "must be a whole number from 1 to 1000")
    Provider.objects.filter(pk=name).update(max_concurrency=max_concurrency)
    row.max_concurrency = max_concurrency
    event_emit("provider_saved", {"provider": name, "changed": ["max_concurrency"], "by": by})
    return row
