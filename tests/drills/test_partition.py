"""Drill: a worker host is cut off from Redis and PostgreSQL for 20 s, then comes back.

The second "host" is a network namespace joined to this one by a veth pair
(10.200.<n>.1 here, .2 there). Redis and PostgreSQL listen on 127.0.0.1, so small TCP
forwarders on the host side of the veth carry the namespace's connections to them.
An agents worker (under its supervisor, as the Procfile runs it) works inside the
namespace, another one on the host; TRON (the hhmrs worker) and beat run on the host.
The drill takes the host side of the link down (``ip link set ... down``: packets
are dropped, nothing is refused) while the namespace's worker runs attempts, and
brings it up 20 s later.

Promise: the cut-off worker's attempts are timed out (TRON waits
``PAS_WORKER_GRACE_S`` for a supervisor that cannot report, here 5 s instead of 20 so
that the cut outlasts it), re-sent and finished by the other worker; when the host
comes back its late results are discarded (its attempt rows say timed_out or
killed); each job's result is recorded once and every run completes.

PostgreSQL only: the namespace cannot share a SQLite file honestly (skipped with the
reason on SQLite). Namespace, veth pair and forwarders are removed in ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection

from pas_core.models import Attempt, Event, Job, Run
from pas_core.services.submit import run_submit
from pas_core.stores import heartbeats, workers
from tests import procs
from tests.drills.common import (
    NetNs,
    TcpForwarder,
    duplicates,
    ended,
    figure,
    needs_root,
    run_cmd,
    wait_for,
)
from tests.e2e import short_timings

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(420),
]

RUNS = 6
CUT_S = 20.0
GRACE_S = "5"  # PAS_WORKER_GRACE_S for TRON (default 20 s: as long as the cut).
FAR_DELAY_S = "8"  # The namespace's model steps take this long: still at work when cut.
NEAR_DELAY_S = "0.5"
DONE = re.compile(r"attempt_execute\[([0-9a-f-]+)\] succeeded in [0-9.]+s: '([a-z:_-]+)'")


def _via(url: str, host: str, port: int) -> str:
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@{host}:{port}" if auth else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _worker_of(name: str) -> str | None:
    for wid, info in workers.workers_alive().items():
        if info.get("name", "").startswith(name + "@"):
            return wid
    return None


def _running_held(wid: str) -> list[int]:
    held = list(workers.held_get(wid))
    return list(
        Attempt.objects.filter(pk__in=held, status=Attempt.Status.RUNNING).values_list(
            "pk", flat=True
        )
    )


def test_a_cut_off_worker_host_is_replaced_and_its_late_results_are_discarded(tree, proc_env):
    if connection.vendor != "postgresql":
        pytest.skip(
            "the partition drill needs PostgreSQL (DATABASE_URL): a worker host in its own "
            "network namespace cannot share a SQLite file honestly"
        )
    needs_root("ip netns, a veth pair")
    short_timings()
    db = connection.settings_dict
    pg = (db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432))
    # This session's own Redis database (the harness's), reached over the veth.
    redis_url = urlsplit(settings.REDIS_URL)
    redis = (redis_url.hostname or "127.0.0.1", redis_url.port or 6379)
    ns = NetNs(20 + os.getpid() % 200)
    outcomes: dict[str, str] = {}
    try:
        ns.create()
        with contextlib.ExitStack() as stack_:
            to_redis = stack_.enter_context(TcpForwarder(redis, listen_host=ns.host_ip).running())
            to_pg = stack_.enter_context(TcpForwarder(pg, listen_host=ns.host_ip).running())
            near = proc_env(PAS_WORKER_GRACE_S=GRACE_S, PAS_OFFLINE_DELAY_S=NEAR_DELAY_S)
            far = dict(
                near,
                REDIS_URL=_via(settings.REDIS_URL, ns.host_ip, to_redis.port),
                DATABASE_URL=_via(near["DATABASE_URL"], ns.host_ip, to_pg.port),
                PAS_OFFLINE_DELAY_S=FAR_DELAY_S,
            )
            remote = procs.celery_worker(
                far, queues="agents", name="far", concurrency=8, pool="threads", supervised=True
            )
            remote.argv = ns.argv(remote.argv)
            stack_.enter_context(remote)
            for proc in (
                procs.celery_worker(near, queues="hhmrs", name="hhmrs", concurrency=1),
                procs.celery_beat(near),
            ):
                stack_.enter_context(proc)
            far_wid = wait_for(lambda: _worker_of("far"), "the far worker's first tick", 30)
            ids = [
                run_submit(title=f"Partition {i}", goal="Implement the parser function in code")
                for i in range(RUNS)
            ]
            ids = [r.run_id for r in ids]
            # The host's own worker joins once the far one holds work (both consume).
            cut_off = wait_for(lambda: _running_held(far_wid), "the far worker to work", 60, 0.1)
            stack_.enter_context(
                procs.celery_worker(
                    near,
                    queues="agents",
                    name="near",
                    concurrency=8,
                    pool="threads",
                    supervised=True,
                )
            )
            near_wid = wait_for(lambda: _worker_of("near"), "the near worker's first tick", 30)
            cut_off = _running_held(far_wid)
            task_of = dict(
                Attempt.objects.filter(pk__in=cut_off).values_list("celery_task_id", "pk")
            )
            ns.cut()
            cut_at = time.monotonic()
            try:
                time.sleep(CUT_S)
            finally:
                ns.restore()
            back_at = time.monotonic()
            wait_for(lambda: ended(ids), "every run to end", 180, 0.3)
            done_s = time.monotonic() - back_at

            def late_results() -> bool:
                outcomes.update(
                    (task, result)
                    for task, result in DONE.findall(remote.log_text(tail=10**7))
                    if task in task_of
                )
                return len(outcomes) == len(task_of)

            # The far worker's own ends of the cut-off attempts, once it hears again.
            with contextlib.suppress(AssertionError):
                wait_for(late_results, "the far worker's late results", 90, 0.5)
            resent_by = {
                a.pk: heartbeats.hb_details(a.pk).get("worker", "")
                for a in Attempt.objects.filter(
                    job__in=Attempt.objects.filter(pk__in=cut_off).values("job"),
                    number__gt=1,
                )
            }
    finally:
        ns.delete()  # Also after a failure: the namespace and the veth pair go.
    assert ns.name not in _namespaces()

    attempts = {a.pk: a for a in Attempt.objects.filter(pk__in=cut_off)}
    statuses = sorted(a.status for a in attempts.values())
    fenced = [a for a in attempts.values() if a.status in ("timed_out", "killed")]
    jobs = Job.objects.filter(run_id__in=ids)
    completed_events = list(
        Event.objects.filter(
            event_type="job_completed", run_id__in=[str(i) for i in ids]
        ).values_list("job_id", flat=True)
    )
    jobs_of_cut = {a.job_id for a in attempts.values()}
    redone_near = sum(
        1
        for job in Job.objects.filter(pk__in=jobs_of_cut).select_related("current_attempt")
        if job.status == Job.Status.SUCCEEDED
        and job.current_attempt is not None
        and resent_by.get(job.current_attempt.pk, "") == near_wid
    )
    timed_out = Event.objects.filter(event_type="hhmrs_timeout", job_id__in=jobs_of_cut).count()
    completed = Run.objects.filter(pk__in=ids, status=Run.Status.COMPLETED).count()
    late = sorted(outcomes.values())
    figure(
        f"DRILL partition: far worker cut off {back_at - cut_at:.1f} s holding "
        f"{len(cut_off)} running attempts; they ended {statuses} ({timed_out} hhmrs_timeout, "
        f"PAS_WORKER_GRACE_S={GRACE_S}), {redone_near}/{len(jobs_of_cut)} of their jobs "
        f"finished by the near worker; the far worker's late results: {late} "
        f"({len(task_of) - len(outcomes)} not seen); {duplicates(completed_events)} duplicate "
        f"job results ({len(completed_events)} recorded for {jobs.count()} jobs); "
        f"{completed}/{RUNS} runs completed, all ended {done_s:.1f} s after the link returned"
    )
    assert cut_off, "the far worker held no running attempt at the cut"
    # The cut-off attempts were timed out (or killed), never succeeded ...
    assert len(fenced) == len(attempts)
    # ... their jobs were finished by the other worker ...
    assert redone_near == len(jobs_of_cut)
    # ... and the far worker's late results were discarded (fenced off, or killed).
    assert all(r in ("discarded", "killed", "not-queued", "stale") for r in late), late
    # Each job's result is recorded once; every run completed.
    assert duplicates(completed_events) == 0
    assert set(completed_events) == set(
        jobs.filter(status=Job.Status.SUCCEEDED).values_list("pk", flat=True)
    )
    assert completed == RUNS


def _namespaces() -> list[str]:
    out = run_cmd("ip", "netns", "list", check=False)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]
