"""Crontab expressions keep crontab's meaning (0 and 7 are Sunday), unlike APScheduler's own numbering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from finance_sentiment.crontab import crontab_trigger
from finance_sentiment.schemas import SourceIn, SourcePatch

SATURDAY = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "weekday"),
    [("0 9 * * 0", "Sunday"), ("0 9 * * 7", "Sunday"), ("0 9 * * 1", "Monday"), ("0 9 * * 1-5", "Monday"),
     ("0 9 * * 3,5", "Wednesday"), ("0 9 * * sat", "Saturday"), ("30 13 * * *", "Saturday")],
)  # fmt: skip
def test_day_numbers_mean_what_crontab_means(expression: str, weekday: str) -> None:
    fire = crontab_trigger(expression).get_next_fire_time(None, SATURDAY)
    assert fire is not None and fire.strftime("%A") == weekday


def test_a_step_keeps_its_number() -> None:
    fire = crontab_trigger("*/20 * * * *").get_next_fire_time(None, SATURDAY)
    assert fire == datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "expression", ["0 9 * *", "0 9 * * 8", "61 * * * *", "0 9 * * mon tue", "0 9 * * 3-1", "0 9 * * */0"]
)
def test_bad_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ValueError):
        crontab_trigger(expression)


def _fires(expression: str, count: int) -> list[str]:
    trigger, previous, now, fires = crontab_trigger(expression), None, SATURDAY, []
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        fires.append(fire.strftime("%a %d %b"))
        previous, now = fire, fire + timedelta(minutes=1)
    return fires


def test_both_day_fields_restricted_fire_on_either() -> None:
    # crontab: the 1st of the month OR a Monday (APScheduler alone would wait for a Monday the 1st)
    assert _fires("0 9 1 * 1", 4) == ["Mon 30 Nov", "Tue 01 Dec", "Mon 07 Dec", "Mon 14 Dec"]
    assert _fires("0 9 1,15 * sat", 3) == ["Tue 01 Dec", "Sat 05 Dec", "Sat 12 Dec"]  # from Saturday noon


def test_a_day_field_starting_with_a_star_keeps_both_fields_required() -> None:
    assert _fires("0 9 */2 * 1", 2) == ["Mon 07 Dec", "Mon 21 Dec"]  # odd days of month that are Mondays
    assert _fires("0 9 1 * *", 2) == ["Tue 01 Dec", "Fri 01 Jan"]


@pytest.mark.parametrize(
    ("weekday", "fires"),
    [("0-6", ["Sun 29 Nov", "Mon 30 Nov", "Tue 01 Dec"]),
     ("0-2", ["Sun 29 Nov", "Mon 30 Nov", "Tue 01 Dec"]),
     ("*/2", ["Sun 29 Nov", "Tue 01 Dec", "Thu 03 Dec"]),
     ("mon-fri/2", ["Mon 30 Nov", "Wed 02 Dec", "Fri 04 Dec"]),
     ("5-7", ["Sun 29 Nov", "Fri 04 Dec", "Sat 05 Dec"]),
     ("fri-sun", ["Sun 29 Nov", "Fri 04 Dec", "Sat 05 Dec"])],
)  # fmt: skip
def test_day_ranges_and_steps_count_from_sunday_like_crontab(weekday: str, fires: list[str]) -> None:
    assert _fires(f"0 9 * * {weekday}", 3) == fires


@pytest.mark.parametrize("expression", ["0 0 31 2 *", "0 0 30 2 *", "15 8 31 4,6,9,11 *"])
def test_a_schedule_naming_a_date_that_never_exists_is_refused(expression: str) -> None:
    # The scheduler was handed a trigger with no next time: the source was never fetched, and nothing said
    # so (no run, no error, no last_status).
    with pytest.raises(ValidationError, match="never fires"):
        SourceIn(name="wire", url="https://news.example.com/feed", kind="rss", cron=expression)
    with pytest.raises(ValidationError, match="never fires"):
        SourcePatch(cron=expression)
    leap = SourceIn(name="wire", url="https://news.example.com/feed", kind="rss", cron="0 0 29 2 *")
    assert leap.cron == "0 0 29 2 *"  # every fourth year is still a date
