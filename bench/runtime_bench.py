"""Runtime benchmark: Prime Directives through the whole tree on the offline planner.

Run: ``.venv/bin/python bench/runtime_bench.py`` (or ``make bench``). Needs a Redis server
(``REDIS_URL``, default redis://127.0.0.1:6379/0); everything else is throwaway: a SQLite
database under a temp dir, a Redis database of its own with a key prefix, and the
processes the Procfile runs (agents worker ``-c 2``, hhmrs worker ``-c 1``, beat).

Figures:

1. per agent step, measured in this process (directives run attempt by attempt): the
   time inside the step function and the runtime's overhead around it (fencing, status
   rows, events, comms, Redis, dispatching the children);
2. wall time of one directive through all five lanes, real workers (target < 3 s);
3. N directives (all five lanes each) submitted at once: directives completed per
   minute, agent steps per second sustained (succeeded attempts / elapsed; target
   >= 20), and per step the queue latency (created -> started) and the run time in the
   worker (started -> finished).

``--quick`` submits fewer directives; ``-n N`` sets how many.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _util import Sandbox, percentile, record, results_table  # noqa: E402

FIVE_LANES = {
    "title": "Ship the recommender",
    "goal": (
        "Implement the API code with tests, train the ranking model, build the dataset "
        "ETL, deploy it with CI and docker security checks, and write the docs"
    ),
}
TIME_LIMIT_S = 300  # Every wait is bounded: a stuck run fails the bench, never hangs it.


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def wait_runs(run_ids: list[Any], timeout: float = TIME_LIMIT_S) -> float:
    """Wait until every run has ended; return the monotonic time it happened."""
    from pas_core.models import Run

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ended = Run.objects.filter(
            pk__in=run_ids, status__in=[Run.Status.COMPLETED, Run.Status.FAILED]
        ).count()
        if ended == len(run_ids):
            return time.monotonic()
        time.sleep(0.02)
    raise SystemExit(f"runs still open after {timeout:.0f} s: see the logs under procs/")


def check_completed(run_ids: list[Any]) -> None:
    from pas_core.models import Run

    bad = Run.objects.filter(pk__in=run_ids).exclude(status=Run.Status.COMPLETED)
    for run in bad:
        print(f"  run {run.run_id} {run.status}: {run.message}")
    if bad:
        raise SystemExit("a benchmark run did not complete")


def step_stats(run_ids: list[Any]) -> tuple[list[float], list[float]]:
    """Return (queue latency, run time) in seconds of every succeeded attempt of the runs."""
    from pas_core.models import Attempt

    rows = Attempt.objects.filter(
        job__run_id__in=run_ids, status=Attempt.Status.SUCCEEDED
    ).values_list("created_at", "started_at", "finished_at")
    queued = [(s - c).total_seconds() for c, s, _ in rows]
    ran = [(f - s).total_seconds() for _, s, f in rows]
    return queued, ran


# -- 2 and 3: real workers ---------------------------------------------------------


def bench_workers(box: Sandbox, n: int, singles: int) -> None:
    import os

    from pas_core.llm.offline import lane_matches
    from pas_core.models import Run
    from pas_core.services.submit import run_submit
    from tests import procs

    lanes = list(lane_matches(FIVE_LANES["title"] + " " + FIVE_LANES["goal"]))
    assert len(lanes) == 5, lanes
    env = dict(os.environ)
    logs = box.tmp / "procs"
    print(f"\n[2] one directive through all five lanes ({', '.join(lanes)}), real workers")
    with (
        procs.celery_worker(env, queues="agents", name="agents", concurrency=2, log_dir=logs),
        procs.celery_worker(env, queues="hhmrs", name="hhmrs", concurrency=1, log_dir=logs),
        procs.celery_beat(env, log_dir=logs),
    ):
        # Warm up: the first task in each worker child imports the step modules.
        warm = run_submit(**FIVE_LANES)
        wait_runs([warm.run_id])
        walls = []
        for _ in range(singles):
            started = time.monotonic()
            run = run_submit(**FIVE_LANES)
            walls.append(wait_runs([run.run_id]) - started)
            check_completed([run.run_id])
        steps = len(step_stats([run.run_id])[0])
        record(
            f"wall time, 1 directive, 5 lanes ({steps} agent steps; median of {singles})",
            f"{statistics.median(walls):.2f} s (best {min(walls):.2f} s)",
            "< 3 s",
            statistics.median(walls) < 3,
        )

        print(f"\n[3] {n} directives submitted at once, all five lanes each")
        started = time.monotonic()
        ids = [run_submit(**FIVE_LANES).run_id for _ in range(n)]
        elapsed = wait_runs(ids) - started
        check_completed(ids)
        queued, ran = step_stats(ids)
        record(
            f"directives completed per minute ({n} at once, {elapsed:.1f} s)",
            f"{n / elapsed * 60:.1f}",
        )
        record(
            f"agent steps per second sustained ({len(ran)} steps)",
            f"{len(ran) / elapsed:.1f}",
            ">= 20",
            len(ran) / elapsed >= 20,
        )
        record(
            "  queue latency per step, created -> started (p50 / p95)",
            f"{ms(percentile(queued, 50))} / {ms(percentile(queued, 95))}",
        )
        record(
            "  run time per step, started -> finished (p50 / p95)",
            f"{ms(percentile(ran, 50))} / {ms(percentile(ran, 95))}",
        )
        assert Run.objects.filter(pk__in=ids, status=Run.Status.COMPLETED).count() == n


# -- 1: inside one process ---------------------------------------------------------


def bench_overhead(box: Sandbox, directives: int) -> None:
    """Run directives here, attempt by attempt; time the step apart from the runtime."""
    from pas_core.models import Attempt
    from pas_core.runtime import worker as execute
    from pas_core.services.submit import run_submit

    print(f"\n[1] per-step overhead, {directives} directive(s) run in this process")
    inside: list[float] = []
    total: list[float] = []
    step = execute._run_step

    def timed_step(attempt: Any, beat: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return step(attempt, beat)
        finally:
            inside.append(time.perf_counter() - t0)

    execute._run_step = timed_step  # type: ignore[assignment]
    try:
        ids = []
        for _ in range(directives):
            run = run_submit(**FIVE_LANES)
            ids.append(run.run_id)
            while queued := list(
                Attempt.objects.filter(
                    job__run_id=run.run_id, status=Attempt.Status.QUEUED
                ).values_list("pk", flat=True)
            ):
                for pk in queued:
                    t0 = time.perf_counter()
                    assert execute.attempt_execute(pk) == "done"
                    total.append(time.perf_counter() - t0)
        check_completed(ids)
    finally:
        execute._run_step = step  # type: ignore[assignment]
    overhead = [t - i for t, i in zip(total, inside, strict=True)]
    record(
        f"time inside the step, offline planner (p50 / p95, {len(inside)} steps)",
        f"{ms(percentile(inside, 50))} / {ms(percentile(inside, 95))}",
    )
    record(
        "runtime overhead per step, around the step (p50 / p95)",
        f"{ms(percentile(overhead, 50))} / {ms(percentile(overhead, 95))}",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer directives")
    parser.add_argument("-n", type=int, default=0, help="directives submitted at once (20)")
    args = parser.parse_args()
    n = args.n or (5 if args.quick else 20)

    box = Sandbox("runtime-bench")
    box.django()
    print(f"PAS runtime bench: SQLite under {box.tmp}, Redis db {box.redis_db} ({box.prefix})")
    bench_overhead(box, 1 if args.quick else 3)
    bench_workers(box, n, 3 if args.quick else 5)
    print()
    print(results_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
