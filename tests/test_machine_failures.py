"""The machine failing is not the agents failing: the database away, the disk full.

In-process: the task bodies are called directly, the failures made with monkeypatch.
The drills (tests/drills) make the same failures with real processes.
"""

from __future__ import annotations

import errno
import json
from typing import Any

import pytest
from celery.exceptions import Retry
from django.db import OperationalError

from pas_core import tasks
from pas_core.models import Attempt, Job, Run
from pas_core.runtime import worker
from pas_core.services import jobs
from pas_core.services.submit import job_submit
from pas_core.stores import comms

pytestmark = pytest.mark.django_db(transaction=True)

CARD = {"task": "Write the guide", "lane": "Docs", "files": ["docs/guide.md"]}


def _queued(agent: str = "Prog-GPT-001") -> Attempt:
    job = job_submit(agent, dict(CARD))
    return Attempt.objects.get(job=job)


def test_a_finished_step_waits_for_the_database_and_is_written_when_it_is_back(
    tree: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempt = _queued()
    failures = iter([OperationalError("database is locked"), OperationalError("gone")])
    real = jobs.attempt_finish
    beats: list[str] = []

    def finish(*args: Any, **kwargs: Any) -> bool:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real(*args, **kwargs)

    monkeypatch.setattr(worker, "attempt_finish", finish)
    real_beat = worker.Beater.__call__

    def beat(self: Any, progress: float = 0.0, message: str = "") -> None:
        beats.append(message)
        real_beat(self, progress, message)

    monkeypatch.setattr(worker.Beater, "__call__", beat)

    assert worker.attempt_execute(attempt.pk) == "done"

    attempt.refresh_from_db()
    assert attempt.status == "succeeded" and attempt.error_kind == ""
    job = Job.objects.get(pk=attempt.job_id)
    # The result the step produced during the outage was kept and written, not lost,
    # and nothing was counted against the agent.
    assert job.status == "succeeded" and job.result["state"] == "completed"
    assert job.restart_count == 0
    assert beats.count("waiting for the database") == 2  # It beat while it waited.


def test_waiting_for_the_database_beats_at_least_every_half_heartbeat_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """However short the heartbeat timeout, TRON never takes the wait for a hang; and
    the database is asked again at least every DB_WAIT_MAX_S once it is back."""
    waits: list[float] = []
    beats: list[str] = []
    monkeypatch.setattr(worker.inflight, "wait", waits.append)

    class Beat:
        interval_s = 0.2

        def __call__(self, progress: float, message: str) -> None:
            beats.append(message)

    failures = iter([OperationalError("away")] * 5)

    def fn() -> str:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return "written"

    assert worker.until_db(fn, Beat()) == "written"  # type: ignore[arg-type]
    assert max(waits) <= 0.1 + 1e-9  # Half the interval: a beat between each slice.
    assert len(beats) == len(waits) and set(beats) == {"waiting for the database"}
    # 0.25, 0.5, 1, 2, 2 s: capped, so work moves on within 2 s of the database's return.
    assert sum(waits) == pytest.approx(5.75, abs=0.01)


def test_an_attempt_that_cannot_start_for_the_database_comes_back_later(
    tree: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempt = _queued()

    def away(*args: Any, **kwargs: Any) -> str:
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(worker, "attempt_execute", away)

    with pytest.raises(Retry):  # The message is sent again; this one is acked.
        tasks.attempt_execute.run(attempt.pk)
    attempt.refresh_from_db()
    assert attempt.status == "queued"  # Untouched: it starts when the database is back.


def test_the_api_answers_503_json_when_the_database_is_away(
    client: Any, tree: Any, api_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pas_core.api import runs

    def away(**kwargs: Any) -> Run:
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(runs, "run_submit", away)

    response = client.post(
        "/api/runs",
        json.dumps({"title": "T", "goal": "G"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_token}",
    )

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response.json()["errors"] == [{"field": "database", "message": "unavailable"}]


def _full(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device", "artifacts/logs/x.txt")


def test_a_run_is_accepted_with_a_warning_when_its_comms_line_cannot_be_written(
    client: Any, tree: Any, api_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(comms, "_append_whole", _full)

    response = client.post(
        "/api/runs",
        json.dumps({"title": "Full disk", "goal": "Write the guide"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_token}",
    )

    # Stored: 202, so a retrying client never makes a duplicate; the failure is said.
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    (warning,) = body["warnings"]
    assert warning.startswith("comms file: No space left on device (") and "pas_comms_" in warning
    assert Run.objects.filter(title="Full disk").count() == 1


def test_a_settings_save_that_cannot_export_says_so(
    client: Any, tree: Any, api_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pas_core import config

    monkeypatch.setattr(config, "settings_export", _full)

    response = client.post(
        "/api/settings/hhmrs",
        json.dumps({"max_restarts": 5}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_token}",
    )

    assert response.status_code == 200
    assert response.json()["max_restarts"] == 5  # Saved.
    assert response.json()["warnings"][0].startswith("settings file: No space left on device")
    assert config.hhmrs_get().max_restarts == 5


def test_a_full_disk_fails_the_attempt_as_storage_without_climbing_the_ladder(
    tree: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pas_core.runtime.roles import programmer

    attempt = _queued()
    monkeypatch.setattr(programmer, "write_atomic", _full)

    assert worker.attempt_execute(attempt.pk) == "failed:storage"
    attempt.refresh_from_db()
    assert attempt.error_kind == "storage"
    assert "No space left on device" in attempt.error
    # The failure handler runs on the hhmrs queue; here, directly.
    tasks.attempt_failure_handle.run(attempt.pk)
    job = Job.objects.get(pk=attempt.job_id)
    assert (job.status, job.retryable, job.restart_count) == ("failed", True, 0)
    assert "No space left on device" in job.error
    assert Run.objects.get(pk=job.run_id).message.startswith("Disk: the disk is full")


def test_an_attempt_runs_when_the_worker_registry_does_not_answer(
    tree: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis timing out on the registry must not strand the attempt (acked, never run)."""
    import redis

    attempt = _queued()

    def frozen(*args: Any, **kwargs: Any) -> None:
        raise redis.exceptions.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(worker.workers, "held_add", frozen)
    monkeypatch.setattr(worker.workers, "held_remove", frozen)
    assert worker.attempt_execute(attempt.pk) == "done"
    attempt.refresh_from_db()
    assert attempt.status == "succeeded"


def test_a_hold_whose_release_was_lost_stops_accounting_for_its_attempt() -> None:
    """A hold left behind (Redis frozen as the task ended) lets TRON re-send in time."""
    import time

    from pas_core.stores import workers

    wid, now = "frozen-host:4242", time.time()
    workers.worker_tick(wid, name="agents@frozen-host", queues=["agents"], now=now)
    try:
        workers.held_add(wid, 9101, 0, now=now - workers.HELD_FRESH_S - 1)
        workers.held_add(wid, 9102, 0, now=now - 5)
        held = workers.held_by_live(now)
        assert 9102 in held and 9101 not in held
        assert workers.held_get(wid) == {9101: 0, 9102: 0}  # Kill still finds both.
    finally:
        workers.worker_forget(wid)


def _sqlite_writes(files: list[str], *, reconnect: bool) -> tuple[str, str]:
    """In one long-lived thread (a pool thread of the agents worker): connect while the
    SQLite files cannot be written, fail a write, optionally run the task-retry hook,
    give the files back, write again. Return both outcomes."""
    import os
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    from django.db import DatabaseError, connection

    from pas_core.sqlite import base as sqlite_base

    def write() -> str:
        try:
            with connection.cursor() as cursor:
                cursor.execute("UPDATE django_migrations SET app = app")
            return "written"
        except DatabaseError as exc:
            return str(exc)

    def during() -> str:
        connection.close()
        sqlite_base.pool_clear()  # Opened now, while the files cannot be written.
        outcome = write()
        if reconnect:
            tasks._retrying(reason=OperationalError(outcome))  # What Celery's retry signals.
        return outcome

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(connection.ensure_connection).result()  # The write-ahead log exists.
        present = [f for f in files if os.path.exists(f)]
        try:
            subprocess.run(["chattr", "+i", *present], check=True)
            first = pool.submit(during).result()
        finally:
            subprocess.run(["chattr", "-i", *present], check=True)
        second = pool.submit(write).result()
        pool.submit(lambda: connection.close()).result()
    return first, second


def test_a_connection_opened_while_sqlite_could_not_be_written_is_dropped_after_the_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SQLite opens a file it cannot write read-only, and the connection stays read-only
    for its life, though the file is writable again: the thread that met the error must
    drop it (the task-retry hook does), or every task it runs later fails. Nor may the
    process keep it, or any connection opened before the error, for reuse."""
    import os
    import shutil

    from django.db import connection

    from pas_core.sqlite import base as sqlite_base

    if connection.vendor != "sqlite" or os.geteuid() != 0 or not shutil.which("chattr"):
        pytest.skip("needs the SQLite backend, root and chattr")
    name = str(connection.settings_dict["NAME"])
    # The database and its write-ahead log; not the shared-memory index, which every
    # connection maps: writing a mapped immutable page is SIGBUS, not an error.
    files = [f for f in (name, name + "-wal") if os.path.exists(f)]
    if not files or "memory" in name:
        pytest.skip("the test database is not a file")

    sqlite_base.pool_clear()
    with monkeypatch.context() as patch:
        patch.setattr(sqlite_base, "POOL_MAX", 0)  # Every connection opened anew.
        failed, after = _sqlite_writes(files, reconnect=False)
    assert "readonly" in failed
    assert "readonly" in after  # The mechanism: without reconnecting, never again.

    for _ in range(2):  # With the process's kept connections (the second time: warm).
        failed, after = _sqlite_writes(files, reconnect=True)
        assert "readonly" in failed
        assert after == "written"


def test_closed_sqlite_connections_are_reused_unless_a_database_error_was_met() -> None:
    """A closed connection is kept for the next opening (an agent step opens two); one
    that met a database error is closed, and so is every connection kept before it."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import DatabaseError, connection

    from pas_core.sqlite import base as sqlite_base

    if connection.vendor != "sqlite":
        pytest.skip("the SQLite backend's kept connections")

    def opened() -> Any:
        connection.ensure_connection()
        raw = connection.connection
        connection.close()
        return raw

    sqlite_base.pool_clear()
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(opened).result()
    with ThreadPoolExecutor(max_workers=1) as pool:  # Another thread takes it up.
        assert pool.submit(opened).result() is first

    def fails() -> Any:
        connection.ensure_connection()
        raw = connection.connection
        with pytest.raises(DatabaseError), connection.cursor() as cursor:
            cursor.execute("SELECT no_such_column FROM django_migrations")
        connection.errors_occurred = False  # As Django does when it finds SQLite usable.
        connection.close()
        return raw

    with ThreadPoolExecutor(max_workers=2) as pool:
        kept = pool.submit(opened).result()  # Back in the pool before the error.
        failed = pool.submit(fails).result()
        again = pool.submit(opened).result()
    assert again is not failed and again is not kept
    with pytest.raises(Exception, match="closed"):
        failed.execute("SELECT 1")  # Closed for real, not kept.
    with pytest.raises(Exception, match="closed"):
        kept.execute("SELECT 1")


def test_the_threads_of_a_process_queue_for_sqlite_on_a_lock_not_in_the_busy_handler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second thread's transaction waits for the first on the process's writer lock
    and starts once it commits; a rollback lets go too; a wait longer than the
    connection's timeout fails as SQLite would ("database is locked").

    SQLite's own busy timeout is 0 here: a second writer that reached SQLite while the
    first held the database would fail at once. Only the lock can make it wait."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection, transaction

    from pas_core.sqlite import base as sqlite_base

    if connection.vendor != "sqlite":
        pytest.skip("the SQLite backend's lock")
    # The threads open their own connections from these settings (the same dict), and
    # keep none for later (they would keep the timeout).
    sqlite_base.pool_clear()
    monkeypatch.setattr(sqlite_base, "POOL_MAX", 0)
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "timeout", 0)
    monkeypatch.setattr(sqlite_base.DatabaseWrapper, "_writers_timeout", lambda self: 5.0)
    holding = threading.Event()
    order: list[str] = []

    def first() -> None:
        with transaction.atomic():
            Run.objects.update(message="first")
            holding.set()
            time.sleep(0.3)
            order.append("first commits")
        connection.close()

    def second() -> None:
        assert holding.wait(5)
        with transaction.atomic():  # Waits here for first's commit, not in SQLite.
            Run.objects.update(message="second")
            order.append("second writes")
        connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(first), pool.submit(second)]:
            future.result()
    assert order == ["first commits", "second writes"]

    def rolled_back() -> None:
        with pytest.raises(ZeroDivisionError), transaction.atomic():
            Run.objects.update(message="never")
            _ = 1 / 0
        connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(rolled_back).result()
    assert sqlite_base._WRITERS.acquire(timeout=1)  # Let go after the rollback.
    try:

        def waits_too_long() -> str:
            try:
                with transaction.atomic():
                    return "began"
            except OperationalError as exc:
                return str(exc)
            finally:
                connection.close()

        monkeypatch.setattr(sqlite_base.DatabaseWrapper, "_writers_timeout", lambda self: 0.2)
        with ThreadPoolExecutor(max_workers=1) as pool:
            assert pool.submit(waits_too_long).result() == "database is locked"
    finally:
        sqlite_base._WRITERS.release()
