"""The one place a status is written: a conditional update through the policy tables.

``UPDATE ... SET status = <to> WHERE pk IN (...) AND status IN <the states the table
allows a move to <to> from>``: two writers racing for the same row never both win (a
result against a timeout, two sweeps, a message delivered twice), and a move the table
does not allow is refused and logged instead of silently written.

``where`` narrows the update further (e.g. "only while this attempt is the job's
current one"). Callers that also need a row lock take it themselves (jobs before
attempts, see ``supervision``); this module only decides whether a write may happen.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from .. import policy
from ..models import Attempt, Job, Run
from ..stores import statements

log = logging.getLogger(__name__)

_TABLES: dict[type[models.Model], dict[str, frozenset[str]]] = {
    Attempt: policy.ATTEMPT_TRANSITIONS,
    Job: policy.JOB_TRANSITIONS,
    Run: policy.RUN_TRANSITIONS,
}


def _move(
    model: type[models.Model],
    pks: Iterable[Any],
    to: str,
    where: dict[str, Any] | None,
    fields: dict[str, Any],
) -> list[Any]:
    """Move the rows to ``to`` where the table allows it; return the pks that moved."""
    wanted = list(dict.fromkeys(pks))
    if not wanted:
        return []
    table = _TABLES[model]
    if to not in table:
        raise ValueError(f"{model.__name__} has no status {to!r}")
    sources = policy.sources(table, to)

    def rows() -> models.QuerySet[Any]:
        return model._default_manager.filter(status__in=sources, **(where or {}))

    if len(wanted) == 1:
        # One row: the conditional UPDATE alone says whether it won.
        count = _update_one(model, wanted[0], sources, where or {}, {"status": to, **fields})
        if count is None:
            count = rows().filter(pk=wanted[0]).update(status=to, **fields)
        moved = wanted if count else []
    else:
        # Many: lock the rows that qualify (re-checked once locked), then move exactly
        # those. The caller's transaction holds the locks until it commits.
        with transaction.atomic():
            locked = rows().select_for_update(of=("self",)).filter(pk__in=wanted).order_by()
            moved = list(locked.values_list("pk", flat=True))
            if moved:
                model._default_manager.filter(pk__in=moved).update(status=to, **fields)
    if len(moved) < len(wanted):
        _refused(model, [pk for pk in wanted if pk not in set(moved)], to)
    return moved


def _update_one(
    model: type[models.Model],
    pk: Any,
    sources: Iterable[str],
    where: dict[str, Any],
    values: dict[str, Any],
) -> int | None:
    """Move one row with a statement built once (``stores.statements``); return how many
    rows changed, or None when a value is an expression or a test not plain equality
    (the caller lets the ORM write it). Each step writes a status about five times.
    """
    plain = (str, int, float, bool, dict, list, type(None), datetime)
    if any("__" in key or value is None for key, value in where.items()) or not all(
        isinstance(value, plain) for value in (*where.values(), *values.values())
    ):
        return None
    equal = {"pk": pk, "status": frozenset(sources), **where}
    if "status" in where:  # Both tests on one column: the row must pass both.
        equal["status"] = frozenset(sources) & {where["status"]}
    return statements.rows_update(model, values, equal=equal)


def _refused(model: type[models.Model], pks: list[Any], to: str) -> None:
    """Log each refused move with the status the row was in (a race lost, or a bug)."""
    table = _TABLES[model]
    current = dict(model._default_manager.filter(pk__in=pks).values_list("pk", "status"))
    for pk in pks:
        status = current.get(pk)
        if status is None:
            log.info("%s %s -> %s refused: no such row", model.__name__, pk, to)
        elif policy.allowed(table, status, to):
            # Allowed by the table, refused by ``where``: fenced off (a newer attempt).
            log.info("%s %s %s -> %s refused: fenced off", model.__name__, pk, status, to)
        else:
            log.info("%s %s %s -> %s refused by the table", model.__name__, pk, status, to)


def attempts_move(
    pks: Iterable[int], *, to: str, where: dict[str, Any] | None = None, **fields: Any
) -> list[int]:
    """Move attempts to ``to`` where allowed; return the ids that moved."""
    return _move(Attempt, pks, to, where, fields)


def attempt_move(pk: int, *, to: str, where: dict[str, Any] | None = None, **fields: Any) -> bool:
    """Move one attempt to ``to`` if allowed; return whether it moved (one winner)."""
    return bool(_move(Attempt, [pk], to, where, fields))


def jobs_move(
    pks: Iterable[str], *, to: str, where: dict[str, Any] | None = None, **fields: Any
) -> list[str]:
    """Move jobs to ``to`` where allowed; ``updated_at`` follows. Return the ids that moved."""
    return _move(Job, pks, to, where, {"updated_at": timezone.now(), **fields})


def job_move(pk: str, *, to: str, where: dict[str, Any] | None = None, **fields: Any) -> bool:
    return bool(jobs_move([pk], to=to, where=where, **fields))


def run_move(pk: Any, *, to: str, where: dict[str, Any] | None = None, **fields: Any) -> bool:
    return bool(_move(Run, [pk], to, where, fields))
