"""HHMRS benchmark: heartbeat intake, sweep cost, detection and recovery latency.

Run: ``.venv/bin/python bench/hhmrs_bench.py`` (or ``make bench``). Needs a Redis server
(``REDIS_URL``, default redis://127.0.0.1:6379/0); everything else is throwaway: a SQLite
database under a temp dir, a Redis database of its own with a key prefix, and the
Daphne, Celery and beat processes it starts. ``--quick`` shortens every phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _util import Sandbox, percentile, record, results_table  # noqa: E402


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# -- fixtures ---------------------------------------------------------------------


def make_attempts(agents: list[str], count: int, *, status: str = "running") -> list[Any]:
    """Create ``count`` runs/jobs/attempts (agents in turn) in bulk; return the attempts."""
    from django.db import transaction

    from pas_core.models import Agent, Attempt, Job, Run

    models = dict(Agent.objects.filter(pk__in=agents).values_list("agent_id", "current_model"))
    now = datetime.now(tz=UTC)
    with transaction.atomic():
        run = Run.objects.create(title="bench", goal="bench", status=Run.Status.RUNNING)
        tag = uuid.uuid4().hex[:8]
        jobs = Job.objects.bulk_create(
            [
                Job(
                    job_id=f"jc-{tag}-{i}",
                    run=run,
                    agent_id=agents[i % len(agents)],
                    status=Job.Status.RUNNING,
                    card={"task": f"Write bench_{i}.py that prints {i}"},
                )
                for i in range(count)
            ]
        )
        attempts = Attempt.objects.bulk_create(
            [
                Attempt(
                    job=job,
                    number=1,
                    agent_id=job.agent_id,
                    model=models[job.agent_id],
                    status=status,
                    started_at=now,
                    celery_task_id=uuid.uuid4().hex,
                )
                for job in jobs
            ]
        )
        for job, attempt in zip(jobs, attempts, strict=True):
            job.current_attempt = attempt
        Job.objects.bulk_update(jobs, ["current_attempt"], batch_size=500)
    return attempts


def register(attempts: list[Any], last_beat: float | Callable[[int], float]) -> None:
    """Put attempts in the heartbeat store as hb_register does, pipelined."""
    from pas_core.stores.redis import redis_client, rkey

    pipe = redis_client().pipeline(transaction=False)
    for i, attempt in enumerate(attempts):
        beat = last_beat(i) if callable(last_beat) else last_beat
        details = rkey("hb", "a", attempt.pk)
        pipe.zadd(rkey("hb", "running"), {str(attempt.pk): beat})
        pipe.hset(details, mapping={"agent": attempt.agent_id, "job": attempt.job_id, "ts": beat})
        pipe.set(rkey("hb", "job", attempt.job_id), attempt.pk)
    pipe.execute()


def reset(box: Sandbox) -> None:
    """End every open job and attempt and empty Redis, so that phases never meet.

    (TRON's reconcile would otherwise put a previous phase's running attempts back in
    the store, and re-send its queued ones.)
    """
    from pas_core.models import Attempt, Job

    Attempt.objects.filter(status__in=["queued", "running"]).update(status="killed")
    Job.objects.filter(status__in=["queued", "running", "waiting"]).update(status="cancelled")
    box.flush()


def hhmrs_set(**values: Any) -> None:
    from pas_core.config import hhmrs_update

    hhmrs_update(values)


# -- 1. heartbeats into the store, in-process ----------------------------------------


def _beat_loop(ids: list[int], seconds: float) -> int:
    from pas_core.stores.heartbeats import hb_beat

    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for aid in ids:
            hb_beat(aid, agent_id="Prog-Qwen-001", progress=0.5, message="working")
        count += len(ids)
    return count


def _beat_process(args: tuple[list[int], float, float]) -> int:
    ids, start_at, seconds = args
    time.sleep(max(0.0, start_at - time.time()))  # Every process starts together.
    return _beat_loop(ids, seconds)


def bench_beats_inprocess(box: Sandbox, seconds: float) -> None:
    from pas_core.stores.heartbeats import hb_register

    print("\n[1] heartbeats into the store, in-process (hb_beat: one pipeline per beat)")
    ids = list(range(1, 1001))
    for aid in ids:
        hb_register(aid, agent_id="Prog-Qwen-001", job_id=f"jc-bench-{aid}")

    start = time.perf_counter()
    count = _beat_loop(ids[:200], seconds)
    rate = count / (time.perf_counter() - start)
    record("beats/s, one loop (one process)", f"{rate:,.0f}")

    # Several processes beat at once, as agents in several worker processes do.
    ctx = multiprocessing.get_context("fork")  # Django is set up already: fork keeps it.
    best = rate
    for procs in (2, 4, 8):
        chunks = [ids[i::procs] for i in range(procs)]
        start_at = time.time() + 0.5
        with ctx.Pool(procs) as pool:
            counts = pool.map(_beat_process, [(c, start_at, seconds) for c in chunks])
        rate = sum(counts) / seconds
        best = max(best, rate)
        record(f"beats/s, {procs} processes at once", f"{rate:,.0f}")
    record("  the store's intake (best of the above)", f"{best:,.0f}", ">= 20,000", best >= 20_000)

    # The same three writes for 100 beats per round trip (a batching client or proxy).
    from pas_core.stores.redis import redis_client, rkey

    client, batch, count = redis_client(), 100, 0
    running, agents = rkey("hb", "running"), rkey("hb", "agents")
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        now = time.time()
        pipe = client.pipeline(transaction=False)
        for aid in ids[:batch]:
            pipe.zadd(running, {str(aid): now}, xx=True, ch=True)
            pipe.hset(rkey("hb", "a", aid), mapping={"ts": now, "progress": 0.5})
            pipe.hset(agents, "Prog-Qwen-001", now)
        pipe.execute()
        count += batch
    rate = count / (time.perf_counter() - start)
    record(f"beats/s, pipelined batches of {batch}", f"{rate:,.0f}")
    client.delete(running)


# -- 2. heartbeats over HTTP (the lean ASGI route on a real Daphne) ----------------


async def _http_client(
    port: int, requests: list[bytes], seconds: float, latencies: list[float], codes: dict[int, int]
) -> None:
    """One keep-alive connection sending beats back to back for ``seconds``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    deadline = time.perf_counter() + seconds
    i = 0
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            writer.write(requests[i % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            code = int(head[9:12])
            codes[code] = codes.get(code, 0) + 1
            i += 1
    finally:
        writer.close()


def _cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds a process has used (Linux /proc)."""
    import os

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _beat_request(agent_id: str, job_id: str, token: str) -> bytes:
    body = json.dumps({"job_id": job_id, "progress": 0.5, "message": "working"}).encode()
    path = f"/api/agents/{agent_id.replace(' ', '%20')}/heartbeat"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def bench_beats_http(box: Sandbox, seconds: float, connections: int) -> None:
    from pas_core.auth import token_create
    from tests import procs

    print(f"\n[2] heartbeats over HTTP: Daphne + lean route, {connections} keep-alive connections")
    agents = ["Prog-Qwen-001", "Prog-Qwen-002", "Prog-Claude-001", "Mgr-Code-01"]
    attempts = make_attempts(agents, 1000)
    register(attempts, time.time())
    token, _ = token_create(name="bench-http")
    requests = [_beat_request(a.agent_id, a.job_id, token) for a in attempts]

    def load(port: int, latencies: list[float], codes: dict[int, int]) -> float:
        async def clients() -> None:
            await asyncio.gather(
                *[
                    _http_client(port, requests[i::connections], seconds, latencies, codes)
                    for i in range(connections)
                ]
            )

        start = time.perf_counter()
        asyncio.run(clients())
        return time.perf_counter() - start

    # Daphne's own ceiling here: the same server and client, an app that answers at once.
    bare = procs.daphne_server(box.env, log_dir=box.tmp / "procs")
    bare.argv[-1] = "_bare_asgi:application"
    bare.env["PYTHONPATH"] = str(Path(__file__).resolve().parent)
    with bare:
        ceiling: list[float] = []
        elapsed = load(bare.port, ceiling, {})
        ceiling_rate = len(ceiling) / elapsed

    with procs.daphne_server(box.env, log_dir=box.tmp / "procs") as server:
        # Warm up: the token and agent caches, the Redis connection, the script's SHA.
        warm: list[float] = []
        asyncio.run(_http_client(server.port, requests, 0.5, warm, {}))
        latencies: list[float] = []
        codes: dict[int, int] = {}

        from pas_core.stores.redis import redis_client

        redis_pid = int(redis_client().info("server")["process_id"])
        server_cpu, client_cpu = _cpu_seconds(server.pid), time.process_time()
        redis_cpu = _cpu_seconds(redis_pid)
        elapsed = load(server.port, latencies, codes)
        server_cpu = _cpu_seconds(server.pid) - server_cpu
        client_cpu = time.process_time() - client_cpu
        redis_cpu = _cpu_seconds(redis_pid) - redis_cpu
    rate = len(latencies) / elapsed
    assert set(codes) == {202}, codes
    record(
        f"beats/s over HTTP ({connections} connections, {seconds:g} s)",
        f"{rate:,.0f}",
        ">= 3,000",
        rate >= 3000,
    )
    record(
        "  Daphne alone, answering at once (the ceiling here)",
        f"{ceiling_rate:,.0f}/s ({rate / ceiling_rate:.0%} of it)",
    )
    record(
        "  latency p50 / p95",
        f"{ms(percentile(latencies, 50))} / {ms(percentile(latencies, 95))}",
    )
    record(
        "  CPU busy: Daphne / client / Redis (of 1 core)",
        f"{server_cpu / elapsed:.0%} / {client_cpu / elapsed:.0%} / {redis_cpu / elapsed:.0%}",
    )


# -- 3. sweep cost -----------------------------------------------------------------


def bench_sweep(box: Sandbox, sizes: list[int], repeats: int) -> None:
    from pas_core import policy, tron
    from pas_core.config import hhmrs_get
    from pas_core.stores import heartbeats
    from pas_core.stores.redis import redis_client, rkey

    print("\n[3] sweep time by supervised attempts (defaults: overdue after 60 s)")
    client = redis_client()
    running = rkey("hb", "running")
    cfg = hhmrs_get()
    for size in sizes:
        client.delete(running)
        now = time.time()
        for start in range(0, size, 10_000):
            client.zadd(
                running,
                {str(10_000_000 + i): now - 30 for i in range(start, min(size, start + 10_000))},
            )
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            handled = tron.sweep(now=now)
            times.append(time.perf_counter() - t0)
            assert handled == 0
        p50, p95 = percentile(times, 50), percentile(times, 95)
        record(
            f"sweep, {size:,} supervised, 0 overdue (p50 / p95)",
            f"{ms(p50)} / {ms(p95)}",
            "p50 < 2 ms" if size == 100_000 else "",
            p50 < 0.002 if size == 100_000 else None,
        )

        # 100 overdue: real rows behind them. Finding them (store query + the rules) is
        # timed on its own, then one real sweep that times out and restarts all 100.
        attempts = make_attempts(["Prog-Qwen-001", "Prog-Claude-001"], 100)
        register(attempts, now - 120)
        find = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            found = [
                aid
                for aid, last in heartbeats.hb_overdue(policy.overdue_cutoff(now, cfg))
                if policy.is_overdue(now, last, cfg)
            ]
            find.append(time.perf_counter() - t0)
        assert len(found) == 100
        record(f"  finding 100 overdue among {size:,} (p50)", ms(percentile(find, 50)))
        t0 = time.perf_counter()
        handled = tron.sweep(now=now)
        whole = time.perf_counter() - t0
        assert handled == 100, handled
        record(
            f"  sweep handling 100 overdue among {size:,}",
            f"{ms(whole)} ({ms(whole / 100)} per attempt)",
        )
    client.delete(running)
    client.delete("agents")  # The re-sent attempts' messages: no worker here.


# -- 4. detection and recovery with real workers and beat -----------------------------

LIVE = {
    "heartbeat_interval_s": 1,
    "timeout_threshold_s": 2,
    "missed_heartbeat_threshold": 2,
    "sweep_interval_s": 0.5,
}
THRESHOLD_S = 2.0  # max(timeout 2 s, 2 missed beats x 1 s)


def _wait(what: str, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: no {what} within {timeout:g} s")
        time.sleep(0.02)


def _timeouts(job_ids: list[str]) -> dict[str, float]:
    from pas_core.models import Event

    return {
        e.job_id: e.created_at.timestamp()
        for e in Event.objects.filter(event_type="hhmrs_timeout", job_id__in=job_ids)
    }


def _warm_up(agents: list[str], count: int) -> None:
    """Run a few real attempts first: a worker child's first one imports the runtime."""
    from pas_core.models import Attempt
    from pas_core.services.attempts import attempts_resend

    attempts = make_attempts(agents, count, status="queued")
    attempts_resend(attempts)
    ids = [a.pk for a in attempts]
    _wait(
        "warm-up attempts",
        lambda: not Attempt.objects.filter(pk__in=ids, status__in=["queued", "running"]).exists(),
        60,
    )


def bench_live(box: Sandbox, hung: int, burst: int) -> None:
    import os

    from pas_core.models import Attempt
    from pas_core.stores.redis import redis_client
    from tests import procs

    print(
        f"\n[4] real workers + beat (beat 1 s, timeout 2 s, sweep 0.5 s): {hung} hung attempts,"
        f" then {burst} overdue at once"
    )
    hhmrs_set(**LIVE)
    env = dict(os.environ)
    logs = box.tmp / "procs"
    programmers = [
        "Prog-Qwen-001",
        "Prog-Qwen-002",
        "Prog-Qwen-003",
        "Prog-Claude-001",
        "Prog-DeepSeek-001",
    ]
    with (
        procs.celery_worker(env, queues="hhmrs", concurrency=2, name="hhmrs", log_dir=logs),
        procs.celery_beat(env, log_dir=logs),
    ):
        with procs.celery_worker(env, queues="agents", concurrency=4, name="agents", log_dir=logs):
            _warm_up(programmers, 8)
            # Attempts that never beat, their last beat spread over 7 sweep periods so
            # that their thresholds fall at every phase of the sweep's schedule.
            attempts = make_attempts(programmers, hung)
            start = time.time() + 0.5
            last = {a.pk: start + i * 3.5 / hung for i, a in enumerate(attempts)}
            register(attempts, lambda i: last[attempts[i].pk])
            jobs = [a.job_id for a in attempts]
            _wait("timeouts", lambda: len(_timeouts(jobs)) == hung, 30)
            seen = _timeouts(jobs)

            def restarted() -> dict[str, float]:
                rows = Attempt.objects.filter(
                    job_id__in=jobs, number=2, started_at__isnull=False
                ).values_list("job_id", "started_at")
                return {job: started.timestamp() for job, started in rows}

            _wait("re-sent attempts running", lambda: len(restarted()) == hung, 30)
            running = restarted()
            # Let them finish: stopping the worker under them would leave running
            # attempts behind that time out during the next measure.
            _wait(
                "re-sent attempts finished",
                lambda: (
                    not Attempt.objects.filter(
                        job_id__in=jobs, status__in=["queued", "running"]
                    ).exists()
                ),
                60,
            )
        overshoot = [seen[a.job_id] - (last[a.pk] + THRESHOLD_S) for a in attempts]
        resend = [running[job] - seen[job] for job in jobs]
        record(
            f"detection overshoot past the threshold, p50 / p95 ({hung} hung)",
            f"{ms(percentile(overshoot, 50))} / {ms(percentile(overshoot, 95))}",
            "p95 < 700 ms",
            percentile(overshoot, 95) < LIVE["sweep_interval_s"] + 0.2,
        )
        record(
            "timeout -> new attempt running, p50 / p95",
            f"{ms(percentile(resend, 50))} / {ms(percentile(resend, 95))}",
            "p95 < 300 ms",
            percentile(resend, 95) < 0.3,
        )

        # The agents worker is gone: the re-sent messages wait in the queue, countable.
        client = redis_client()
        client.delete("agents")
        attempts = make_attempts(programmers, burst)
        beat_at = time.time()
        register(attempts, beat_at)
        crossing = beat_at + THRESHOLD_S
        jobs = [a.job_id for a in attempts]
        _wait(f"{burst} re-sent messages", lambda: client.llen("agents") >= burst, 60)
        all_sent = time.time()
        seen = _timeouts(jobs)
        created = list(
            Attempt.objects.filter(job_id__in=jobs, number=2).values_list("created_at", flat=True)
        )
    assert len(seen) == burst and len(created) == burst, (len(seen), len(created))
    first = min(seen.values())
    record(
        f"{burst} overdue at once: every one re-sent, after the threshold",
        f"{all_sent - crossing:.2f} s (detected {first - crossing:.2f} s in)",
        "< 2 s",
        all_sent - crossing < 2.0,
    )
    record(
        f"  from the first timeout to the last message sent ({burst})",
        f"{all_sent - first:.2f} s ({(all_sent - first) / burst * 1000:.2f} ms each)",
    )


# -- main --------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases")
    parser.add_argument("--only", default="", help="comma-separated phases: beats,http,sweep,live")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))

    def wanted(name: str) -> bool:
        return not only or name in only

    box = Sandbox("hhmrs-bench")
    box.django()
    print(f"PAS HHMRS bench: SQLite under {box.tmp}, Redis db {box.redis_db}, prefix {box.prefix}")
    seconds = 1.0 if args.quick else 3.0
    if wanted("beats"):
        bench_beats_inprocess(box, seconds)
        reset(box)
    if wanted("http"):
        bench_beats_http(box, 3.0 if args.quick else 10.0, 50)
        reset(box)
    if wanted("sweep"):
        bench_sweep(box, [1_000, 10_000, 100_000], 50 if args.quick else 200)
        reset(box)
    if wanted("live"):
        bench_live(box, 20, 1000)
    print()
    print(results_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
