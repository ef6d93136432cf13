"""A parent's aggregate made ready inside a worker's attempt runs next on that thread.

``dispatch.running_here`` / ``attempts_run_here`` and the loop of
``runtime.worker.attempt_execute``; the e2e flow test checks that no aggregate's
message reaches a real worker.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DatabaseError, transaction

from pas_core import dispatch
from pas_core.runtime import worker

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, float]]:
    """What goes to the broker (``dispatch.attempts_send``), recorded instead."""
    out: list[tuple[int, str, float]] = []

    def record(attempts: Any) -> int:
        out.extend(attempts)
        return len(attempts)

    monkeypatch.setattr(dispatch, "attempts_send", record)
    return out


def test_outside_a_workers_attempt_they_go_to_the_broker_on_commit(sent: list[Any]) -> None:
    with transaction.atomic():
        dispatch.attempts_run_here([(7, "t7")])
        assert sent == []  # Not before the commit.
    assert sent == [(7, "t7", 0.0)]


def test_inside_one_they_wait_for_the_commit_then_for_this_thread(sent: list[Any]) -> None:
    with dispatch.running_here() as ahead:
        with transaction.atomic():
            dispatch.attempts_run_here([(7, "t7")])
            assert ahead == []
        assert ahead == [(7, "t7")]
        with pytest.raises(RuntimeError), transaction.atomic():
            dispatch.attempts_run_here([(8, "t8")])
            raise RuntimeError("rolled back")
        assert ahead == [(7, "t7")]  # A rolled-back transaction made nothing ready.
    assert sent == [(7, "t7", 0.0)]  # Left when the block ended: sent, not lost.


def test_the_worker_runs_them_in_turn_and_sends_one_it_cannot_start(
    sent: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[int] = []

    def execute(attempt_id: int, *, redelivered: bool) -> str:
        ran.append(attempt_id)
        if attempt_id == 1:  # The child's end made two aggregates ready.
            dispatch.attempts_run_here([(2, "t2"), (3, "t3")])
        if attempt_id == 2:
            raise DatabaseError("the database is away")
        if attempt_id == 3:  # Its end made the grandparent's ready.
            dispatch.attempts_run_here([(4, "t4")])
        return "done"

    monkeypatch.setattr(worker, "_attempt_execute", execute)
    assert worker.attempt_execute(1) == "done"  # The outcome of the task's own attempt.
    assert ran == [1, 2, 3, 4]
    assert sent == [(2, "t2", 0.0)]  # The one that could not start went to the broker.
