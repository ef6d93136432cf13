"""Many attempts in flight on one worker process, each still supervised on its own.

Real processes: the agents worker as the Procfile runs it (Celery's threads pool under
``pas_core.scripts.supervise``), the hhmrs worker, beat. Every model call takes a few
seconds (``PAS_OFFLINE_DELAY_S``), beating as a stream would.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from pas_core.models import Agent, Attempt, Event, Job, Provider
from pas_core.services.faults import fault_inject
from pas_core.services.submit import job_submit
from pas_core.stores import workers
from tests import procs
from tests.e2e import short_timings, stack, wait_until
from tests.llm_server import llm_server

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

PROGRAMMERS = [
    *(f"Prog-Qwen-00{n}" for n in range(1, 6)),
    "Prog-Claude-001",
    "Prog-Claude-002",
    "Prog-DeepSeek-001",
    "Prog-DeepSeek-002",
    "Prog-GPT-001",
]


def _jobs(count: int, agents: list[str]) -> list[Job]:
    """Send ``count`` Programmer job cards straight to the agents, round robin."""
    return [
        job_submit(
            agents[i % len(agents)],
            {"task": f"Write module {i}", "lane": "Code", "files": [f"src/m{i}.py"]},
        )
        for i in range(count)
    ]


class Peak:
    """Sample, in a thread, how many attempts run at once (optionally on one provider)."""

    def __init__(self, model_prefix: str = "") -> None:
        self.prefix = model_prefix
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        from django.db import connection

        try:
            while not self.stop.is_set():
                running = Attempt.objects.filter(status=Attempt.Status.RUNNING)
                if self.prefix:
                    running = running.filter(model__startswith=self.prefix)
                self.peak = max(self.peak, running.count())
                time.sleep(0.05)
        finally:
            connection.close()

    def __enter__(self) -> Peak:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def _statuses(jobs: list[Job]) -> set[str]:
    return set(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status", flat=True))


def _ended(jobs: list[Job]) -> bool:
    return not Job.objects.filter(
        pk__in=[j.pk for j in jobs], status__in=["queued", "running", "waiting"]
    ).exists()


def test_one_hung_attempt_of_many_is_ended_alone(tree: Any, proc_env: Any) -> None:
    short_timings(timeout_threshold_s=4)
    Provider.objects.update(max_concurrency=100)
    fault_inject("Prog-GPT-001", "hang", count=1)
    with stack(proc_env(PAS_OFFLINE_DELAY_S="4"), agents=40) as running, Peak() as peak:
        jobs = _jobs(30, PROGRAMMERS)
        hung = wait_until(
            lambda: Attempt.objects.filter(agent_id="Prog-GPT-001", status="timed_out").first(),
            "the hung attempt to time out",
            60,
        )
        wid = next(iter(workers.workers_alive()), "")
        # Its thread let go at once: the process no longer holds it.
        wait_until(lambda: hung.pk not in workers.held_get(wid), "the hung thread to end", 10)
        wait_until(lambda: _ended(jobs), "every job to end", 120)
        log = running["agents"].log_text()

    # Thirty model calls of 4 s were in flight together on one process...
    assert peak.peak >= 20
    # ...every job succeeded, the hung one on its restart, the others untouched.
    assert set(
        Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status", flat=True)
    ) == {"succeeded"}
    assert Job.objects.get(pk=hung.job_id).restart_count == 1
    others = Job.objects.filter(pk__in=[j.pk for j in jobs]).exclude(pk=hung.job_id)
    assert set(others.values_list("restart_count", flat=True)) == {0}
    assert Event.objects.filter(event_type="hhmrs_timeout").count() == 1
    assert "supervise: worker" not in log  # The process itself was never replaced.


def test_a_spinning_attempt_gets_its_worker_replaced_and_only_it_is_blamed(
    tree: Any, proc_env: Any
) -> None:
    short_timings(timeout_threshold_s=6)
    fault_inject("Prog-Qwen-001", "spin", count=1)
    env = proc_env(PAS_OFFLINE_DELAY_S="5", PAS_WORKER_STALL_S="2")
    with stack(env, agents=20) as running:
        # The innocent first, in flight on the worker, then the runaway's jobs: a spin
        # that starts before the others are taken would have nobody to spare.
        jobs = _jobs(6, PROGRAMMERS[1:4])
        wait_until(
            lambda: Attempt.objects.filter(status=Attempt.Status.RUNNING).count() >= 3,
            "the innocent attempts to run",
            60,
        )
        jobs += _jobs(2, PROGRAMMERS[:1])
        wait_until(lambda: _ended(jobs), "every job to end", 150)
        log = running["agents"].log_text()

    spun = Attempt.objects.get(agent_id="Prog-Qwen-001", error_kind="runaway")
    assert "its worker process had to be replaced" in spun.error
    replaced = Event.objects.get(event_type="worker_replaced")
    assert replaced.data["culprits"] == [spun.pk]
    assert "stopped ticking" in log
    assert set(
        Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status", flat=True)
    ) == {"succeeded"}
    # Only the runaway's job counted a restart; the innocent ones were re-sent for free.
    assert Job.objects.get(pk=spun.job_id).restart_count == 1
    innocent = Attempt.objects.filter(error_kind="killed", error__contains="not counted")
    assert innocent.count() == len(replaced.data["innocent"]) >= 1
    for attempt in innocent:
        assert attempt.job.restart_count == 0
    # TRON left them to the supervisor: nobody was timed out for the worker's silence.
    assert not Event.objects.filter(event_type="hhmrs_timeout").exists()


def test_a_burst_queues_at_the_providers_cap(tree: Any, proc_env: Any) -> None:
    short_timings()
    Provider.objects.filter(name="custom").update(max_concurrency=3)
    Agent.objects.filter(agent_id__in=PROGRAMMERS).update(current_model="custom/planner")
    with llm_server() as server:
        server.planner_delay_s = 2.5
        env = proc_env(PAS_LLM_MODE="live", PAS_CUSTOM_BASE_URL=server.base_url)
        with stack(env, agents=20):
            jobs = _jobs(12, PROGRAMMERS)
            waited = wait_until(
                lambda: (
                    Attempt.objects.filter(status="queued", model="custom/planner").count() >= 6
                ),
                "attempts to wait for a slot",
                60,
            )
            wait_until(lambda: _ended(jobs), "every job to end", 120)

    assert waited
    assert server.peak == 3  # The provider never saw more than the cap, and saw it used.
    ids = [j.pk for j in jobs]
    assert set(Job.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"succeeded"}
    # Waiting for a slot is not a hang: nobody timed out, nothing restarted.
    assert not Event.objects.filter(event_type="hhmrs_timeout").exists()
    assert set(Job.objects.filter(pk__in=ids).values_list("restart_count", flat=True)) == {0}


def test_health_reports_a_dead_worker_within_seconds(tree: Any, proc_env: Any) -> None:
    from tests.test_health import get_json

    env = proc_env()
    with (
        procs.celery_worker(env, queues="hhmrs", name="hhmrs", concurrency=1) as hhmrs,
        procs.agents_worker(env, concurrency=4),
        procs.daphne_server(env) as web,
    ):
        wait_until(lambda: get_json(web.url + "/health")[0] == 200, "health to be ok", 30)
        hhmrs.signal_group(9)
        died = time.monotonic()
        status, body = wait_until(
            lambda: (lambda r: r if r[0] == 503 else None)(get_json(web.url + "/health")),
            "health to notice the dead worker",
            15,
        )
        noticed = time.monotonic() - died

    assert body["queues"] == {"agents": 1, "hhmrs": 0}
    assert "workers: none for the hhmrs queue" in body["problems"]
    assert noticed < 6
