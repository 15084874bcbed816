"""The Analytics view: QtCharts over figures the AnalyticsService computes from the local replica."""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCharts import (
    QBarCategoryAxis,
    QBarSet,
    QChart,
    QChartView,
    QHorizontalBarSeries,
    QHorizontalStackedBarSeries,
    QStackedBarSeries,
    QValueAxis,
)
from PySide6.QtCore import QMargins, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from outputhub.desktop.jobs import JobRunner
from outputhub.desktop.services.analytics import Analytics, AnalyticsService, StackedBars
from outputhub.desktop.ui.widgets import error_text

PALETTE = ("#2e7d32", "#9ccc65", "#ffca28", "#ef6c00", "#c62828", "#5c6bc0", "#26a69a", "#8d6e63", "#78909c")
CATEGORY_COLORS = ("#5c6bc0", "#26a69a", "#ab47bc", "#8d6e63", "#42a5f5", "#ec407a", "#78909c")
TOP_N = 12


def _chart(title: str) -> QChart:
    chart = QChart()
    chart.setTitle(title)
    chart.setAnimationOptions(QChart.AnimationOption.NoAnimation)
    chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
    chart.setMargins(QMargins(4, 4, 4, 4))
    return chart


def _finish(chart: QChart, series: object, categories: list[str], *, horizontal: bool, top: float) -> QChart:
    chart.addSeries(series)  # type: ignore[arg-type]
    category_axis = QBarCategoryAxis()
    category_axis.append(categories)
    value_axis = QValueAxis()
    value_axis.setLabelFormat("%d")
    if horizontal:
        chart.addAxis(category_axis, Qt.AlignmentFlag.AlignLeft)
        chart.addAxis(value_axis, Qt.AlignmentFlag.AlignBottom)
    else:
        chart.addAxis(category_axis, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(value_axis, Qt.AlignmentFlag.AlignLeft)
    series.attachAxis(category_axis)  # type: ignore[attr-defined]
    series.attachAxis(value_axis)  # type: ignore[attr-defined]
    value_axis.setRange(0, max(top, 1))
    value_axis.applyNiceNumbers()
    return chart


def month_label(category: str) -> str:
    """``2025-05`` -> ``May 25`` (short enough for an axis); other categories unchanged."""
    try:
        return datetime.strptime(category, "%Y-%m").strftime("%b %y")
    except ValueError:
        return category


def stacked_chart(data: StackedBars, *, horizontal: bool, colors: tuple[str, ...] = PALETTE) -> QChart:
    chart = _chart(data.title)
    series = QHorizontalStackedBarSeries() if horizontal else QStackedBarSeries()
    categories = list(data.categories)[-TOP_N * 2 :] if not horizontal else list(data.categories)[:TOP_N]
    start = len(data.categories) - len(categories) if not horizontal else 0
    for i, s in enumerate(data.series):
        bar_set = QBarSet(s.name)
        bar_set.append([float(v) for v in s.values[start : start + len(categories)]])
        bar_set.setColor(QColor(colors[i % len(colors)]))
        series.append(bar_set)
    categories = [month_label(c) for c in categories]
    if data.empty:
        chart.setTitle(f"{data.title} — no data yet")
    totals = [sum(s.values[start + i] for s in data.series) for i in range(len(categories))]
    return _finish(chart, series, categories, horizontal=horizontal, top=max(totals, default=0))


def bars_chart(title: str, rows: list[tuple[str, list[int]]], names: list[str]) -> QChart:
    chart = _chart(title if rows else f"{title} — no data yet")
    series = QHorizontalBarSeries()
    for i, name in enumerate(names):
        bar_set = QBarSet(name)
        bar_set.append([float(values[i]) for _, values in rows])
        bar_set.setColor(QColor(CATEGORY_COLORS[i % len(CATEGORY_COLORS)]))
        series.append(bar_set)
    if len(names) == 1:
        chart.legend().hide()
    top = max((max(values) for _, values in rows), default=0)
    return _finish(chart, series, [label for label, _ in rows], horizontal=True, top=top)


class AnalyticsPage(QWidget):
    def __init__(
        self, *, analytics: AnalyticsService, runner: JobRunner, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._service = analytics
        self._runner = runner
        self.analytics: Analytics | None = None
        self.summary = QLabel(objectName="analytics_summary")
        refresh = QPushButton("&Refresh", objectName="analytics_refresh")
        refresh.clicked.connect(self.refresh)
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(refresh)
        self.views = [QChartView() for _ in range(5)]
        grid = QGridLayout()
        for i, view in enumerate(self.views):
            view.setRenderHint(QPainter.RenderHint.Antialiasing)
            view.setMinimumHeight(300)
            grid.addWidget(view, i // 2, i % 2)
        body = QWidget()
        body.setLayout(grid)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(scroll, 1)

    def refresh(self) -> None:
        self.summary.setText("Computing…")
        self._runner.submit(
            "compute analytics",
            self._service.compute,
            on_done=self._show,
            on_error=lambda exc: self.summary.setText(error_text(exc)),
        )

    def reload_all(self) -> None:
        self.refresh()

    def _show(self, a: Analytics) -> None:
        self.analytics = a
        self.summary.setText(
            f"<b>{a.outputs:,}</b> outputs · <b>{a.prompts:,}</b> prompts — computed on this computer "
            "from the local replica (works offline)"
        )
        funnel = [(name, [n]) for name, n in reversed(a.stage_funnel)]
        usage = [(name, [p, o]) for name, p, o in reversed(a.tag_usage[:TOP_N])]
        charts = [
            stacked_chart(a.accuracy_by_gpt_model, horizontal=True),
            stacked_chart(a.accuracy_by_custom_gpt, horizontal=True),
            stacked_chart(a.knowledge_types_per_month, horizontal=False, colors=CATEGORY_COLORS),
            bars_chart("Prompts by development stage", funnel, ["prompts"]),
            bars_chart(f"Tag usage (top {TOP_N})", usage, ["prompts", "outputs"]),
        ]
        for view, chart in zip(self.views, charts, strict=True):
            old = view.chart()
            view.setChart(chart)
            if old is not None:
                old.deleteLater()
