"""Calendar days in a time zone, and the SQL that numbers them, for 1d trend buckets on a desk's own days.

Day ``i`` is the local date ``1970-01-01 + i days``; it runs from its first instant (local midnight, or the
first instant that exists when the clocks skip midnight, as America/Santiago's do) to the next day's, so a
day on which the clocks change is 23 or 25 hours long. In UTC day ``i`` is ``floor(epoch seconds / 86400)``.

The database numbers a document's day with a ``CASE`` over the range's runs of days: consecutive days of
exactly 86,400 s share one arm ``first + (seconds - start) / 86400``, and every other day has an arm of its
own, so a range of 2000 days in a zone that changes its clocks twice a year needs about 25 arms. The bounds
come from `zoneinfo`, so they are exact for any offset, historical ones of odd seconds included.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import BigInteger, ColumnElement, case, literal_column

from textcore.errors import InvalidInput
from textcore.printable import control_character

MAX_TZ_CHARS = 64  # the longest IANA name is about 30 characters
DAY = 86400  # seconds
_EPOCH_DAY = date(1970, 1, 1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Run:
    """Consecutive days ``first, first + 1, ...`` covering epoch seconds ``[start, end)``.

    Attributes:
        first: The first day's index.
        start: Epoch seconds of the first day's first instant.
        end: Epoch seconds of the instant after the run (the next day's first).
        regular: Every day of the run is 86,400 s long; an irregular run is a single day.
    """

    first: int
    start: int
    end: int
    regular: bool


def time_zone(name: str) -> tzinfo:
    """The IANA time zone called ``name``; ``UTC`` is `datetime.UTC`.

    Raises:
        InvalidInput: ``name`` is empty, longer than ``MAX_TZ_CHARS``, holds a control character, or names
            no zone (a path, a folder such as ``America``, an unknown key).
    """
    if name == "UTC":
        return UTC
    if 1 <= len(name) <= MAX_TZ_CHARS and control_character(name) is None:
        try:
            return ZoneInfo(name)
        except (ValueError, OSError, ZoneInfoNotFoundError):
            pass
    raise InvalidInput(
        f"expected tz to be an IANA time zone name of 1 to {MAX_TZ_CHARS} characters such as "
        f"Europe/London, America/New_York or UTC, found {name[:80]!r}"
    )


def day_of(moment: datetime, zone: tzinfo) -> int:
    """The index of the local day holding the timezone-aware ``moment``."""
    return (moment.astimezone(zone).date() - _EPOCH_DAY).days


def day_start(day: int, zone: tzinfo) -> datetime:
    """The first instant of day ``day``, in ``zone``'s offset (``UTC`` itself for `datetime.UTC`)."""
    midnight = datetime.combine(_EPOCH_DAY + timedelta(days=day), time(), tzinfo=zone)
    # A skipped midnight (fold 0 reads it with the offset before the change) becomes 01:00, the first instant.
    return midnight.astimezone(UTC).astimezone(zone)


def day_runs(first: int, last: int, zone: tzinfo) -> list[Run]:
    """Days ``first`` to ``last`` (inclusive) as runs: regular days joined, every other day alone."""
    bounds = [_seconds(day_start(day, zone)) for day in range(first, last + 2)]
    runs: list[Run] = []
    for day, (start, end) in enumerate(pairwise(bounds), start=first):
        regular = end - start == DAY
        if regular and runs and runs[-1].regular:
            runs[-1] = replace(runs[-1], end=end)
        else:
            runs.append(Run(day, start, end, regular))
    return runs


def day_expression(seconds: ColumnElement[int], runs: list[Run]) -> ColumnElement[int]:
    """SQL for the day index of integer epoch ``seconds`` within the runs' range (on both backends).

    Every number is inlined (trusted integers), so the expression is textually identical in SELECT and
    GROUP BY. ``seconds - start`` is never negative within the range, so integer division rounds down.
    """
    arms = [_arm(seconds, run) for run in runs]
    if len(arms) == 1:
        return arms[0]
    limits = [(seconds < _number(run.end), arm) for run, arm in zip(runs[:-1], arms[:-1], strict=True)]
    return case(*limits, else_=arms[-1])


def _arm(seconds: ColumnElement[int], run: Run) -> ColumnElement[int]:
    if not run.regular:
        return _number(run.first)
    return _number(run.first) + (seconds - _number(run.start)) // _number(DAY)


def _number(value: int) -> ColumnElement[int]:
    text = str(int(value))
    return literal_column(text if value >= 0 else f"({text})", BigInteger)  # no "- -1", no "--" comment


def _seconds(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(seconds=1)
