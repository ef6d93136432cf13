"""The long lists: Events, Comms and Runs, filtered and paged.

Events and Comms page by id (``?before=<id>``: the rows older than that one; ``?after=
<id>``: the rows newer), so a page stays put while new rows arrive, and paging costs
one indexed range query however deep it goes. Runs page by number: there are few.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.db.models import Q, QuerySet

from pas_core import selectors as core
from pas_core.models import CommsMessage, Event, Run

from .forms import run_prefix

RUNS_PAGE = 25


@dataclass
class Window:
    """One page of rows, newest first, and the cursors to the pages around it."""

    rows: list[Any]
    older: int | None = None  # ``before=`` for the next older page, None at the end.
    newer: int | None = None  # ``after=`` for the next newer page, None on the first.
    paged: bool = False  # True when this is not the newest page (no live tail then).


def window(qs: QuerySet[Any], *, size: int, before: int | None, after: int | None) -> Window:
    """Return ``size`` rows of ``qs`` by id: older than ``before``, or newer than ``after``.

    With neither, the newest rows: the live page. ``older`` and ``newer`` are the
    cursors of the pages on either side (None where there is nothing more).
    """
    if before is None and after is not None:
        rows = list(qs.filter(id__gt=after).order_by("id")[: size + 1])
        more = len(rows) > size
        rows = rows[:size][::-1]
        return Window(
            rows=rows,
            older=rows[-1].id if rows else after + 1,
            newer=rows[0].id if more else None,
            paged=True,
        )
    if before is not None:
        qs = qs.filter(id__lt=before)
    rows = list(qs.order_by("-id")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    paged = before is not None
    return Window(
        rows=rows,
        older=rows[-1].id if more else None,
        newer=(rows[0].id if rows else before - 1) if before is not None else None,
        paged=paged,
    )


def events_filter(filters: dict[str, Any]) -> QuerySet[Event]:
    """Return the events that match: exact type, agent id part (any case), run id prefix."""
    qs = Event.objects.all()
    if filters.get("type"):
        qs = qs.filter(event_type=filters["type"])
    if filters.get("agent"):
        qs = qs.filter(agent_id__icontains=filters["agent"])
    if filters.get("run"):
        qs = qs.filter(run_id__startswith=filters["run"])
    return qs


def comms_filter(filters: dict[str, Any]) -> QuerySet[CommsMessage]:
    """Return the comms rows that match: kind, sender or recipient part, run id prefix."""
    qs = CommsMessage.objects.all()
    if filters.get("kind"):
        qs = qs.filter(kind=filters["kind"])
    if filters.get("agent"):
        agent = filters["agent"]
        qs = qs.filter(Q(sender__icontains=agent) | Q(recipient__icontains=agent))
    if filters.get("run"):
        qs = qs.filter(run_id__startswith=filters["run"])
    return qs


def event_types() -> list[str]:
    """Return every event type stored, for the filter's choices."""
    types = Event.objects.values_list("event_type", flat=True).distinct().order_by("event_type")
    return list(types)


def _run_search(q: str) -> Q:
    """Match a run by title words, by id prefix, or by a job id of the run."""
    match = Q(title__icontains=q)
    try:
        prefix = run_prefix(q)
    except ValidationError:  # Not an id: the title alone decides.
        return match
    return match | Q(run_id__istartswith=prefix)


def runs_filter(filters: dict[str, Any]) -> QuerySet[Run]:
    """Return the runs that match the search, status and interventions filters."""
    qs = Run.objects.all()
    q = str(filters.get("q") or "").strip()
    if q:
        qs = qs.filter(_run_search(q))
    if filters.get("status"):
        qs = qs.filter(status=filters["status"])
    with_interventions = filters.get("interventions")
    if with_interventions in ("0", "1"):
        ids = list(core.runs_with_interventions())
        qs = qs.filter(run_id__in=ids) if with_interventions == "1" else qs.exclude(run_id__in=ids)
    return qs.order_by("-created_at")


def runs_page(filters: dict[str, Any]) -> tuple[Page[Any], list[tuple[Run, dict[str, str], int]]]:
    """Return one page of runs, each with its lanes' states and its intervention count."""
    page = Paginator(runs_filter(filters), RUNS_PAGE).get_page(filters.get("page") or 1)
    runs: list[Run] = list(page.object_list)
    lanes = core.runs_lanes(runs)
    counts = core.interventions_by_run(r.run_id for r in runs)
    rows = [(r, lanes[str(r.run_id)], counts.get(str(r.run_id), 0)) for r in runs]
    return page, rows
