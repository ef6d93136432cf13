"""Server-rendered SVG charts: pure geometry, no queries, no clock.

The overview page draws interventions over time as stacked bars and failure rates as
horizontal bars; the agent page frames a heartbeat-age sparkline that the browser
fills. Colours come from CSS classes (``k-<kind>``), so the dark theme needs nothing
here. Every chart scales to its box (``viewBox``, width 100%): nothing overflows a
narrow screen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .labels import KIND_LABELS

BAR_W = 1000
BAR_H = 170
PAD_L = 30  # Room for the y labels.
PAD_R = 16  # Room for the last x label.
PAD_B = 18  # Room for the x labels.


@dataclass
class Segment:
    kind: str
    y: float
    h: float
    n: int


@dataclass
class Column:
    x: float
    w: float
    start: datetime
    segments: list[Segment] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(s.n for s in self.segments)

    @property
    def title(self) -> str:
        parts = [f"{s.n} {KIND_LABELS[s.kind][2]}" for s in self.segments]
        return f"{self.start:%Y-%m-%d %H:%M} UTC: " + (", ".join(parts) or "none")


@dataclass
class Label:
    x: float
    y: float
    text: str


@dataclass
class StackedBars:
    columns: list[Column]
    x_labels: list[Label]
    y_labels: list[Label]
    grid: list[float]
    width: int = BAR_W
    height: int = BAR_H
    total: int = 0

    @property
    def plot_bottom(self) -> int:
        return self.height - PAD_B


def _nice_max(value: int) -> int:
    """Return a round axis maximum at least ``value`` (1, 2, 5, 10, 20, 50, ...)."""
    if value <= 1:
        return 1
    exp = 10 ** int(math.floor(math.log10(value)))
    for step in (1, 2, 5, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def stacked_bars(
    buckets: list[dict[str, Any]], kinds: tuple[str, ...], *, label_every: int, fmt: str
) -> StackedBars:
    """Lay out one column per bucket, its kinds stacked bottom-up in ``kinds`` order.

    Every ``label_every``-th bucket gets its start time (``strftime`` ``fmt``) below.
    """
    plot_w = BAR_W - PAD_L - PAD_R
    plot_h = BAR_H - PAD_B - 6
    top = _nice_max(max([sum(b[k] for k in kinds) for b in buckets] + [1]))
    slot = plot_w / max(1, len(buckets))
    width = max(1.0, slot * 0.8)
    columns: list[Column] = []
    x_labels: list[Label] = []
    for i, bucket in enumerate(buckets):
        x = PAD_L + i * slot + (slot - width) / 2
        column = Column(x=round(x, 1), w=round(width, 1), start=bucket["start"])
        base = float(BAR_H - PAD_B)
        for kind in kinds:
            n = int(bucket[kind])
            if not n:
                continue
            h = plot_h * n / top
            base -= h
            column.segments.append(Segment(kind=kind, y=round(base, 1), h=round(h, 1), n=n))
        columns.append(column)
        if i % max(1, label_every) == 0:
            x_labels.append(
                Label(x=round(x + width / 2, 1), y=BAR_H - 4, text=bucket["start"].strftime(fmt))
            )
    grid = [round(BAR_H - PAD_B - plot_h * f, 1) for f in (0.5, 1.0)]
    y_labels = [
        Label(x=PAD_L - 4, y=y + 4, text=str(round(top * f, 1)).removesuffix(".0"))
        for y, f in zip(grid, (0.5, 1.0), strict=True)
    ]
    total = sum(c.total for c in columns)
    return StackedBars(columns, x_labels, y_labels, grid, total=total)


@dataclass
class HBar:
    label: str
    pct: float  # 0..100: the bar's length.
    text: str
    title: str


def rate_bars(rows: list[dict[str, Any]], *, limit: int = 10) -> list[HBar]:
    """Return failure-rate bars for ``pas_core.selectors.failure_rates`` rows, worst first."""
    return [
        HBar(
            label=str(r["key"]),
            pct=round(100 * r["rate"], 1),
            text=f"{100 * r['rate']:.0f}% · {r['failed']}/{r['ended']}",
            title=f"{r['key']}: {r['failed']} of {r['ended']} ended attempts failed",
        )
        for r in rows[:limit]
    ]


@dataclass
class Spark:
    """The frame of a heartbeat-age sparkline; the browser draws the line in it."""

    width: int
    height: int
    max_s: float
    late_y: float
    timeout_y: float
    window_s: int


def spark_frame(*, late_after_s: float, timeout_s: float, window_s: int = 120) -> Spark:
    """Return a sparkline frame whose y axis runs from 0 to past the timeout."""
    width, height = 240, 48
    max_s = max(timeout_s * 1.25, late_after_s * 1.5, 1.0)

    def y(seconds: float) -> float:
        return round(height - 2 - (height - 2) * seconds / max_s, 1)  # 2: the line's room.

    return Spark(width, height, round(max_s, 2), y(late_after_s), y(timeout_s), window_s)
