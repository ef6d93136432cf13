"""Concurrency benchmark: directives and attempts in flight at model speed, the stack's
memory, a hang among a hundred, and the web process under streams and beats.

Run: ``.venv/bin/python bench/concurrency_bench.py`` (or ``make bench``); ``--quick`` for
a shorter pass, ``--only lanes,many,inflight,hang,health,fanout,storm`` for some phases.
Needs a Redis server (``REDIS_URL``, default redis://127.0.0.1:6379/0); everything else
is throwaway (``bench/_util.py``): a SQLite file under a temp dir, a Redis database of
its own with a key prefix, and the Procfile's processes (``tests/procs.py``): the agents
worker as the Procfile runs it (Celery's threads pool, ``-c 100``, under
``pas_core.scripts.supervise``), the hhmrs worker (its ``-c`` read from the Procfile),
beat, and Daphne. Every
model call takes ``PAS_OFFLINE_DELAY_S`` (2 s; 10 s where attempts must overlap): the
offline planner sleeps and beats as a streamed reply would.

Phases (targets in brackets):

lanes     one five-lane directive, wall time against its critical path: four model
          calls deep (Architect, Director, Manager, Programmer), 8 s [<= 1.5 x]
many      6 and 20 directives at once against one alone [6: <= 1.5 x; 20: <= 2 x];
          the peak of attempts running at once meanwhile
inflight  120 Programmer job cards sent straight to the 10 Programmers (10 s calls):
          the peak in flight [>= 100]; the PSS of the whole stack (web, agents with its
          supervisor, hhmrs with its pool child, beat) while 100 are in flight [<= 600
          MiB]; /health meanwhile (for information)
hang      a hang injected among 100 in flight (beats 1 s, timeout 5 s, sweep 0.5 s): its
          timeout event to its thread released in the worker's held registry; every
          other job succeeded with no restart; the hung job succeeded on its restart
health    GET /health on Daphne with the workers up, sequential keep-alive [p95 < 50 ms]
fanout    100, then 500 open SSE streams, events published from this process 10 a
          second: publish-to-receive latency at every stream [100: p95 < 20 ms; 500:
          p95 < 100 ms; none missed]; ``--fanout-page 1`` opens them as the HMI's
          tabs do (``?hmi=1``: the page's fragments rendered and written too)
storm     50 streams of the tree page (``?hmi=tree``: fragments rendered), 2,000 events
          emitted as fast as they can be, while 200 agents beat over HTTP once a second
          each with their own agent tokens: heartbeat latency during the storm [p95 <
          100 ms]

The stream and heartbeat clients run as child processes of this program
(``--client sse|hb CONFIG``), on uvloop when it is installed: a stream's reads are
timestamped in the protocol's ``data_received`` and parsed only after the measure, so
the client's cost per read (printed) stays far below the latencies it measures. Each
phase also prints how much CPU other processes (not this benchmark's, not Redis) used
meanwhile: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _util import record, results_table  # noqa: E402

DELAY_S = 2.0  # Every model call (PAS_OFFLINE_DELAY_S), lanes and many.
LONG_DELAY_S = 10.0  # inflight and hang: long enough for a hundred to overlap.
DEPTH = 4  # Model calls on the critical path: Architect, Director, Manager, Programmer.
HHMRS_CONCURRENCY = int(
    re.search(r"^hhmrs:.* -c (\d+)", (HERE.parent / "Procfile").read_text(), re.M).group(1)  # type: ignore[union-attr]
)  # The stack measured is the one `make run` starts.
TIME_LIMIT_S = 300  # Every wait is bounded: a stuck phase fails the bench, never hangs it.
HANG_TIMINGS = {
    "heartbeat_interval_s": 1,
    "timeout_threshold_s": 5,
    "missed_heartbeat_threshold": 2,
    "sweep_interval_s": 0.5,
}
FIVE_LANES: dict[str, Any] = {
    "title": "Ship the recommender",
    "goal": (
        "Implement the API code with tests, train the ranking model, build the dataset "
        "ETL, deploy it with CI and docker security checks, and write the docs"
    ),
}
OUR_GROUPS: set[int] = set()  # Process groups of this benchmark (for the CPU split).


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def p50_p95(values: list[float]) -> str:
    from _util import percentile

    return f"{ms(percentile(values, 50))} / {ms(percentile(values, 95))}"


def wait_for(what: str, ready: Callable[[], Any], timeout: float = TIME_LIMIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: no {what} within {timeout:g} s (logs under procs/)")
        time.sleep(0.05)


# -- the machine: CPU split, process groups, memory -----------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int | str) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def group_pids(pgid: int) -> list[int]:
    """Return the live processes of a process group (a Proc and its children)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int(_stat_fields(entry.name)[2]) == pgid:
                    out.append(int(entry.name))
    return out


def cpu_ticks(pid: int | str) -> int:
    try:
        fields = _stat_fields(pid)
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])


def pss_kib(pid: int) -> int:
    """Return a process's proportional set size in KiB (``/proc/<pid>/smaps_rollup``)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class CpuSplit:
    """CPU used over a phase: by the machine, by this benchmark's processes, by Redis,
    and by everything else (other people's work on the shared machine)."""

    def __init__(self) -> None:
        self.redis_pid = 0
        with contextlib.suppress(Exception):
            from pas_core.stores.redis import redis_client

            self.redis_pid = int(redis_client().info("server")["process_id"])

    @staticmethod
    def _machine() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields[:8]) - idle, sum(fields[:8])

    def _ours(self) -> int:
        groups = OUR_GROUPS | {os.getpgrp()}
        total = 0
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    fields = _stat_fields(entry.name)
                    if int(fields[2]) in groups:
                        total += int(fields[11]) + int(fields[12])
        return total

    def start(self) -> CpuSplit:
        self.t0 = time.monotonic()
        self.m0 = self._machine()
        self.o0 = self._ours()
        self.r0 = cpu_ticks(self.redis_pid) if self.redis_pid else 0
        return self

    def stop(self) -> dict[str, float]:
        """Return cores used on average (of os.cpu_count()): machine, ours, redis, others."""
        elapsed = max(1e-6, time.monotonic() - self.t0)
        m1 = self._machine()
        busy = (m1[0] - self.m0[0]) / CLK_TCK / elapsed
        ours = max(0, self._ours() - self.o0) / CLK_TCK / elapsed
        redis = (cpu_ticks(self.redis_pid) - self.r0) / CLK_TCK / elapsed if self.redis_pid else 0
        return {
            "machine": busy,
            "ours": ours,
            "redis": redis,
            "others": max(0.0, busy - ours - redis),
        }


def record_cpu(split: CpuSplit) -> None:
    _record_split(split.stop())


def _record_split(used: dict[str, float]) -> None:
    load = Path("/proc/loadavg").read_text().split()[0]
    record(
        "  CPU meanwhile: machine / this bench / Redis / other processes",
        f"{used['machine']:.2f} / {used['ours']:.2f} / {used['redis']:.2f} / {used['others']:.2f}"
        f" of {os.cpu_count()} cores (load average {load})",
    )


def others_now(seconds: float = 3.0) -> str:
    """Sample the machine before measuring: what other processes use, and the load."""
    split = CpuSplit().start()
    time.sleep(seconds)
    used = split.stop()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"other processes {used['others']:.2f} cores over {seconds:g} s, load average {load}"


# -- the stack ------------------------------------------------------------------------


@contextlib.contextmanager
def stack(
    box: Any,
    *,
    delay: float,
    agents: int = 100,
    workers: bool = True,
    beat: bool = True,
    web: bool = False,
) -> Iterator[dict[str, Any]]:
    """Start the Procfile's processes (those asked for) with model calls of ``delay`` s."""
    from tests import procs

    env = dict(os.environ, PAS_OFFLINE_DELAY_S=str(delay))
    logs = box.tmp / "procs"
    with contextlib.ExitStack() as stack_:
        running: dict[str, Any] = {}
        if workers:
            running["agents"] = stack_.enter_context(
                procs.agents_worker(env, concurrency=agents, log_dir=logs)
            )
            running["hhmrs"] = stack_.enter_context(
                procs.celery_worker(
                    env, queues="hhmrs", name="hhmrs", concurrency=HHMRS_CONCURRENCY, log_dir=logs
                )
            )
        if beat:
            running["beat"] = stack_.enter_context(procs.celery_beat(env, log_dir=logs))
        if web:
            running["web"] = stack_.enter_context(procs.daphne_server(env, log_dir=logs))
        OUR_GROUPS.update(p.pid for p in running.values())
        try:
            yield running
        finally:
            OUR_GROUPS.difference_update(p.pid for p in running.values())


def reset(box: Any) -> None:
    """End every open job and attempt and empty Redis, so that phases never meet."""
    from pas_core.models import Attempt, Job, Run

    Attempt.objects.filter(status__in=["queued", "running"]).update(status="killed")
    Job.objects.filter(status__in=["queued", "running", "waiting"]).update(status="cancelled")
    Run.objects.filter(status__in=["queued", "running"]).update(status="failed")
    box.flush()


def agents_wid() -> str:
    """Return the worker id (host:pid) of the agents worker's Celery process."""
    from pas_core.stores import workers

    def find() -> str:
        for wid, info in workers.workers_alive().items():
            if "agents" in (info.get("queues") or []):
                return wid
        return ""

    return str(wait_for("agents worker in the registry", find, 60))


class Peak:
    """Sample, in a thread, the attempts running at once: rows ``running`` in the
    database, and attempts held by the agents worker (its registry in Redis)."""

    def __init__(self, wid: str, every_s: float = 0.05) -> None:
        self.wid = wid
        self.every_s = every_s
        self.rows = 0
        self.held = 0
        self.last_held = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        from django.db import connection

        from pas_core.models import Attempt
        from pas_core.stores.redis import redis_client, rkey

        client = redis_client()
        key = rkey("worker", self.wid, "held")
        try:
            while not self.stop.is_set():
                self.last_held = int(client.hlen(key))
                self.held = max(self.held, self.last_held)
                self.rows = max(
                    self.rows, Attempt.objects.filter(status=Attempt.Status.RUNNING).count()
                )
                time.sleep(self.every_s)
        finally:
            connection.close()

    def __enter__(self) -> Peak:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


# -- runs and jobs --------------------------------------------------------------------


def wait_runs(run_ids: list[Any], timeout: float = TIME_LIMIT_S) -> float:
    """Wait until every run has ended; return the monotonic time it was seen."""
    from pas_core.models import Run

    def ended() -> bool:
        done = Run.objects.filter(pk__in=run_ids, status__in=["completed", "failed"]).count()
        return done == len(run_ids)

    wait_for(f"{len(run_ids)} run(s) to end", ended, timeout)
    return time.monotonic()


def check_completed(run_ids: list[Any]) -> None:
    from pas_core.models import Run

    bad = list(Run.objects.filter(pk__in=run_ids).exclude(status="completed"))
    for run in bad:
        print(f"  run {run.run_id} {run.status}: {run.message}")
    if bad:
        raise SystemExit("a benchmark run did not complete")


def run_span(run_id: Any) -> float:
    """Return a run's own span: its creation to its root job's end (database clocks)."""
    from pas_core.models import Job, Run

    run = Run.objects.get(pk=run_id)
    end = Job.objects.filter(run=run, parent=None).values_list("finished_at", flat=True).first()
    end = end or run.finished_at
    assert end is not None
    return (end - run.created_at).total_seconds()


def critical_chain(run_id: Any) -> dict[str, float]:
    """Split a run's critical path: from the root down along the child that ended last.

    Returns seconds: ``model`` (run time of the steps that call a model), ``steps`` (run
    time of the other steps and the aggregates), ``queued`` (created -> started), and
    ``handoff`` (one attempt ending -> the next one on the path created).
    """
    from pas_core.models import Attempt, Job

    jobs = {j.pk: j for j in Job.objects.filter(run_id=run_id)}
    children: dict[str, list[Any]] = {}
    for job in jobs.values():
        if job.parent_id:
            children.setdefault(job.parent_id, []).append(job)
    attempts: dict[str, dict[str, Any]] = {}
    for a in Attempt.objects.filter(job__run_id=run_id, status="succeeded").select_related("agent"):
        attempts.setdefault(a.job_id, {})[a.phase] = a
    root = next(j for j in jobs.values() if j.parent_id is None)
    down, job = [], root
    while True:
        down.append(job)
        kids = children.get(job.pk)
        if not kids:
            break
        job = max(kids, key=lambda j: j.finished_at)
    path = [attempts[j.pk]["step"] for j in down]
    path += [attempts[j.pk]["aggregate"] for j in reversed(down) if "aggregate" in attempts[j.pk]]
    out = {"model": 0.0, "steps": 0.0, "queued": 0.0, "handoff": 0.0}
    previous = None
    for a in path:
        ran = (a.finished_at - a.started_at).total_seconds()
        calls_model = a.phase == "step" and a.agent.role != "root"
        out["model" if calls_model else "steps"] += ran
        out["queued"] += (a.started_at - a.created_at).total_seconds()
        if previous is not None:
            out["handoff"] += (a.created_at - previous.finished_at).total_seconds()
        previous = a
    return out


def programmers() -> list[str]:
    from pas_core.models import Agent

    return list(
        Agent.objects.filter(role="programmer", enabled=True)
        .order_by("position", "agent_id")
        .values_list("agent_id", flat=True)[:10]
    )


def send_cards(count: int, agents: list[str], tag: str) -> list[Any]:
    """Send ``count`` Programmer job cards straight to the agents, round robin."""
    from pas_core.services.submit import job_submit

    return [
        job_submit(
            agents[i % len(agents)],
            {
                "id": f"jc-{tag}-{i:04d}",
                "task": f"Write module {tag}_{i}",
                "lane": "Code",
                "files": [f"src/{tag}_{i}.py"],
            },
        )
        for i in range(count)
    ]


def jobs_ended(job_ids: list[str]) -> bool:
    from pas_core.models import Job

    return not Job.objects.filter(
        pk__in=job_ids, status__in=["queued", "running", "waiting"]
    ).exists()


# -- 1 and 2: directives --------------------------------------------------------------


def bench_directives(box: Any, quick: bool, lanes: bool, many: bool) -> None:
    from pas_core.llm.offline import lane_matches
    from pas_core.services.submit import run_submit

    found = list(lane_matches(FIVE_LANES["title"] + " " + FIVE_LANES["goal"]))
    assert len(found) == 5, found
    critical = DEPTH * DELAY_S
    print(
        f"\n[lanes/many] five-lane directives, every model call {DELAY_S:g} s; agents worker"
        f" -c 100 (threads, supervised), hhmrs -c {HHMRS_CONCURRENCY}, beat"
    )
    print(f"  before: {others_now()}")
    with stack(box, delay=DELAY_S) as running:
        wid = agents_wid()
        warm = run_submit(**FIVE_LANES)  # Imports the step modules, fills the caches.
        wait_runs([warm.run_id])
        check_completed([warm.run_id])
        split = CpuSplit().start()
        pid = wid.rsplit(":", 1)[1]
        worker_ticks = cpu_ticks(pid)
        walls, spans, chains = [], [], []
        for _ in range(1 if quick else 3):
            started = time.monotonic()
            run = run_submit(**FIVE_LANES)
            walls.append(wait_runs([run.run_id]) - started)
            check_completed([run.run_id])
            spans.append(run_span(run.run_id))
            chains.append(critical_chain(run.run_id))
        alone = statistics.median(walls)
        worker_cpu = (cpu_ticks(pid) - worker_ticks) / CLK_TCK
        if lanes:
            steps = _succeeded_steps([run.run_id])
            record(
                f"1 directive, 5 lanes ({steps} agent steps): wall time (median of {len(walls)})",
                f"{alone:.2f} s = {alone / critical:.2f} x the critical path {critical:g} s"
                f" (runs {', '.join(f'{w:.2f}' for w in walls)} s)",
                "<= 1.5 x",
                alone <= 1.5 * critical,
            )
            chain = chains[walls.index(sorted(walls)[len(walls) // 2])]
            record(
                "  critical path: model steps / other steps + aggregates / queued / hand-offs",
                " / ".join(f"{chain[k]:.2f} s" for k in ("model", "steps", "queued", "handoff")),
            )
            record("  run span in the database (created -> root job ended)", f"{spans[0]:.2f} s")
            record(
                "  agents worker process CPU per step, one directive at a time",
                f"{worker_cpu / (steps * len(walls)) * 1000:.0f} ms",
            )
            record_cpu(split)
        if not many:
            return
        for n, factor in ((6, 1.5), (20, 2.0)):
            print(f"  ... {n} directives at once")
            split = CpuSplit().start()
            worker_ticks = cpu_ticks(wid.rsplit(":", 1)[1])
            with Peak(wid) as peak:
                started = time.monotonic()
                ids = [run_submit(**FIVE_LANES).run_id for _ in range(n)]
                submitted = time.monotonic() - started
                elapsed = wait_runs(ids) - started
            worker_cpu = (cpu_ticks(wid.rsplit(":", 1)[1]) - worker_ticks) / CLK_TCK
            check_completed(ids)
            chain = critical_chain(max(ids, key=run_span))
            record(
                f"{n} directives at once: all ended after",
                f"{elapsed:.2f} s = {elapsed / alone:.2f} x one alone ({alone:.2f} s)",
                f"<= {factor:g} x",
                elapsed <= factor * alone,
            )
            record(
                "  slowest run's critical path: model steps / other steps / queued / hand-offs",
                " / ".join(f"{chain[k]:.2f} s" for k in ("model", "steps", "queued", "handoff"))
                + f" (submitting took {submitted:.2f} s)",
            )
            record(
                "  peak attempts in flight: running rows / held by the agents worker",
                f"{peak.rows} / {peak.held}",
            )
            record("  trouble on the way", troubles(ids))
            steps = _succeeded_steps(ids)
            record(
                "  agents worker process CPU (one interpreter, one GIL): busy; per step",
                f"{worker_cpu / elapsed:.0%} of a core; {worker_cpu / steps * 1000:.0f} ms"
                f" x {steps} steps",
            )
            record_cpu(split)
        assert running["agents"].alive


def troubles(run_ids: list[Any]) -> str:
    """Return what went wrong on the way, if anything: attempts that did not succeed (by
    status and error kind), HHMRS events, and the longest wait for a thread."""
    from pas_core.models import Attempt, Event

    attempts = Attempt.objects.filter(job__run_id__in=run_ids)
    bad: dict[str, int] = {}
    for status, kind in attempts.exclude(status="succeeded").values_list("status", "error_kind"):
        key = f"{status}/{kind}" if kind else status
        bad[key] = bad.get(key, 0) + 1
    events: dict[str, int] = {}
    kinds = Event.objects.filter(
        run_id__in=[str(r) for r in run_ids], event_type__startswith="hhmrs"
    )
    for kind in kinds.values_list("event_type", flat=True):
        events[kind] = events.get(kind, 0) + 1
    waits = [
        (s - c).total_seconds()
        for c, s in attempts.exclude(started_at=None).values_list("created_at", "started_at")
        if s is not None
    ]
    return (
        f"not succeeded {bad or 'none'}; HHMRS events {events or 'none'};"
        f" longest created -> started {max(waits, default=0):.1f} s"
    )


def _succeeded_steps(run_ids: list[Any]) -> int:
    from pas_core.models import Attempt

    return Attempt.objects.filter(job__run_id__in=run_ids, status="succeeded").count()


# -- 3, 4, 6: attempts in flight, the stack's memory, /health --------------------------


def stack_pss(running: dict[str, Any]) -> dict[str, int]:
    """Return PSS in KiB of every process group of the stack (each Proc and its children)."""
    return {name: sum(pss_kib(p) for p in group_pids(proc.pid)) for name, proc in running.items()}


def health_gets(url: str, count: int) -> tuple[list[float], dict[int, int]]:
    import httpx

    latencies: list[float] = []
    codes: dict[int, int] = {}
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(count):
            t0 = time.perf_counter()
            response = client.get("/health")
            latencies.append(time.perf_counter() - t0)
            codes[response.status_code] = codes.get(response.status_code, 0) + 1
    return latencies, codes


def bench_inflight(box: Any, quick: bool, inflight: bool, health: bool) -> None:
    from pas_core.models import Job

    cards = 120
    print(
        f"\n[inflight/health] the whole stack (web, agents -c 100, hhmrs -c {HHMRS_CONCURRENCY},"
        " beat);"
        f" {cards} Programmer cards, model calls {LONG_DELAY_S:g} s"
    )
    print(f"  before: {others_now()}")
    with stack(box, delay=LONG_DELAY_S, web=True) as running:
        wid = agents_wid()
        web = running["web"]
        wait_for("/health ok", lambda: health_gets(web.url, 1)[1].get(200), 30)
        if health:
            health_gets(web.url, 20)  # Warm: connections, the first queries.
            split = CpuSplit().start()
            latencies, codes = health_gets(web.url, 100 if quick else 400)
            p95 = _pct(latencies, 95)
            record(
                f"GET /health, workers up and idle, {len(latencies)} sequential (p50 / p95)",
                p50_p95(latencies) + f"; max {ms(max(latencies))}; statuses {codes}",
                "p95 < 50 ms",
                p95 < 0.05 and set(codes) == {200},
            )
            record_cpu(split)
        if not inflight:
            return
        split = CpuSplit().start()
        samples: list[dict[str, int]] = []
        busy_health: list[float] = []
        with Peak(wid) as peak:
            jobs = send_cards(cards, programmers(), "inflight")
            ids = [j.pk for j in jobs]
            # While 100 are in flight: the stack's memory, and /health meanwhile.
            wait_for("100 attempts in flight", lambda: peak.last_held >= 100, 60)
            for _ in range(4):
                if peak.last_held >= 100:
                    samples.append(stack_pss(running))
                busy_health += health_gets(web.url, 25)[0]
                time.sleep(0.3)
            wait_for("every card to end", lambda: jobs_ended(ids), 120)
        statuses = set(Job.objects.filter(pk__in=ids).values_list("status", flat=True))
        record(
            f"{cards} Programmer cards at once: peak attempts in flight (held by the worker)",
            f"{peak.held} (running rows {peak.rows}); every card ended {sorted(statuses)}",
            ">= 100",
            peak.held >= 100 and statuses == {"succeeded"},
        )
        if samples:
            worst = max(samples, key=lambda s: sum(s.values()))
            total = sum(worst.values()) / 1024
            parts = ", ".join(f"{name} {kib / 1024:.0f}" for name, kib in worst.items())
            record(
                f"PSS of the whole stack, 100 in flight (max of {len(samples)} samples)",
                f"{total:.0f} MiB ({parts} MiB)",
                "<= 600 MiB",
                total <= 600,
            )
        else:
            record(
                "PSS of the whole stack, 100 in flight", "never 100 in flight", "<= 600 MiB", False
            )
        record("  GET /health while 100 are in flight (p50 / p95)", p50_p95(busy_health))
        record_cpu(split)


def _pct(values: list[float], p: float) -> float:
    from _util import percentile

    return percentile(values, p)


# -- 5: a hang among 100 in flight ------------------------------------------------------


def bench_hang(box: Any, quick: bool) -> None:
    from pas_core.config import hhmrs_update
    from pas_core.models import Attempt, Event, Job
    from pas_core.services.faults import fault_inject
    from pas_core.stores import workers

    cards = 100
    hung_agent = "Prog-GPT-001"
    print(
        f"\n[hang] one hang among {cards} in flight (model calls {LONG_DELAY_S:g} s; beats 1 s,"
        " timeout 5 s, sweep 0.5 s)"
    )
    print(f"  before: {others_now()}")
    hhmrs_update(HANG_TIMINGS)
    agents = programmers()
    assert hung_agent in agents, agents
    fault_inject(hung_agent, "hang", count=1)
    with stack(box, delay=LONG_DELAY_S) as running:
        wid = agents_wid()
        split = CpuSplit().start()
        with Peak(wid) as peak:
            jobs = send_cards(cards, agents, "hang")
            ids = [j.pk for j in jobs]
            fault = wait_for(
                "the hang to be triggered",
                lambda: Event.objects.filter(event_type="fault_triggered", job_id__in=ids).first(),
                60,
            )
            hung = Attempt.objects.get(job_id=fault.job_id, number=1)
            wait_for("the hung attempt to be held", lambda: hung.pk in workers.held_get(wid), 30)
            # Poll the held registry until the hung attempt's thread lets go.
            deadline = time.monotonic() + 60
            while hung.pk in workers.held_get(wid):
                if time.monotonic() > deadline:
                    raise SystemExit("bench: the hung attempt's thread was never released")
                time.sleep(0.005)
            released = time.time()
            timeout = wait_for(
                "its hhmrs_timeout event",
                lambda: Event.objects.filter(
                    event_type="hhmrs_timeout", job_id=hung.job_id
                ).first(),
                10,
            )
            wait_for("every card to end", lambda: jobs_ended(ids), 120)
        log = running["agents"].log_text()
        used = split.stop()
    hhmrs_update({"heartbeat_interval_s": 30, "timeout_threshold_s": 60, "sweep_interval_s": 5})
    rows = dict(Job.objects.filter(pk__in=ids).values_list("pk", "status"))
    restarts = dict(Job.objects.filter(pk__in=ids).values_list("pk", "restart_count"))
    others = [j for j in ids if j != hung.job_id]
    others_ok = all(rows[j] == "succeeded" and restarts[j] == 0 for j in others)
    hung_ok = (
        rows[hung.job_id] == "succeeded"
        and restarts[hung.job_id] == 1
        and Attempt.objects.filter(job_id=hung.job_id, number=2, status="succeeded").exists()
    )
    timeouts = Event.objects.filter(event_type="hhmrs_timeout", job_id__in=ids).count()
    assert hung.started_at is not None
    release_s = released - timeout.created_at.timestamp()
    detect_s = timeout.created_at.timestamp() - hung.started_at.timestamp()
    record(
        f"hang among {cards} in flight (peak held {peak.held}): timeout event -> thread released",
        f"{ms(release_s)} (timed out {detect_s:.2f} s after it started)",
        "< 1 s",
        release_s < 1,
    )
    record(
        f"  the {len(others)} others: succeeded with restart_count 0",
        f"{sum(rows[j] == 'succeeded' and restarts[j] == 0 for j in others)} / {len(others)};"
        f" timeouts {timeouts}; worker replaced: {'supervise: worker' in log}",
        "all",
        others_ok and timeouts == 1 and "supervise: worker" not in log,
    )
    record(
        "  the hung job: succeeded on its restart",
        f"{rows[hung.job_id]}, restart_count {restarts[hung.job_id]}",
        "succeeded, 1 restart",
        hung_ok,
    )
    _record_split(used)


# -- 7 and 8: the web process under streams and beats -----------------------------------


def _client(kind: str, config: dict[str, Any], box: Any) -> subprocess.Popen[str]:
    path = box.tmp / f"{kind}-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(config))
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--client", kind, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def _client_line(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """Read the client's next JSON line (bounded)."""
    stdout = proc.stdout
    assert stdout is not None
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box or not box[0]:
        proc.kill()
        raise SystemExit(f"bench: the client said nothing within {timeout:g} s")
    return dict(json.loads(box[0]))


def _client_stop(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdin is not None
    proc.stdin.write("stop\n")
    proc.stdin.flush()
    result = _client_line(proc, 120)
    proc.wait(30)
    return result


def emit_paced(count: int, per_s: float, tag: str) -> None:
    """Store and publish ``count`` events, ``per_s`` a second, the publish time in their data;
    the last one says ``bend`` (the clients watch for it)."""
    from pas_core.stores.events import event_emit, event_publish

    start = time.monotonic()
    for i in range(count):
        time.sleep(max(0.0, start + i / per_s - time.monotonic()))
        data = {"bseq": i, "bt": 0.0, **({"bend": 1} if i == count - 1 else {})}
        event = event_emit(f"bench_{tag}", data, publish=False)
        event.data["bt"] = time.time()
        event_publish(event)


def bench_fanout(box: Any, quick: bool, page: str = "") -> None:
    from pas_core.auth import token_create

    events = 40 if quick else 100
    per_s = 10.0
    kind = f" of the page ?hmi={page} (fragments rendered)" if page else ""
    print(f"\n[fanout] SSE streams{kind} on one Daphne, {events} events at {per_s:g}/s each phase")
    print(f"  before: {others_now()}")
    token, _ = token_create(name="bench-sse")
    with stack(box, delay=0, workers=False, beat=False, web=True) as running:
        web = running["web"]
        for streams, target in ((100, 0.020), (500, 0.100)):
            cfg = {"port": web.port, "token": token, "streams": streams, "page": page}
            client = _client("sse", cfg, box)
            ready = _client_line(client, 120)
            assert ready.get("ready") == streams, ready
            time.sleep(0.5)
            split = CpuSplit().start()
            web_ticks = cpu_ticks(web.pid)
            t0 = time.monotonic()
            emit_paced(events, per_s, f"fanout{streams}")
            done = _client_line(client, 60)  # Every stream saw the last event.
            web_cpu = (cpu_ticks(web.pid) - web_ticks) / CLK_TCK / (time.monotonic() - t0)
            record_cpu_later = split.stop()
            result = _client_stop(client)
            lat = result["latencies"]
            missed = streams * events - len(lat)
            p95 = _pct(lat, 95)
            record(
                f"{streams} streams: publish -> receive at every stream, p50 / p95 / max",
                f"{p50_p95(lat)} / {ms(max(lat))}; missed {missed} of {streams * events},"
                f" duplicates {result['dups']}",
                f"p95 < {target * 1000:.0f} ms, none missed",
                p95 < target and missed == 0 and result["dups"] == 0 and "complete" in done,
            )
            record(
                "  Daphne CPU / client CPU (of 1 core); client cost per read",
                f"{web_cpu:.0%} / {result['cpu_s'] / result['wall_s']:.0%};"
                f" {result['cpu_s'] / max(1, result['reads']) * 1e6:.0f} us x {result['reads']}"
                f" reads ({result['loop']})",
            )
            record(
                "  per event: publish -> first stream; first -> last stream (p50 / p95)",
                f"{p50_p95(result['firsts'])}; {p50_p95(result['spreads'])}",
            )
            _record_split(record_cpu_later)


def _beating_attempts(agents: list[str], per_agent: int) -> list[tuple[str, str, str]]:
    """Create running attempts (no worker runs them), register them with the heartbeat
    store, and give each agent a token bound to it: ``[(agent, job, token), ...]``."""
    import uuid

    from django.db import transaction
    from django.utils import timezone

    from pas_core.auth import token_create
    from pas_core.models import Agent, Attempt, Job, Run
    from pas_core.stores.heartbeats import hb_register

    models = dict(Agent.objects.filter(pk__in=agents).values_list("agent_id", "current_model"))
    tag = uuid.uuid4().hex[:8]
    now = timezone.now()
    with transaction.atomic():
        run = Run.objects.create(title="bench beats", goal="beats", status="running")
        jobs = Job.objects.bulk_create(
            Job(
                job_id=f"jc-{tag}-{a}-{i}".lower(),
                run=run,
                agent_id=a,
                lane="Code",
                status="running",
                card={"task": "beat"},
            )
            for a in agents
            for i in range(per_agent)
        )
        attempts = Attempt.objects.bulk_create(
            Attempt(
                job=j,
                number=1,
                agent_id=j.agent_id,
                model=models[j.agent_id],
                status="running",
                started_at=now,
                celery_task_id=uuid.uuid4().hex,
            )
            for j in jobs
        )
        for job, attempt in zip(jobs, attempts, strict=True):
            job.current_attempt = attempt
        Job.objects.bulk_update(jobs, ["current_attempt"])
    for attempt in attempts:
        hb_register(attempt.pk, agent_id=attempt.agent_id, job_id=attempt.job_id)
    tokens = {a: token_create(name=f"bench-{a}", agent_id=a)[0] for a in agents}
    return [(a.agent_id, a.job_id, tokens[a.agent_id]) for a in attempts]


def emit_storm(count: int, agents: list[str], chunk: int = 100) -> tuple[float, float]:
    """Emit ``count`` events touching tree nodes as fast as they go, ``chunk`` per
    transaction (as a sweep writes them); return (start, end) wall times."""
    from django.db import transaction

    from pas_core.stores.events import events_emit

    kinds = ["agent_status", "job_started", "agent_status", "job_completed", "hhmrs_timeout"]
    start = time.time()
    for first in range(0, count, chunk):
        items = []
        for i in range(first, min(count, first + chunk)):
            kind = kinds[i % len(kinds)]
            data: dict[str, Any] = {"agent_id": agents[i % len(agents)], "bseq": i}
            data["bt"] = time.time()
            if kind == "agent_status":
                data["status"] = "running" if i % 2 else "idle"
            if i == count - 1:
                data["bend"] = 1
            items.append((kind, data))
        with transaction.atomic():
            events_emit(items)
    return start, time.time()


def bench_storm(box: Any, quick: bool) -> None:
    from pas_core.models import Agent

    streams, events, per_agent = 50, 2000, 20
    print(
        f"\n[storm] {streams} tree streams (?hmi=tree), {events} events as fast as they go,"
        f" {per_agent * 10} agents beating over HTTP once a second each"
    )
    print(f"  before: {others_now()}")
    beaters = _beating_attempts(programmers(), per_agent)
    tree = list(Agent.objects.values_list("agent_id", flat=True))
    from pas_core.auth import token_create

    token, _ = token_create(name="bench-storm")
    with stack(box, delay=0, workers=False, beat=False, web=True) as running:
        web = running["web"]
        sse = _client(
            "sse", {"port": web.port, "token": token, "streams": streams, "page": "tree"}, box
        )
        assert _client_line(sse, 120).get("ready") == streams
        hb = _client(
            "hb", {"port": web.port, "beaters": beaters, "connections": 50, "seconds": 120}, box
        )
        assert "ready" in _client_line(hb, 60)
        time.sleep(2.0 if quick else 4.0)  # The baseline: beats, no storm.
        split = CpuSplit().start()
        web_ticks = cpu_ticks(web.pid)
        t_storm, t_emitted = emit_storm(events, tree)
        done = _client_line(sse, 120)
        t_done = time.time()
        web_cpu = (cpu_ticks(web.pid) - web_ticks) / CLK_TCK / max(1e-6, t_done - t_storm)
        used = split.stop()
        time.sleep(2.0)  # After the storm.
        beats = _client_stop(hb)
        result = _client_stop(sse)
    complete = float(done.get("complete") or t_done)
    rows = beats["records"]  # [sent wall time, latency s, status]
    during = [lat for sent, lat, _ in rows if t_storm <= sent <= complete]
    before = [lat for sent, lat, _ in rows if sent < t_storm]
    after = [lat for sent, lat, _ in rows if sent > complete]
    statuses: dict[str, int] = {}
    for _, _, status in rows:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    missed = streams * events - len(result["latencies"])
    record(
        f"storm: {events} events emitted in {t_emitted - t_storm:.2f} s; every stream had them"
        " all after",
        f"{complete - t_storm:.2f} s; missed {missed}"
        + (f" (e.g. {result['missing'][:5]})" if missed else "")
        + f", duplicates {result['dups']};"
        f" emit -> receive p50 / p95 {p50_p95(result['latencies'])}",
    )
    p95 = _pct(during, 95)
    record(
        f"heartbeat latency during the storm ({len(during)} beats), p50 / p95 / max",
        f"{p50_p95(during)} / {ms(max(during)) if during else '-'}",
        "p95 < 100 ms",
        bool(during) and p95 < 0.1 and set(statuses) == {"202"},
    )
    record(
        "  before / after the storm, p50 / p95; statuses",
        f"{p50_p95(before)} (n={len(before)}) / {p50_p95(after)} (n={len(after)}); {statuses}",
    )
    record(
        "  batches rendered as tree fragments (event: hmi messages per stream)",
        str(result["fragments"]),
    )
    record(
        "  Daphne CPU during the storm (of 1 core); client cost per read",
        f"{web_cpu:.0%}; {result['cpu_s'] / max(1, result['reads']) * 1e6:.0f} us"
        f" x {result['reads']} reads ({result['loop']})",
    )
    _record_split(used)


# -- the clients (child processes; no Django) --------------------------------------------

BSEQ = re.compile(rb'"bseq":(\d+)(?:,"bt":([0-9.eE+-]+))?')
BEND = b'"bend":1'


def _new_loop() -> tuple[asyncio.AbstractEventLoop, str]:
    try:
        import uvloop

        return uvloop.new_event_loop(), "uvloop"
    except ImportError:
        return asyncio.new_event_loop(), "asyncio"


def _dechunked(reads: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    """The body of a chunked HTTP/1.1 response, read by read (headers and framing gone).

    Daphne frames a stream's writes as chunks of at most 64 KiB: a big write is split
    mid-message, and the chunk header would otherwise land inside an event.
    """
    out: list[tuple[float, bytes]] = []
    raw = b""
    body = False
    left = 0  # Bytes of the current chunk still to come.
    for t, data in reads:
        raw += data
        part = b""
        if not body:
            head_end = raw.find(b"\r\n\r\n")
            if head_end < 0:
                continue
            raw, body = raw[head_end + 4 :], True
        while raw:
            if left > 0:
                take = raw[:left]
                part, raw, left = part + take, raw[len(take) :], left - len(take)
                if left == 0:
                    left = -2  # The chunk's closing CRLF.
                continue
            if left < 0:
                if len(raw) < -left:
                    break
                raw, left = raw[-left:], 0
                continue
            line_end = raw.find(b"\r\n")
            if line_end < 0:
                break
            left = int(raw[:line_end].split(b";")[0] or b"0", 16)
            raw = raw[line_end + 2 :]
            if left == 0:
                raw = b""  # The last chunk.
        out.append((t, part))
    return out


class _Stream(asyncio.Protocol):
    """One SSE stream: every read kept with its arrival time, parsed after the measure."""

    def __init__(self, request: bytes, client: _SseClient) -> None:
        self.request = request
        self.client = client
        self.chunks: list[tuple[float, bytes]] = []
        self.live = False
        self.ended = False
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.chunks.append((time.time(), data))
        if not self.live:
            head = b"".join(c for _, c in self.chunks)
            if not head.startswith(b"HTTP/1.1 200") and len(head) >= 12:
                self.client.failed(head[:200])
                self.live = True
            elif b": live" in head:
                self.live = True
                self.client.went_live()
        if not self.ended and BEND in self.tail + data:
            self.ended = True
            self.client.ended()
        self.tail = data[-16:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.lost += 1


class _SseClient:
    def __init__(self, streams: int) -> None:
        self.streams = streams
        self.live = 0
        self.done = 0
        self.lost = 0
        self.errors: list[bytes] = []
        self.all_live = asyncio.Event()

    def went_live(self) -> None:
        self.live += 1
        if self.live == self.streams:
            self.all_live.set()

    def failed(self, head: bytes) -> None:
        self.errors.append(head)
        self.all_live.set()

    def ended(self) -> None:
        self.done += 1
        if self.done == self.streams:
            print(json.dumps({"complete": time.time()}), flush=True)


async def _sse_main(cfg: dict[str, Any], loop_name: str) -> None:
    loop = asyncio.get_running_loop()
    n = int(cfg["streams"])
    query = f"?hmi={cfg['page']}" if cfg.get("page") else ""
    request = (
        f"GET /events/stream{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {cfg['token']}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    client = _SseClient(n)
    protos: list[_Stream] = []
    for first in range(0, n, 50):
        made = await asyncio.gather(
            *(
                loop.create_connection(lambda: _Stream(request, client), "127.0.0.1", cfg["port"])
                for _ in range(min(50, n - first))
            )
        )
        protos += [p for _, p in made]
    await asyncio.wait_for(client.all_live.wait(), 120)
    if client.errors:
        print(json.dumps({"error": client.errors[0].decode(errors="replace")}), flush=True)
        return
    marks = [len(p.chunks) for p in protos]
    usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    print(json.dumps({"ready": n}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    usage1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    reads = sum(len(p.chunks) - m for p, m in zip(protos, marks, strict=True))
    for p in protos:
        if p.transport is not None:
            p.transport.close()
    # Parse: a message is complete at the read that brings its closing blank line.
    latencies: list[float] = []
    first_seen: dict[int, float] = {}
    last_seen: dict[int, float] = {}
    dups = 0
    firsts: dict[int, float] = {}
    counts: list[int] = []
    fragments: list[int] = []
    missing: list[int] = []
    for p in protos:
        buf = b""
        got: set[int] = set()
        for t, data in _dechunked(p.chunks):
            buf += data
            cut = buf.rfind(b"\n\n")
            if cut < 0:
                continue
            done, buf = buf[:cut], buf[cut + 2 :]
            for m in BSEQ.finditer(done):
                seq = int(m.group(1))
                if seq in got:
                    dups += 1
                    continue
                got.add(seq)
                if m.group(2):
                    latencies.append(t - float(m.group(2)))
                    firsts[seq] = min(firsts.get(seq, 1e9), t - float(m.group(2)))
                first_seen[seq] = min(first_seen.get(seq, t), t)
                last_seen[seq] = max(last_seen.get(seq, t), t)
        counts.append(len(got))
        fragments.append(b"".join(c for _, c in p.chunks).count(b"event: hmi\n"))
        if got and len(missing) < 20:
            missing += [s for s in range(max(got) + 1) if s not in got][:5]
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    print(
        json.dumps(
            {
                "latencies": latencies,
                "spreads": [last_seen[s] - first_seen[s] for s in first_seen],
                "firsts": [firsts[k] for k in sorted(firsts)],
                "dups": dups,
                "counts": [min(counts or [0]), max(counts or [0])],
                "missing": missing[:20],
                "fragments": max(fragments or [0]),
                "reads": reads,
                "cpu_s": cpu,
                "wall_s": wall1 - wall0,
                "lost_early": client.lost,
                "loop": loop_name,
            }
        ),
        flush=True,
    )


async def _hb_connection(
    port: int,
    share: list[bytes],
    offset: float,
    stop: asyncio.Event,
    records: list[tuple[float, float, int]],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic() + offset
    tick = 0
    try:
        while not stop.is_set():
            await asyncio.sleep(max(0.0, start + tick - time.monotonic()))
            for request in share:
                if stop.is_set():
                    break
                sent, t0 = time.time(), time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                records.append((sent, time.perf_counter() - t0, int(head[9:12])))
            tick += 1
    finally:
        writer.close()


async def _hb_main(cfg: dict[str, Any], loop_name: str) -> None:
    """Beat for every (agent, job, token) once a second over keep-alive connections, each
    connection's first beat offset so that the load is spread over the second."""
    loop = asyncio.get_running_loop()
    requests = []
    for agent, job, token in cfg["beaters"]:
        body = json.dumps({"job_id": job, "progress": 0.5, "message": "bench"}).encode()
        requests.append(
            (
                f"POST /api/agents/{agent}/heartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
    conns = int(cfg["connections"])
    stop = asyncio.Event()
    records: list[tuple[float, float, int]] = []
    tasks = [
        loop.create_task(_hb_connection(cfg["port"], requests[i::conns], i / conns, stop, records))
        for i in range(conns)
    ]
    print(json.dumps({"ready": len(requests)}), flush=True)
    waiter = loop.run_in_executor(None, sys.stdin.readline)
    await asyncio.wait([waiter], timeout=float(cfg["seconds"]))
    stop.set()
    await asyncio.wait(tasks, timeout=10)
    print(json.dumps({"records": records, "loop": loop_name}), flush=True)


def client_main(kind: str, config_path: str) -> int:
    cfg = json.loads(Path(config_path).read_text())
    loop, name = _new_loop()
    asyncio.set_event_loop(loop)
    main = _sse_main if kind == "sse" else _hb_main
    try:
        loop.run_until_complete(main(cfg, name))
    finally:
        loop.close()
    return 0


# -- main ---------------------------------------------------------------------------------

PHASES = ("lanes", "many", "inflight", "hang", "health", "fanout", "storm")


def main() -> int:
    if sys.argv[1:2] == ["--client"]:
        return client_main(sys.argv[2], sys.argv[3])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases")
    parser.add_argument("--only", default="", help="comma-separated phases: " + ",".join(PHASES))
    parser.add_argument(
        "--fanout-page",
        default="",
        metavar="PAGE",
        help="fanout's streams ask for a page's fragments (?hmi=PAGE: 1, tree), as HMI tabs do",
    )
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    unknown = only - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s) {sorted(unknown)}; phases: {', '.join(PHASES)}")

    def wanted(name: str) -> bool:
        return not only or name in only

    from _util import Sandbox

    box = Sandbox("concurrency-bench")
    box.django()
    print(
        f"PAS concurrency bench: SQLite under {box.tmp}, Redis db {box.redis_db} ({box.prefix});"
        f" {os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M')}"
    )
    started = time.monotonic()
    if wanted("lanes") or wanted("many"):
        bench_directives(box, args.quick, wanted("lanes"), wanted("many"))
        reset(box)
    if wanted("inflight") or wanted("health"):
        bench_inflight(box, args.quick, wanted("inflight"), wanted("health"))
        reset(box)
    if wanted("hang"):
        bench_hang(box, args.quick)
        reset(box)
    if wanted("fanout"):
        bench_fanout(box, args.quick, args.fanout_page)
        reset(box)
    if wanted("storm"):
        bench_storm(box, args.quick)
    print(f"\n(took {time.monotonic() - started:.0f} s; after: {others_now(2)})\n")
    print(results_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
