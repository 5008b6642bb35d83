"""Standard 5-field crontab expressions as APScheduler triggers.

APScheduler 3 reads day-of-week numbers with 0 as Monday; crontab (and every operator) means Sunday. A
restricted day-of-week field is therefore expanded, with crontab's numbering (0 and 7 Sunday), into the
list of day names it means ("0-6" -> every day, "*/2" -> sun,tue,thu,sat, "mon-fri/2" -> mon,wed,fri)
before APScheduler sees it.

When both the day of month and the day of week are restricted (neither field starts with `*`), crontab runs
on days matching EITHER ("0 9 1,15 * 1": the 1st, the 15th and every Monday), where APScheduler would require
both; such an expression becomes the union of two triggers, one per day field.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_PART = re.compile(r"(?P<range>\*|(?P<first>\w+)(?:-(?P<last>\w+))?)(?:/(?P<step>\d+))?")


def crontab_trigger(expression: str) -> BaseTrigger:
    """A UTC trigger for ``minute hour day month day_of_week`` with crontab's meaning of the day fields.

    Raises:
        ValueError: The expression does not have five fields or a field is invalid.
    """
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields, found {len(fields)}")
    minute, hour, day, month, weekday = fields
    days = weekday if weekday == "*" else ",".join(_DAYS[d] for d in sorted(_weekdays(weekday)))
    if day.startswith("*") or weekday.startswith("*"):
        return CronTrigger.from_crontab(f"{minute} {hour} {day} {month} {days}", timezone="UTC")
    return OrTrigger(
        [
            CronTrigger.from_crontab(f"{minute} {hour} {day} {month} *", timezone="UTC"),
            CronTrigger.from_crontab(f"{minute} {hour} * {month} {days}", timezone="UTC"),
        ]
    )


def never_fires(expression: str) -> bool:
    """Whether a valid crontab expression names no date that exists ('0 0 31 2 *': no February has a 31st).

    Raises:
        ValueError: The expression is not valid (`crontab_trigger`).
    """
    return crontab_trigger(expression).get_next_fire_time(None, datetime.now(UTC)) is None


def _weekdays(field: str) -> set[int]:
    """The days (0 Sunday .. 6 Saturday) a crontab day-of-week field names."""
    days: set[int] = set()
    for part in field.split(","):
        match = _PART.fullmatch(part)
        if match is None:
            raise ValueError(f"expected a day-of-week list such as 1-5 or mon,wed or */2; found {field!r}")
        if match["range"] == "*":
            first, last = 0, 6
        else:
            first = _day(match["first"])
            last = first if match["last"] is None else _day(match["last"])
            if match["last"] is not None and last == 0 < first:
                last = 7  # "fri-sun": Sunday at the end of a range
            if match["step"] is not None and match["last"] is None:
                last = 6  # "1/2": from Monday to the end of the week
            if first > last:
                raise ValueError(
                    f"expected a day-of-week range from an earlier to a later day; found {part!r}"
                )
        step = int(match["step"] or 1)
        if step < 1:
            raise ValueError(f"expected a day-of-week step of at least 1; found {part!r}")
        days.update(d % 7 for d in range(first, last + 1, step))
    return days


def _day(token: str) -> int:
    if token.isdigit():
        number = int(token)
        if number > 7:
            raise ValueError(f"expected day-of-week numbers 0-7, found {number}")
        return number  # 7 is Sunday too; days are taken modulo 7
    name = token.lower()[:3]
    if len(token) != 3 or name not in _DAYS:
        raise ValueError(f"expected a day-of-week number 0-7 or name sun-sat, found {token!r}")
    return _DAYS.index(name)
