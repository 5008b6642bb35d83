"""The recommender end to end through its real app and lifespan: a real database (SQLite, and PostgreSQL for
the behaviour flow), the faiss index on disk, the tiny random BERT zero-shot or fine-tuned by the CLI, and the
real MiniLM once for a cold start by free-text interests (served over loopback HTTP)."""

from __future__ import annotations

import gc
import json
import re
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from sqlalchemy import func, select
from threadpoolctl import threadpool_info

from recommender import create_app
from recommender.baselines import ItemKNN
from recommender.data import Catalog
from recommender.database import Database
from recommender.events import EventRecord
from recommender.item_records import ItemRecord
from recommender.model_folders import MODEL_FILE
from recommender.schemas import ScoredOut
from recommender.settings import RecommenderSettings
from recommender.startup import open_recommender
from recommender.tables import Event
from tests.conftest import Query, QueryValue, problem, serve_app
from tests.recommender.conftest import (
    THEMES,
    catalog_items,
    event_bodies,
    item_id,
    rec_settings,
    store_unchecked,
    theme_of,
    user_histories,
)
from textcore import InvalidInput


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str, tiny_model_dir: Path) -> RecommenderSettings:
    return rec_settings(tmp_path, sqlite_url, tiny_model_dir)


@pytest.fixture
def client(settings: RecommenderSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def stocked(client: TestClient) -> TestClient:
    """The client after ingesting the themed catalog and its behaviour."""
    assert client.post("/v1/items", json={"items": catalog_items()}).status_code == 200
    response = client.post("/v1/events", json={"events": event_bodies()})
    assert response.status_code == 201, response.text
    return client


def stored_events(url: str) -> int:
    db = Database(url)
    try:
        with db.session() as session:
            return int(session.scalar(select(func.count()).select_from(Event)) or 0)
    finally:
        db.dispose()


def test_items_crud_and_bounds(client: TestClient, settings: RecommenderSettings) -> None:
    created = client.post("/v1/items", json={"items": catalog_items()})
    assert created.json() == {"created": 20, "updated": 0, "embedded": 20}
    again = client.post("/v1/items", json={"items": catalog_items()[:2]}).json()
    assert again == {"created": 0, "updated": 2, "embedded": 0}  # same text: no new embedding

    first = client.get("/v1/items", params={"limit": 15}).json()
    rest = client.get("/v1/items", params={"limit": 15, "cursor": first["next_cursor"]}).json()
    assert len(first["items"]) == 15 and rest["next_cursor"] is None
    listed = [item["id"] for item in first["items"] + rest["items"]]
    assert listed == sorted(item["id"] for item in catalog_items())

    item = client.get("/v1/items/astro-0").json()
    assert item["title"] == THEMES["astro"][0][0] and item["categories"] == ["astro"]
    body = {"title": "Solar telescope", "text": "Watch the sun safely.", "metadata": {"price": 99}}
    replaced = client.put("/v1/items/astro-0", json=body).json()
    assert replaced["title"] == "Solar telescope" and replaced["metadata"] == {"price": 99}
    assert replaced["updated_at"] > item["updated_at"] and replaced["created_at"] == item["created_at"]

    assert client.delete("/v1/items/astro-0").status_code == 204
    assert "astro-0" in problem(client.get("/v1/items/astro-0"), 404)["detail"]
    assert "astro-0" in problem(client.delete("/v1/items/astro-0"), 404)["detail"]
    assert client.get("/readyz").json()["checks"]["items"] == "19"

    bad = {"items": [{"id": "x", "title": "", "colour": "red"}, {"id": "y" * 201, "title": "t"}]}
    errors = problem(client.post("/v1/items", json=bad), 422)["errors"]
    assert {tuple(e["loc"][-2:]) for e in errors} >= {(0, "title"), (0, "colour"), (1, "id")}
    too_big = {"items": [{"id": "z", "title": "t", "metadata": {"blob": "x" * 20_000}}]}
    assert "metadata" in str(problem(client.post("/v1/items", json=too_big), 422)["errors"])
    repeated = {"items": [{"id": "z", "title": "t"}, {"id": "z", "title": "u"}]}
    assert "'z'" in problem(client.post("/v1/items", json=repeated), 422)["detail"]
    many = {"items": [{"id": f"n{i}", "title": "t"} for i in range(settings.max_items_per_request + 1)]}
    assert "at most 1000" in problem(client.post("/v1/items", json=many), 413)["detail"]
    assert len(client.get("/v1/items", params={"limit": 1000}).json()["items"]) == 19  # nothing stored
    events = [{"user_id": "u", "item_id": "lab-1"}] * (settings.max_events_per_request + 1)
    assert (
        "at most 10000 events" in problem(client.post("/v1/events", json={"events": events}), 413)["detail"]
    )
    assert stored_events(settings.database_url) == 0


def test_a_query_parameter_a_write_does_not_take_or_one_sent_twice_is_a_422_that_changes_nothing(
    client: TestClient, settings: RecommenderSettings
) -> None:
    """`POST /v1/items?dry_run=true` stored the items, `DELETE /v1/items/{id}?soft=true` deleted the item for
    good, `DELETE /v1/users/{id}?confirm=false` erased the user: the parameter was ignored and the write
    done. And `?k=5&k=50` (a URL built by appending) served the last value. Each is now a problem+json 422
    naming the parameter, and nothing is written."""
    stocked(client)
    events = stored_events(settings.database_url)
    new_item = {"items": [{"id": "new-1", "title": "Rain barrel"}]}
    event = {"events": [{"user_id": "astro-user-0", "item_id": "lab-0"}]}
    writes = [
        ("POST", "/v1/items", {"dry_run": "true"}, new_item),
        ("PUT", "/v1/items/astro-0", {"upsert": "false"}, {"title": "Solar telescope"}),
        ("DELETE", "/v1/items/astro-1", {"soft": "true"}, None),
        ("POST", "/v1/events", {"async": "1"}, event),
        ("DELETE", "/v1/users/astro-user-0", {"confirm": "false"}, None),
        ("POST", "/v1/score", {"k": "2"}, {"interests": "sky", "items": ["astro-1"]}),
    ]
    for method, path, params, body in writes:
        response = client.request(method, path, params=params, json=body)
        errors = problem(response, 422)["errors"]
        assert [(e["loc"], e["type"]) for e in errors] == [(["query", *params], "extra_forbidden")], errors
    assert problem(client.get("/v1/items/new-1"), 404)
    assert client.get("/v1/items/astro-0").json()["title"] == THEMES["astro"][0][0]
    assert client.get("/v1/items/astro-1").status_code == 200
    assert stored_events(settings.database_url) == events
    twice = [
        ("/v1/recommend?user_id=astro-user-0&k=5&k=50", {"k": 2}),
        ("/v1/recommend?user_id=astro-user-0&user_id=lab-user-0&k=1&k=2", {"user_id": 2, "k": 2}),
        ("/v1/items?limit=1&limit=1", {"limit": 2}),
    ]
    for url, counts in twice:
        errors = problem(client.get(url), 422)["errors"]
        assert [(e["loc"][-1], e["msg"], e["type"]) for e in errors] == [
            (name, f"expected one value, found {n}", "repeated") for name, n in counts.items()
        ], errors
    assert len(client.get("/v1/recommend?user_id=astro-user-0&k=5").json()) == 5
    assert client.delete("/v1/items/astro-1").status_code == 204


def test_an_id_sent_composed_or_decomposed_is_one_id(
    client: TestClient, settings: RecommenderSettings
) -> None:
    """ "café" typed on one keyboard is U+00E9, on another (or a macOS file name) "e" + U+0301: the same
    visible id was two items, two users and two events, and a read in the other form a 404. Ids are now
    brought to NFC wherever they enter, so either form names the one stored in NFC."""
    nfc, nfd = "caf\u00e9-1", "cafe\u0301-1"
    user_nfc, user_nfd = "jos\u00e9", "jose\u0301"
    stocked(client)
    created = client.post("/v1/items", json={"items": [{"id": nfd, "title": "Espresso cup"}]}).json()
    assert created == {"created": 1, "updated": 0, "embedded": 1}
    replaced = client.put(f"/v1/items/{nfc}", json={"title": "Espresso cups"})
    assert replaced.status_code == 200 and replaced.json()["id"] == nfc
    assert client.get(f"/v1/items/{nfd}").json() == replaced.json()
    assert client.get("/readyz").json()["checks"]["items"] == "21"
    events = [
        {"user_id": user_nfd, "item_id": nfc, "timestamp": 1_700_000_000, "event_id": "ord\u00e9r"},
        {"user_id": user_nfc, "item_id": nfd, "timestamp": 1_700_000_060},
    ]
    assert client.post("/v1/events", json={"events": events}).json() == {"stored": 2}
    retried = {"user_id": user_nfc, "item_id": nfc, "timestamp": 1_700_000_000, "event_id": "orde\u0301r"}
    assert client.post("/v1/events", json={"events": [retried]}).json() == {"stored": 0}
    for user in (user_nfc, user_nfd):
        response = client.get("/v1/recommend", params={"user_id": user, "k": 30, "exclude_seen": "false"})
        assert response.status_code == 200, response.text
        assert nfc in {r["item_id"] for r in response.json()}
    scored = client.post("/v1/score", json={"history": [nfd], "items": [nfd, "astro-0"]})
    assert scored.status_code == 200 and {r["item_id"] for r in scored.json()} == {nfc, "astro-0"}
    assert client.delete(f"/v1/users/{user_nfd}").status_code == 204  # both events: one user
    assert problem(client.get("/v1/recommend", params={"user_id": user_nfc}), 404)
    assert client.delete(f"/v1/items/{nfd}").status_code == 204
    assert problem(client.get(f"/v1/items/{nfc}"), 404)


INVISIBLE = [
    ("astro\u200b-0", "U+200B (ZERO WIDTH SPACE) at character 6"),
    ("\ufeffastro-0", "U+FEFF (ZERO WIDTH NO-BREAK SPACE) at character 1"),
    ("astro-0\u2060", "U+2060 (WORD JOINER) at character 8"),
    ("astro\u200d-0", "U+200D (ZERO WIDTH JOINER) at character 6"),
    ("ab\u202e0-ortsa", "U+202E (RIGHT-TO-LEFT OVERRIDE) at character 3"),
    ("\u2066astro-0\u2069", "U+2066 (LEFT-TO-RIGHT ISOLATE) at character 1"),
]


def test_new_ids_with_invisible_format_characters_are_422_and_stored_ones_stay_reachable(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path
) -> None:
    """ "astro\u200b-0" (a zero-width space) showed as "astro-0" but was another item, and a bidirectional
    override made an id display as a different one in an operator's console. Such an id is now refused where
    it would be stored (item and event bodies, a PUT's path), naming the field, the character and its
    position; an id stored before the rule can still be read, scored, erased and deleted."""
    settings = rec_settings(tmp_path, sqlite_url, tiny_model_dir)
    legacy_item, legacy_user = "legacy\u200b-1", "ann\u202e"
    store_unchecked(sqlite_url, legacy_item, legacy_user)
    with TestClient(create_app(settings)) as client:
        stocked(client)
        for bad, found in INVISIBLE:
            response = client.post("/v1/items", json={"items": [{"id": bad, "title": "Spoof"}]})
            (error,) = problem(response, 422)["errors"]
            assert error["loc"] == ["body", "items", 0, "id"], error
            assert "invisible format characters" in error["msg"] and found in error["msg"], error
            response = client.put(f"/v1/items/{bad}", json={"title": "Spoof"})
            (error,) = problem(response, 422)["errors"]
            assert error["loc"] == ["path", "item_id"] and found in error["msg"], error
            for field in ("user_id", "item_id", "event_id"):
                event = {"user_id": "u1", "item_id": "astro-0", "timestamp": 1_700_000_000, field: bad}
                (error,) = problem(client.post("/v1/events", json={"events": [event]}), 422)["errors"]
                assert error["loc"] == ["body", "events", 0, field] and found in error["msg"], error
        assert client.get("/readyz").json()["checks"]["items"] == "21"
        assert stored_events(sqlite_url) == len(event_bodies()) + 1
        assert client.get(f"/v1/items/{legacy_item}").json()["title"] == "Telescope mount"
        response = client.get("/v1/recommend", params={"user_id": legacy_user, "exclude_seen": "false"})
        assert response.status_code == 200, response.text
        scored = client.post("/v1/score", json={"history": [legacy_item], "items": [legacy_item, "astro-0"]})
        assert scored.status_code == 200 and {r["item_id"] for r in scored.json()} == {legacy_item, "astro-0"}
        assert client.delete(f"/v1/users/{legacy_user}").status_code == 204
        assert problem(client.get("/v1/recommend", params={"user_id": legacy_user}), 404)
        assert client.delete(f"/v1/items/{legacy_item}").status_code == 204
        assert problem(client.get(f"/v1/items/{legacy_item}"), 404)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_metadata_numbers_that_are_no_json_are_422_alike_on_each_backend(
    database_url: str, tmp_path: Path, tiny_model_dir: Path, number: str
) -> None:
    """Python's JSON parser takes NaN and Infinity: SQLite stored them as null, PostgreSQL refused them."""
    with TestClient(create_app(rec_settings(tmp_path, database_url, tiny_model_dir))) as client:
        item = f'{{"title": "t", "metadata": {{"price": [1, {number}]}}}}'
        headers = {"content-type": "application/json"}
        posted = client.post("/v1/items", content=f'{{"items": [{{"id": "n", {item[1:]}]}}', headers=headers)
        [error] = problem(posted, 422)["errors"]
        assert error["loc"] == ["body", "items", 0, "metadata"] and "NaN or Infinity" in error["msg"]
        [error] = problem(client.put("/v1/items/n", content=item, headers=headers), 422)["errors"]
        assert error["loc"] == ["body", "metadata"] and "NaN or Infinity" in error["msg"]
        assert client.get("/v1/items").json()["items"] == []  # nothing stored


def test_a_cursor_with_a_control_character_is_422_alike_on_each_backend(
    database_url: str, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """No item id holds one, so no page starts after it: SQLite listed from the start, PostgreSQL refused
    the NUL only through the generic database error."""
    with TestClient(create_app(rec_settings(tmp_path, database_url, tiny_model_dir))) as client:
        assert client.post("/v1/items", json={"items": catalog_items()[:2]}).status_code == 200
        for cursor in ("\x00", "astro-0\x01"):
            [error] = problem(client.get("/v1/items", params={"cursor": cursor}), 422)["errors"]
            assert error["loc"] == ["query", "cursor"] and "control characters" in error["msg"]


def test_item_ids_follow_one_rule_in_paths_and_bodies(client: TestClient) -> None:
    """Ids are stripped of surrounding whitespace everywhere, and one with a '/' is reachable by its path."""
    items = [{"id": "books/123", "title": "A telescope book"}, {"id": " b ", "title": "Star atlas"}]
    assert client.post("/v1/items", json={"items": items}).json()["created"] == 2
    for path in ("/v1/items/books%2F123", "/v1/items/books/123"):
        assert client.get(path).json()["id"] == "books/123"
    replaced = client.put("/v1/items/books%2F123", json={"title": "A moon book"}).json()
    assert replaced["id"] == "books/123" and replaced["title"] == "A moon book"
    assert client.put("/v1/items/%20c%20", json={"title": "Moon map"}).json()["id"] == "c"
    assert client.get("/v1/items/c").status_code == 200 and client.get("/v1/items/%20b").json()["id"] == "b"
    scored = client.post("/v1/score", json={"history": [" c"], "items": ["books/123", " b"]})
    assert {r["item_id"] for r in scored.json()} == {"books/123", "b"}
    assert client.post("/v1/events", json={"events": [{"user_id": "u", "item_id": " c "}]}).status_code == 201
    problem(client.put("/v1/items/%20", json={"title": "Nothing"}), 422)
    assert client.delete("/v1/items/books/123").status_code == 204
    problem(client.get("/v1/items/books%2F123"), 404)
    assert [item["id"] for item in client.get("/v1/items").json()["items"]] == ["b", "c"]


def test_behaviour_flow_on_each_backend(database_url: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = rec_settings(tmp_path, database_url, tiny_model_dir)
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/items", json={"items": catalog_items()}).status_code == 200
        malformed = [
            {"user_id": "u", "item_id": "astro-0", "type": "rating"},  # a rating needs a value
            {"user_id": "u", "item_id": "astro-0", "type": "view"},
            {"user_id": "u", "item_id": "astro-0", "timestamp": "2024-05-01T10:00:00"},  # no offset
            {"user_id": "", "item_id": "astro-0"},
        ]
        for event in malformed:
            good = {"user_id": "u", "item_id": "lab-0"}
            problem(client.post("/v1/events", json={"events": [good, event]}), 422)
        unknown = [{"user_id": "u", "item_id": "lab-0"}, {"user_id": "u", "item_id": "nope-1"},
                   {"user_id": "u", "item_id": "nope-2"}]  # fmt: skip
        detail = problem(client.post("/v1/events", json={"events": unknown}), 404)["detail"]
        assert "'nope-1'" in detail and "'nope-2'" in detail and "'lab-0'" not in detail
        assert stored_events(database_url) == 0  # all or nothing

        response = client.post("/v1/events", json={"events": event_bodies()})
        assert response.status_code == 201 and response.json() == {"stored": 80}
        assert stored_events(database_url) == 80

        history = user_histories()["astro-user-0"]
        seen = client.get("/v1/recommend", params={"user_id": "astro-user-0", "k": 20}).json()
        assert {r["item_id"] for r in seen}.isdisjoint(history) and len(seen) == 15
        everything = client.get(
            "/v1/recommend", params={"user_id": "astro-user-0", "k": 20, "exclude_seen": "false"}
        ).json()
        assert set(history) <= {r["item_id"] for r in everything}
        assert all(
            r["item_id"] not in {m["item_id"] for m in r["explanation"]["because"]} for r in everything
        )
        titles = {item["id"]: item["title"] for item in catalog_items()}
        for result in seen:
            because = result["explanation"]["because"]
            assert because and {m["item_id"] for m in because} <= set(history)  # real history items
            assert all(m["title"] == titles[m["item_id"]] for m in because)


def test_an_item_the_user_rated_low_is_never_recommended_back(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path
) -> None:
    """Before, `exclude_seen=false` (show the user's own items too, to buy again) offered an item the user
    had rated below the threshold, even first: the service knew they did not like it."""
    settings = rec_settings(tmp_path, sqlite_url, tiny_model_dir, min_rating=4.0)
    with TestClient(create_app(settings)) as client:
        stocked(client)
        history = user_histories()["astro-user-0"]
        ratings = [
            {
                "user_id": "astro-user-0",
                "item_id": history[0],
                "type": "rating",
                "value": 1,
            },  # after its click
            {"user_id": "astro-user-0", "item_id": "lab-0", "type": "rating", "value": 2},  # never clicked
            {"user_id": "astro-user-0", "item_id": history[1], "type": "rating", "value": 5},  # liked
            {"user_id": "new-user", "item_id": "lab-1", "type": "rating", "value": 1},  # likes nothing
        ]
        assert client.post("/v1/events", json={"events": ratings}).status_code == 201
        low = {history[0], "lab-0"}
        asked: list[Query] = [
            {"user_id": "astro-user-0", "k": 20, "exclude_seen": "false"},
            {"user_id": "astro-user-0", "k": 20},
        ]
        for params in asked:
            ids = [r["item_id"] for r in client.get("/v1/recommend", params=params).json()]
            assert low.isdisjoint(ids), params
            assert len(ids) == (18 if params.get("exclude_seen") == "false" else 14)
        shown = client.get(
            "/v1/recommend", params={"user_id": "astro-user-0", "k": 20, "exclude_seen": False}
        )
        assert set(history) - {history[0]} <= {r["item_id"] for r in shown.json()}  # liked: shown again
        pages = [
            client.get(
                "/v1/recommend",
                params={"user_id": "astro-user-0", "k": 6, "offset": offset, "exclude_seen": "false"},
            ).json()
            for offset in (0, 6, 12)
        ]
        assert [r["item_id"] for page in pages for r in page] == [r["item_id"] for r in shown.json()]
        cold = client.get("/v1/recommend", params={"user_id": "new-user", "k": 20, "exclude_seen": "false"})
        assert len(cold.json()) == 19 and "lab-1" not in {r["item_id"] for r in cold.json()}


def test_score_ranks_an_item_the_user_rated_low_last_and_says_why(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path
) -> None:
    """Before, `/v1/score` for a user ranked a popular item they had rated below the threshold (which
    `/v1/recommend` never offers them) first, far ahead (3.2 against -0.3 for a user who likes nothing else),
    with nothing in the answer to tell it apart."""
    settings = rec_settings(tmp_path, sqlite_url, tiny_model_dir, min_rating=4.0)
    with TestClient(create_app(settings)) as client:
        stocked(client)
        fans = [{"user_id": f"fan-{n}", "item_id": "lab-0", "type": "click"} for n in range(40)]
        ratings = [
            {"user_id": user, "item_id": "lab-0", "type": "rating", "value": 1}
            for user in ("astro-user-0", "critic")  # "critic" likes nothing: scored on popularity alone
        ]
        ratings.append({"user_id": "bystander", "item_id": "garden-0", "type": "rating", "value": 1})
        assert client.post("/v1/events", json={"events": [*fans, *ratings]}).status_code == 201
        candidates = ["garden-0", "kitchen-1", "lab-0", "lab-1", "astro-1"]
        for user in ("critic", "astro-user-0"):
            for sent in (candidates, candidates[::-1]):
                rows = client.post("/v1/score", json={"user_id": user, "items": sent}).json()
                assert [r["item_id"] for r in rows][-1] == "lab-0", rows
                assert [r["rated_below_threshold"] for r in rows] == [False] * 4 + [True]
                others = [r["score"] for r in rows[:-1]]
                assert others == sorted(others, reverse=True)
        # the popular item still ranks first for another user who likes nothing, one who did not rate it
        rows = client.post("/v1/score", json={"user_id": "bystander", "items": candidates}).json()
        assert rows[0]["item_id"] == "lab-0" and rows[0]["score"] > 3 and rows[-1]["item_id"] == "garden-0"
        assert [r["rated_below_threshold"] for r in rows] == [False] * 4 + [True]
        # a later rating at or above the threshold makes it a like again
        again = {"user_id": "critic", "item_id": "lab-0", "type": "rating", "value": 5}
        assert client.post("/v1/events", json={"events": [again]}).status_code == 201
        rows = client.post("/v1/score", json={"user_id": "critic", "items": candidates}).json()
        assert not any(r["rated_below_threshold"] for r in rows)
        shown = client.get("/v1/recommend", params={"user_id": "astro-user-0", "k": 20}).json()
        assert shown and not any(r["rated_below_threshold"] for r in shown)


@pytest.mark.parametrize(
    "when",
    ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00", "1850-06-01T00:00:00Z", -5_000_000_000],
)
def test_event_times_out_of_range_are_422_and_store_nothing(
    client: TestClient, settings: RecommenderSettings, when: str | int
) -> None:
    assert client.post("/v1/items", json={"items": catalog_items()}).status_code == 200
    events = [{"user_id": "u", "item_id": "lab-0"}, {"user_id": "u", "item_id": "lab-1", "timestamp": when}]
    detail = problem(client.post("/v1/events", json={"events": events}), 422)["detail"]
    assert "events[1]" in detail and "timestamp from 1900-01-01 to before 9000-01-01" in detail
    assert stored_events(settings.database_url) == 0


def stored_times(url: str) -> list[datetime]:
    db = Database(url)
    try:
        with db.session() as session:
            return [t.astimezone(UTC) for t in session.scalars(select(Event.ts).order_by(Event.id))]
    finally:
        db.dispose()


@pytest.mark.parametrize("when", [1e11, 100_000_000_000, "1e11", 1_767_520_121_000, 7_258_118_400])
def test_numeric_event_times_are_unix_seconds_and_milliseconds_are_refused(
    client: TestClient, settings: RecommenderSettings, when: float | str
) -> None:
    # pydantic alone read numbers above 2e10 as milliseconds (1e11 stored as 1973), the CLI as seconds
    assert client.post("/v1/items", json={"items": catalog_items()}).status_code == 200
    events = [{"user_id": "u", "item_id": "lab-0"}, {"user_id": "u", "item_id": "lab-1", "timestamp": when}]
    errors = problem(client.post("/v1/events", json={"events": events}), 422)["errors"]
    assert [e["loc"] for e in errors] == [["body", "events", 1, "timestamp"]]
    assert "Unix seconds, before 2200-01-01" in errors[0]["msg"] and "milliseconds" in errors[0]["msg"]
    assert stored_events(settings.database_url) == 0
    times = [1_767_520_121, 1_767_520_121.5, "1767520122", "2026-01-04T10:00:00+02:00", 1_000_000_000]
    events = [{"user_id": "u", "item_id": "lab-0", "timestamp": t} for t in times]
    assert client.post("/v1/events", json={"events": events}).json() == {"stored": 5}
    assert stored_times(settings.database_url) == [
        datetime(2026, 1, 4, 9, 48, 41, tzinfo=UTC),
        datetime(2026, 1, 4, 9, 48, 41, 500_000, tzinfo=UTC),
        datetime(2026, 1, 4, 9, 48, 42, tzinfo=UTC),
        datetime(2026, 1, 4, 8, 0, tzinfo=UTC),
        datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC),
    ]


def server_time_in(message: str) -> datetime:
    """The server's time a future timestamp's error names."""
    found = re.search(r"the server's time \(([^)]+)\)", message)
    assert found is not None, message
    return datetime.fromisoformat(found.group(1))


def test_event_times_more_than_a_day_ahead_of_the_server_are_422_and_store_nothing(
    client: TestClient, settings: RecommenderSettings
) -> None:
    # a client whose clock is years ahead (or a typo) stored an event that then counted as the newest for good
    assert client.post("/v1/items", json={"items": catalog_items()}).status_code == 200
    now = datetime.now(UTC)
    ahead = [
        (now + timedelta(days=1, minutes=5)).isoformat(),
        "2199-06-01T00:00:00Z",
        int((now + timedelta(days=3650)).timestamp()),
    ]
    expected = "events[1]: expected timestamp at most 86,400 seconds (1 day) after the server's time"
    for when in ahead:
        events = [
            {"user_id": "u", "item_id": "lab-0"},
            {"user_id": "u", "item_id": "lab-1", "timestamp": when},
        ]
        detail = problem(client.post("/v1/events", json={"events": events}), 422)["detail"]
        assert expected in detail
        assert abs(server_time_in(detail) - datetime.now(UTC)) < timedelta(minutes=1), detail
    assert stored_events(settings.database_url) == 0
    # a clock a little ahead is within the tolerance
    soon = (now + timedelta(hours=23)).isoformat()
    events = [{"user_id": "u", "item_id": "lab-0", "timestamp": soon}]
    assert client.post("/v1/events", json={"events": events}).json() == {"stored": 1}


@pytest.mark.parametrize("value", [1e30, -1e30, 1_000_000.5, float("nan"), float("inf")])
def test_event_values_beyond_a_million_or_not_finite_are_422_and_store_nothing(
    client: TestClient, settings: RecommenderSettings, value: float
) -> None:
    assert client.post("/v1/items", json={"items": catalog_items()}).status_code == 200
    events: list[dict[str, Any]] = [
        {"user_id": "u", "item_id": item, "type": "rating", "value": v}
        for item, v in (("lab-0", 5), ("lab-1", value))
    ]
    body = json.dumps({"events": events})  # NaN and Infinity as Python's JSON writes them
    sent = client.post("/v1/events", content=body, headers={"content-type": "application/json"})
    errors = problem(sent, 422)["errors"]
    assert [e["loc"] for e in errors] == [["body", "events", 1, "value"]]
    assert stored_events(settings.database_url) == 0
    with pytest.raises(
        InvalidInput, match=r"events\[1\]: value: expected a finite number from -1,000,000 to "
    ):
        client.app.state.recommender.ingest(  # type: ignore[attr-defined]
            [EventRecord(e["user_id"], e["item_id"], datetime.now(UTC), "rating", e["value"]) for e in events]
        )  # the rule of every caller of the service, the CLI's ingest too
    assert stored_events(settings.database_url) == 0
    bounds = [{"user_id": "u", "item_id": "lab-0", "type": "rating", "value": v} for v in (-1e6, 0, 1e6)]
    assert client.post("/v1/events", json={"events": bounds}).json() == {"stored": 3}


@pytest.mark.parametrize("value", [True, False, "5"])
def test_event_values_that_are_no_numbers_are_422_and_store_nothing(
    client: TestClient, settings: RecommenderSettings, value: object
) -> None:
    # before, true was stored as the rating 1.0 (and "5" as 5.0)
    assert client.post("/v1/items", json={"items": catalog_items()}).status_code == 200
    events = [{"user_id": "u", "item_id": item, "type": "rating", "value": v} for item, v in
              (("lab-0", 5), ("lab-1", value))]  # fmt: skip
    errors = problem(client.post("/v1/events", json={"events": events}), 422)["errors"]
    assert [e["loc"] for e in errors] == [["body", "events", 1, "value"]]
    assert stored_events(settings.database_url) == 0
    if isinstance(value, bool):  # the rule of every caller of the service
        record = EventRecord("u", "lab-1", datetime.now(UTC), "rating", value)
        with pytest.raises(InvalidInput, match=r"events\[0\]: value: expected a number, found the boolean"):
            client.app.state.recommender.ingest([record])  # type: ignore[attr-defined]
    assert stored_events(settings.database_url) == 0


def test_score_by_user_history_and_interests(client: TestClient) -> None:
    stocked(client)
    candidates = [item_id("astro", 1), item_id("lab", 0), item_id("garden", 2)]
    by_user = client.post("/v1/score", json={"user_id": "lab-user-1", "items": candidates}).json()
    assert sorted(r["item_id"] for r in by_user) == sorted(candidates)
    assert [r["score"] for r in by_user] == sorted((r["score"] for r in by_user), reverse=True)
    lab_history = set(user_histories()["lab-user-1"])
    for result in by_user:
        names = result["explanation"]["because"]
        assert names and {m["item_id"] for m in names} <= lab_history
        assert all(m["title"] for m in names) and result["explanation"]["matched_interests"] == []

    history = ["garden-0", "garden-1"]
    by_history = client.post("/v1/score", json={"history": history, "items": candidates}).json()
    assert {m["item_id"] for r in by_history for m in r["explanation"]["because"]} <= set(history)

    body = {"interests": "tomato seeds; pruning shears and compost", "items": ["garden-2"]}
    single = client.post("/v1/score", json=body).json()
    assert len(single) == 1 and single[0]["title"] == "Tomato seeds"
    assert set(single[0]["explanation"]["matched_interests"]) <= {"tomato seeds", "pruning shears", "compost"}
    assert single[0]["explanation"]["matched_interests"]


def test_score_errors_are_clear(client: TestClient) -> None:
    stocked(client)

    def score(status: int, **body: Any) -> str:
        return str(problem(client.post("/v1/score", json=body), status)["detail"])

    detail = score(404, user_id="astro-user-0", items=["astro-1", "ghost-1", "ghost-2"])
    assert "'ghost-1'" in detail and "'ghost-2'" in detail and "'astro-1'" not in detail
    assert "'ghost-3'" in score(404, history=["ghost-3"], items=["astro-1"])
    detail = score(404, history=["astro-0", "ghost-4"], items=["astro-1", "ghost-5"])
    assert "'ghost-4'" in detail and "'ghost-5'" in detail and "'astro-0'" not in detail  # both in one answer
    detail = score(404, user_id="nobody", items=["astro-1"])
    assert "'nobody'" in detail and "interests" in detail
    score(422, items=["astro-1"])  # nobody to score for
    score(422, user_id="astro-user-0", history=["astro-1"], items=["astro-1"])
    assert "'astro-1'" in score(422, user_id="astro-user-0", items=["astro-1", "astro-1"])
    assert "at most 1000" in score(413, user_id="astro-user-0", items=[f"i{n}" for n in range(1001)])
    score(422, interests="x" * 2001, items=["astro-1"])
    problem(client.get("/v1/recommend", params={"user_id": "nobody"}), 404)
    problem(client.get("/v1/recommend", params={"user_id": "astro-user-0", "k": 0}), 422)
    problem(client.get("/v1/recommend"), 422)


def test_recommend_pages_through_one_ranking_with_offset(client: TestClient) -> None:
    """Before, `offset` was ignored: a front end asking for the next page got the first one again."""
    stocked(client)

    def recommend(**params: Any) -> list[dict[str, Any]]:
        response = client.get("/v1/recommend", params=params)
        assert response.status_code == 200, response.text
        result: list[dict[str, Any]] = response.json()
        return result

    for who in ({"user_id": "astro-user-0"}, {"interests": "telescopes, garden tools"}):
        whole = recommend(**who, k=20)  # astro-user-0: the 15 items they have not seen
        pages = [recommend(**who, k=4, offset=offset) for offset in range(0, 24, 4)]
        assert [r for page in pages for r in page] == whole and pages[0] == recommend(**who, k=4)
        assert recommend(**who, k=3, offset=len(whole) - 1) == whole[-1:]
        assert recommend(**who, k=3, offset=len(whole)) == []
    for offset in (-1, 10_001, "two"):
        detail = problem(client.get("/v1/recommend", params={"interests": "x", "offset": offset}), 422)
        assert detail["errors"][0]["loc"] == ["query", "offset"], detail


def test_an_unknown_query_parameter_of_recommend_is_a_422_naming_it(client: TestClient) -> None:
    """A guessed filter (`category=`) or a misspelt `exclude-seen` was ignored without a word: a 200 with the
    ranking unfiltered, the user's own items in it. Now, as an unknown field of a body, a problem+json 422
    whose errors name each such parameter; every documented one works as before."""
    stocked(client)
    base: dict[str, QueryValue] = {"user_id": "astro-user-0", "k": 20}
    cases: list[tuple[dict[str, QueryValue], list[str]]] = [
        ({"category": "lab"}, ["category"]),
        ({"exclude-seen": "false"}, ["exclude-seen"]),
        ({"excludeSeen": "false", "limit": 5}, ["excludeSeen", "limit"]),
    ]
    for extra, names in cases:
        body = problem(client.get("/v1/recommend", params=base | extra), 422)
        assert body["title"] == "Invalid input" and body["instance"] == "/v1/recommend", body
        assert [(e["loc"], e["type"]) for e in body["errors"]] == [
            (["query", name], "extra_forbidden") for name in names
        ], body
    unseen = client.get("/v1/recommend", params=base)
    assert unseen.status_code == 200 and len(unseen.json()) == 15
    everything = client.get("/v1/recommend", params=base | {"exclude_seen": "false", "offset": 2})
    assert everything.status_code == 200 and len(everything.json()) == 18
    cold = client.get("/v1/recommend", params={"interests": "telescopes", "k": 3})
    assert cold.status_code == 200 and len(cold.json()) == 3
    assert problem(client.get("/v1/recommend", params=base | {"k": 0}), 422)["errors"][0]["loc"] == [
        "query",
        "k",
    ]
    documented = client.get("/openapi.json").json()["paths"]["/v1/recommend"]["get"]["parameters"]
    assert [p["name"] for p in documented] == ["user_id", "interests", "k", "exclude_seen", "offset"]


def test_an_unknown_query_parameter_of_the_item_reads_is_a_422_naming_it(client: TestClient) -> None:
    """`GET /v1/items?limt=5` (a typo) or `?category=lab` (a guessed filter) answered the first 100 items
    unfiltered, and `GET /v1/items/{id}?fields=title` the whole item: a 200 a caller takes for the page or
    filter asked for. Now each is a problem+json 422 whose errors name the parameter; the documented
    `limit` and `cursor` work as before."""
    stocked(client)
    cases: list[tuple[str, Query, list[str]]] = [
        ("/v1/items", {"limt": 5}, ["limt"]),
        ("/v1/items", {"limit": 5, "category": "lab", "user": "x"}, ["category", "user"]),
        ("/v1/items/astro-0", {"fields": "title"}, ["fields"]),
    ]
    for path, params, names in cases:
        body = problem(client.get(path, params=params), 422)
        assert body["title"] == "Invalid input" and body["instance"] == path, body
        assert [(e["loc"], e["type"]) for e in body["errors"]] == [
            (["query", name], "extra_forbidden") for name in names
        ], body
    first = client.get("/v1/items", params={"limit": 5}).json()
    assert [item["id"] for item in first["items"]] == ["astro-0", "astro-1", "astro-2", "astro-3", "astro-4"]
    rest = client.get("/v1/items", params={"limit": 5, "cursor": first["next_cursor"]}).json()
    assert rest["items"][0]["id"] == "garden-0"
    assert client.get("/v1/items/astro-0").json()["id"] == "astro-0"
    for bad in ({"limit": 0}, {"limit": 1001}, {"cursor": "x" * 201}):
        assert problem(client.get("/v1/items", params=bad), 422)["errors"][0]["loc"] == ["query", *bad]
    paths = client.get("/openapi.json").json()["paths"]
    assert [p["name"] for p in paths["/v1/items"]["get"]["parameters"]] == ["limit", "cursor"]
    assert [p["name"] for p in paths["/v1/items/{item_id}"]["get"]["parameters"]] == ["item_id"]


def test_an_empty_history_alone_is_nobody_to_score_for(client: TestClient) -> None:
    """It gave every candidate the score 0 in the order sent, as if it were a ranking."""
    stocked(client)
    body: dict[str, Any] = {"history": [], "items": ["astro-1", "lab-0"]}
    assert "empty history" in problem(client.post("/v1/score", json=body), 422)["detail"]
    with_interests = client.post("/v1/score", json=body | {"interests": "telescopes"})
    alone = client.post("/v1/score", json={"interests": "telescopes", "items": body["items"]})
    assert with_interests.status_code == 200 and with_interests.json() == alone.json()


def test_interests_of_more_than_twenty_phrases_are_422(client: TestClient) -> None:
    # before, every phrase was encoded: 400 phrases in 2,000 characters took 0.47 s a request, not 0.02 s
    assert client.post("/v1/items", json={"items": catalog_items()}).status_code == 200
    many = ",".join(f"p{n:03}" for n in range(400))  # 1,999 characters, within the 2,000 allowed
    mixed = "".join(f"x{n}{(', ', '; ', chr(10), ' AND ')[n % 4]}" for n in range(21))
    items = [item_id("astro", 0), item_id("lab", 0)]
    for text, found in ((many, "found 400"), (mixed, "found 21")):
        for sent in (
            client.post("/v1/score", json={"interests": text, "items": items}),
            client.get("/v1/recommend", params={"interests": text}),
            client.post("/v1/score", json={"user_id": "nobody", "interests": text, "items": items}),
        ):
            detail = problem(sent, 422)["detail"]
            assert "expected interests of at most 20 phrases" in detail and found in detail, detail
    twenty = ", ".join(f"t{n}" for n in range(20)) + ", t0, t1 and t2."  # repeats count once
    assert client.post("/v1/score", json={"interests": twenty, "items": items}).status_code == 200
    assert client.get("/v1/recommend", params={"interests": twenty, "k": 3}).status_code == 200


def test_interests_named_late_in_a_long_text_change_the_scores(client: TestClient) -> None:
    """Before, the encoder read the first 128 tokens (about 500 characters) of the 2,000 allowed: what a new
    user named after them changed no score, in /v1/score as in /v1/recommend."""
    assert client.post("/v1/items", json={"items": catalog_items()}).status_code == 200
    start = ", ".join(f"watering tomato seeds in the garden (tip number {n})" for n in range(19))
    items = [item_id(theme, 0) for theme in THEMES]

    def scores(interests: str) -> list[dict[str, float]]:
        """The scores of /v1/score and of /v1/recommend, by item id."""
        sent = [
            client.post("/v1/score", json={"interests": interests, "items": items}),
            client.get("/v1/recommend", params={"interests": interests, "k": 20}),
        ]
        assert all(r.status_code == 200 for r in sent), [r.text for r in sent]
        return [{r["item_id"]: r["score"] for r in response.json()} for response in sent]

    before = scores(start)
    for named, unnamed in zip(scores(f"{start}; telescopes for astronomy"), before, strict=True):
        assert named.keys() == unnamed.keys() and named != pytest.approx(unnamed, abs=1e-4)


def test_interests_naming_nothing_are_422_alone_or_beside_a_user_or_history(client: TestClient) -> None:
    """Before, text that splits into no phrase was encoded as it was and named as the matched interest
    ("matched_interests": ["and"])."""
    assert client.post("/v1/items", json={"items": catalog_items()}).status_code == 200
    assert client.post("/v1/events", json={"events": event_bodies()}).status_code == 201
    items = [item_id("astro", 0), item_id("lab", 0)]
    for text in ("and", ", ,", " ; AND\n, ...", "- and ?!"):
        for sent in (
            client.get("/v1/recommend", params={"interests": text}),
            client.get("/v1/recommend", params={"user_id": "astro-user-0", "interests": text}),
            client.post("/v1/score", json={"interests": text, "items": items}),
            client.post("/v1/score", json={"user_id": "nobody", "interests": text, "items": items}),
            client.post("/v1/score", json={"history": [items[0]], "interests": text, "items": items}),
        ):
            detail = problem(sent, 422)["detail"]
            assert detail.startswith("expected interests naming at least one thing; found only separators")
            assert repr(text.strip()) in detail, detail
    scored = client.post("/v1/score", json={"interests": "and telescopes, ?!", "items": items}).json()
    assert [r["explanation"]["matched_interests"] for r in scored] == [["telescopes"], ["telescopes"]]


def test_interest_phrases_differing_only_in_case_are_one_phrase_kept_as_first_written(
    client: TestClient,
) -> None:
    """Before, "Optics" and "optics" were two phrases: counted twice towards the 20, named twice."""
    assert client.post("/v1/items", json={"items": catalog_items()}).status_code == 200
    items = [item_id("astro", 0), item_id("lab", 0)]
    both = ", ".join(f"Topic {n}, topic  {n}, TOPIC {n}" for n in range(20))  # 20 phrases, 60 spellings
    for sent in (
        client.post("/v1/score", json={"interests": both, "items": items}),
        client.get("/v1/recommend", params={"interests": both, "k": 3}),
    ):
        assert sent.status_code == 200, sent.text
    body = {"interests": "Telescope; telescope and TELESCOPE, telescope.", "items": items}
    scored = client.post("/v1/score", json=body).json()
    assert [r["explanation"]["matched_interests"] for r in scored] == [["Telescope"], ["Telescope"]]


def test_a_user_without_events_who_sends_interests_is_scored_on_them(client: TestClient) -> None:
    """A new user's id with their interests (say, picked at sign-up): the interests alone, not 404."""
    stocked(client)
    interests = "tomato seeds, compost"
    alone = client.get("/v1/recommend", params={"interests": interests, "k": 5})
    with_id = client.get("/v1/recommend", params={"user_id": "newcomer", "interests": interests, "k": 5})
    assert with_id.status_code == 200, with_id.text
    assert with_id.json() == alone.json() and len(alone.json()) == 5
    body = {"interests": interests, "items": [item_id("garden", 2), item_id("lab", 0)]}
    scored = client.post("/v1/score", json={"user_id": "newcomer", **body})
    assert scored.status_code == 200, scored.text
    assert scored.json() == client.post("/v1/score", json=body).json()
    detail = problem(client.get("/v1/recommend", params={"user_id": "newcomer"}), 404)["detail"]
    assert "'newcomer'" in detail  # no events and nothing else to go on


def test_new_item_is_recommendable_without_restart(client: TestClient) -> None:
    stocked(client)
    text = "Handheld spectroscope for observing the spectra of stars"
    body = {"title": "Pocket spectroscope", "text": text}
    assert client.put("/v1/items/astro-new", json=body).status_code == 200
    interests = "Pocket spectroscope. " + text  # exactly the item's text: the same vector
    results = client.get("/v1/recommend", params={"interests": interests, "k": 3}).json()
    assert results[0]["item_id"] == "astro-new" and results[0]["title"] == "Pocket spectroscope"
    assert client.delete("/v1/items/astro-new").status_code == 204
    results = client.get("/v1/recommend", params={"interests": interests, "k": 21}).json()
    assert "astro-new" not in {r["item_id"] for r in results}


def test_items_deleted_while_requests_run_never_fail_the_requests(client: TestClient) -> None:
    """A user's history item and a candidate deleted and put back again and again while the user's requests
    run: each request answers from the items there, never 404 for an id its caller did not send."""
    stocked(client)
    churned = item_id("astro", 1)  # in astro-user-0's history, and a candidate of every astro reader
    body = {"title": THEMES["astro"][1][0], "text": THEMES["astro"][1][1]}
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            assert client.delete(f"/v1/items/{churned}").status_code == 204
            assert client.put(f"/v1/items/{churned}", json=body).status_code == 200

    writer = threading.Thread(target=churn)
    writer.start()
    answers = []
    try:
        for _ in range(150):
            params: Query = {"user_id": "astro-user-0", "k": 5, "exclude_seen": "false"}
            answers.append(client.get("/v1/recommend", params=params))
            score = {"user_id": "astro-user-0", "items": [item_id("astro", 0), item_id("lab", 0)]}
            answers.append(client.post("/v1/score", json=score))
    finally:
        stop.set()
        writer.join()
    failed = [(r.status_code, r.text) for r in answers if r.status_code != 200]
    assert not failed, failed[:3]
    assert client.delete(f"/v1/items/{churned}").status_code == 204  # once the delete has returned
    params = {"user_id": "astro-user-0", "k": 20, "exclude_seen": "false"}
    results = client.get("/v1/recommend", params=params).json()
    assert len(results) == 19 and churned not in {r["item_id"] for r in results}
    assert churned not in {m["item_id"] for r in results for m in r["explanation"]["because"]}


def test_an_item_created_again_under_a_deleted_id_starts_with_no_behaviour(
    database_url: str, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """Deleting an item kept its events under its id, so an item created later under that id inherited
    the clicks of the old one: a seen item for those users (left out of their recommendations), its
    co-occurrence and popularity, and a retried event of the old one's content was taken as stored. The
    events now stay detached from the id: their users are still known, the new item starts clean, and
    a replica over the same database serves it alike."""
    live = rec_settings(tmp_path, database_url, tiny_model_dir, refresh_s=0)
    replica = rec_settings(tmp_path / "replica", database_url, tiny_model_dir, refresh_s=0)
    with TestClient(create_app(live)) as client, TestClient(create_app(replica)) as reader:
        stocked(client)
        total = stored_events(database_url)

        def offered(service: TestClient, user: str) -> list[str]:
            response = service.get("/v1/recommend", params={"user_id": user, "k": 50})
            assert response.status_code == 200, response.text
            return [r["item_id"] for r in response.json()]

        assert "astro-0" not in offered(client, "astro-user-0") and len(offered(reader, "astro-user-0")) == 15
        assert client.delete("/v1/items/astro-0").status_code == 204
        body = {"title": "Garden hose reel", "text": "Winds 30 m of hose.", "categories": ["garden"]}
        assert client.put("/v1/items/astro-0", json=body).status_code == 200
        for service in (client, reader):
            ids = offered(service, "astro-user-0")  # still a known user: 4 astro items seen, 16 unseen
            assert len(ids) == 16 and "astro-0" in ids, ids
        assert stored_events(database_url) == total  # the events stay
        old = next(e for e in event_bodies() if e["user_id"] == "astro-user-0" and e["item_id"] == "astro-0")
        assert client.post("/v1/events", json={"events": [old]}).json() == {"stored": 1}
        assert client.post("/v1/events", json={"events": [old]}).json() == {"stored": 0}
        for service in (client, reader):
            assert "astro-0" not in offered(service, "astro-user-0")  # seen now, through the new item
        assert client.delete("/v1/items/astro-0").status_code == 204  # a second deletion detaches again
        assert client.post("/v1/items", json={"items": [{"id": "astro-0", **body}]}).status_code == 200
        assert "astro-0" in offered(reader, "astro-user-0")
    assert stored_events(database_url) == total + 1


def test_a_replica_serves_what_another_wrote_to_the_shared_database(
    database_url: str, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """Two services on one database, each with its own index: what one writes, the other serves at once."""
    one = rec_settings(tmp_path / "one", database_url, tiny_model_dir, refresh_s=0)
    other = rec_settings(tmp_path / "other", database_url, tiny_model_dir, refresh_s=0)
    ids = [item["id"] for item in catalog_items()]

    def scores(client: TestClient, **who: Any) -> dict[str, float]:
        response = client.post("/v1/score", json={**who, "items": ids})
        assert response.status_code == 200, response.text
        return {r["item_id"]: r["score"] for r in response.json()}

    with TestClient(create_app(one)) as writer, TestClient(create_app(other)) as reader:
        assert reader.get("/readyz").json()["checks"]["items"] == "0"  # started on an empty catalog
        stocked(writer)  # the catalog and the behaviour, through the first replica only
        for who in ({"history": ["astro-0", "lab-1"]}, {"user_id": "garden-user-2"}):
            assert scores(reader, **who) == pytest.approx(scores(writer, **who), rel=1e-5)
        body = {"title": "Solar telescope", "text": "Watch the sun safely."}
        assert writer.put("/v1/items/kitchen-3", json=body).status_code == 200
        assert writer.delete("/v1/items/lab-0").status_code == 204
        ids.remove("lab-0")
        interests = {"interests": "Solar telescope. Watch the sun safely."}
        assert scores(reader, **interests) == pytest.approx(scores(writer, **interests), rel=1e-5)
        detail = problem(reader.post("/v1/score", json={"interests": "x", "items": ["lab-0"]}), 404)["detail"]
        assert "'lab-0'" in detail
        assert reader.get("/readyz").json()["checks"]["items"] == "19"


def test_index_survives_a_restart_and_follows_the_model(
    settings: RecommenderSettings, tmp_path: Path, trained_model_dir: Path
) -> None:
    with TestClient(create_app(settings)) as client:
        stocked(client)
        before = client.get("/v1/recommend", params={"user_id": "kitchen-user-2", "k": 5}).json()
    saved = settings.index_path.stat().st_mtime_ns
    with TestClient(create_app(settings)) as client:  # same model: the saved index is used as it is
        assert client.get("/v1/recommend", params={"user_id": "kitchen-user-2", "k": 5}).json() == before
        assert client.get("/readyz").json()["checks"]["model"] == "zero-shot base encoder"
    assert settings.index_path.stat().st_mtime_ns == saved
    trained = settings.model_copy(update={"model_path": trained_model_dir})
    with TestClient(create_app(trained)) as client:  # another model: every item is embedded again
        assert client.get("/readyz").json()["checks"] == {
            "workers": "0 of 2 busy", "database": "sqlite", "model": "trained", "items": "20"}  # fmt: skip
    assert settings.index_path.stat().st_mtime_ns > saved


def test_item_edits_leave_saving_the_index_file_to_shutdown(settings: RecommenderSettings) -> None:
    deferred = settings.model_copy(update={"index_save_s": 3600})
    with TestClient(create_app(deferred)) as client:
        stocked(client)
        saved = settings.index_path.read_bytes()
        edit = {"title": "Carbon steel wok", "text": "For stir frying.", "categories": ["kitchen"]}
        assert client.put("/v1/items/garden-0", json=edit).status_code == 200
        assert client.delete("/v1/items/lab-4").status_code == 204
        new = {"items": [{"id": "new-1", "title": "Rain barrel"}]}
        assert client.post("/v1/items", json=new).status_code == 200
        assert settings.index_path.read_bytes() == saved  # no edit rewrote every vector
        before = client.get("/v1/recommend", params={"user_id": "kitchen-user-2", "k": 5}).json()
    flushed = settings.index_path.stat().st_mtime_ns
    with TestClient(create_app(settings)) as client:  # shutdown saved the edits: the restart embeds nothing
        assert client.get("/readyz").json()["checks"]["items"] == "20"
        assert client.get("/v1/recommend", params={"user_id": "kitchen-user-2", "k": 5}).json() == before
    assert settings.index_path.stat().st_mtime_ns == flushed  # nothing to embed or drop, nothing rewritten


def test_trained_model_recommends_from_the_users_theme(
    tmp_path: Path, sqlite_url: str, trained_model_dir: Path
) -> None:
    settings = rec_settings(tmp_path, sqlite_url, "unused", model_path=trained_model_dir)
    with TestClient(create_app(settings)) as client:
        stocked(client)
        new_user = [{"user_id": "newbie", "item_id": "garden-0", "timestamp": 1_750_000_000},
                    {"user_id": "newbie", "item_id": "garden-3", "timestamp": 1_750_000_060}]  # fmt: skip
        assert client.post("/v1/events", json={"events": new_user}).status_code == 201
        results = client.get("/v1/recommend", params={"user_id": "newbie", "k": 3}).json()
    assert [theme_of(r["item_id"]) for r in results] == ["garden"] * 3
    assert {"garden-0", "garden-3"}.isdisjoint(r["item_id"] for r in results)
    assert all(
        {m["item_id"] for m in r["explanation"]["because"]} <= {"garden-0", "garden-3"} for r in results
    )


def test_service_counts_as_positive_the_ratings_the_model_was_trained_on(
    tmp_path: Path, sqlite_url: str, trained_model_dir: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(trained_model_dir, folder)
    saved = json.loads((folder / MODEL_FILE).read_text())
    saved["meta"]["sources"]["min_rating"] = 4.0  # as `recommender train --min-rating 4` records it
    (folder / MODEL_FILE).write_text(json.dumps(saved))
    with open_recommender(rec_settings(tmp_path, sqlite_url, "unused", model_path=folder)) as service:
        assert service.min_rating == 4.0
    explicit = rec_settings(tmp_path, sqlite_url, "unused", model_path=folder, min_rating=None)
    with open_recommender(explicit) as service:  # the operator's setting wins, even "every rating"
        assert service.min_rating is None
    with open_recommender(
        rec_settings(tmp_path, sqlite_url, "unused", model_path=trained_model_dir)
    ) as service:
        assert service.min_rating is None  # trained without a threshold


@pytest.mark.parametrize("value", ["nan", "inf", "2e6"])
def test_a_min_rating_no_event_can_reach_is_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REC_MIN_RATING", value)
    with pytest.raises(ValueError, match="min_rating"):
        RecommenderSettings()


def test_service_counts_cooccurrence_as_the_model_was_fitted(
    tmp_path: Path, sqlite_url: str, trained_model_dir: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(trained_model_dir, folder)
    saved = json.loads((folder / MODEL_FILE).read_text())
    saved["config"].update(knn_alpha=0.7, knn_shrink=3.0)  # as if validation had chosen them
    (folder / MODEL_FILE).write_text(json.dumps(saved))
    histories = user_histories()
    with open_recommender(rec_settings(tmp_path, sqlite_url, "unused", model_path=folder)) as service:
        service.upsert_items([ItemRecord(item["id"], item["title"]) for item in catalog_items()])
        start = datetime(2026, 1, 1, tzinfo=UTC)
        service.ingest(
            [
                EventRecord(user, item, start + timedelta(minutes=t))
                for user, items in histories.items()
                for t, item in enumerate(items)
            ]
        )
        snapshot = service.behaviour.snapshot()
    assert (snapshot.alpha, snapshot.shrink) == (0.7, 3.0)
    ids = snapshot.ids
    offline = ItemKNN(histories, Catalog.build(ids, ids, ids), shrink=3.0, alpha=0.7).similarity.toarray()
    np.testing.assert_allclose(snapshot.similarity_rows(np.arange(len(ids))).toarray(), offline, rtol=1e-6)


def blas_threads_now() -> list[int]:
    """Threads of the process-wide BLAS pools (numpy's, scipy's); OpenMP ones (faiss's) are per thread."""
    pools = threadpool_info()
    return [
        p["num_threads"] for p in pools if p["user_api"] == "blas" and p.get("threading_layer") != "openmp"
    ]


def test_blas_threads_and_frozen_objects_while_serving(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path
) -> None:
    before = blas_threads_now()
    assert before and gc.get_freeze_count() == 0  # numpy's BLAS at least
    wanted = 1 if max(before) != 1 else 2
    settings = rec_settings(tmp_path, sqlite_url, tiny_model_dir, blas_threads=wanted)
    with TestClient(create_app(settings)) as client:
        assert set(blas_threads_now()) == {wanted}
        assert gc.get_freeze_count() > 10_000  # the model and the libraries, out of the GC's way
        assert client.get("/readyz").status_code == 200
    assert blas_threads_now() == before and gc.get_freeze_count() == 0  # restored at shutdown
    with TestClient(create_app(rec_settings(tmp_path, sqlite_url, tiny_model_dir, blas_threads=0))):
        assert blas_threads_now() == before  # 0: as the libraries have it


def test_score_and_recommend_bodies_follow_the_documented_schema(client: TestClient) -> None:
    stocked(client)
    for response in (
        client.post(
            "/v1/score", json={"user_id": "astro-user-0", "items": [i["id"] for i in catalog_items()]}
        ),
        client.get("/v1/recommend", params={"user_id": "astro-user-0", "k": 3, "exclude_seen": "false"}),
    ):
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        rows = TypeAdapter(list[ScoredOut]).validate_json(response.content)
        assert rows and all(row.explanation.because for row in rows)
    schema = client.get("/openapi.json").json()["paths"]["/v1/score"]["post"]["responses"]["200"]
    assert schema["content"]["application/json"]["schema"]["items"]["$ref"].endswith("/ScoredOut")


def test_health_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    client.get("/v1/items")
    assert "http_requests" in client.get("/metrics").text


def test_minilm_cold_start_by_interests_over_http(tmp_path: Path, sqlite_url: str) -> None:
    settings = rec_settings(tmp_path, sqlite_url, "minilm")
    with serve_app(create_app(settings)) as base_url, httpx.Client(base_url=base_url, timeout=30) as http:
        assert http.post("/v1/items", json={"items": catalog_items()}).status_code == 200
        body = {"interests": "telescope lenses, astronomy", "items": ["lab-0", "astro-0"]}
        scored = http.post("/v1/score", json=body).json()
        assert [r["item_id"] for r in scored] == ["astro-0", "lab-0"]
        assert scored[0]["explanation"]["matched_interests"][0] in {"telescope lenses", "astronomy"}
        assert scored[1]["explanation"]["matched_interests"] == []  # a pipette matches neither phrase
        top = http.get("/v1/recommend", params={"interests": "telescope lenses, astronomy", "k": 5}).json()
        assert theme_of(top[0]["item_id"]) == "astro"
        assert sum(theme_of(r["item_id"]) == "astro" for r in top) >= 4
