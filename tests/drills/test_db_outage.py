"""Drill: the database goes away for 10 s while 5 runs are in flight.

SQLite: the database file and its ``-wal`` are made immutable (``chattr +i``; root
writes through ``chmod``, not through that), so every write fails while reads go on:
a connection open before fails with "disk I/O error", one opened meanwhile is read-only
(and stays so for its life: the work must drop it). Not the ``-shm`` index: every
connection maps it, and touching a mapped immutable page kills the process (SIGBUS).
That is a drill artefact, not a database away: it kills any process that held a
connection open when the outage began and uses it again (the likely cause of the one
run in eleven whose work never resumed, when the drill still locked the index).
PostgreSQL: the drill's processes reach the server through a TCP relay
(``TcpForwarder``) that is cut: every connection closed, new ones refused; the shared
server itself is never touched.

Promise (DESIGN 5: a database outage is not an attempt failure): the work waits and
resumes. Every run completes within 15 s of the database's return, no restart is
counted and no ``hhmrs_timeout`` is caused by the outage, with the default HHMRS
settings (heartbeat 30 s, timeout 60 s, sweep 5 s). ``PAS_OUTAGE_HHMRS=short`` runs it
with heartbeat 1 s, timeout 3 s, sweep 1 s instead: an attempt that stops beating for
more than 3 s while it waits for the database is then caught; the figure says which.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection
from django.db.models import Sum

from pas_core.config import hhmrs_get
from pas_core.models import Attempt, Event, Job, Run
from pas_core.services.submit import run_submit
from tests.drills.common import (
    TcpForwarder,
    ended,
    figure,
    immutable,
    log_lines_matching,
    needs_root,
    wait_for,
)
from tests.e2e import short_timings, stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(420),
]

RUNS = 5
OUTAGE_S = 10.0
RECOVER_TARGET_S = 15.0
SHORT = {"heartbeat_interval_s": 1, "timeout_threshold_s": 3, "sweep_interval_s": 1}
DELAY_S = "1.2"  # PAS_OFFLINE_DELAY_S: each model step takes about this long.


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _via(url: str, port: int) -> str:
    """Return the PostgreSQL URL ``url`` with its host and port replaced by the relay's."""
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@127.0.0.1:{port}" if auth else f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@contextlib.contextmanager
def outage(relay: TcpForwarder | None) -> Iterator[str]:
    """Take the database away for the block; yield how."""
    if relay is not None:
        relay.cut()
        try:
            yield "relay cut"
        finally:
            relay.restore()
        return
    name = Path(connection.settings_dict["NAME"])
    files = [name, name.with_name(name.name + "-wal")]
    with immutable(files) as locked:
        yield f"chattr +i on {len(locked)} files"


def _aware(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def _submit(label: str) -> list[Any]:
    return [
        run_submit(title=f"{label} {i}", goal="Implement the parser function in code").run_id
        for i in range(RUNS)
    ]


def test_runs_wait_for_the_database_and_complete_after_it_returns(tree, proc_env):
    if not _postgres():
        needs_root("chattr +i on the SQLite files")
    short = os.environ.get("PAS_OUTAGE_HHMRS") == "short"
    cfg = short_timings(**SHORT) if short else hhmrs_get()
    env = proc_env(PAS_OFFLINE_DELAY_S=DELAY_S)
    relay = None
    with contextlib.ExitStack() as stack_:
        if _postgres():
            db = connection.settings_dict
            target = (db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432))
            relay = stack_.enter_context(TcpForwarder(target).running())
            env["DATABASE_URL"] = _via(env["DATABASE_URL"], relay.port)
        running = stack_.enter_context(stack(env, agents=8))

        # The same runs without an outage first: how long the work itself takes.
        started = time.monotonic()
        baseline = _submit("Baseline")
        wait_for(lambda: ended(baseline), "the baseline runs to end", 120, 0.3)
        baseline_s = time.monotonic() - started

        before = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
        ids = _submit("Outage")
        wait_for(
            lambda: Run.objects.filter(pk__in=ids, status=Run.Status.RUNNING).count() == RUNS,
            "every run to start",
            60,
            0.1,
        )
        time.sleep(1.0)  # Into the work: attempts running, some just about to write.
        in_flight = Attempt.objects.filter(
            job__run_id__in=ids, status__in=[Attempt.Status.RUNNING, Attempt.Status.QUEUED]
        ).count()
        with outage(relay) as how:
            down_at = time.monotonic()
            time.sleep(OUTAGE_S)
        back_at, back_wall = time.monotonic(), time.time()
        wait_for(lambda: ended(ids), "every run to end", 180, 0.2)
        recovered_s = time.monotonic() - back_at
        died = [name for name, proc in running.items() if not proc.alive]

    statuses = Counter(Run.objects.filter(pk__in=ids).values_list("status", flat=True))
    completed = statuses[Run.Status.COMPLETED]
    restarts = Job.objects.filter(run_id__in=ids).aggregate(n=Sum("restart_count"))["n"] or 0
    run_keys = [str(i) for i in ids]
    interventions = Event.objects.filter(id__gt=before, run_id__in=run_keys)
    timeouts = interventions.filter(event_type="hhmrs_timeout").count()
    restart_events = interventions.filter(event_type="hhmrs_restart").count()
    failed_attempts = Attempt.objects.filter(
        job__run_id__in=ids,
        status__in=[Attempt.Status.ERRORED, Attempt.Status.TIMED_OUT, Attempt.Status.KILLED],
    ).count()
    # How long each run waited after the return before its work moved again (its first
    # event afterwards): the backoffs of the work that waited.
    resumed = [
        (first.timestamp() - back_wall)
        for first in (
            Event.objects.filter(run_id=key, created_at__gte=_aware(back_wall))
            .order_by("id")
            .values_list("created_at", flat=True)
            .first()
            for key in run_keys
        )
        if first is not None
    ]
    felt = log_lines_matching(r"waits for the database|the database is away|no sweep")
    # A process of the stack that died (and was replaced, for the agents worker).
    lost = log_lines_matching(r"supervise: worker .* exited|Bus error|Fatal Python error")
    engine = "PostgreSQL" if _postgres() else "SQLite"
    figure(
        f"DRILL db-outage ({engine}, {how}): {completed}/{RUNS} runs completed "
        f"({dict(statuses)}), database "
        f"away {back_at - down_at:.1f} s with {in_flight} attempts in flight, all ended "
        f"{recovered_s:.1f} s after it returned (each run moved again within "
        f"{max(resumed, default=0):.1f} s; the same runs took {baseline_s:.1f} s "
        f"without an outage); {restarts} restarts counted, {timeouts} hhmrs_timeout, "
        f"{restart_events} hhmrs_restart, {failed_attempts} attempts failed; "
        f"{len(felt)} log lines of work waiting for the database; processes lost: "
        f"{len(lost) + len(died)}; HHMRS "
        f"{'short' if short else 'defaults'}: heartbeat {cfg.heartbeat_interval_s:g} s, "
        f"timeout {cfg.timeout_threshold_s:g} s, sweep {cfg.sweep_interval_s:g} s"
    )
    for run in Run.objects.filter(pk__in=ids).exclude(status=Run.Status.COMPLETED):
        print(f"run {run.run_id} {run.status}: {run.message} {run.stop_reason}")
        for job in Job.objects.filter(run=run).exclude(status=Job.Status.SUCCEEDED):
            print(f"  job {job.pk} {job.status} restarts={job.restart_count}: {job.error}")
    assert felt, "nothing waited for the database: the outage was not felt"
    assert not lost and not died, f"a process of the stack died: {lost} {died}"
    # Every run completes, within 15 s of the database's return.
    assert completed == RUNS
    assert recovered_s <= RECOVER_TARGET_S
    # The outage is not the agents' failure: nothing timed out, nothing was restarted.
    assert timeouts == 0
    assert restarts == 0
    assert restart_events == 0
