"""The comms log: one database row and one line in the day's file per message.

File lines (contract)::

    timestamp|from|to|TYPE|message|llm_model|run_id|status|progress|metadata

``-`` stands for a missing field; ``\\``, ``|`` and newlines inside a field are escaped.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import CommsMessage


def model_short(model_id: str) -> str:
    """Return a model id without its provider prefix: ``anthropic/x`` -> ``x``."""
    return model_id.split("/", 1)[1] if "/" in model_id else model_id


def _field(value: Any) -> str:
    if value is None or value == "" or value == {}:
        return "-"
    if isinstance(value, dict | list):
        value = json.dumps(value, sort_keys=True, separators=(",", ":"))
    text = str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", "\\r").replace("\n", "\\n")


def comms_line(msg: CommsMessage) -> str:
    ts = timezone.localtime(msg.ts, timezone.get_fixed_timezone(0))
    stamp = ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}"
    progress = None if msg.progress is None else f"{msg.progress:g}"
    fields = [
        msg.sender,
        msg.recipient,
        msg.kind,
        msg.message,
        model_short(msg.llm_model),
        msg.run_id,
        msg.status,
        progress,
        msg.metadata,
    ]
    return "|".join([stamp, *map(_field, fields)])


def comms_path(day: datetime | None = None) -> Path:
    day = day or timezone.now()
    name = f"pas_comms_{day.strftime('%Y-%m-%d')}.txt"
    return Path(settings.PAS_ARTIFACTS_DIR) / "logs" / name


def _append(msg: CommsMessage) -> None:
    path = comms_path(msg.ts)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (comms_line(msg) + "\n").encode()
    # One O_APPEND write per line: lines from several processes never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def comms_log(
    *,
    sender: str,
    recipient: str,
    kind: str,
    message: str,
    llm_model: str = "",
    run_id: Any = "",
    status: str = "",
    progress: float | None = None,
    metadata: dict[str, Any] | None = None,
) -> CommsMessage:
    """Store a comms message; its file line is written when the transaction commits."""
    msg = CommsMessage.objects.create(
        ts=timezone.now(),
        sender=sender,
        recipient=recipient,
        kind=kind,
        message=message,
        llm_model=llm_model or "",
        run_id=str(run_id or ""),
        status=status,
        progress=progress,
        metadata=metadata or {},
    )
    transaction.on_commit(lambda: _append(msg))
    return msg
