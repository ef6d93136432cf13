"""Drill: two beat processes at once (twice the TRON sweeps) while agents hang.

Promise: each timeout is handled exactly once: one ``hhmrs_timeout`` per timed-out
attempt, one new attempt per restart, every injected hang detected, every run ends.
``PAS_BEATS_SECONDS`` (default 60) sets how long runs with hangs keep coming.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import Counter

import pytest

from pas_core.models import Attempt, Event, Job, Run
from pas_core.services.faults import fault_inject
from pas_core.services.submit import run_submit
from tests import procs
from tests.drills.common import duplicates, figure, proc_logs, wait_for
from tests.e2e import short_timings, stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(420),
]

SUBMIT_EVERY_S = 6.0
HANGERS = ["Dir-Code", "Mgr-Code-01", "Architect"]


def test_two_beats_handle_each_timeout_exactly_once(tree, proc_env, tmp_path):
    seconds = float(os.environ.get("PAS_BEATS_SECONDS") or 60)
    short_timings(max_restarts=3, max_llm_retries=3)
    env = proc_env()
    ids = []
    with contextlib.ExitStack() as stack_:
        running = stack_.enter_context(stack(env, agents=4))
        # The second beat: its own log directory (its readiness is read from its log).
        stack_.enter_context(procs.celery_beat(env, log_dir=tmp_path / "beat-2"))
        # A second hhmrs pool process, so two sweeps can really run at the same time.
        stack_.enter_context(procs.celery_worker(env, queues="hhmrs", name="hhmrs2", concurrency=2))
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < seconds:
            fault_inject(HANGERS[i % len(HANGERS)], "hang", count=2)
            ids.append(run_submit(title=f"Hang {i}", goal="Implement the parser in code").run_id)
            i += 1
            time.sleep(SUBMIT_EVERY_S)
        wait_for(
            lambda: (
                not Run.objects.filter(pk__in=ids)
                .exclude(status__in=["completed", "failed"])
                .exists()
            ),
            "every run to end",
            180,
            0.5,
        )
        assert running["beat"].alive
    elapsed = time.monotonic() - started

    timed_out = set(
        Attempt.objects.filter(job__run_id__in=ids, status=Attempt.Status.TIMED_OUT).values_list(
            "job_id", "number"
        )
    )
    run_keys = [str(r) for r in ids]
    timeouts = [
        (e.job_id, e.data.get("attempt"))
        for e in Event.objects.filter(event_type="hhmrs_timeout", run_id__in=run_keys)
    ]
    job_ids = list(Job.objects.filter(run_id__in=ids).values_list("pk", flat=True))
    hangs = Event.objects.filter(
        event_type="fault_triggered", data__kind="hang", job_id__in=job_ids
    ).count()
    restarts = Counter(
        Event.objects.filter(event_type="hhmrs_restart", run_id__in=run_keys).values_list(
            "job_id", flat=True
        )
    )
    # A job is sent once, once more to aggregate if it delegated, and once per restart.
    mismatched = [
        job.pk
        for job in Job.objects.filter(run_id__in=ids)
        if job.attempts.count() != 1 + job.children.exists() + restarts.get(job.pk, 0)
    ]
    completed = Run.objects.filter(pk__in=ids, status=Run.Status.COMPLETED).count()
    sweeps = sum(
        len(re.findall(r"Task pas_core\.tasks\.tron_sweep\[[^]]+\] received", text))
        for name, text in proc_logs().items()
        if "hhmrs" in name
    )
    figure(
        f"DRILL two-beats: {len(timed_out)} timeouts, {len(timeouts)} hhmrs_timeout events "
        f"({duplicates(timeouts)} twice), {hangs} hangs injected, {sum(restarts.values())} "
        f"restarts, {len(mismatched)} jobs with extra attempts, "
        f"{completed}/{len(ids)} runs completed, {sweeps} sweeps by 2 beats, {elapsed:.1f} s"
    )
    assert timed_out, "no attempt timed out: the hangs did not happen"
    # One hhmrs_timeout per timed-out attempt, never two.
    assert duplicates(timeouts) == 0
    assert set(timeouts) == timed_out
    # Every injected hang was detected.
    assert hangs == len(timed_out)
    # One new attempt per restart (a restart or a model switch re-sends the job once).
    assert mismatched == []
    assert completed == len(ids)
