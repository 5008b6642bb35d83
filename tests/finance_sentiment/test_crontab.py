"""Crontab expressions keep crontab's meaning (0 and 7 are Sunday), unlike APScheduler's own numbering."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from finance_sentiment.crontab import crontab_trigger

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


@pytest.mark.parametrize("expression", ["0 9 * *", "0 9 * * 8", "61 * * * *", "0 9 * * mon tue"])
def test_bad_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ValueError):
        crontab_trigger(expression)
