"""Server-rendered SVG charts: no script, readable at any width.

The charts have no ``viewBox``: horizontal positions are percentages of the chart's width and vertical ones
are pixels, so the bars stretch with the page while the text keeps its size (a scaled viewBox would shrink
labels to nothing on a phone). Every chart is an ``<svg role="img">`` with a ``<title>`` and a ``<desc>``
summarising the figures; the page also shows the legend and the same figures as a table.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from markupsafe import Markup, escape

CATEGORICAL = ("#4f46e5", "#0f9d8a", "#d97706", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626")
NONE_COLOR = "#9ca3af"


def score_color(score: int | None) -> str:
    """Red (0, wrong) through amber to green (100, accurate); grey for unrated."""
    if score is None:
        return NONE_COLOR
    stops = ((0, "#dc2626"), (40, "#f59e0b"), (75, "#84cc16"), (100, "#16a34a"))
    for limit, color in stops:
        if score <= limit:
            return color
    return stops[-1][1]


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    data: Sequence[float]


def series_from(result: dict[str, Any], *, names: Sequence[str] | None = None) -> list[Series]:
    """Colour a result's series: accuracy levels by score, others from the categorical palette."""
    out: list[Series] = []
    wanted = [s for s in result["series"] if names is None or s["name"] in names]
    for index, s in enumerate(wanted):
        if "score" in s:
            color = score_color(s["score"])
        elif s.get("key") is None and len(wanted) > 1:
            color = NONE_COLOR
        else:
            color = CATEGORICAL[index % len(CATEGORICAL)]
        out.append(Series(name=s["name"], color=color, data=[v or 0 for v in s["data"]]))
    return out


def _pct(value: float) -> str:
    return f"{value:.3f}%"


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


LINE_COLUMNS: Final = 40
"""How many narrow characters a bar's line holds at the narrowest chart (a 390 px phone, ~324 px of chart)."""


def _columns(text: str) -> int:
    """The width of ``text`` in narrow-character columns: a wide (East Asian) character counts two."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def fit_label(label: str, room: int) -> str:
    """``label`` cut to ``room`` columns (at least 8) with an ellipsis: a bar's label shares its line with the
    figures, and on a phone a long tag name ran into them (it was cut at 30 characters whatever the figures
    and however wide the characters; QA)."""
    room = max(room, 8)
    if _columns(label) <= room:
        return label
    out, used = [], 1  # the ellipsis
    for ch in label:
        used += _columns(ch)
        if used > room:
            break
        out.append(ch)
    return "".join(out).rstrip() + "…"


def _frame(chart_id: str, *, title: str, desc: str, height: int, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart" id="{escape(chart_id)}" width="100%" height="{height}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>'
        f'<desc id="{escape(chart_id)}-desc">{escape(desc)}</desc>' + "".join(body) + "</svg>"
    )


def stacked_bars(
    chart_id: str,
    *,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    notes: Sequence[str] | None = None,
    scale_max: float | None = None,
    centered: bool = False,
    links: Sequence[str] | None = None,
) -> Markup:
    """One horizontal bar per label (label and total on a line above it), segments per series.

    With ``links`` every row is a link (the whole 46 px row is the tap target).
    """
    row = 46
    totals = [sum(s.data[i] for s in series) for i in range(len(labels))]
    top = scale_max or max(totals, default=0) or 1
    body: list[str] = []
    parts: list[str] = []
    for i, label in enumerate(labels):
        y = i * row
        note = notes[i] if notes else _num(totals[i])
        if links:
            body.append(f'<a class="row-link" href="{escape(links[i])}">')
            body.append(f'<rect class="hit" x="0" y="{y}" width="100%" height="{row}"/>')
        shown = fit_label(label, LINE_COLUMNS - _columns(note) - 2)  # the note needs room on a phone
        full = f"<title>{escape(label)}</title>" if shown != label else ""
        body.append(f'<text class="label" x="0" y="{y + 15}">{full}{escape(shown)}</text>')
        body.append(f'<text class="value" x="100%" y="{y + 15}" text-anchor="end">{escape(note)}</text>')
        body.append(f'<rect class="track" x="0" y="{y + 22}" width="100%" height="16" rx="3"/>')
        offset = (100 - totals[i] / top * 100) / 2 if centered else 0.0
        for s in series:
            value = s.data[i]
            if not value:
                continue
            width = value / top * 100
            body.append(
                f'<rect x="{_pct(offset)}" y="{y + 22}" width="{_pct(width)}" height="16" fill="{s.color}">'
                f"<title>{escape(label)}: {escape(s.name)} {_num(value)}</title></rect>"
            )
            offset += width
        if links:
            body.append("</a>")
        parts.append(f"{label}: " + ", ".join(f"{s.name} {_num(s.data[i])}" for s in series if s.data[i]))
    desc = "; ".join(parts) if parts else "No data for these filters."
    return _frame(chart_id, title=title, desc=desc, height=max(row * len(labels), 24), body=body)


def stacked_columns(
    chart_id: str, *, title: str, labels: Sequence[str], series: Sequence[Series], height: int = 240
) -> Markup:
    """Vertical stacked columns over time, with three horizontal grid lines and first/middle/last labels."""
    plot_top, plot_bottom = 18, height - 26
    plot_h = plot_bottom - plot_top
    totals = [sum(s.data[i] for s in series) for i in range(len(labels))]
    top = max(totals, default=0) or 1
    body: list[str] = []
    ticks: list[str] = []
    for step in (0.0, 0.5, 1.0):
        y = plot_bottom - step * plot_h
        body.append(f'<line class="grid" x1="0" x2="100%" y1="{y:.1f}" y2="{y:.1f}"/>')
        if step:
            ticks.append(
                f'<text class="tick tick-y" x="2" y="{y - 4:.1f}">{_num(round(top * step, 1))}</text>'
            )
    n = max(len(labels), 1)
    slot = 100 / n
    gap = min(slot * 0.2, 1.5)
    for i, label in enumerate(labels):
        y = float(plot_bottom)
        for s in series:
            value = s.data[i]
            if not value:
                continue
            h = value / top * plot_h
            y -= h
            body.append(
                f'<rect x="{_pct(i * slot + gap / 2)}" y="{y:.1f}" width="{_pct(slot - gap)}" '
                f'height="{h:.1f}" '
                f'fill="{s.color}"><title>{escape(label)}: {escape(s.name)} {_num(value)}</title></rect>'
            )
    if labels:
        marks = {0: "start", len(labels) - 1: "end"}
        if len(labels) > 2:
            marks[len(labels) // 2] = "middle"
        for i, anchor in marks.items():
            x = 0.0 if anchor == "start" else 100.0 if anchor == "end" else (i + 0.5) * slot
            body.append(
                f'<text class="tick" x="{_pct(x)}" y="{height - 6}" text-anchor="{anchor}">'
                f"{escape(labels[i])}</text>"
            )
    body += ticks
    busiest = max(range(len(labels)), key=lambda i: totals[i]) if labels else None
    desc = (
        f"{len(labels)} periods from {labels[0]} to {labels[-1]}, {_num(sum(totals))} in all; "
        f"the busiest period is {labels[busiest]} with {_num(totals[busiest])}."
        if labels and busiest is not None
        else "No data for these filters."
    )
    return _frame(chart_id, title=title, desc=desc, height=height, body=body)
