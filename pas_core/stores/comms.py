"""The comms log: one database row and one line in the day's file per message.

File lines (contract)::

    timestamp|from|to|TYPE|message|llm_model|run_id|status|progress|metadata

``-`` stands for a missing field; ``\\``, ``|`` and newlines inside a field are escaped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..models import CommsMessage
from . import effects, statements

log = logging.getLogger(__name__)


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


def comms_append(messages: Sequence[CommsMessage]) -> int:
    """Append the messages' lines to their day's files; return how many were written.

    One ``O_APPEND`` write per file, so lines from several processes never interleave
    and a line is written whole or not at all (a write of a few KB to a local file is
    not split). Never raises: a full disk or a read-only folder loses file lines (they
    stay in the database) and is logged, and whatever was to happen after the write
    still happens.
    """
    by_file: dict[Path, list[str]] = {}
    for msg in messages:
        by_file.setdefault(comms_path(msg.ts), []).append(comms_line(msg) + "\n")
    written = 0
    for path, lines in by_file.items():
        try:
            _append_whole(path, "".join(lines).encode())
            written += len(lines)
        except OSError as exc:
            log.warning("could not append %s comms line(s) to %s: %s", len(lines), path, exc)
            effects.failed("comms file", f"{exc.strerror or exc} ({path})")
    return written


def _append_whole(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` whole, or leave the file as it was.

    A full disk can take part of a write: the part is cut off again, so the file never
    ends in half a line (unless another process appended meanwhile; then its line and
    ours stay, and the reader skips the torn one).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            done = os.write(fd, data)
        except OSError:
            done = -1
            raise
        finally:
            if done != len(data) and os.fstat(fd).st_size == size + max(done, 0):
                os.ftruncate(fd, size)
        if done != len(data):
            raise OSError(28, "short write: the disk took only part of the lines", str(path))
    finally:
        os.close(fd)


def _message(line: dict[str, Any], now: datetime) -> CommsMessage:
    return CommsMessage(
        ts=now,
        sender=line["sender"],
        recipient=line["recipient"],
        kind=line["kind"],
        message=line["message"],
        llm_model=line.get("llm_model") or "",
        run_id=str(line.get("run_id") or ""),
        status=line.get("status") or "",
        progress=line.get("progress"),
        metadata=line.get("metadata") or {},
    )


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
    line = {
        "sender": sender,
        "recipient": recipient,
        "kind": kind,
        "message": message,
        "llm_model": llm_model,
        "run_id": run_id,
        "status": status,
        "progress": progress,
        "metadata": metadata,
    }
    return comms_log_many([line])[0]


def comms_log_many(lines: Sequence[dict[str, Any]]) -> list[CommsMessage]:
    """Store many comms messages (``comms_log``'s arguments each) in one statement.

    Their file lines go out in one append when the transaction commits.
    """
    if not lines:
        return []
    now = timezone.now()
    messages = statements.rows_insert([_message(line, now) for line in lines])
    transaction.on_commit(lambda: comms_append(messages), robust=True)
    return messages
