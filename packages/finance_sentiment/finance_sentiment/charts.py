"""Trend charts as PNG bytes: negative share per series above, document volume below.

Built on matplotlib's object-oriented API only (a ``Figure`` with its own Agg canvas, never ``pyplot``), so
API worker threads can render charts concurrently without sharing global figure state.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import UTC, timedelta, tzinfo

from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from finance_sentiment.trends import BUCKETS, TrendSeries

FIGSIZE = (9.0, 5.0)  # inches
DPI = 100  # so a chart is 900 x 500 pixels
MAX_CHART_SERIES = 10  # more lines than this are unreadable; series arrive busiest first
EMPTY_MESSAGE = "no documents in range"


def trend_chart(series: Sequence[TrendSeries], *, title: str, zone: tzinfo = UTC) -> bytes:
    """Render series as a PNG of ``FIGSIZE`` inches at ``DPI``.

    The top panel draws each series' negative share per bucket (gaps where a bucket is empty, since a share of
    nothing is undefined); the bottom panel its document count per bucket as steps. Only the first
    ``MAX_CHART_SERIES`` series are drawn, and the title says so.

    Args:
        series: Series from `finance_sentiment.trends.trends`, busiest first; empty, or all without documents,
            gives a chart saying "no documents in range".
        title: The chart's title.
        zone: The time zone the dates are drawn in (the query's; the points' starts are in it).

    Returns:
        The PNG file's bytes.
    """
    figure = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself to the figure; no pyplot backend switching
    if not any(s.total for s in series):
        _draw_empty(figure, title)
    else:
        shown = list(series[:MAX_CHART_SERIES])
        if len(series) > len(shown):
            title = f"{title} (busiest {len(shown)} of {len(series)})"
        _draw_series(figure, shown, title, zone)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _draw_empty(figure: Figure, title: str) -> None:
    figure.suptitle(title)
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.text(0.5, 0.5, EMPTY_MESSAGE, ha="center", va="center", fontsize="large", color="0.4")


def _draw_series(figure: Figure, series: list[TrendSeries], title: str, zone: tzinfo) -> None:
    share_axes, volume_axes = figure.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    step = timedelta(seconds=BUCKETS[series[0].bucket])
    for item in series:
        starts = [point.start for point in item.points]
        edges = mdates.date2num([*starts, starts[-1] + step])  # type: ignore[no-untyped-call]
        middles = mdates.date2num([start + step / 2 for start in starts])  # type: ignore[no-untyped-call]
        shares = [point.negative_share if point.count else math.nan for point in item.points]
        (line,) = share_axes.plot(middles, shares, marker="o", markersize=3, linewidth=1.2, label=item.name)
        volume_axes.stairs(
            [point.count for point in item.points], edges, color=line.get_color(), linewidth=1.2
        )
    share_axes.set_title(title)
    share_axes.set_ylabel("negative share")
    share_axes.set_ylim(0.0, 1.0)
    share_axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    share_axes.grid(alpha=0.3)
    volume_axes.set_ylabel(f"documents / {series[0].bucket}")
    volume_axes.set_ylim(bottom=0)
    volume_axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    volume_axes.grid(alpha=0.3)
    volume_axes.set_xlabel(str(zone))
    _date_axis(volume_axes, float(edges[0]), float(edges[-1]), zone)
    figure.legend(loc="outside right upper", fontsize="small", title=series[0].kind)


def _date_axis(axes: Axes, left: float, right: float, zone: tzinfo) -> None:
    """Concise date ticks in ``zone`` over exactly the charted range."""
    locator = mdates.AutoDateLocator(tz=zone, minticks=3)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    formatter = mdates.ConciseDateFormatter(locator, tz=zone)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_formatter(formatter)
    axes.set_xlim(left, right)
