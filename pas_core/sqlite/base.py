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

A statement's conversion from Django's ``%s`` placeholders to SQLite's ``?`` (a regular
expression over the whole SQL text, at every execute) is remembered per SQL text.

Closed connections are kept for the process's next opening (up to ``POOL_MAX``), since
opening one costs about a millisecond of CPU (the driver, forty functions registered,
three PRAGMAs) and an agent step opens two (its work, then again after the model call:
no connection is held while a thread waits on its model). Only a connection that met no
database error and holds no transaction is kept; one that met an error is closed, and
every kept one with it (a database that failed may have changed under them: a
connection opened while the file was read-only stays read-only).
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

from django.db.backends.sqlite3 import base
from django.db.utils import OperationalError

DEFAULT_TIMEOUT_S = 5.0  # sqlite3's own default busy timeout.
_WRITERS = threading.Lock()  # Held from BEGIN to COMMIT / ROLLBACK by one thread.
POOL_MAX = 8  # Closed connections kept for reuse, per process.
_POOL: list[tuple[str, Any]] = []  # (database file, sqlite3 connection)
_POOL_LOCK = threading.Lock()
_generation = 0  # One more at every database error met by any connection of the process.


def _writers_reset() -> None:
    """A forked child (a prefork pool's) starts with the lock free: the thread that may
    have held it in the parent does not exist in the child. Nor does it reuse the
    parent's connections (SQLite's rule: none crosses a fork)."""
    global _WRITERS, _POOL
    _WRITERS = threading.Lock()
    _POOL = []


def pool_clear() -> None:
    """Close every kept connection, and keep none opened before now."""
    global _generation
    with _POOL_LOCK:
        _generation += 1
        kept = list(_POOL)
        _POOL.clear()
    for _, raw in kept:
        with contextlib.suppress(Exception):
            raw.close()


os.register_at_fork(after_in_child=_writers_reset)

QMARK_MAX = 512  # SQL texts whose qmark form is remembered (then forgotten all at once).
_QMARK: dict[str, str] = {}


class CursorWrapper(base.SQLiteCursorWrapper):
    """Django's SQLite cursor, converting each SQL text to qmark style once."""

    def convert_query(self, query: str, *, param_names: list[str] | None = None) -> str:
        if param_names is not None:
            return str(super().convert_query(query, param_names=param_names))  # type: ignore[misc]  # Not in the stubs.
        converted = _QMARK.get(query)
        if converted is None:
            converted = str(super().convert_query(query))  # type: ignore[misc]  # Not in the stubs.
            if len(_QMARK) >= QMARK_MAX:
                _QMARK.clear()
            _QMARK[query] = converted
        return converted


class DatabaseWrapper(base.DatabaseWrapper):
    """SQLite's wrapper; a transaction holds the process's writer lock while it lasts."""

    holds_writers = False
    _tainted = False  # This connection met a database error.
    _opened_in = 0  # The generation it was opened in.

    @property  # type: ignore[override]
    def errors_occurred(self) -> bool:
        return bool(self.__dict__.get("_errors_occurred", False))

    @errors_occurred.setter
    def errors_occurred(self, value: bool) -> None:
        # Django sets it on any database error but an integrity or data error, and
        # clears it when it finds the connection usable (SQLite's always is): the
        # taint stays until the connection is closed.
        self.__dict__["_errors_occurred"] = value
        if value:
            self._tainted = True

    def create_cursor(self, name: str | None = None) -> Any:
        return self.connection.cursor(factory=CursorWrapper)

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        name = str(conn_params.get("database"))
        self._tainted = False
        with _POOL_LOCK:  # Everything kept is of this generation (``pool_clear``).
            self._opened_in = _generation
            for i, (kept, raw) in enumerate(_POOL):
                if kept == name:
                    del _POOL[i]
                    return raw
        return super().get_new_connection(conn_params)

    def _keep(self) -> bool:
        """Keep the connection being closed for the next opening, if it is fit to: it
        met no error, holds no transaction, and no connection of the process met an
        error since it was opened."""
        raw = self.connection
        if raw is None or self.is_in_memory_db() or self._tainted:
            return False
        if self.in_atomic_block or raw.in_transaction:
            return False
        with _POOL_LOCK:
            if len(_POOL) >= POOL_MAX or self._opened_in != _generation:
                return False
            _POOL.append((str(self.settings_dict["NAME"]), raw))
        return True

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
            if self._tainted:
                pool_clear()
            if not self._keep():
                super()._close()  # type: ignore[misc]  # Not in the stubs.
        finally:
            self._writers_release()

    def _in_sqlite_transaction(self) -> bool:
        """True while SQLite still holds a transaction open (a COMMIT that failed)."""
        raw = self.connection
        return bool(raw is not None and raw.in_transaction)
