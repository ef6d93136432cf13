"""TRON, the heartbeat sweep, against the session's real Redis and the test database.

Attempts here are rows this file creates, registered in the heartbeat store with a chosen
last beat; the sweep is called with a chosen ``now``. A restart sends a Celery message
(to this session's Redis: no worker runs, the message just waits in the ``agents`` queue).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from pas_core import tron
from pas_core.config import hhmrs_get
from pas_core.models import Attempt, Event, Job, Notification, Run
from pas_core.services import jobs, supervision
from pas_core.stores import heartbeats
from pas_core.stores.redis import rkey
from tests.factories import time_out

# Contract defaults (bootstrap stores them): overdue after 60 s and 2 missed 30 s beats.
NOW = 1_900_000_000.0
OVERDUE = NOW - 61  # Past the threshold and 2 missed beats.
FRESH = NOW - 59  # One second short of the threshold.
TIMEOUT_KEYS = {"agent_id", "parent_id", "job_id", "run_id", "restart_count", "last_seen"}


def running_attempt(
    agent_id: str, *, last_beat: float, restart_count: int = 0, llm_failure_count: int = 0
) -> Attempt:
    """Create a run, a running job for ``agent_id`` and its running attempt; supervise it."""
    run = Run.objects.create(title="Supervised", goal="Stay alive", status=Run.Status.RUNNING)
    job = Job.objects.create(
        job_id=f"jc-{str(run.run_id)[:8]}-{agent_id.lower()}",
        run=run,
        agent_id=agent_id,
        status=Job.Status.RUNNING,
        restart_count=restart_count,
        llm_failure_count=llm_failure_count,
    )
    attempt = Attempt.objects.create(
        job=job,
        number=1,
        agent_id=agent_id,
        model=job.agent.current_model,
        status=Attempt.Status.RUNNING,
        started_at=datetime.fromtimestamp(last_beat, tz=UTC),
        celery_task_id=uuid.uuid4().hex,
    )
    Job.objects.filter(pk=job.pk).update(current_attempt=attempt)
    heartbeats.hb_register(attempt.pk, agent_id=agent_id, job_id=job.pk, now=last_beat)
    return attempt


def events(event_type: str) -> list[dict[str, Any]]:
    return [e.data for e in Event.objects.filter(event_type=event_type).order_by("id")]


def status_of(attempt: Attempt) -> str:
    return Attempt.objects.get(pk=attempt.pk).status


def agents_queue_length(redis: Any) -> int:
    """Return how many attempt messages wait for a worker (Celery's Redis list)."""
    return int(redis.llen("agents"))


@pytest.mark.django_db
def test_nothing_overdue_means_the_sweep_does_nothing(
    tree: Any, redis: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    fresh = running_attempt("Dir-Code", last_beat=FRESH)
    events_before = Event.objects.count()

    with django_capture_on_commit_callbacks(execute=True):
        handled = tron.sweep(now=NOW)

    assert handled == 0
    assert status_of(fresh) == "running"
    # Still supervised with the same last beat, no event, no message sent.
    assert heartbeats.hb_last(fresh.pk) == FRESH
    assert Event.objects.count() == events_before
    assert agents_queue_length(redis) == 0


@pytest.mark.django_db
def test_exactly_the_overdue_attempts_time_out_and_restart(
    tree: Any, redis: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    hung_code = running_attempt("Dir-Code", last_beat=OVERDUE)
    hung_data = running_attempt("Mgr-Data-01", last_beat=NOW - 3600)
    fresh = running_attempt("Dir-Docs", last_beat=FRESH)

    with django_capture_on_commit_callbacks(execute=True):
        handled = tron.sweep(now=NOW)

    assert handled == 2
    assert status_of(hung_code) == "timed_out"
    assert status_of(hung_data) == "timed_out"
    assert status_of(fresh) == "running"
    # The timed-out attempts leave the store; the fresh one stays.
    assert heartbeats.hb_last(hung_code.pk) is None
    assert heartbeats.hb_last(hung_data.pk) is None
    assert heartbeats.hb_last(fresh.pk) == FRESH

    timeouts = {e["agent_id"]: e for e in events("hhmrs_timeout")}
    assert set(timeouts) == {"Dir-Code", "Mgr-Data-01"}
    code = timeouts["Dir-Code"]
    assert TIMEOUT_KEYS | {"message"} <= set(code)  # The contract's keys.
    assert code["parent_id"] == "Architect"
    assert code["job_id"] == hung_code.job_id
    assert code["run_id"] == str(hung_code.job.run_id)
    assert code["restart_count"] == 0  # The count before this timeout's restart.
    assert code["last_seen"] == "2030-03-17T17:45:39+00:00"  # OVERDUE as ISO 8601.
    assert code["message"] == "Dir-Code missed heartbeats for 61.0s"
    assert timeouts["Mgr-Data-01"]["parent_id"] == "Dir-Data"

    # The parent restarted each job: a second attempt, queued, current, and sent.
    for hung in (hung_code, hung_data):
        job = Job.objects.get(pk=hung.job_id)
        assert job.restart_count == 1
        assert job.current_attempt is not None
        assert job.current_attempt.number == 2
        assert job.current_attempt.status == "queued"
    assert agents_queue_length(redis) == 2
    restarts = {e["agent_id"]: e for e in events("hhmrs_restart")}
    assert restarts["Dir-Code"]["restart_count"] == 1
    assert restarts["Dir-Code"]["parent_id"] == "Architect"
    # The fresh attempt's job was not touched.
    assert Job.objects.get(pk=fresh.job_id).restart_count == 0


@pytest.mark.django_db
def test_it_escalates_after_max_restarts_and_switches_the_model(
    tree: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    hung = running_attempt("Dir-Code", last_beat=OVERDUE, restart_count=3)

    with django_capture_on_commit_callbacks(execute=True):
        assert tron.sweep(now=NOW) == 1

    kinds = [
        e.event_type for e in Event.objects.filter(event_type__startswith="hhmrs_").order_by("id")
    ]
    assert kinds == ["hhmrs_timeout", "hhmrs_escalation", "hhmrs_restart"]
    (escalation,) = events("hhmrs_escalation")
    assert escalation["grandparent_id"] == "PAS Root"
    assert escalation["reason"] == "max_restarts_exceeded"
    (switch,) = events("hhmrs_restart")
    assert switch["retry_type"] == "llm_change"
    assert switch["old_llm"] == "google/gemini-2.5-flash"
    assert switch["new_llm"] == "ollama/llama3.1:8b"
    job = Job.objects.get(pk=hung.job_id)
    # The restarts start over on the new model.
    assert (job.restart_count, job.llm_failure_count) == (0, 1)
    assert job.current_attempt is not None
    assert job.current_attempt.model == "ollama/llama3.1:8b"


@pytest.mark.django_db
def test_it_fails_for_good_after_max_llm_retries(
    tree: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    hung = running_attempt("Dir-Code", last_beat=OVERDUE, restart_count=3, llm_failure_count=3)

    with django_capture_on_commit_callbacks(execute=True):
        assert tron.sweep(now=NOW) == 1

    (failure,) = events("hhmrs_failure")
    assert failure["reason"] == "max_llm_retries_exceeded"
    assert failure["failure_count"] == 3
    job = Job.objects.get(pk=hung.job_id)
    # It waits in the retry queue, a person is told, and no attempt is sent.
    assert (job.status, job.retryable) == ("failed", True)
    assert job.current_attempt_id == hung.pk
    assert Notification.objects.filter(job=job).count() == 1


@pytest.mark.django_db
def test_a_stale_store_entry_is_dropped_without_a_timeout(tree: Any) -> None:
    ended = running_attempt("Dir-Code", last_beat=OVERDUE)
    # It ended without leaving the store (say, the process died between the two writes).
    Attempt.objects.filter(pk=ended.pk).update(status=Attempt.Status.SUCCEEDED)

    assert tron.sweep(now=NOW) == 0
    assert heartbeats.hb_last(ended.pk) is None
    assert events("hhmrs_timeout") == []


@pytest.mark.django_db
def test_the_sweep_does_nothing_while_another_holds_the_lock(tree: Any, redis: Any) -> None:
    hung = running_attempt("Dir-Code", last_beat=OVERDUE)
    redis.set(rkey("tron", "lock"), "another-sweep", ex=30)

    assert tron.sweep(now=NOW) == 0
    assert status_of(hung) == "running"  # Left to the sweep that holds the lock.

    redis.delete(rkey("tron", "lock"))
    assert tron.sweep(now=NOW) == 1


@pytest.mark.django_db
def test_a_late_beat_after_the_timeout_does_not_bring_the_attempt_back(tree: Any) -> None:
    hung = running_attempt("Dir-Code", last_beat=OVERDUE)
    time_out(hung.pk, now=NOW, last_beat=OVERDUE)

    accepted = heartbeats.hb_beat(hung.pk, agent_id="Dir-Code", progress=0.9, now=NOW + 1)

    assert accepted is False
    assert heartbeats.hb_last(hung.pk) is None  # ZADD XX: not re-added.
    assert heartbeats.hb_supervised_count() == 0


@pytest.mark.django_db
def test_a_second_time_out_of_the_same_attempt_does_nothing(tree: Any) -> None:
    hung = running_attempt("Dir-Code", last_beat=OVERDUE)

    first = time_out(hung.pk, now=NOW, last_beat=OVERDUE)
    second = time_out(hung.pk, now=NOW + 0.5, last_beat=OVERDUE)

    assert first is not None
    assert second is None
    assert len(events("hhmrs_timeout")) == 1


@pytest.mark.django_db
def test_a_result_that_arrives_first_beats_the_timeout(tree: Any) -> None:
    attempt = running_attempt("Dir-Code", last_beat=OVERDUE)

    finished = jobs.attempt_finish(attempt, result={"state": "completed"})
    timed_out = time_out(attempt.pk, now=NOW, last_beat=OVERDUE)

    assert finished is True
    assert timed_out is None  # The timeout found the attempt no longer running.
    assert status_of(attempt) == "succeeded"
    assert Job.objects.get(pk=attempt.job_id).status == "succeeded"
    assert events("hhmrs_timeout") == []
    assert tron.sweep(now=NOW) == 0


@pytest.mark.django_db
def test_a_timeout_that_arrives_first_discards_the_result(tree: Any) -> None:
    attempt = running_attempt("Dir-Code", last_beat=OVERDUE)

    timed_out = time_out(attempt.pk, now=NOW, last_beat=OVERDUE)
    finished = jobs.attempt_finish(attempt, result={"state": "completed"})

    assert timed_out is not None
    assert finished is False  # The late result is thrown away.
    assert status_of(attempt) == "timed_out"
    job = Job.objects.get(pk=attempt.job_id)
    assert job.status == "queued"  # Still open: its parent re-sent it at once.
    assert job.result is None
    assert events("job_completed") == []
    assert len(events("hhmrs_timeout")) == 1


def _in_threads(count: int, work: Callable[[], Any]) -> list[Any]:
    """Run ``work`` in ``count`` threads released at once; return their results."""
    barrier = threading.Barrier(count)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(work())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()  # Each thread has its own database connection.

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    return results


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_handle_each_timeout_exactly_once(tree: Any, redis: Any) -> None:
    agents = ["Dir-Code", "Dir-Models", "Dir-Data", "Mgr-Code-01", "Mgr-Docs-01"]
    hung = [running_attempt(agent, last_beat=OVERDUE) for agent in agents]
    fresh = running_attempt("Dir-Docs", last_beat=FRESH)

    # The sweep's body without its lock: only the conditional updates keep them apart.
    handled = _in_threads(2, lambda: tron._sweep(NOW, hhmrs_get(), lambda: None))

    assert sum(handled) == 5  # Every overdue attempt handled by one sweep or the other.
    timeouts = events("hhmrs_timeout")
    assert sorted(e["agent_id"] for e in timeouts) == sorted(agents)  # One each.
    for attempt in hung:
        job = Job.objects.get(pk=attempt.job_id)
        # One restart and one new attempt per job, not two.
        assert job.restart_count == 1
        assert job.attempts.count() == 2
    assert len(events("hhmrs_restart")) == 5
    assert agents_queue_length(redis) == 5
    assert status_of(fresh) == "running"


@pytest.mark.django_db(transaction=True)
def test_two_time_outs_of_one_attempt_at_once_have_one_winner(tree: Any) -> None:
    hung = running_attempt("Dir-Code", last_beat=OVERDUE)

    results = _in_threads(4, lambda: time_out(hung.pk, now=NOW, last_beat=OVERDUE))

    assert sum(1 for r in results if r is not None) == 1
    assert len(events("hhmrs_timeout")) == 1


@pytest.mark.django_db(transaction=True)
def test_a_result_racing_a_timeout_has_one_winner(tree: Any) -> None:
    attempts = [running_attempt(agent, last_beat=OVERDUE) for agent in ("Dir-Code", "Dir-Data")]
    outcomes: dict[int, list[str]] = {a.pk: [] for a in attempts}

    def race(attempt: Attempt, side: str) -> Callable[[], None]:
        def run() -> None:
            if side == "finish":
                won = jobs.attempt_finish(
                    Attempt.objects.select_related("job").get(pk=attempt.pk),
                    result={"state": "completed"},
                )
            else:
                won = time_out(attempt.pk, now=NOW, last_beat=OVERDUE) is not None
            if won:
                outcomes[attempt.pk].append(side)

        return run

    for attempt in attempts:
        sides = iter([race(attempt, "finish"), race(attempt, "timeout")])
        lock = threading.Lock()

        def next_side(sides: Any = sides, lock: threading.Lock = lock) -> None:
            with lock:
                work = next(sides)
            work()

        _in_threads(2, next_side)

    for attempt in attempts:
        # Exactly one side won, and the rows agree with it.
        assert len(outcomes[attempt.pk]) == 1
        winner = outcomes[attempt.pk][0]
        expected = {"finish": "succeeded", "timeout": "timed_out"}[winner]
        assert status_of(attempt) == expected
        timeouts = [e for e in events("hhmrs_timeout") if e["job_id"] == attempt.job_id]
        assert len(timeouts) == (1 if winner == "timeout" else 0)


def test_the_store_answers_only_the_overdue_members(redis: Any) -> None:
    # 2,000 fresh members and 3 overdue ones (bench/hhmrs_bench.py times this at scale).
    redis.zadd(rkey("hb", "running"), {str(10_000 + i): FRESH for i in range(2000)})
    redis.zadd(rkey("hb", "running"), {str(90_000 + i): OVERDUE for i in range(3)})

    overdue = heartbeats.hb_overdue(NOW - 60)

    assert overdue == [(90_000, OVERDUE), (90_001, OVERDUE), (90_002, OVERDUE)]


@pytest.mark.django_db
def test_a_timeout_in_a_list_of_one_writes_what_a_list_of_many_writes(
    tree: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    from pas_core.config import hhmrs_get
    from pas_core.models import CommsMessage

    single = running_attempt("Dir-Code", last_beat=OVERDUE)
    batch = running_attempt("Dir-Code", last_beat=OVERDUE)
    other = running_attempt("Dir-Data", last_beat=OVERDUE - 7)

    with django_capture_on_commit_callbacks(execute=True):
        supervision.attempts_time_out([(single.pk, OVERDUE)], now=NOW, cfg=hhmrs_get())
        supervision.attempts_time_out(
            [(batch.pk, OVERDUE), (other.pk, OVERDUE - 7)], now=NOW, cfg=hhmrs_get()
        )

    def row(attempt: Attempt) -> dict[str, Any]:
        """The attempt's row, every field but its own ids and clock times."""
        values = Attempt.objects.filter(pk=attempt.pk).values().get()
        skip = {"id", "job_id", "celery_task_id", "created_at", "started_at", "finished_at"}
        return {k: v for k, v in values.items() if k not in skip}

    def story(attempt: Attempt) -> list[tuple[Any, ...]]:
        """The attempt's events and comms, with its own job and run ids blanked."""
        ids = {attempt.job_id: "JOB", str(attempt.job.run_id): "RUN"}

        def blank(value: Any) -> Any:
            return ids.get(str(value), value)

        rows: list[tuple[Any, ...]] = []
        for e in Event.objects.filter(job_id=attempt.job_id).order_by("id"):
            data = {k: blank(v) for k, v in e.data.items() if k != "timestamp"}
            rows.append((e.event_type, e.agent_id, blank(e.run_id), blank(e.job_id), data))
        for m in CommsMessage.objects.filter(run_id=str(attempt.job.run_id)).order_by("id"):
            text = m.message.replace(attempt.job_id, "JOB")
            meta = {k: blank(v) for k, v in m.metadata.items()}
            rows.append((m.sender, m.recipient, m.kind, text, m.llm_model, m.status, meta))
        return rows

    # The same rows (Attempt.error included), the same events in the same order with
    # the same data, the same comms rows.
    assert row(batch) == row(single)
    assert row(single)["error"] == "no heartbeat for 61.0s"
    assert row(other)["error"] == "no heartbeat for 68.0s"  # Each its own silence.
    assert [r[0] for r in story(batch)[:2]] == ["hhmrs_timeout", "hhmrs_restart"]
    assert story(batch) == story(single)
    lines = "\n".join(
        p.read_text() for p in (Path(settings.PAS_ARTIFACTS_DIR) / "logs").glob("*.txt")
    )
    for attempt in (single, batch):
        # Each one's lines reached the day's file.
        assert "|TRON|Architect|STATUS|Child timeout: Dir-Code (restart_count=0)|" in lines
        assert f"re-sending {attempt.job_id} (restart 1/3, reason timeout)" in lines


@pytest.mark.django_db
def test_a_sweeper_killed_holding_the_lock_delays_detection_by_two_intervals_at_most(
    tree: Any, redis: Any
) -> None:
    from pas_core import config

    config.hhmrs_update({"sweep_interval_s": 0.5})
    hung = running_attempt("Dir-Code", last_beat=OVERDUE)
    # A sweep that died mid-sweep (OOM kill): its lock is left behind with its TTL.
    held = redis.lock(rkey("tron", "lock"), timeout=tron.lock_ttl_s(hhmrs_get()))
    assert held.acquire(blocking=False)
    assert tron.sweep(now=NOW) == 0  # Held: this sweep stands aside...
    time.sleep(tron.lock_ttl_s(hhmrs_get()) + 0.1)

    assert tron.sweep(now=NOW) == 1  # ...and the lock is gone two intervals later.
    assert status_of(hung) == "timed_out"
    assert tron.lock_ttl_s(hhmrs_get()) == 1.0
