"""Drill: 50 Prime Directives submitted at the same instant, on the session's database.

Runs on whatever ``DATABASE_URL`` the session has (``.ci/run`` runs the drills on
SQLite and on PostgreSQL). Two web servers take the requests, so two processes insert
at once, while the workers start on the first runs.

Promise: no "database is locked" (nor a deadlock) in any log, nothing lost: 50 runs
accepted, 50 stored, 50 completed.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from django.db import connection

from pas_core.models import Run
from tests import procs
from tests.drills.common import figure, log_lines_matching, percentile, wait_for
from tests.e2e import stack

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DIRECTIVES = 50
LOCK_ERRORS = r"database is locked|deadlock detected|could not serialize|OperationalError"


def test_fifty_directives_at_once_are_all_stored_and_completed(tree, proc_env, api_token):
    env = proc_env()
    vendor = connection.vendor
    answers: list[tuple[int, str, float]] = []
    lock = threading.Lock()
    with stack(env, agents=4), procs.daphne_server(env) as web1, procs.daphne_server(env) as web2:
        barrier = threading.Barrier(DIRECTIVES, timeout=30)

        def submit(i: int) -> None:
            url = (web1 if i % 2 else web2).url
            headers = {"Authorization": f"Bearer {api_token}"}
            body = {"title": f"Contention {i}", "goal": "Implement the parser function in code"}
            with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
                barrier.wait()  # All 50 go at the same instant.
                t0 = time.monotonic()
                try:
                    r = http.post("/api/runs", json=body)
                    result = (r.status_code, r.json().get("run_id", ""), time.monotonic() - t0)
                except (httpx.HTTPError, ValueError) as exc:
                    result = (0, repr(exc), time.monotonic() - t0)
            with lock:
                answers.append(result)

        started = time.monotonic()
        threads = [threading.Thread(target=submit, args=(i,)) for i in range(DIRECTIVES)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        accepted = [run_id for status, run_id, _ in answers if status == 202]
        wait_for(
            lambda: (
                Run.objects.filter(title__startswith="Contention ")
                .filter(status__in=["completed", "failed"])
                .count()
                >= DIRECTIVES
            ),
            "every run to end",
            300,
            0.5,
        )
        elapsed = time.monotonic() - started

    stored = Run.objects.filter(title__startswith="Contention ").count()
    completed = Run.objects.filter(
        title__startswith="Contention ", status=Run.Status.COMPLETED
    ).count()
    locked = log_lines_matching(LOCK_ERRORS)
    latency = [t for status, _, t in answers if status == 202]
    figure(
        f"DRILL db-contention ({vendor}): {len(accepted)}/{DIRECTIVES} accepted, {stored} stored, "
        f"{completed}/{DIRECTIVES} completed, {len(locked)} lock errors in the logs, "
        f"submit p50 {percentile(latency, 0.5):.2f} s p95 {percentile(latency, 0.95):.2f} s, "
        f"{elapsed:.1f} s"
    )
    assert locked == [], "\n".join(locked[:20])
    # Nothing lost: every directive accepted, stored once, completed.
    assert len(accepted) == DIRECTIVES, answers
    assert len(set(accepted)) == DIRECTIVES
    assert stored == DIRECTIVES
    assert set(
        str(r)
        for r in Run.objects.filter(title__startswith="Contention ").values_list("pk", flat=True)
    ) == set(accepted)
    assert completed == DIRECTIVES
