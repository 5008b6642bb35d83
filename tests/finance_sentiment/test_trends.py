"""Trends: SQL bucketing and aggregates on SQLite and PostgreSQL, zero-filled series, validation, charts."""

from __future__ import annotations

import io
import struct
from datetime import UTC, datetime, timedelta, timezone
from itertools import count

import matplotlib.image as mpimg
import pytest
from sqlalchemy import text

from finance_sentiment.charts import trend_chart
from finance_sentiment.database import Database
from finance_sentiment.tables import Document, DocumentTag
from finance_sentiment.trends import MAX_POINTS, TrendPoint, TrendQuery, TrendSeries, trends
from textcore.errors import InvalidInput

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a whole day, hour and quarter-hour
_ids = count()


def _doc(seen_at: datetime, label: str, sentiment: float, *tags: tuple[str, str]) -> Document:
    n = next(_ids)
    return Document(
        url=f"http://news.test/{n}",
        content_hash=f"hash-{n}",
        title="t",
        text="t",
        label=label,
        scores={label: 1.0},
        sentiment=sentiment,
        model_version="m",
        seen_at=seen_at,
        tags=[DocumentTag(kind=kind, name=name) for kind, name in tags],
    )


ACME = ("entity", "acme")
GLOBEX = ("entity", "globex")
RATES = ("topic", "rates")


@pytest.fixture
def stored(database: Database) -> Database:
    """Documents in the hours 09:00, 10:00 and 12:00 (11:00 empty), and two outside 09:00-13:00."""
    m = timedelta(minutes=1)
    with database.session() as session:
        session.add_all(
            [
                _doc(T0, "negative", -0.5, ACME, RATES),  # bucket start counts
                _doc(T0 + 10 * m, "positive", 1.0, ACME),
                _doc(T0 + 59 * m + timedelta(seconds=59.999), "neutral", 0.25, ACME, GLOBEX),
                _doc(T0 + 60 * m, "negative", -1.0, GLOBEX),  # 10:00: next hour
                _doc(T0 + 70 * m, "negative", -0.75, ACME, RATES),
                _doc(T0 + 185 * m, "positive", 0.5, RATES),  # 12:05
                _doc(T0 - timedelta(microseconds=1), "negative", -1.0, ACME),  # before since
                _doc(T0 + 240 * m, "negative", -1.0, ACME),  # at until: excluded
            ]
        )
    return database


def _query(**kwargs: object) -> TrendQuery:
    defaults: dict[str, object] = {"since": T0, "until": T0 + timedelta(hours=4)}
    return TrendQuery(**(defaults | kwargs))  # type: ignore[arg-type]


def _run(database: Database, query: TrendQuery) -> list[TrendSeries]:
    with database.session() as session:
        return trends(session, query)


def _point(start: datetime, counts: tuple[int, int], mean: float) -> TrendPoint:
    total, negative = counts
    share = negative / total if total else 0.0
    return TrendPoint(start=start, count=total, negative=negative, negative_share=share, mean_sentiment=mean)


def _hour(h: int) -> datetime:
    return T0 + timedelta(hours=h)


def test_entities_are_bucketed_by_hour_with_exact_aggregates(stored: Database) -> None:
    series = _run(stored, _query(kind="entity", bucket="1h"))
    assert [(s.kind, s.name, s.bucket) for s in series] == [
        ("entity", "acme", "1h"),
        ("entity", "globex", "1h"),
    ]
    acme, globex = series
    assert acme.points == (
        _point(_hour(0), (3, 1), (-0.5 + 1.0 + 0.25) / 3),
        _point(_hour(1), (1, 1), -0.75),
        _point(_hour(2), (0, 0), 0.0),  # gaps are zero points
        _point(_hour(3), (0, 0), 0.0),
    )
    assert globex.points == (
        _point(_hour(0), (1, 0), 0.25),
        _point(_hour(1), (1, 1), -1.0),
        _point(_hour(2), (0, 0), 0.0),
        _point(_hour(3), (0, 0), 0.0),
    )
    assert all(p.start.tzinfo is UTC for p in acme.points)


def test_all_kind_counts_each_document_once(stored: Database) -> None:
    (series,) = _run(stored, _query(kind="all"))
    assert (series.kind, series.name) == ("all", "all")
    assert [(p.count, p.negative) for p in series.points] == [(3, 1), (2, 2), (0, 0), (1, 0)]
    assert series.points[1].mean_sentiment == pytest.approx((-1.0 - 0.75) / 2)
    assert series.points[1].negative_share == 1.0
    assert series.points[3].mean_sentiment == pytest.approx(0.5)


def test_quarter_hour_and_day_buckets(stored: Database) -> None:
    (quarters,) = _run(stored, _query(bucket="15m"))
    assert len(quarters.points) == 16
    assert [p.start for p in quarters.points] == [T0 + timedelta(minutes=15 * i) for i in range(16)]
    nonempty = {p.start - T0: p.count for p in quarters.points if p.count}
    m = timedelta(minutes=1)
    assert nonempty == {0 * m: 2, 45 * m: 1, 60 * m: 2, 180 * m: 1}
    (days,) = _run(stored, _query(bucket="1d", since=T0 - timedelta(days=1), until=T0 + timedelta(days=1)))
    assert [(p.start, p.count) for p in days.points] == [
        (datetime(2026, 3, 1, tzinfo=UTC), 0),
        (datetime(2026, 3, 2, tzinfo=UTC), 8),  # the whole day, including the two outside the hourly range
        (datetime(2026, 3, 3, tzinfo=UTC), 0),
    ]


def test_unaligned_range_buckets_on_epoch_boundaries(stored: Database) -> None:
    since = datetime(2026, 3, 2, 10, 30, tzinfo=timezone(timedelta(hours=1)))  # 09:30 UTC
    (series,) = _run(stored, _query(since=since, until=_hour(1) + timedelta(minutes=20)))
    # points start on whole hours; the first bucket only holds what was seen from 09:30 on
    assert [(p.start, p.count) for p in series.points] == [(_hour(0), 1), (_hour(1), 2)]


def test_names_filter_keeps_requested_names_even_without_documents(stored: Database) -> None:
    series = _run(stored, _query(kind="entity", names=("globex", "initech", "globex")))
    assert [(s.name, s.total) for s in series] == [("globex", 2), ("initech", 0)]
    assert [p.count for p in series[1].points] == [0, 0, 0, 0]
    (rates,) = _run(stored, _query(kind="topic", names=("rates",)))
    assert [(p.count, p.negative) for p in rates.points] == [(1, 1), (1, 1), (0, 0), (1, 0)]


def test_busiest_names_first_when_names_are_empty(stored: Database) -> None:
    with stored.session() as session:
        session.add_all([_doc(_hour(2), "neutral", 0.0, ("entity", "zeta")) for _ in range(5)])
        session.add(_doc(_hour(2), "neutral", 0.0, ("entity", "alpha"), GLOBEX))
    series = _run(stored, _query(kind="entity"))
    assert [(s.name, s.total) for s in series] == [("zeta", 5), ("acme", 4), ("globex", 3), ("alpha", 1)]
    top = _run(stored, _query(kind="entity", max_series=2))
    assert [s.name for s in top] == ["zeta", "acme"]
    assert [s.name for s in _run(stored, _query(kind="topic"))] == ["rates"]  # kinds do not mix


def test_ties_are_ordered_by_name(stored: Database) -> None:
    with stored.session() as session:
        session.add(_doc(_hour(3), "neutral", 0.0, ("topic", "earnings")))
        session.add(_doc(_hour(3), "neutral", 0.0, ("topic", "banks")))
    assert [s.name for s in _run(stored, _query(kind="topic"))] == ["rates", "banks", "earnings"]


def test_postgres_epoch_ignores_the_session_time_zone(stored: Database) -> None:
    with stored.session() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SET TIME ZONE 'America/New_York'"))
        (series,) = trends(session, _query())
    assert [p.count for p in series.points] == [3, 2, 0, 1]


def test_default_range_is_48_buckets_ending_now(database: Database) -> None:
    now = datetime.now(UTC)
    with database.session() as session:
        session.add(_doc(now - timedelta(minutes=1), "negative", -1.0))
    query = TrendQuery(bucket="15m")
    since, until = query.window
    assert until - now < timedelta(seconds=10)
    (series,) = _run(database, query)
    assert len(series.points) == 48
    assert series.points[0].start == since
    assert series.points[-1].start <= until < series.points[-1].start + timedelta(minutes=15)
    assert series.total == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bucket": "5m"}, "expected bucket to be one of 15m, 1h, 1d, found '5m'"),
        ({"kind": "sector"}, "expected kind to be one of topic, entity, all, found 'sector'"),
        ({"since": T0, "until": T0}, "expected since before until"),
        ({"since": T0 + timedelta(hours=1), "until": T0}, "expected since before until"),
        (
            {"since": T0, "until": T0 + timedelta(days=MAX_POINTS + 1), "bucket": "1d"},
            f"at most {MAX_POINTS}",
        ),
        ({"since": datetime(2026, 1, 1)}, "expected a timezone-aware since"),
        ({"since": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))}, "expected since from 1900-01-01"),
        ({"until": datetime(1, 1, 2, tzinfo=UTC)}, "expected until from 1900-01-01"),
        ({"until": datetime(9999, 12, 31, 23, tzinfo=timezone(-timedelta(hours=5)))}, "before 9000-01-01"),
        ({"names": ("acme",)}, "expected no names for kind 'all'"),
        ({"kind": "entity", "max_series": 0}, "expected max_series between 1 and"),
        ({"kind": "topic", "names": ("rates", "")}, "names of 1 to 200 characters, found 2"),
        ({"kind": "topic", "names": ("r" * 201,)}, "names of 1 to 200 characters, found 1"),
    ],
)
def test_invalid_queries_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        TrendQuery(**kwargs)  # type: ignore[arg-type]


def test_max_points_is_inclusive() -> None:
    query = TrendQuery(bucket="1d", since=T0, until=T0 + timedelta(days=MAX_POINTS - 1))
    assert query.window == (T0, T0 + timedelta(days=MAX_POINTS - 1))  # T0 is mid-day: MAX_POINTS buckets


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk comes first
    return width, height


def test_chart_of_series_is_a_png_of_the_figure_size(stored: Database) -> None:
    series = _run(stored, _query(kind="entity"))
    png = trend_chart(series, title="entities")
    assert _png_size(png) == (900, 500)
    assert len(png) > 5_000  # lines, bars, labels: not a blank canvas
    many = [TrendSeries("entity", f"e{i}", "1h", series[0].points) for i in range(15)]
    assert _png_size(trend_chart(many, title="many")) == (900, 500)


def test_chart_of_nothing_says_so() -> None:
    empty = trend_chart([], title="entities")
    assert _png_size(empty) == (900, 500)
    quiet = TrendSeries("all", "all", "1h", (TrendPoint(T0, 0, 0, 0.0, 0.0),))
    assert _png_size(trend_chart([quiet], title="all")) == (900, 500)
    pixels = mpimg.imread(io.BytesIO(empty), format="png")
    assert pixels.shape[:2] == (500, 900)
    middle = pixels[230:270, 300:600, :3]  # the message is written across the centre
    assert middle.min() < 0.6
    assert pixels[400:, :, :3].min() > 0.99  # and nothing else below it: no axes
