"""Standard 5-field crontab expressions as APScheduler triggers.

APScheduler 3 reads day-of-week numbers with 0 as Monday; crontab (and every operator) means Sunday. Numbers
in the day-of-week field are therefore spelled out as names before APScheduler sees them.

When both the day of month and the day of week are restricted (neither field starts with `*`), crontab runs
on days matching EITHER ("0 9 1,15 * 1": the 1st, the 15th and every Monday), where APScheduler would require
both; such an expression becomes the union of two triggers, one per day field.
"""

from __future__ import annotations

import re

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")  # crontab: 0 and 7 are Sunday


def crontab_trigger(expression: str) -> BaseTrigger:
    """A UTC trigger for ``minute hour day month day_of_week`` with crontab's meaning of the day fields.

    Raises:
        ValueError: The expression does not have five fields or a field is invalid.
    """
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields, found {len(fields)}")
    fields[4] = re.sub(r"(?<![/\d])\d+", _day_name, fields[4])  # a step such as */2 keeps its number
    minute, hour, day, month, weekday = fields
    if day.startswith("*") or weekday.startswith("*"):
        return CronTrigger.from_crontab(" ".join(fields), timezone="UTC")
    return OrTrigger(
        [
            CronTrigger.from_crontab(f"{minute} {hour} {day} {month} *", timezone="UTC"),
            CronTrigger.from_crontab(f"{minute} {hour} * {month} {weekday}", timezone="UTC"),
        ]
    )


def _day_name(match: re.Match[str]) -> str:
    number = int(match.group(0))
    if number >= len(_DAYS):
        raise ValueError(f"expected day-of-week numbers 0-7, found {number}")
    return _DAYS[number]
