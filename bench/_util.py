"""Helpers for the benchmarks: a throwaway PAS (SQLite under a temp dir, a Redis database
of its own, a key prefix), percentiles, and a table printer. Not a benchmark itself.

Redis: a benchmark claims a free database 1..15 with the same ``pastest:db:<N>`` claim
keys the test suite uses (``SET NX EX`` on database 0), so it never shares a database
with a test session or another benchmark; Celery's queues (plain lists, no prefix) are
then private too. The claim is released and the database flushed on exit.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent  # Holds manage.py.
CLAIM_TTL_S = 3600


def _db_url(base: str, db: int) -> str:
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", "", ""))


class Sandbox:
    """A temp dir, a SQLite database in it, a claimed Redis database, and Django set up."""

    def __init__(self, name: str) -> None:
        import redis

        self.tmp = Path(tempfile.mkdtemp(prefix=f"pas-{name}-"))
        base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        self.control = redis.Redis.from_url(_db_url(base, 0), socket_connect_timeout=2)
        self.redis_db = self._claim()
        self.redis_url = _db_url(base, self.redis_db)
        self.prefix = f"pasbench-{os.getpid()}"
        self.env = {
            "DJANGO_SETTINGS_MODULE": "pas_core.settings",
            # PAS_BENCH_DATABASE_URL: an empty database to run on instead (PostgreSQL).
            "DATABASE_URL": os.environ.get("PAS_BENCH_DATABASE_URL")
            or f"sqlite:///{self.tmp / 'bench.sqlite3'}",
            "REDIS_URL": self.redis_url,
            "PAS_REDIS_PREFIX": self.prefix,
            "PAS_ARTIFACTS_DIR": str(self.tmp / "artifacts"),
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
            "PAS_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        os.environ.update(self.env)
        atexit.register(self.close)
        self.flush()

    def _claim(self) -> int:
        for db in range(1, 16):
            if self.control.set(
                f"pastest:db:{db}", f"bench-{os.getpid()}", nx=True, ex=CLAIM_TTL_S
            ):
                return db
        raise SystemExit("every Redis database 1..15 is claimed (keys pastest:db:N on db 0)")

    def flush(self) -> None:
        import redis

        redis.Redis.from_url(self.redis_url).flushdb()

    def django(self) -> None:
        """Set Django up on the sandbox, migrate, and load the default tree."""
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        from pas_core.bootstrap import bootstrap

        call_command("migrate", verbosity=0)
        # No usable password: bootstrap would otherwise keep one in the project's .run/.
        get_user_model().objects.create_superuser("admin", "", None)
        bootstrap()

    def close(self) -> None:
        try:
            self.flush()
            key = f"pastest:db:{self.redis_db}"
            if self.control.get(key) == f"bench-{os.getpid()}".encode():
                self.control.delete(key)
        except Exception:  # noqa: BLE001 - the claim expires by itself
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def percentile(values: Sequence[float], p: float) -> float:
    """Return the ``p``-th percentile (0..100) by nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


RESULTS: list[tuple[str, str, str, str]] = []  # (measure, figure, target, verdict)


def record(measure: str, figure: str, target: str = "", ok: bool | None = None) -> None:
    """Print one figure now and keep it for the summary table (``results_table``)."""
    verdict = "" if ok is None else ("ok" if ok else "MISSED")
    RESULTS.append((measure, figure, target, verdict))
    print(f"  {measure}: {figure}" + (f"  (target {target}: {verdict})" if target else ""))


def results_table() -> str:
    """The figures ``record`` kept, as a table."""
    return table(RESULTS, ["measure", "figure", "target", ""])


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> str:
    """Return rows as an aligned plain-text table."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
