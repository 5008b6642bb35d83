"""Request bodies of the monitor's API take JSON values as they are: no lax conversion, no blank text."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from finance_sentiment import create_app
from finance_sentiment.database import Database
from finance_sentiment.tables import AlertRule, Source
from tests.finance_sentiment.test_app import PROBLEM, rule, settings_for

SOURCE = {"name": "wire", "url": "http://127.0.0.1:9/feed.xml", "kind": "rss"}
NOT_BOOLEANS: list[Any] = ["yes", "true", "false", 1, 0, "on", "1"]


@pytest.mark.parametrize(("path", "body"), [("/v1/sources", SOURCE), ("/v1/alert-rules", None)])
def test_enabled_is_a_json_boolean(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str, path: str, body: dict[str, Any] | None
) -> None:
    # Pydantic's lax mode read "yes", "true", 1 (and "off", 0) as booleans: a typo enabled or disabled a
    # source or an alert rule without a word.
    body = body or rule("http://127.0.0.1:9/hook")
    with TestClient(create_app(settings_for(tmp_path, finance_model_dir, sqlite_url))) as client:
        for value in NOT_BOOLEANS:
            response = client.post(path, json=body | {"enabled": value})
            assert response.status_code == 422, (value, response.text)
            assert response.headers["content-type"] == PROBLEM
            assert response.json()["errors"][0]["loc"] == ["body", "enabled"]
        assert client.get(path).json() == []
        created = client.post(path, json=body | {"enabled": False})
        assert created.status_code == 201, created.text
        one = f"{path}/{created.json()['id']}"
        before = client.get(one).json()
        assert before["enabled"] is False
        for value in NOT_BOOLEANS:
            response = client.patch(one, json={"enabled": value})
            assert response.status_code == 422, (value, response.text)
            assert response.json()["errors"][0]["loc"] == ["body", "enabled"]
        assert client.get(one).json() == before
        assert client.patch(one, json={"enabled": True}).json()["enabled"] is True


def test_classify_refuses_a_text_of_whitespace_alone(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    # A blank text was classified (200, a label for nothing), where the project's other texts (a chat
    # message, a knowledge-base entry) are refused when blank.
    with TestClient(create_app(settings_for(tmp_path, finance_model_dir, sqlite_url))) as client:
        for blank in (" ", "\n\t \r\n", "\u00a0\u2003"):
            response = client.post("/v1/classify", json={"texts": ["Acme raises its dividend", blank]})
            assert response.status_code == 422, (blank, response.text)
            assert response.headers["content-type"] == PROBLEM
            assert response.json()["errors"][0]["loc"] == ["body", "texts", 1]
        answered = client.post("/v1/classify", json={"texts": ["  Acme raises its dividend \n"]})
        assert answered.status_code == 200 and len(answered.json()) == 1


def test_classify_refuses_a_text_of_control_or_format_characters_alone(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    # A text of a BEL and an escape, a NUL, or zero-width spaces was labelled (200, a label for nothing).
    with TestClient(create_app(settings_for(tmp_path, finance_model_dir, sqlite_url))) as client:
        for blank in ("\x07\x1b", "\x00", " \x01\n\x02 ", "\u200b\ufeff", "\x85\x9f"):
            response = client.post("/v1/classify", json={"texts": ["Acme raises its dividend", blank]})
            assert response.status_code == 422, (blank, response.text)
            (error,) = response.json()["errors"]
            assert error["loc"] == ["body", "texts", 1]
            assert "expected a text with at least one visible character" in error["msg"]
        answered = client.post("/v1/classify", json={"texts": ["Acme\x07 raises its dividend"]})
        assert answered.status_code == 200 and len(answered.json()) == 1  # words around one: classified


@pytest.mark.parametrize(
    "field", ["z_threshold", "min_negative_share", "min_sentiment_drop", "resolve_fraction"]
)
def test_a_rules_threshold_that_is_not_a_finite_number_is_refused_as_such(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str, field: str
) -> None:
    # Python's JSON reader takes NaN and Infinity: the 422 named a bound the value does not break
    # ("less than or equal to 100"), leaving the operator to guess.
    body = json.dumps(rule("http://127.0.0.1:9/hook")).rstrip("}")
    with TestClient(create_app(settings_for(tmp_path, finance_model_dir, sqlite_url))) as client:
        for value in ("NaN", "Infinity", "-Infinity"):
            sent = f'{body}, "{field}": {value}}}'
            response = client.post(
                "/v1/alert-rules", content=sent, headers={"content-type": "application/json"}
            )
            assert response.status_code == 422, (value, response.text)
            (error,) = response.json()["errors"]
            assert (error["loc"], error["msg"]) == (["body", field], "Input should be a finite number")
        assert client.get("/v1/alert-rules").json() == []


def test_a_resolve_fraction_below_one_percent_is_refused_naming_the_field(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    # 1e-300 was taken: a firing alert of the rule then resolved only once its window fell to nothing.
    body = rule("http://127.0.0.1:9/hook")
    with TestClient(create_app(settings_for(tmp_path, finance_model_dir, sqlite_url))) as client:
        for value in (1e-300, 0.009):
            response = client.post("/v1/alert-rules", json=body | {"resolve_fraction": value})
            assert response.status_code == 422, (value, response.text)
            (error,) = response.json()["errors"]
            assert error["loc"] == ["body", "resolve_fraction"]
            assert error["msg"] == "Input should be greater than or equal to 0.01"
        created = client.post("/v1/alert-rules", json=body | {"resolve_fraction": 0.01})
        assert created.status_code == 201, created.text
        patched = client.patch(f"/v1/alert-rules/{created.json()['id']}", json={"resolve_fraction": 1e-9})
        assert patched.status_code == 422 and "resolve_fraction" in patched.text


def test_a_rule_stored_with_a_tiny_resolve_fraction_still_works_and_is_warned_of(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A rule stored before the bound keeps its value and its alerts; the start logs it, its listing says so,
    # and a patch that leaves resolve_fraction alone (disabling it, say) is not refused for it.
    settings = settings_for(tmp_path, finance_model_dir, sqlite_url)
    with TestClient(create_app(settings)) as client:
        rule_id = client.post("/v1/alert-rules", json=rule("http://127.0.0.1:9/hook")).json()["id"]
    with Database(sqlite_url).session() as session:
        session.execute(update(AlertRule).values(resolve_fraction=1e-300))
    with (
        caplog.at_level(logging.WARNING, logger="finance_sentiment"),
        TestClient(create_app(settings)) as client,
    ):
        logged = [r.getMessage() for r in caplog.records if "resolve_fraction" in r.getMessage()]
        assert logged == [
            "alert rule 'company-spike': resolve_fraction: 1e-300 is below 0.01, so a firing alert of this "
            "rule resolves only when its window falls to almost nothing; set it to 0.01 or more "
            "(0.5 by default)"
        ]
        listed = client.get(f"/v1/alert-rules/{rule_id}").json()
        assert listed["resolve_fraction"] == 1e-300
        assert [w for w in listed["warnings"] if w.startswith("resolve_fraction: 1e-300 is below 0.01")]
        patched = client.patch(f"/v1/alert-rules/{rule_id}", json={"enabled": False})
        assert patched.status_code == 200, patched.text
        assert (patched.json()["enabled"], patched.json()["resolve_fraction"]) == (False, 1e-300)
        fixed = client.patch(f"/v1/alert-rules/{rule_id}", json={"resolve_fraction": 0.5}).json()
        assert (fixed["resolve_fraction"], fixed["warnings"]) == (0.5, [])


def test_a_url_with_a_space_is_kept_percent_encoded_as_it_is_requested(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    # 'http://.../my feed.xml' was stored and listed as written, though the request went to my%20feed.xml.
    body = SOURCE | {"url": "http://127.0.0.1:9/market news/feed.xml?q=acme corp"}
    with TestClient(create_app(settings_for(tmp_path, finance_model_dir, sqlite_url))) as client:
        created = client.post("/v1/sources", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["url"] == "http://127.0.0.1:9/market%20news/feed.xml?q=acme%20corp"
        one = f"/v1/sources/{created.json()['id']}"
        patched = client.patch(one, json={"url": 'http://127.0.0.1:9/a "b"/feed.xml'}).json()
        assert patched["url"] == "http://127.0.0.1:9/a%20%22b%22/feed.xml"
        hook = client.post("/v1/alert-rules", json=rule("http://127.0.0.1:9/risk hook"))
        assert hook.status_code == 201, hook.text
        assert hook.json()["webhook_url"] == "http://127.0.0.1:9/risk%20hook"


def test_a_url_stored_with_a_space_and_a_password_keeps_them_when_sent_back_as_listed(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    # A source stored with a space before URLs were encoded: its listed (masked) URL sent back keeps the
    # password, and the URL is kept encoded from then on.
    settings = settings_for(tmp_path, finance_model_dir, sqlite_url)
    with TestClient(create_app(settings)) as client:
        source_id = client.post("/v1/sources", json=SOURCE).json()["id"]
    with Database(sqlite_url).session() as session:
        session.execute(update(Source).values(url="http://risk:pa55@127.0.0.1:9/my feed.xml"))
    with TestClient(create_app(settings)) as client:
        one = f"/v1/sources/{source_id}"
        listed = client.get(one).json()["url"]
        assert listed == "http://risk:****@127.0.0.1:9/my feed.xml"
        patched = client.patch(one, json={"url": listed, "name": "wire-2"})
        assert patched.status_code == 200, patched.text
    with Database(sqlite_url).session() as session:
        assert session.get_one(Source, source_id).url == "http://risk:pa55@127.0.0.1:9/my%20feed.xml"
