"""Request bodies of the monitor's API take JSON values as they are: no lax conversion, no blank text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from finance_sentiment import create_app
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
