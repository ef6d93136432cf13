"""Django's SQLite backend, with one process's write transactions queued on a lock.

Every transaction PAS opens on SQLite is ``BEGIN IMMEDIATE`` (it takes the database's
write lock at once, so two writers queue instead of one failing on a lock upgrade).
Between processes they queue in SQLite's busy handler, which polls: a writer that finds
the lock taken sleeps 1, 2, 5, 10, 15, 20, 25 ... 100 ms between tries. The agents
worker runs a hundred attempts as threads of one process; with twenty directives at
once most of a step's time went to those sleeps (a profile of the worker showed more
samples waiting in ``BEGIN IMMEDIATE`` than doing anything else), not to the work.

Here the threads of one process wait for each other on a ``threading.Lock`` first,
which hands over as soon as the holder commits. Only one of them at a time then asks
SQLite, and waits in the busy handler only for the other processes. A wait for the
lock is bounded by the connection's ``timeout`` (as SQLite's own is) and then fails as
SQLite would: ``OperationalError: database is locked``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from django.db.backends.sqlite3 import base
from django.db.utils import OperationalError

DEFAULT_TIMEOUT_S = 5.0  # sqlite3's own default busy timeout.
_WRITERS = threading.Lock()  # Held from BEGIN to COMMIT / ROLLBACK by one thread.


def _writers_reset() -> None:
    """A forked child (a prefork pool's) starts with the lock free: the thread that may
    have held it in the parent does not exist in the child."""
    global _WRITERS
    _WRITERS = threading.Lock()


os.register_at_fork(after_in_child=_writers_reset)


class DatabaseWrapper(base.DatabaseWrapper):
    """SQLite's wrapper; a transaction holds the process's writer lock while it lasts."""

    holds_writers = False

    def _writers_timeout(self) -> float:
        options: dict[str, Any] = self.settings_dict.get("OPTIONS") or {}
        return float(options.get("timeout", DEFAULT_TIMEOUT_S))

    def _writers_release(self) -> None:
        if self.holds_writers:
            self.holds_writers = False
            _WRITERS.release()

    def _start_transaction_under_autocommit(self) -> None:
        if not self.holds_writers:
            if not _WRITERS.acquire(timeout=self._writers_timeout()):
                raise OperationalError("database is locked")
            self.holds_writers = True
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]  # Not in the stubs.
        except BaseException:
            self._writers_release()
            raise

    def _commit(self) -> None:
        try:
            super()._commit()  # type: ignore[misc]  # Not in the stubs.
        finally:
            if not self._in_sqlite_transaction():
                self._writers_release()

    def _rollback(self) -> None:
        try:
            super()._rollback()  # type: ignore[misc]  # Not in the stubs.
        finally:
            self._writers_release()

    def _close(self) -> None:
        try:
            super()._close()  # type: ignore[misc]  # Not in the stubs.
        finally:
            self._writers_release()

    def _in_sqlite_transaction(self) -> bool:
        """True while SQLite still holds a transaction open (a COMMIT that failed)."""
        raw = self.connection
        return bool(raw is not None and raw.in_transaction)
