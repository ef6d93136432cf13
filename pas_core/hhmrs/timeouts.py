"""The sweep's batch: time out many overdue attempts and restart their jobs at once.

One sweep can find hundreds of attempts overdue together (a worker host lost, a queue
stalled). Handled one by one (``services.attempt_time_out`` then
``services.attempt_failure_handle``), each costs two transactions, a revoke broadcast
and a broker connection of its own: about 10 ms here, so 1,000 took 10 s. In chunks of
``CHUNK`` they share one transaction, one revoke, one ZREM and one broker connection,
and the outcome is the same, event for event and comms line for comms line.

Exactly one winner still: the jobs' rows are locked first (the order every other
writer takes them in), then the attempts' rows, re-read as ``running`` under the lock
before they change. On SQLite the IMMEDIATE transaction holds the database's write
lock from its start, which serializes the same way.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models import F, Max, OuterRef, Subquery
from django.utils import timezone

from .. import comms
from ..config import Hhmrs
from ..events import event_publish
from ..models import Agent, Attempt, CommsMessage, Event, Job
from ..runtime.execute import agent_status_set
from . import heartbeats, policy, services

log = logging.getLogger(__name__)

CHUNK = 100  # Per transaction: short enough that SQLite's other writers barely wait.


def attempts_time_out(overdue: list[tuple[int, float]], *, now: float, cfg: Hhmrs) -> int:
    """Time out the overdue attempts still running and recover their jobs; return how many.

    ``overdue`` holds ``(attempt id, last beat)``. A chunk that fails as a whole (a bad
    row, a deadlock) is rolled back and handled one attempt at a time, so one bad job
    never holds the others back.
    """
    handled = 0
    for start in range(0, len(overdue), CHUNK):
        chunk = overdue[start : start + CHUNK]
        try:
            handled += _chunk_time_out(chunk, now=now, cfg=cfg)
        except Exception:  # noqa: BLE001 - retried one by one below
            log.exception(
                "TRON: a batch of %s timeouts failed; handling them one by one", len(chunk)
            )
            handled += _one_by_one(chunk, now=now)
    return handled


def _chunk_time_out(chunk: list[tuple[int, float]], *, now: float, cfg: Hhmrs) -> int:
    last_beats = dict(chunk)
    with transaction.atomic():
        job_ids = set(
            Attempt.objects.filter(pk__in=last_beats, status=Attempt.Status.RUNNING).values_list(
                "job_id", flat=True
            )
        )
        jobs = {
            job.pk: job
            for job in Job.objects.select_for_update(of=("self",))
            .select_related("agent", "agent__parent")
            .filter(pk__in=job_ids)
            .order_by("pk")
        }
        # Re-read under the lock: an attempt that finished meanwhile is not ours.
        attempts = list(
            Attempt.objects.select_for_update(of=("self",))
            .filter(pk__in=last_beats, job_id__in=jobs, status=Attempt.Status.RUNNING)
            .order_by("pk")
        )
        # One UPDATE for the chunk (bulk_update's CASE per row cost more than the rest);
        # each attempt's own silence is in its hhmrs_timeout event.
        limit = cfg.timeout_threshold_s, cfg.missed_heartbeat_threshold * cfg.heartbeat_interval_s
        Attempt.objects.filter(pk__in=[a.pk for a in attempts]).update(
            status=Attempt.Status.TIMED_OUT,
            finished_at=timezone.now(),
            error_kind="timeout",
            error=f"no heartbeat for {max(limit):g}s or more",
        )

        restarts: list[tuple[Job, Attempt]] = []
        escalations: list[Job] = []
        notes = _Notes()
        for attempt in attempts:
            job = jobs[attempt.job_id]
            attempt.job, attempt.agent = job, job.agent
            last_beat = last_beats[attempt.pk]
            notes.add(
                "hhmrs_timeout", *services.timeout_notes(attempt, job, now=now, last_beat=last_beat)
            )
            if job.current_attempt_id != attempt.pk or job.status not in services.OPEN:
                continue  # Fenced off: the job moved on without this attempt.
            if policy.child_timeout_decision(job.restart_count, cfg) == "restart":
                restarts.append((job, attempt))
            else:
                escalations.append(job)
        notes.save()
        _agents_status(attempts, Agent.Status.TIMED_OUT)
        task_ids = [a.celery_task_id for a in attempts if a.celery_task_id]
        transaction.on_commit(lambda: _revoke(task_ids))
        _jobs_restart(restarts, cfg=cfg)
        # Rare, and each its own story (switch or fail): the one-by-one services.
        for job in escalations:
            services.job_escalate(job, cfg=cfg, reason="max_restarts_exceeded")
    # Won or stale (ended some other way), none of them is supervised any more.
    heartbeats.hb_unregister_many(list(last_beats))
    return len(attempts)


def _jobs_restart(items: list[tuple[Job, Attempt]], *, cfg: Hhmrs) -> list[Attempt]:
    """Count a restart on each job and re-send it as a new attempt (job_restart, in bulk)."""
    if not items:
        return []
    numbers = dict(
        Attempt.objects.filter(job_id__in=[job.pk for job, _ in items])
        .values("job_id")
        .annotate(n=Max("number"))
        .values_list("job_id", "n")
    )
    fresh = []
    notes = _Notes()
    for job, old in items:
        job.restart_count += 1
        number = (numbers.get(job.pk) or 0) + 1
        notes.add(
            "hhmrs_restart", *services.restart_notes(job, cfg=cfg, reason="timeout", number=number)
        )
        fresh.append(
            Attempt(
                job=job,
                number=number,
                phase=old.phase,
                agent_id=job.agent_id,
                model=job.agent.current_model,
                celery_task_id=uuid.uuid4().hex,
            )
        )
    Attempt.objects.bulk_create(fresh)
    # One UPDATE: each job's newest attempt is the one just created for it.
    newest = Attempt.objects.filter(job=OuterRef("pk")).order_by("-number").values("pk")[:1]
    Job.objects.filter(pk__in=[job.pk for job, _ in items]).update(
        restart_count=F("restart_count") + 1,
        current_attempt=Subquery(newest),
        status=Job.Status.QUEUED,
        updated_at=timezone.now(),
    )
    for (job, _), attempt in zip(items, fresh, strict=True):
        job.current_attempt, job.status = attempt, Job.Status.QUEUED
    notes.save()
    _agents_status([job for job, _ in items], Agent.Status.RESTARTING)
    transaction.on_commit(lambda: _attempts_send(fresh))
    return fresh


class _Notes:
    """Events and comms lines written in bulk: ``event_emit`` and ``comms_log`` for many.

    Rows are inserted in one statement each, in the order they were added (so event ids
    keep each attempt's story in order); after commit every event is published and the
    file lines go out in one append. What a row holds is what event_emit and comms_log
    store: tests/test_tron.py compares the two paths.
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.lines: list[dict[str, Any]] = []

    def add(self, event_type: str, data: dict[str, Any], line: dict[str, Any]) -> None:
        self.events.append((event_type, data))
        self.lines.append(line)

    def save(self) -> None:
        now = timezone.now()
        events = Event.objects.bulk_create(
            [
                Event(
                    event_type=event_type,
                    agent_id=str(data.get("agent_id") or ""),
                    run_id=str(data.get("run_id") or ""),
                    job_id=str(data.get("job_id") or ""),
                    data={"timestamp": now.timestamp(), **data},
                )
                for event_type, data in self.events
            ]
        )
        messages = CommsMessage.objects.bulk_create(
            [
                CommsMessage(
                    ts=now,
                    sender=line["sender"],
                    recipient=line["recipient"],
                    kind=line["kind"],
                    message=line["message"],
                    llm_model=line.get("llm_model") or "",
                    run_id=str(line.get("run_id") or ""),
                    status=line.get("status", ""),
                    progress=line.get("progress"),
                    metadata=line.get("metadata") or {},
                )
                for line in self.lines
            ]
        )
        self.events, self.lines = [], []
        transaction.on_commit(lambda: _publish(events, messages))


def _publish(events: list[Event], messages: list[CommsMessage]) -> None:
    """Publish the events and append the comms lines; never raise.

    The re-sends registered after this on commit must still go out.
    """
    for event in events:
        event_publish(event)
    by_file: dict[Path, list[str]] = {}
    for msg in messages:
        by_file.setdefault(comms.comms_path(msg.ts), []).append(comms.comms_line(msg) + "\n")
    for path, lines in by_file.items():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # One O_APPEND write, as comms_log does per line: other writers never interleave.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, "".join(lines).encode())
            finally:
                os.close(fd)
        except OSError:
            log.warning("could not append %s comms lines to %s", len(lines), path, exc_info=True)


def _agents_status(rows: Iterable[Attempt | Job], status: str) -> None:
    for agent_id in dict.fromkeys(row.agent_id for row in rows):
        agent_status_set(agent_id, status)


def _revoke(task_ids: list[str]) -> None:
    """Kill the attempts' worker children: one broadcast for the whole chunk."""
    if not task_ids:
        return
    from ..celery import app

    try:
        app.control.revoke(task_ids, terminate=True, signal="SIGKILL")
    except Exception:  # noqa: BLE001 - the attempts are fenced off already
        log.warning("could not revoke %s tasks", len(task_ids), exc_info=True)


def _attempts_send(attempts: list[Attempt]) -> None:
    """Send the new attempts over one broker connection (attempt_send, in bulk)."""
    from ..celery import app
    from ..tasks import attempt_execute

    try:
        with app.producer_or_acquire() as producer:
            for attempt in attempts:
                attempt_execute.apply_async(
                    args=[attempt.pk],
                    task_id=attempt.celery_task_id,
                    queue="agents",
                    producer=producer,
                )
    except Exception:  # noqa: BLE001 - TRON's reconcile re-sends queued attempts
        log.exception("could not send %s re-sent attempts", len(attempts))


def _one_by_one(chunk: list[tuple[int, float]], *, now: float) -> int:
    handled = 0
    for attempt_id, last_beat in chunk:
        try:
            attempt = services.attempt_time_out(attempt_id, now=now, last_beat=last_beat)
            if attempt is None:
                continue
            handled += 1
            services.attempt_failure_handle(attempt.pk)
        except Exception:  # noqa: BLE001 - one bad job must not stop the sweep
            log.exception("TRON: handling attempt %s failed", attempt_id)
    return handled
