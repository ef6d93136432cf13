"""The attempt timeline of a run: pure geometry for an inline SVG chart.

One row per agent (in tree order), one bar per attempt from its start to its end (or
``now`` while it runs), coloured by outcome in CSS (``tl-<status>``). No queries, no
clock: the caller passes the attempts and ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

LABEL_W = 150  # Room for the agent names on the left.
PLOT_W = 760
ROW_H = 22
BAR_H = 14
AXIS_H = 24
MIN_BAR_W = 3.0


@dataclass
class Bar:
    x: float
    w: float
    status: str
    title: str


@dataclass
class Row:
    agent_id: str
    y: int
    bars: list[Bar] = field(default_factory=list)

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
    bar_h: int = BAR_H
    row_h: int = ROW_H

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


def timeline_build(
    spans: list[Span], *, order: list[str], start: datetime, now: datetime
) -> Timeline:
    """Lay the spans out: rows follow ``order`` (agents without spans are left out)."""
    end = max([now if s.end is None else s.end for s in spans] + [start])
    span_s = max((end - start).total_seconds(), 1.0)
    scale = PLOT_W / span_s
    by_agent: dict[str, list[Span]] = {}
    for s in spans:
        by_agent.setdefault(s.agent_id, []).append(s)
    agents = [a for a in order if a in by_agent] + sorted(set(by_agent) - set(order))
    rows: list[Row] = []
    for index, agent_id in enumerate(agents):
        row = Row(agent_id=agent_id, y=AXIS_H + index * ROW_H)
        for s in sorted(by_agent[agent_id], key=lambda s: s.start):
            x0 = (s.start - start).total_seconds() * scale
            x1 = ((s.end or now) - start).total_seconds() * scale
            seconds = ((s.end or now) - s.start).total_seconds()
            title = (
                f"{agent_id} · {s.job_id} #{s.number} · {s.status}"
                f"{' (' + s.error_kind + ')' if s.error_kind else ''}"
                f" · {s.model or 'no model'} · {seconds:.1f}s"
            )
            row.bars.append(
                Bar(
                    x=round(LABEL_W + max(0.0, x0), 1),
                    w=round(max(MIN_BAR_W, x1 - x0), 1),
                    status=s.status,
                    title=title,
                )
            )
        rows.append(row)
    step = _tick_step(span_s)
    ticks = []
    t = 0.0
    while t <= span_s + 1e-9:
        ticks.append(Tick(x=round(LABEL_W + t * scale, 1), label=_fmt_s(t)))
        t += step
    height = AXIS_H + max(1, len(rows)) * ROW_H + 4
    return Timeline(
        rows=rows, ticks=ticks, width=LABEL_W + PLOT_W + 10, height=height, span_s=span_s
    )
