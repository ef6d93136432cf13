"""Drill (long, by hand): 1,000 agents heartbeat over HTTP once a second while runs go on.

``PAS_LONG_DRILLS=1 make drills ARGS="-k load -s"``; ``PAS_LOAD_SECONDS`` (default
300) sets how long. 1,000 extra agents each have a running attempt registered with
TRON, and a separate process beats for all of them through the lean heartbeat route
of a real Daphne, once a second each. Midway, 10 of them stop beating (hung), and the
runs going on meanwhile get injected hangs.

Promise: no false timeout (only hung agents and injected hangs time out), every hang
detected, every run completes. Reported: heartbeat latency p50/p95 and the resident
memory of each process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from pas_core.auth import token_create
from pas_core.models import Agent, Attempt, Event, Job, Run
from pas_core.services.faults import fault_inject
from pas_core.services.submit import run_submit
from pas_core.stores import heartbeats
from pas_core.stores.redis import redis_client
from tests import procs
from tests.drills.common import figure, rss_kb, tree_rss_mb, wait_for
from tests.e2e import short_timings, stack

SECONDS = float(os.environ.get("PAS_LOAD_SECONDS") or 300)
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.long,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(int(SECONDS) + 300),
]

AGENTS = 1000
HUNG = 10
RUN_EVERY_S = 15.0


def _load_agents() -> list[tuple[str, str]]:
    """Create the extra agents, one running attempt each, registered with TRON."""
    parent = Agent.objects.get(pk="Mgr-Code-01")
    run = Run.objects.create(title="Load", goal="heartbeat load", status=Run.Status.RUNNING)
    agents = Agent.objects.bulk_create(
        Agent(
            agent_id=f"Load-{i:04d}",
            role="programmer",
            lane="Code",
            parent=parent,
            primary_model=parent.primary_model,
            fallback_models=parent.fallback_models,
            current_model=parent.primary_model,
            position=10_000 + i,
        )
        for i in range(AGENTS)
    )
    jobs = Job.objects.bulk_create(
        Job(
            job_id=f"jc-load-{a.agent_id.lower()}",
            run=run,
            agent=a,
            lane="Code",
            status=Job.Status.RUNNING,
            card={"task": "Write a one-line note for the load drill", "lane": "Code"},
        )
        for a in agents
    )
    now = timezone.now()
    attempts = Attempt.objects.bulk_create(
        Attempt(
            job=j,
            number=1,
            agent_id=j.agent_id,
            model=parent.primary_model,
            celery_task_id=uuid.uuid4().hex,
            status=Attempt.Status.RUNNING,
            started_at=now,
            last_heartbeat_at=now,
        )
        for j in jobs
    )
    for job, attempt in zip(jobs, attempts, strict=True):
        job.current_attempt = attempt
    Job.objects.bulk_update(jobs, ["current_attempt"])
    for attempt in Attempt.objects.filter(job__run=run):
        heartbeats.hb_register(attempt.pk, agent_id=attempt.agent_id, job_id=attempt.job_id)
    return [(j.agent_id, j.job_id) for j in jobs]


def test_a_thousand_agents_beating_over_http_cause_no_false_timeout(tree, proc_env, tmp_path):
    seconds = SECONDS
    short_timings(timeout_threshold_s=5, missed_heartbeat_threshold=2)
    token, _ = token_create(name="load")
    env = proc_env()
    memory: dict[str, float] = {}
    run_ids: list[str] = []
    with stack(env, agents=2) as running, procs.daphne_server(env) as web:
        load = _load_agents()
        stop_at = seconds / 3
        (tmp_path / "agents.json").write_text(json.dumps(load))
        client = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.drills.load_client",
                f"--url={web.url}",
                f"--token={token}",
                f"--agents={tmp_path / 'agents.json'}",
                f"--seconds={seconds}",
                f"--stop-at={stop_at}",
                f"--stop={HUNG}",
                f"--out={tmp_path / 'load.json'}",
            ],
            cwd=procs.PROJECT_DIR,
            env=env,
        )
        hung = {agent_id for agent_id, _ in load[:HUNG]}
        redis_pid = int(redis_client().info("server")["process_id"])
        pids = {
            "web (daphne)": web.pid,
            "worker agents (with pool)": running["agents"].pid,
            "worker hhmrs (with pool)": running["hhmrs"].pid,
            "beat": running["beat"].pid,
            "load client": client.pid,
        }

        def sample() -> None:
            for name, pid in pids.items():
                memory[name] = max(memory.get(name, 0.0), tree_rss_mb(pid))
            memory["redis"] = max(memory.get("redis", 0.0), rss_kb(redis_pid) / 1024)

        started = time.monotonic()
        i = 0
        next_run = started + 5
        try:
            while client.poll() is None and time.monotonic() - started < seconds + 60:
                if time.monotonic() >= next_run:
                    if i % 2 == 0:
                        fault_inject("Dir-Code", "hang", count=1)
                    title = f"Under load {i}"
                    run_ids.append(str(run_submit(title=title, goal="Write the parser code").pk))
                    i += 1
                    next_run += RUN_EVERY_S
                sample()
                time.sleep(1)
        finally:
            if client.poll() is None:
                client.kill()
            client.wait(10)
        wait_for(
            lambda: (
                not Run.objects.filter(pk__in=run_ids)
                .exclude(status__in=["completed", "failed"])
                .exists()
            ),
            "every run to end",
            120,
            1,
        )
        sample()
    result = json.loads((tmp_path / "load.json").read_text())

    load_ids = {agent_id for agent_id, _ in load}
    timeouts = list(
        Event.objects.filter(event_type="hhmrs_timeout").values_list("agent_id", "job_id")
    )
    load_timeouts = {a for a, _ in timeouts if a in load_ids}
    false_load = sorted(load_timeouts - hung)
    run_jobs = set(Job.objects.filter(run_id__in=run_ids).values_list("pk", flat=True))
    run_timeouts = sum(1 for _, j in timeouts if j in run_jobs)
    hangs = Event.objects.filter(
        event_type="fault_triggered", data__kind="hang", job_id__in=run_jobs
    ).count()
    completed = Run.objects.filter(pk__in=run_ids, status=Run.Status.COMPLETED).count()
    beats = result["statuses"].get("202", 0)
    memory_text = ", ".join(f"{k} {v:.0f} MB" for k, v in memory.items())
    figure(
        f"DRILL load: {AGENTS} agents x 1 beat/s for {seconds:.0f} s: {result['requests']} beats "
        f"({beats} accepted, statuses {result['statuses']}), latency p50 "
        f"{result['p50_ms']:.1f} ms p95 {result['p95_ms']:.1f} ms p99 {result['p99_ms']:.1f} ms "
        f"max {result['max_ms']:.0f} ms, {result['late_rounds']} late rounds; "
        f"{len(false_load)} false timeouts, {len(load_timeouts & hung)}/{HUNG} hung agents and "
        f"{run_timeouts}/{hangs} injected hangs detected; {completed}/{len(run_ids)} runs "
        f"completed; peak RSS: {memory_text}"
    )
    connection.close()
    # No false timeout: only the hung agents and the injected hangs timed out.
    assert false_load == []
    assert run_timeouts == hangs
    # Every hang detected.
    assert load_timeouts & hung == hung
    assert completed == len(run_ids)
    # Every beat sent was accepted, and the client kept up (9 in 10 of the beats due).
    assert set(result["statuses"]) == {"202"}, result["statuses"]
    assert beats >= 0.9 * (AGENTS * seconds - HUNG * (seconds - stop_at))
