"""`GET /v1/trends`: volume, negative share and mean sentiment per topic or entity; JSON or PNG."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response

from finance_sentiment.charts import trend_chart
from finance_sentiment.deps import MonitorDep
from finance_sentiment.trends import TrendQuery, TrendSeries, trends

TZ = (
    "IANA time zone (e.g. Europe/London): 1d buckets are its calendar days (23 or 25 hours when the clocks "
    "change); bucket starts carry its offset. 15m and 1h buckets are the same instants in every zone."
)
router = APIRouter(prefix="/v1/trends", tags=["trends"])
PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "A PNG chart of the same series."}
}


def trend_query(
    kind: Literal["all", "topic", "entity"] = "all",
    name: Annotated[
        list[str] | None,
        Query(max_length=100, description="Topic or entity (an alias, ticker or other case too); repeat."),
    ] = None,
    bucket: Literal["15m", "1h", "1d"] = "1h",
    since: Annotated[datetime | None, Query(description="Start (inclusive), with a time zone.")] = None,
    until: Annotated[datetime | None, Query(description="End (exclusive), with a time zone.")] = None,
    max_series: Annotated[int, Query(ge=1, le=100, description="Busiest names shown when none given.")] = 20,
    tz: Annotated[str, Query(description=TZ)] = "UTC",
) -> TrendQuery:
    """The query parameters of both trend endpoints, validated by `TrendQuery`."""
    return TrendQuery(kind, tuple(name or ()), bucket, since, until, max_series, tz=tz)


TrendQueryDep = Annotated[TrendQuery, Depends(trend_query)]


@router.get("", responses=PNG, response_model=list[TrendSeries])
def get_trends(
    monitor: MonitorDep, query: TrendQueryDep, format: Literal["json", "png"] = "json"
) -> list[TrendSeries] | Response:
    """One zero-filled series per topic or entity (the busiest when no `name` is given).

    `format=png` returns the chart instead.
    """
    with monitor.db.session() as session:
        series = trends(session, query, monitor.vocabulary)
    if format == "png":
        return _png(series, query)
    return series


@router.get("/chart.png", response_class=Response, responses=PNG)
def get_trend_chart(monitor: MonitorDep, query: TrendQueryDep) -> Response:
    """The same series as a PNG: negative share above, volume below."""
    with monitor.db.session() as session:
        return _png(trends(session, query, monitor.vocabulary), query)


def _png(series: list[TrendSeries], query: TrendQuery) -> Response:
    title = f"Negative share and volume per {query.kind if query.kind != 'all' else 'story'}, {query.bucket}"
    return Response(trend_chart(series, title=title, zone=query.zone), media_type="image/png")
