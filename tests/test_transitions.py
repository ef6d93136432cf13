"""The state machines: policy's tables, walked pair by pair through the one status write."""

from __future__ import annotations

import ast
import logging
import re
import uuid
from itertools import product
from pathlib import Path
from typing import Any

import pytest

from pas_core import policy
from pas_core.models import Attempt, Job, Run
from pas_core.services.transitions import attempt_move, attempts_move, job_move, run_move

TABLES = [
    (Attempt, policy.ATTEMPT_TRANSITIONS),
    (Job, policy.JOB_TRANSITIONS),
    (Run, policy.RUN_TRANSITIONS),
]


@pytest.mark.parametrize(("model", "table"), TABLES)
def test_each_table_names_every_status_of_its_model_and_no_other(model: Any, table: Any) -> None:
    statuses = set(model.Status.values)
    assert set(table) == statuses
    assert set().union(*table.values()) <= statuses


def test_ended_attempts_never_move_again() -> None:
    for ended in ("succeeded", "errored", "timed_out", "killed"):
        assert policy.ATTEMPT_TRANSITIONS[ended] == frozenset()
    # Started at most once: nothing leads back to queued or running.
    assert policy.sources(policy.ATTEMPT_TRANSITIONS, "queued") == frozenset()
    assert policy.sources(policy.ATTEMPT_TRANSITIONS, "running") == {"queued"}


def test_a_cancelled_job_and_a_completed_run_are_final() -> None:
    assert policy.JOB_TRANSITIONS["cancelled"] == frozenset()
    assert policy.RUN_TRANSITIONS["completed"] == frozenset()


def _run(status: str = "running") -> Run:
    return Run.objects.create(title="Walk", goal="Walk the tables", status=status)


def _job(run: Run, status: str, agent: str = "Dir-Code") -> Job:
    return Job.objects.create(
        job_id=f"jc-{uuid.uuid4().hex[:12]}", run=run, agent_id=agent, status=status
    )


def _attempt(job: Job, status: str, number: int = 1) -> Attempt:
    return Attempt.objects.create(job=job, number=number, agent_id=job.agent_id, status=status)


@pytest.mark.django_db
def test_the_attempt_write_allows_exactly_the_tables_moves(tree: Any) -> None:
    job = _job(_run(), "running")
    statuses = Attempt.Status.values
    for number, (start, to) in enumerate(product(statuses, statuses), start=1):
        attempt = _attempt(job, start, number)

        moved = attempt_move(attempt.pk, to=to)

        # It moves if and only if the table lists the move.
        assert moved == (to in policy.ATTEMPT_TRANSITIONS[start]), (start, to)
        attempt.refresh_from_db()
        assert attempt.status == (to if moved else start)


@pytest.mark.django_db
def test_the_job_write_allows_exactly_the_tables_moves(tree: Any) -> None:
    run = _run()
    statuses = Job.Status.values
    for start, to in product(statuses, statuses):
        job = _job(run, start)

        moved = job_move(job.pk, to=to)

        assert moved == (to in policy.JOB_TRANSITIONS[start]), (start, to)
        job.refresh_from_db()
        assert job.status == (to if moved else start)


@pytest.mark.django_db
def test_the_run_write_allows_exactly_the_tables_moves(tree: Any) -> None:
    statuses = Run.Status.values
    for start, to in product(statuses, statuses):
        run = _run(start)

        moved = run_move(run.pk, to=to)

        assert moved == (to in policy.RUN_TRANSITIONS[start]), (start, to)
        run.refresh_from_db()
        assert run.status == (to if moved else start)


@pytest.mark.django_db
def test_a_list_moves_only_the_rows_the_table_allows_and_logs_the_rest(
    tree: Any, caplog: pytest.LogCaptureFixture
) -> None:
    job = _job(_run(), "running")
    running = _attempt(job, "running", 1)
    ended = _attempt(job, "succeeded", 2)
    fenced = _attempt(job, "running", 3)

    with caplog.at_level(logging.INFO, logger="pas_core.services.transitions"):
        moved = attempts_move(
            [running.pk, ended.pk, fenced.pk],
            to="timed_out",
            where={"pk__in": [running.pk, ended.pk]},
            error="no heartbeat for 61.0s",
        )

    assert moved == [running.pk]
    assert Attempt.objects.get(pk=running.pk).error == "no heartbeat for 61.0s"
    assert Attempt.objects.get(pk=fenced.pk).status == "running"
    # Each refusal says why: the table forbids it, or the row was fenced off.
    assert f"Attempt {ended.pk} succeeded -> timed_out refused by the table" in caplog.text
    assert f"Attempt {fenced.pk} running -> timed_out refused: fenced off" in caplog.text


def test_no_module_writes_a_status_but_the_transitions_service() -> None:
    """Every status write of an Attempt, Job or Run goes through services/transitions.py.

    (Agents' statuses are for display, not a state machine: services/agents.py writes
    them.) Checked in the source: a queryset's ``.update(status=...)`` anywhere else
    would be a second writer. A dict's ``.update(status=...)`` is not a write.
    """
    root = Path(__file__).resolve().parent.parent
    allowed = {"pas_core/services/transitions.py", "pas_core/services/agents.py"}
    querysets = re.compile(r"objects|_manager|\.filter\(|\.exclude\(|\bqs\b|\brows\b")
    offenders = []
    for path in [*root.glob("pas_core/**/*.py"), *root.glob("hmi/**/*.py")]:
        name = path.relative_to(root).as_posix()
        if "migrations" in path.parts or name in allowed:
            continue
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr != "update" or not any(k.arg == "status" for k in node.keywords):
                continue
            receiver = ast.get_source_segment(text, node.func.value) or ""
            if querysets.search(receiver):
                offenders.append(f"{name}:{node.lineno}")
    assert offenders == []
