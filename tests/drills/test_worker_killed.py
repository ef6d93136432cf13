"""Drill: the agents worker's pool processes are SIGKILLed every few seconds.

Promise: every run completes, every job's result is recorded exactly once, no attempt
is left running or queued. A killed attempt is caught (worker-lost at once, or TRON
when its beats stop) and re-sent as a new attempt.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from pas_core.models import Attempt, Event, Job, Run
from pas_core.services.submit import run_submit
from tests.drills.common import children, duplicates, figure, wait_for
from tests.e2e import short_timings, stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(420),
]

RUNS = 20
KILL_EVERY_S = 3.0
KILLS = 8
DEADLINE_S = 240.0


def test_every_run_completes_while_the_agents_worker_is_killed_every_few_seconds(tree, proc_env):
    short_timings()
    started = time.monotonic()
    killed = kills = 0
    env = proc_env(PAS_OFFLINE_DELAY_S="0.6")
    with stack(env, agents=4) as running:
        runs = [
            run_submit(title=f"Drill {i}", goal="Implement the parser function in code")
            for i in range(RUNS)
        ]
        ids = [r.run_id for r in runs]
        # Kill while work is in flight: every pool process of the agents worker at once.
        while kills < KILLS and time.monotonic() - started < DEADLINE_S:
            time.sleep(KILL_EVERY_S)
            if not Run.objects.filter(pk__in=ids).exclude(status__in=["completed", "failed"]):
                break
            victims = children(running["agents"].pid)
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
            kills += 1
        left = DEADLINE_S - (time.monotonic() - started)
        wait_for(
            lambda: (
                not Run.objects.filter(pk__in=ids)
                .exclude(status__in=["completed", "failed"])
                .exists()
            ),
            "every run to end",
            max(30.0, left),
            0.5,
        )
        assert running["agents"].alive, "the worker's main process must survive its children"
    elapsed = time.monotonic() - started

    completed = Run.objects.filter(pk__in=ids, status=Run.Status.COMPLETED).count()
    results = list(
        Event.objects.filter(
            event_type="job_completed", run_id__in=[str(i) for i in ids]
        ).values_list("job_id", flat=True)
    )
    succeeded = set(
        Job.objects.filter(run_id__in=ids, status=Job.Status.SUCCEEDED).values_list("pk", flat=True)
    )
    dup = duplicates(results)
    open_attempts = Attempt.objects.filter(
        job__run_id__in=ids, status__in=[Attempt.Status.RUNNING, Attempt.Status.QUEUED]
    ).count()
    lost = Attempt.objects.filter(
        job__run_id__in=ids, status__in=[Attempt.Status.ERRORED, Attempt.Status.TIMED_OUT]
    ).count()
    figure(
        f"DRILL worker-killed: {completed}/{RUNS} runs completed, {kills} kills "
        f"({killed} processes, {lost} attempts lost and re-sent), {dup} duplicate results, "
        f"{open_attempts} attempts left running or queued, {elapsed:.1f} s"
    )
    assert killed > 0, "the drill killed nothing: the work ended too soon"
    # Every run completes.
    assert completed == RUNS
    # Every job's result was recorded exactly once, and every succeeded job has one.
    assert dup == 0
    assert set(results) == succeeded
    assert not Job.objects.filter(run_id__in=ids).exclude(status=Job.Status.SUCCEEDED).exists()
    # No attempt is left running or queued.
    assert open_attempts == 0
