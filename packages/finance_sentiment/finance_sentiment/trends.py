"""Sentiment over time: documents per topic, entity or overall, bucketed into regular intervals by SQL.

A 15m or 1h bucket is a half-open interval ``[k * n, (k + 1) * n)`` of epoch seconds, ``n`` being the bucket
length, so buckets line up across queries, backends and time zones. A 1d bucket is a calendar day in the
query's time zone (``tz``, an IANA name; UTC by default), from one local midnight to the next: 23 or 25 hours
on a day the clocks change (`finance_sentiment.local_days`). The time zone only moves 15m and 1h buckets'
timestamps into its offset, never their instants: in a zone whose offset is not a whole number of hours
(Asia/Kolkata, +05:30) a 1h bucket starts at half past a local hour. The database computes the bucket index
and the aggregates (count, negatives, mean sentiment) with ``GROUP BY``; Python only fills the empty buckets
with zero points so every series is regular.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    FromClause,
    Integer,
    case,
    cast,
    extract,
    func,
    literal_column,
    select,
)
from sqlalchemy.orm import Session

from finance_sentiment.local_days import day_expression, day_of, day_runs, day_start, time_zone
from finance_sentiment.tables import TAG_CHARS, Document, DocumentTag
from finance_sentiment.vocabulary import NameIndex, Vocabulary
from textcore.errors import InvalidInput
from textcore.printable import check_printable
from textcore.sql import aware_utc

BUCKETS: dict[str, int] = {"15m": 900, "1h": 3600, "1d": 86400}
KINDS: tuple[str, ...] = ("topic", "entity", "all")
MAX_POINTS = 2000  # buckets per series: bounds the response and the chart
DEFAULT_POINTS = 48
MAX_SERIES = 100

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class TrendPoint:
    """The documents seen in one bucket.

    Attributes:
        start: The bucket's first instant, in the query's time zone (`datetime.UTC` for ``UTC``).
        count: Documents seen in the bucket.
        negative: How many of them are labelled ``negative``.
        negative_share: ``negative / count``; 0.0 for an empty bucket.
        mean_sentiment: Mean sentiment in [-1, 1]; 0.0 for an empty bucket.
    """

    start: datetime
    count: int
    negative: int
    negative_share: float
    mean_sentiment: float


@dataclass(frozen=True)
class TrendSeries:
    """One topic's, entity's or the whole stream's points, one per bucket of the range, sorted by start.

    Attributes:
        kind: ``topic``, ``entity`` or ``all``.
        name: The tag name; ``all`` for the whole stream.
        bucket: The bucket key (``15m``, ``1h``, ``1d``).
        points: Every bucket of the range, empty ones included.
    """

    kind: str
    name: str
    bucket: str
    points: tuple[TrendPoint, ...]

    @property
    def total(self) -> int:
        """Documents over the whole range."""
        return sum(point.count for point in self.points)


@dataclass(frozen=True)
class TrendQuery:
    """What to chart: which tags, how finely, over which range ``[since, until)``, on which calendar.

    Validates itself on construction and fills the defaults: ``until`` is now, ``since`` is the start of the
    bucket 47 buckets before ``until``'s, so a default series has 48 points, the last one the current bucket.

    Attributes:
        kind: ``topic``, ``entity`` or ``all`` (every document, no tags).
        names: Tag names to chart; empty charts the ``max_series`` busiest names in the range.
        bucket: A key of ``BUCKETS``.
        since: First instant included (timezone-aware).
        until: First instant excluded (timezone-aware).
        max_series: How many busiest names to return when ``names`` is empty.
        tz: An IANA time zone name: 1d buckets are its calendar days, and every bucket's start is given in
            its offset; 15m and 1h buckets are the same instants in every zone.
        zone: ``tz``'s zone, filled on construction.

    Raises:
        InvalidInput: An unknown kind, bucket or time zone, naive or inverted times, a range of more than
            ``MAX_POINTS`` buckets, or names or ``max_series`` out of bounds.
    """

    kind: str = "all"
    names: tuple[str, ...] = ()
    bucket: str = "1h"
    since: datetime | None = None
    until: datetime | None = None
    max_series: int = 20
    tz: str = "UTC"
    zone: tzinfo = field(default=UTC, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidInput(f"expected kind to be one of {', '.join(KINDS)}, found {self.kind!r}")
        if self.bucket not in BUCKETS:
            raise InvalidInput(f"expected bucket to be one of {', '.join(BUCKETS)}, found {self.bucket!r}")
        if not 1 <= self.max_series <= MAX_SERIES:
            raise InvalidInput(f"expected max_series between 1 and {MAX_SERIES}, found {self.max_series}")
        names = tuple(dict.fromkeys(self.names))  # callers may pass a list or repeat a name
        if self.kind == "all" and names:
            raise InvalidInput(f"expected no names for kind 'all', found {list(names)}")
        if len(names) > MAX_SERIES or any(not name or len(name) > TAG_CHARS for name in names):
            shown = [name[:40] for name in list(names)[:5]]
            raise InvalidInput(
                f"expected at most {MAX_SERIES} names of 1 to {TAG_CHARS} characters, "
                f"found {len(names)}: {shown}"
            )
        for name in names:  # no stored tag holds one; PostgreSQL would refuse a NUL in the query itself
            check_printable(name, "name")
        object.__setattr__(self, "zone", time_zone(self.tz))
        until = datetime.now(UTC) if self.until is None else aware_utc("until", self.until)
        if self.since is None:
            since = self.start(self.index(until - _MICROSECOND) - DEFAULT_POINTS + 1).astimezone(UTC)
        else:
            since = aware_utc("since", self.since)
        if since >= until:
            raise InvalidInput(
                f"expected since before until, found {since.isoformat()} >= {until.isoformat()}"
            )
        points = self.index(until - _MICROSECOND) - self.index(since) + 1
        if points > MAX_POINTS:
            raise InvalidInput(
                f"expected at most {MAX_POINTS} {self.bucket} buckets between since and until, found {points}"
            )
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "since", since)
        object.__setattr__(self, "until", until)

    @property
    def window(self) -> tuple[datetime, datetime]:
        """The validated ``(since, until)``, both timezone-aware UTC."""
        assert self.since is not None and self.until is not None  # filled by __post_init__
        return self.since, self.until

    @property
    def indexes(self) -> range:
        """The indexes of the buckets of the range, in order."""
        since, until = self.window
        return range(self.index(since), self.index(until - _MICROSECOND) + 1)

    def index(self, moment: datetime) -> int:
        """The index of the bucket holding ``moment``: a local day number for 1d, else `bucket_index`."""
        if self.bucket == "1d":
            return day_of(moment, self.zone)
        return bucket_index(moment, BUCKETS[self.bucket])

    def start(self, index: int) -> datetime:
        """The first instant of bucket ``index``, in the query's time zone."""
        if self.bucket == "1d":
            return day_start(index, self.zone)
        return bucket_start(index, BUCKETS[self.bucket]).astimezone(self.zone)


def bucket_index(moment: datetime, seconds: int) -> int:
    """The index of the bucket holding ``moment``: ``floor(epoch seconds / seconds)``, exactly."""
    return ((moment - _EPOCH) // _MICROSECOND) // (seconds * 1_000_000)


def bucket_start(index: int, seconds: int) -> datetime:
    """The first instant of bucket ``index``, timezone-aware UTC."""
    return _EPOCH + timedelta(seconds=index * seconds)


def trends(session: Session, query: TrendQuery, vocabulary: Vocabulary | None = None) -> list[TrendSeries]:
    """Per-bucket counts, negative shares and mean sentiment for each series the query asks for.

    Args:
        session: An open session on the monitor's database (SQLite or PostgreSQL).
        query: A validated query.
        vocabulary: The configured topics and entities: a name given as an alias, a ticker or another
            case of one (or another case of a source's tag) is charted under its canonical name, as a
            rule's match is resolved (`finance_sentiment.vocabulary`).

    Returns:
        One series per name (one named ``all`` for kind ``all``), each with a point for every bucket of the
        range; sorted by total documents descending, then by name.

    Raises:
        InvalidInput: The database is neither SQLite nor PostgreSQL.
    """
    if query.kind == "all":
        names: Sequence[str] = ["all"]
    elif query.names:
        names = NameIndex.read(session, vocabulary).resolve(query.kind, query.names, "name").names
    else:
        names = _busiest(session, query)
    found = _aggregates(session, query, names)
    series = [
        TrendSeries(
            kind=query.kind,
            name=name,
            bucket=query.bucket,
            points=tuple(found.get((name, i)) or _empty(query.start(i)) for i in query.indexes),
        )
        for name in names
    ]
    return sorted(series, key=lambda s: (-s.total, s.name))


def _aggregates(
    session: Session, query: TrendQuery, names: Sequence[str]
) -> dict[tuple[str, int], TrendPoint]:
    """The non-empty buckets of each name, keyed by (name, bucket index), from one GROUP BY query."""
    index = _bucket_expression(session, query)
    aggregates = (
        func.count(),
        func.sum(case((Document.label == "negative", 1), else_=0)),
        func.avg(Document.sentiment),
    )
    if query.kind == "all":
        statement = (
            select(literal_column("'all'"), index, *aggregates)
            .select_from(_source(query))
            .where(*_filters(query))
            .group_by(index)
        )
    else:
        statement = (
            select(DocumentTag.name, index, *aggregates)
            .select_from(_source(query))
            .where(*_filters(query))
            .where(DocumentTag.name.in_(names))
            .group_by(DocumentTag.name, index)
        )
    found: dict[tuple[str, int], TrendPoint] = {}
    for name, bucket, count, negative, mean in session.execute(statement):
        # PostgreSQL's SUM of integers is a bigint and its AVG a double; normalise both backends' types.
        found[str(name), int(bucket)] = TrendPoint(
            start=query.start(int(bucket)),
            count=int(count),
            negative=int(negative),
            negative_share=int(negative) / int(count),
            mean_sentiment=float(mean),
        )
    return found


def _busiest(session: Session, query: TrendQuery) -> list[str]:
    """The ``max_series`` names of the query's kind with the most documents in its range."""
    count = func.count().label("documents")
    statement = (
        select(DocumentTag.name, count)
        .select_from(_source(query))
        .where(*_filters(query))
        .group_by(DocumentTag.name)
        .order_by(count.desc(), DocumentTag.name)
        .limit(query.max_series)
    )
    return list(session.scalars(statement))


def _source(query: TrendQuery) -> FromClause:
    """Documents, joined with their tags unless the kind is ``all`` (which counts each document once)."""
    documents = Document.__table__
    if query.kind == "all":
        return documents
    return documents.join(DocumentTag.__table__, DocumentTag.document_id == Document.id)


def _filters(query: TrendQuery) -> list[ColumnElement[bool]]:
    """The query's range, and its tag kind unless the kind is ``all``."""
    since, until = query.window
    filters = [Document.seen_at >= since, Document.seen_at < until]
    if query.kind != "all":
        filters.append(DocumentTag.kind == query.kind)
    return filters


def _bucket_expression(session: Session, query: TrendQuery) -> ColumnElement[int]:
    """SQL for the bucket index of ``seen_at``: ``floor(epoch seconds / bucket seconds)``, or its local day.

    ``seen_at`` is naive UTC on both backends; PostgreSQL's ``extract(epoch ...)`` of a ``timestamp without
    time zone`` counts from 1970-01-01 00:00 in that same naive clock, i.e. UTC, whatever the session's
    TimeZone. The divisor is inlined (a trusted constant of ``BUCKETS``) so the grouped expression is
    textually identical in SELECT and GROUP BY. A day is numbered from whole epoch seconds over the
    range's local days (`finance_sentiment.local_days.day_expression`); their bounds are whole seconds.
    """
    dialect = session.get_bind().dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise InvalidInput(f"expected a sqlite or postgresql database for trends, found {dialect!r}")
    if query.bucket == "1d":
        days = query.indexes
        return day_expression(_epoch_seconds(dialect), day_runs(days[0], days[-1], query.zone))
    divisor = literal_column(str(BUCKETS[query.bucket]), Integer)
    if dialect == "sqlite":  # both integers: SQLite divides exactly, rounding down for positive times
        return _epoch_seconds(dialect) // divisor
    return cast(func.floor(extract("epoch", Document.seen_at) / divisor), BigInteger)


def _epoch_seconds(dialect: str) -> ColumnElement[int]:
    """SQL for the whole epoch seconds of ``seen_at`` (rounded down for times after 1970)."""
    if dialect == "sqlite":
        return cast(func.strftime(literal_column("'%s'"), Document.seen_at), Integer)
    return cast(func.floor(extract("epoch", Document.seen_at)), BigInteger)


def _empty(start: datetime) -> TrendPoint:
    return TrendPoint(start=start, count=0, negative=0, negative_share=0.0, mean_sentiment=0.0)
