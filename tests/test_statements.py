"""Statements built once (stores/statements.py): they write and read what the ORM would."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from pas_core.config import hhmrs_get, hhmrs_update
from pas_core.models import Agent, Attempt, Job, Run
from pas_core.services.agents import agents_status_set
from pas_core.stores import statements


def _job(status: str = "running") -> Job:
    run = Run.objects.create(title="Rows", goal="Write rows", status="running")
    return Job.objects.create(
        job_id=f"jc-{uuid.uuid4().hex[:12]}", run=run, agent_id="Dir-Code", status=status
    )


@pytest.mark.django_db
def test_an_update_prepares_every_value_as_the_orm_does(tree: Any) -> None:
    job = _job()
    attempt = Attempt.objects.create(job=job, number=1, agent_id=job.agent_id, status="running")
    Job.objects.filter(pk=job.pk).update(current_attempt=attempt)
    when = timezone.now() - timedelta(minutes=3)
    result = {"state": "completed", "files": ["a.py"], "note": 'naïve "quotes"'}

    changed = statements.rows_update(
        Job,
        {"status": "succeeded", "result": result, "finished_at": when, "error": ""},
        equal={"pk": job.pk, "status": {"running", "waiting"}, "current_attempt": attempt.pk},
    )

    assert changed == 1
    job.refresh_from_db()
    assert (job.status, job.result, job.finished_at) == ("succeeded", result, when)


@pytest.mark.django_db
def test_an_update_changes_only_rows_passing_every_test(tree: Any) -> None:
    job = _job("queued")

    # Wrong status, a value it must not have, an empty IN: nothing changes.
    assert (
        statements.rows_update(Job, {"status": "x"}, equal={"pk": job.pk, "status": "running"}) == 0
    )
    assert (
        statements.rows_update(
            Job, {"status": "x"}, equal={"pk": job.pk}, differ={"status": "queued"}
        )
        == 0
    )
    assert statements.rows_update(Job, {"status": "x"}, equal={"pk": job.pk, "status": set()}) == 0
    assert Job.objects.get(pk=job.pk).status == "queued"
    with pytest.raises(ValueError, match="IS NULL"):
        statements.rows_update(Job, {"status": "x"}, equal={"parent": None})


@pytest.mark.django_db
def test_a_row_is_read_raw_or_none(tree: Any) -> None:
    job = _job()

    assert statements.row_values(Job, ["status", "agent"], job.pk) == ("running", "Dir-Code")
    assert statements.row_values(Job, ["status"], "jc-none") is None


@pytest.mark.django_db
def test_the_settings_read_converts_each_value_to_its_type(tree: Any) -> None:
    hhmrs_update({"enable_auto_restart": False, "heartbeat_interval_s": 7, "max_restarts": 4})

    cfg = hhmrs_get()

    assert cfg.enable_auto_restart is False and cfg.enable_llm_switching is True
    assert cfg.heartbeat_interval_s == 7.0 and isinstance(cfg.heartbeat_interval_s, float)
    assert cfg.max_restarts == 4 and isinstance(cfg.max_restarts, int)
    assert cfg.as_dict()["enable_auto_restart"] is False


@pytest.mark.django_db
def test_an_agent_that_still_runs_an_attempt_reads_working_not_idle(tree: Any) -> None:
    busy, free = Agent.objects.get(pk="Dir-Code"), Agent.objects.get(pk="Dir-Models")
    Agent.objects.filter(pk__in=[busy.pk, free.pk]).update(status="timed_out")
    job = _job()
    Attempt.objects.create(job=job, number=1, agent_id=busy.pk, status="running")

    agents_status_set([busy.pk], Agent.Status.IDLE, unless_busy=True)
    agents_status_set([free.pk], Agent.Status.IDLE, unless_busy=True)

    assert Agent.objects.get(pk=busy.pk).status == "working"
    assert Agent.objects.get(pk=free.pk).status == "idle"
    # A disabled agent stays as it is.
    Agent.objects.filter(pk=free.pk).update(enabled=False, status="disabled")
    agents_status_set([free.pk], Agent.Status.WORKING)
    assert Agent.objects.get(pk=free.pk).status == "disabled"


def _values(obj: Any) -> dict[str, Any]:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


@pytest.mark.django_db
def test_a_row_with_its_related_rows_equals_what_select_related_reads(
    tree: Any, django_assert_num_queries: Any
) -> None:
    parent = _job("waiting")
    child = Job.objects.create(
        job_id=f"{parent.job_id}-m1",
        run=parent.run,
        agent_id="Dir-Code",
        parent=parent,
        card={"task": "Do it", "files": ["a.py"]},
        status="running",
    )
    attempt = Attempt.objects.create(
        job=child, number=2, agent_id=child.agent_id, status="running", started_at=timezone.now()
    )
    paths = ["job", "job__run", "job__parent", "agent"]

    ours = statements.row_with_related(Attempt, attempt.pk, paths)
    orm = Attempt.objects.select_related(*paths).get(pk=attempt.pk)

    assert ours is not None
    for get in (
        lambda a: a,
        lambda a: a.job,
        lambda a: a.job.run,
        lambda a: a.job.parent,
        lambda a: a.agent,
    ):
        assert _values(get(ours)) == _values(get(orm))
    with django_assert_num_queries(0):  # The related rows are there already.
        assert ours.job.card == {"task": "Do it", "files": ["a.py"]}
        assert ours.job.run.title == "Rows" and ours.agent.enabled is True
    # A null foreign key joins nothing; a missing row is None.
    top = statements.row_with_related(Job, parent.pk, ["parent", "run"], lock=True)
    assert top is not None and top.parent is None and top.run.pk == parent.run_id
    assert statements.row_with_related(Attempt, 10**9, paths) is None


@pytest.mark.django_db
def test_an_insert_writes_what_bulk_create_writes_and_reads_the_keys_back(tree: Any) -> None:
    from pas_core.models import CommsMessage, Event

    job = _job("waiting")
    data = {"agent_id": "Dir-Code", "note": 'naïve "quotes"', "n": [1, 2.5, None]}

    ours = statements.rows_insert(
        [Event(event_type="x", agent_id="Dir-Code", data=data) for _ in range(3)]
    )
    orm = Event.objects.bulk_create(
        [Event(event_type="x", agent_id="Dir-Code", data=data) for _ in range(3)]
    )

    # Automatic keys read back, in order, each saved; auto_now_add filled in.
    assert [e.pk for e in ours] == sorted(e.pk for e in ours)
    assert all(e.pk and not e._state.adding and e.created_at for e in ours)
    for mine, theirs in zip(ours, orm, strict=True):
        stored, expected = Event.objects.get(pk=mine.pk), Event.objects.get(pk=theirs.pk)
        assert {**_values(stored), "id": 0, "created_at": 0} == {
            **_values(expected),
            "id": 0,
            "created_at": 0,
        }
        assert stored.created_at == mine.created_at
    # A model keyed by a column of its own (no RETURNING), with a foreign key and JSON.
    child = Job(
        job_id=f"{job.job_id}-m1", run=job.run, agent_id="Mgr-Code-01", parent=job, card=data
    )
    assert statements.rows_insert([child]) == [child]
    assert _values(Job.objects.get(pk=child.pk)) == _values(child)
    # More rows than one statement may carry on SQLite: batched, every key read back.
    lines = [
        CommsMessage(
            ts=timezone.now(), sender="a", recipient="b", kind="CMD", message=str(i), metadata={}
        )
        for i in range(700)
    ]
    statements.rows_insert(lines)
    assert sorted(CommsMessage.objects.filter(sender="a").values_list("pk", flat=True)) == [
        m.pk for m in lines
    ]
    assert statements.rows_insert([]) == []


@pytest.mark.django_db
def test_rows_where_reads_what_filter_and_order_by_read(tree: Any) -> None:
    parent = _job("waiting")
    for i, agent in enumerate(["Mgr-Code-02", "Mgr-Code-01", "Mgr-Code-03"]):
        Job.objects.create(
            job_id=f"{parent.job_id}-m{3 - i}",
            run=parent.run,
            agent_id=agent,
            parent=parent,
            card={"task": f"Part {i}"},
            result={"state": "completed"} if i else None,
        )
    order = ["created_at", "job_id"]

    ours = statements.rows_where(Job, "parent", parent.pk, order=order)
    orm = list(Job.objects.filter(parent=parent).order_by(*order))

    assert [_values(j) for j in ours] == [_values(j) for j in orm]
    assert len(ours) == 3 and ours[0].card == {"task": "Part 0"} and ours[0].result is None
    assert statements.rows_where(Job, "parent", "no-such-job") == []


@pytest.mark.django_db
def test_value_max_is_the_largest_value_or_none(tree: Any) -> None:
    job = _job()
    assert statements.value_max(Attempt, "number", equal={"job": job.pk}) is None
    for number in (1, 3, 2):
        Attempt.objects.create(job=job, number=number, agent_id=job.agent_id)
    assert statements.value_max(Attempt, "number", equal={"job": job.pk}) == 3
    assert statements.value_max(Attempt, "number", equal={"job": set()}) is None
