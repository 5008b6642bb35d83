"""Retries of a chat message with an Idempotency-Key get the turn its first try stored, over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Route

from customer_service import create_app
from customer_service.settings import GeneratorSettings
from tests.conftest import problem, serve_app
from tests.customer_service.test_app import cs_settings
from tests.customer_service.test_generation import completions

QUESTION = "How do I block my debit card?"
Events = list[tuple[str, dict[str, Any]]]


def _events(raw: str) -> Events:
    blocks = [block.split("\n") for block in raw.strip().split("\n\n")]
    return [(b[0].removeprefix("event: "), json.loads(b[1].removeprefix("data: "))) for b in blocks]


def _stream(client: TestClient, body: dict[str, Any], key: str | None = None) -> Events:
    headers = {} if key is None else {"Idempotency-Key": key}
    with client.stream("POST", "/v1/chat/stream", json=body, headers=headers) as response:
        assert response.status_code == 200, response.read()
        return _events("".join(response.iter_text()))


def _turns(client: TestClient, session_id: str) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = client.get(f"/v1/sessions/{session_id}").json()["turns"]
    return turns


def test_a_retried_message_with_its_key_gets_the_turn_stored_once(tmp_path: Path, database_url: str) -> None:
    # A mobile app retrying a timed-out POST, a widget re-posting a dropped stream: the message used to be
    # stored and answered again, counted twice in the transcript and analytics.
    body = {"session_id": "widget-7", "message": QUESTION}
    with TestClient(create_app(cs_settings(tmp_path, database_url))) as client:
        first = client.post("/v1/chat", json=body, headers={"Idempotency-Key": "msg-1"})
        assert first.status_code == 200, first.text
        reply = first.json()
        assert reply["action"] == "answer" and reply["sources"][0]["id"] == "lock-card"
        again = client.post("/v1/chat", json=body, headers={"Idempotency-Key": "msg-1"})
        assert again.status_code == 200 and again.json() == reply
        # the stream answers the stored turn in the same shape: meta, the answer, done
        events = _stream(client, body, "msg-1")
        assert [name for name, _ in events] == ["meta", "delta", "done"]
        meta, delta, done = (data for _, data in events)
        assert done == reply and delta["text"] == reply["answer"]
        assert meta == {k: reply[k] for k in ("session_id", "action", "intent", "sources")}
        assert [t["id"] for t in _turns(client, "widget-7")] == [reply["turn_id"]]
        assert client.get("/v1/analytics").json()["turns"] == 1
        # a new key is a new message; no key, as before, a new turn every time
        other = client.post("/v1/chat", json=body, headers={"Idempotency-Key": "msg-2"}).json()
        plain = [client.post("/v1/chat", json=body).json()["turn_id"] for _ in range(2)]
        ids = [t["id"] for t in _turns(client, "widget-7")]
        assert ids == [reply["turn_id"], other["turn_id"], *plain] and len(set(ids)) == 4


def test_a_streamed_message_retried_gets_the_streams_turn(tmp_path: Path, sqlite_url: str) -> None:
    body = {"session_id": "widget-8", "message": QUESTION}
    with TestClient(create_app(cs_settings(tmp_path, sqlite_url))) as client:
        events = _stream(client, body, "a1b2c3d4-0000-4000-8000-00000000abcd")
        assert [name for name, _ in events][-1] == "done"
        done = events[-1][1]
        retried = _stream(client, body, "a1b2c3d4-0000-4000-8000-00000000abcd")
        assert retried[-1][1] == done and retried[0][1] == events[0][1]
        posted = client.post(
            "/v1/chat", json=body, headers={"Idempotency-Key": "a1b2c3d4-0000-4000-8000-00000000abcd"}
        )
        assert posted.json() == done
        assert [t["id"] for t in _turns(client, "widget-8")] == [done["turn_id"]]


def test_a_key_sent_again_with_another_message_is_refused(tmp_path: Path, sqlite_url: str) -> None:
    with TestClient(create_app(cs_settings(tmp_path, sqlite_url))) as client:
        headers = {"Idempotency-Key": "msg-1"}
        first = client.post("/v1/chat", json={"session_id": "w", "message": QUESTION}, headers=headers)
        assert first.status_code == 200
        for path in ("/v1/chat", "/v1/chat/stream"):
            other = client.post(
                path, json={"session_id": "w", "message": "What are your fees?"}, headers=headers
            )
            detail = problem(other, 422)["detail"]
            assert "Idempotency-Key" in detail and "'msg-1'" in detail and "another message" in detail
        assert [t["id"] for t in _turns(client, "w")] == [first.json()["turn_id"]]


@pytest.mark.parametrize("path", ["/v1/chat", "/v1/chat/stream"])
def test_malformed_keys_and_keys_without_a_session_are_refused(
    tmp_path: Path, sqlite_url: str, path: str
) -> None:
    with TestClient(create_app(cs_settings(tmp_path, sqlite_url))) as client:
        for key in ("x" * 129, "two words", "", "naïve"):
            refused = client.post(path, json={"session_id": "w", "message": QUESTION},
                                  headers={b"Idempotency-Key": key.encode()})  # fmt: skip
            errors = problem(refused, 422)["errors"]
            assert errors[0]["loc"] == ["header", "Idempotency-Key"], errors
            assert "expected an Idempotency-Key of 1-128 letters" in errors[0]["msg"]
        alone = client.post(path, json={"message": QUESTION}, headers={"Idempotency-Key": "msg-1"})
        assert "expected a session_id with an Idempotency-Key" in problem(alone, 422)["detail"]
        assert client.get("/v1/sessions").json()["total"] == 0
        # the OpenAPI description says what the header does
        header = client.get("/openapi.json").json()["paths"][path]["post"]["parameters"][0]
        assert (header["name"], header["in"]) == ("Idempotency-Key", "header")
        assert "a retry in the same session is answered with that turn" in header["description"]
        assert "A stream that drops before `done` is answered to its end" in header["description"]


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[str]:
    """An OpenAI-compatible server on loopback; model "stall" pauses after its first two words."""
    with serve_app(Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])) as url:
        yield url


def test_a_retry_while_the_first_try_is_answered_is_a_conflict(
    tmp_path: Path, sqlite_url: str, fake_llm: str
) -> None:
    generator = GeneratorSettings(kind="openai", base_url=fake_llm, model="stall", timeout_s=5)
    settings = cs_settings(tmp_path, sqlite_url, generator=generator, templates_file=None)
    body = {"session_id": "app-1", "message": "How can I freeze my debit card?"}
    headers = {"Idempotency-Key": "msg-1"}
    events: Events = []
    with serve_app(create_app(settings)) as base_url, httpx.Client(base_url=base_url, timeout=30) as http:
        with http.stream("POST", "/v1/chat/stream", json=body, headers=headers) as response:
            name = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    events.append((name, json.loads(line.removeprefix("data: "))))
                    if [n for n, _ in events] == ["meta", "delta"]:  # the generator pauses after this
                        for path in ("/v1/chat", "/v1/chat/stream"):
                            busy = http.post(path, json=body, headers=headers)
                            detail = problem(busy, 409)["detail"]
                            assert "'msg-1'" in detail and "still being answered" in detail
        assert events[-1][0] == "done", events
        done = events[-1][1]
        retried = http.post("/v1/chat", json=body, headers=headers)  # after it: the stored turn
        assert retried.status_code == 200 and retried.json() == done
        turns = http.get("/v1/sessions/app-1").json()["turns"]
        assert [t["id"] for t in turns] == [done["turn_id"]]
