"""Live HHMRS settings (contract: keys, defaults, ranges of DESIGN section 6)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema
from pydantic import ConfigDict

from ..config import hhmrs_get, hhmrs_update
from ..stores import effects

router = Router(tags=["settings"])


class HhmrsIn(Schema):
    # Strict: JSON true is not the number 1 (pydantic would coerce it; config refuses it).
    model_config = ConfigDict(extra="forbid", strict=True)

    heartbeat_interval_s: float | None = None
    timeout_threshold_s: float | None = None
    missed_heartbeat_threshold: int | None = None
    max_restarts: int | None = None
    max_llm_retries: int | None = None
    enable_auto_restart: bool | None = None
    enable_llm_switching: bool | None = None
    sweep_interval_s: float | None = None
    restart_backoff_initial_s: float | None = None
    restart_backoff_factor: float | None = None
    restart_backoff_max_s: float | None = None
    restart_backoff_jitter: float | None = None


@router.get("/hhmrs", summary="Current HHMRS settings")
def hhmrs_read(request: HttpRequest) -> dict[str, Any]:
    return hhmrs_get().as_dict()


@router.post("/hhmrs", summary="Change HHMRS settings (any subset); takes effect at once")
def hhmrs_write(request: HttpRequest, payload: HhmrsIn) -> Any:
    values = {k: v for k, v in payload.dict(exclude_unset=True).items() if v is not None}
    # A refusal (SettingsError) is answered 400 naming every field by the API's handler.
    with effects.collect() as failed:
        saved = hhmrs_update(values).as_dict()
    # Saved either way; a file that could not be written (a full disk) is said.
    return {**saved, "warnings": failed} if failed else saved
