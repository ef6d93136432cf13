"""Files a step writes: paths that stay inside their folder, writes that land whole."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import AttemptError


def safe_relpath(path: str) -> str:
    """Return ``path`` normalised to a relative POSIX path; refuse escapes with bad_output."""
    raw = (path or "").strip().replace("\\", "/")
    if not raw or "\x00" in raw:
        raise AttemptError("bad_output", f"empty or invalid file path {path!r}")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise AttemptError("bad_output", f"absolute file path refused: {path!r}")
    parts = [p for p in PurePosixPath(raw).parts if p not in ("", ".")]
    if ".." in parts:
        raise AttemptError("bad_output", f"file path leaves the artifacts folder: {path!r}")
    if not parts:
        raise AttemptError("bad_output", f"empty file path {path!r}")
    return "/".join(parts)


def inside(base: Path, rel: str) -> Path:
    """Return ``base / rel`` resolved; refuse it when a symlink points out of ``base``."""
    target = (base / rel).resolve()
    if not target.is_relative_to(base.resolve()):
        raise AttemptError("bad_output", f"file path leaves the artifacts folder: {rel!r}")
    return target


def is_file(base: Path, path: str) -> bool:
    """Return whether ``path`` names a file inside ``base`` (escapes are never files)."""
    try:
        return inside(base, safe_relpath(path)).is_file()
    except AttemptError:
        return False


def write_atomic(path: Path, data: bytes) -> None:
    """Write then rename: a reader (or a killed attempt) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Process and thread: the agents worker runs many attempts in one process.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n"
    write_atomic(path, text.encode())


def read_json(path: Path) -> dict[str, Any]:
    """Return the JSON object in ``path``; an empty dict when missing or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
