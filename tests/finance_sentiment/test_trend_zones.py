"""Trends on a desk's own calendar (`tz`): 1d buckets are local days, DST days included, on SQLite and
PostgreSQL, through the real app; 15m and 1h buckets keep their instants; an unknown zone is refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from finance_sentiment import create_app
from finance_sentiment.settings import FinanceSentimentSettings
from finance_sentiment.tables import Document, DocumentTag
from tests.conftest import PROBLEM

_ids = count()


@pytest.fixture
def client(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    settings = FinanceSentimentSettings(
        database_url=database_url, registry=tmp_path / "registry", scheduler=False
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _store(client: TestClient, *moments: datetime) -> None:
    """One negative story tagged Acme seen at each moment (UTC)."""
    monitor = client.app.state.monitor  # type: ignore[attr-defined]
    with monitor.db.session() as session:
        for seen_at in moments:
            n = next(_ids)
            session.add(
                Document(
                    url=f"http://news.test/zone/{n}",
                    content_hash=f"zone-{n}",
                    title="t",
                    text="t",
                    label="negative",
                    scores={"negative": 1.0},
                    sentiment=-1.0,
                    model_version="m",
                    seen_at=seen_at,
                    tags=[DocumentTag(kind="entity", name="Acme")],
                )
            )


def _points(client: TestClient, **params: Any) -> list[tuple[str, int]]:
    response = client.get("/v1/trends", params=params)
    assert response.status_code == 200, response.text
    (series,) = response.json()
    return [(point["start"], point["count"]) for point in series["points"]]


def _utc(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_day_buckets_are_london_days_across_both_dst_changes(client: TestClient) -> None:
    # The clocks go forward at 01:00 UTC on 29 March 2026 and back at 01:00 UTC on 25 October.
    _store(
        client,
        _utc(2026, 3, 28, 23, 30),  # 23:30 GMT, 28 March
        _utc(2026, 3, 29, 0, 30),  # 00:30 GMT, 29 March
        _utc(2026, 3, 29, 23, 30),  # 00:30 BST, 30 March (29 March in UTC)
        _utc(2026, 3, 30, 22, 59, 59),  # 23:59:59 BST, 30 March
        _utc(2026, 3, 30, 23, 0),  # midnight BST: 31 March
        _utc(2026, 10, 24, 23, 30),  # 00:30 BST, 25 October (24 October in UTC)
        _utc(2026, 10, 25, 23, 30),  # 23:30 GMT, 25 October, the 25-hour day's last hour
        _utc(2026, 10, 26, 0, 0),  # midnight GMT: 26 October
    )
    spring = {"bucket": "1d", "since": "2026-03-28T00:00:00Z", "until": "2026-04-01T00:00:00+01:00"}
    assert _points(client, tz="Europe/London", **spring) == [
        ("2026-03-28T00:00:00Z", 1),
        ("2026-03-29T00:00:00Z", 1),  # 23 hours long
        ("2026-03-30T00:00:00+01:00", 2),
        ("2026-03-31T00:00:00+01:00", 1),
    ]
    autumn = {"bucket": "1d", "since": "2026-10-25T00:00:00+01:00", "until": "2026-10-27T00:00:00Z"}
    assert _points(client, tz="Europe/London", **autumn) == [
        ("2026-10-25T00:00:00+01:00", 2),  # 25 hours long
        ("2026-10-26T00:00:00Z", 1),
    ]
    # UTC days, as before: the default, and the same when asked for by name
    utc_days = [("2026-03-28T00:00:00Z", 1), ("2026-03-29T00:00:00Z", 2), ("2026-03-30T00:00:00Z", 2)]
    assert _points(client, **spring)[:3] == utc_days
    assert _points(client, tz="UTC", **spring)[:3] == utc_days


def test_day_buckets_are_new_york_days_around_local_midnight(client: TestClient) -> None:
    _store(
        client,
        _utc(2026, 1, 15, 4, 59, 59),  # 23:59:59 EST, 14 January
        _utc(2026, 1, 15, 5, 0),  # midnight EST: 15 January
        _utc(2026, 7, 1, 3, 59),  # 23:59 EDT, 30 June
        _utc(2026, 7, 1, 4, 0),  # midnight EDT: 1 July
    )
    winter = {"since": "2026-01-14T00:00:00-05:00", "until": "2026-01-16T00:00:00-05:00"}
    assert _points(client, bucket="1d", tz="America/New_York", kind="entity", name="Acme", **winter) == [
        ("2026-01-14T00:00:00-05:00", 1),
        ("2026-01-15T00:00:00-05:00", 1),
    ]
    summer = {"since": "2026-06-30T00:00:00-04:00", "until": "2026-07-02T00:00:00-04:00"}
    assert _points(client, bucket="1d", tz="America/New_York", **summer) == [
        ("2026-06-30T00:00:00-04:00", 1),
        ("2026-07-01T00:00:00-04:00", 1),
    ]
    assert _points(client, bucket="1d", **winter) == [  # in UTC both are on 15 January
        ("2026-01-14T00:00:00Z", 0),
        ("2026-01-15T00:00:00Z", 2),
        ("2026-01-16T00:00:00Z", 0),
    ]


def test_hour_buckets_keep_their_instants_in_the_zones_offset(client: TestClient) -> None:
    _store(client, _utc(2026, 1, 15, 4, 59, 59), _utc(2026, 1, 15, 5, 0))
    hours = {"bucket": "1h", "since": "2026-01-15T04:00:00Z", "until": "2026-01-15T06:00:00Z"}
    assert _points(client, tz="America/New_York", **hours) == [
        ("2026-01-14T23:00:00-05:00", 1),
        ("2026-01-15T00:00:00-05:00", 1),
    ]
    assert _points(client, tz="Asia/Kolkata", **hours) == [  # +05:30: hours start at half past
        ("2026-01-15T09:30:00+05:30", 1),
        ("2026-01-15T10:30:00+05:30", 1),
    ]
    assert _points(client, **hours) == [("2026-01-15T04:00:00Z", 1), ("2026-01-15T05:00:00Z", 1)]


def test_the_default_range_is_48_local_days(client: TestClient) -> None:
    now = datetime.now(UTC)
    _store(client, now - timedelta(minutes=1))
    points = _points(client, bucket="1d", tz="Asia/Kolkata")
    assert len(points) == 48 and sum(n for _, n in points) == 1
    assert all(start.endswith("T00:00:00+05:30") for start, _ in points)
    chart = client.get("/v1/trends/chart.png", params={"bucket": "1d", "tz": "Europe/London"})
    assert chart.status_code == 200 and chart.content.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "tz", ["Mars/Base", "America", "../etc/passwd", "/etc/localtime", "", "E" * 65, "UT\x00C"]
)
def test_an_unknown_time_zone_is_refused_naming_tz(client: TestClient, tz: str) -> None:
    for path in ("/v1/trends", "/v1/trends/chart.png"):
        response = client.get(path, params={"bucket": "1d", "tz": tz})
        assert response.status_code == 422, (tz, response.text)
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["detail"].startswith("expected tz to be an IANA time zone name"), response.text
