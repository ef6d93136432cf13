"""The attempt timeline of a run: pure geometry for an inline SVG chart.

One row per agent (in tree order), one bar per attempt from its start to its end (or
``now`` while it runs), coloured by outcome in CSS (``tl-<status>``), labelled with its
model where it is wide enough; escalations and model switches are marks on the row.
A zoom window (seconds from the run's start) shows part of the run across the whole
width, so sixteen short failed attempts become sixteen bars, not one smear. No
queries, no clock: the caller passes the attempts, the marks and ``now``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

LABEL_W = 150  # Room for the agent names on the left.
PLOT_W = 760
ROW_H = 22
BAR_H = 14
AXIS_H = 24
MIN_BAR_W = 3.0
LABEL_MIN_W = 58.0  # A bar this wide has room for its model's name.
CHAR_W = 6.2  # About one character of the 11 px label font.
MARK_W = 10.0  # The width of a mark's glyph.


@dataclass
class Bar:
    x: float
    w: float
    status: str
    title: str
    label: str = ""  # The model, when the bar has room for it.
    phase: str = "step"

    @property
    def label_x(self) -> float:
        return round(self.x + 4, 1)


@dataclass
class Mark:
    """An escalation or a model switch at one moment of an agent's row."""

    x: float
    kind: str  # escalation | switch
    title: str

    @property
    def glyph(self) -> str:
        return "⇪" if self.kind == "escalation" else "⇄"


@dataclass
class Row:
    agent_id: str
    y: int
    bars: list[Bar] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)

    @property
    def bar_y(self) -> int:
        return self.y + (ROW_H - BAR_H) // 2

    @property
    def text_y(self) -> int:
        return self.y + ROW_H // 2 + 4

    @property
    def line_y(self) -> int:
        return self.y + ROW_H


@dataclass
class Tick:
    x: float
    label: str


@dataclass
class Timeline:
    rows: list[Row]
    ticks: list[Tick]
    width: int
    height: int
    span_s: float
    label_w: int = LABEL_W
    plot_w: int = PLOT_W
    bar_h: int = BAR_H
    row_h: int = ROW_H
    start_s: float = 0.0  # The zoom window, in seconds from the run's start.
    end_s: float = 0.0
    zoomed: bool = False

    @property
    def plot_right(self) -> int:
        return self.width


@dataclass
class Span:
    """One attempt as the timeline needs it."""

    agent_id: str
    number: int
    status: str
    model: str
    start: datetime
    end: datetime | None
    job_id: str = ""
    error_kind: str = ""
    phase: str = "step"


@dataclass
class Moment:
    """An event to mark on an agent's row: ``kind`` is escalation or switch."""

    agent_id: str
    at: datetime
    kind: str
    title: str


def _tick_step(span_s: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if span_s / step <= 8:
            return float(step)
    return 3600.0 * max(1, round(span_s / 3600 / 8))


def _fmt_s(seconds: float) -> str:
    if seconds >= 60:
        minutes, secs = divmod(int(seconds), 60)
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    return f"{seconds:g}s"


def _bar(s: Span, *, x0: float, x1: float, now: datetime) -> Bar:
    seconds = ((s.end or now) - s.start).total_seconds()
    model = s.model.split("/", 1)[-1] if s.model else ""
    title = (
        f"{s.agent_id} · {s.job_id} #{s.number} ({s.phase}) · {s.status}"
        f"{' (' + s.error_kind + ')' if s.error_kind else ''}"
        f" · {model or 'no model'} · {seconds:.1f}s"
    )
    w = max(MIN_BAR_W, x1 - x0)
    label = ""
    if model and w >= LABEL_MIN_W:
        room = int((w - 8) // CHAR_W)
        label = model if len(model) <= room else model[: max(1, room - 1)] + "…"
    return Bar(
        x=round(LABEL_W + x0, 1),
        w=round(w, 1),
        status=s.status,
        title=title,
        label=label,
        phase=s.phase,
    )


def timeline_build(
    spans: list[Span],
    *,
    order: list[str],
    start: datetime,
    now: datetime,
    marks: list[Moment] | None = None,
    zoom: tuple[float | None, float | None] = (None, None),
) -> Timeline:
    """Lay the spans out: rows follow ``order`` (agents without spans are left out).

    ``zoom`` is ``(from_s, to_s)`` in seconds from ``start`` (None: the run's edge);
    bars outside it are left out and bars across its edges are cut at them.
    """
    end = max([now if s.end is None else s.end for s in spans] + [start])
    full_s = max((end - start).total_seconds(), 1.0)
    lo = min(max(0.0, zoom[0] or 0.0), full_s - 0.5)
    hi = full_s if zoom[1] is None else min(max(lo + 0.5, zoom[1]), full_s)
    span_s = max(hi - lo, 0.5)
    scale = PLOT_W / span_s

    def x_of(moment: datetime) -> float:
        return ((moment - start).total_seconds() - lo) * scale

    by_agent: dict[str, list[Span]] = {}
    for s in spans:
        by_agent.setdefault(s.agent_id, []).append(s)
    agents = [a for a in order if a in by_agent] + sorted(set(by_agent) - set(order))
    rows: list[Row] = []
    for index, agent_id in enumerate(agents):
        row = Row(agent_id=agent_id, y=AXIS_H + index * ROW_H)
        for s in sorted(by_agent[agent_id], key=lambda s: s.start):
            x0, x1 = x_of(s.start), x_of(s.end or now)
            if x1 < 0 or x0 > PLOT_W:
                continue  # Outside the zoom window.
            row.bars.append(_bar(s, x0=max(0.0, x0), x1=min(PLOT_W, x1), now=now))
        for m in marks or []:
            x = x_of(m.at)
            if m.agent_id == agent_id and 0 <= x <= PLOT_W:
                # An escalation and its switch come within milliseconds: side by side.
                if row.marks and LABEL_W + x - row.marks[-1].x < MARK_W:
                    x = row.marks[-1].x - LABEL_W + MARK_W
                row.marks.append(Mark(x=round(LABEL_W + x, 1), kind=m.kind, title=m.title))
        rows.append(row)
    step = _tick_step(span_s)
    ticks = []
    t = math.ceil(lo / step) * step
    while t <= hi + 1e-9:
        ticks.append(Tick(x=round(LABEL_W + (t - lo) * scale, 1), label=_fmt_s(t)))
        t += step
    height = AXIS_H + max(1, len(rows)) * ROW_H + 4
    return Timeline(
        rows=rows,
        ticks=ticks,
        width=LABEL_W + PLOT_W + 10,
        height=height,
        span_s=full_s,
        start_s=round(lo, 1),
        end_s=round(hi, 1),
        zoomed=lo > 0 or hi < full_s,
    )
