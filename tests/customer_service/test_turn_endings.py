"""How a chat turn ends once it is under way, through the real app (served by uvicorn on loopback where a
test acts while a request runs) and an OpenAI-compatible generator on loopback whose replies the tests hold
back or break off."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from customer_service import create_app
from customer_service.bot import CUT_SHORT
from customer_service.settings import CustomerServiceSettings, GeneratorSettings
from tests.conftest import serve_app
from tests.customer_service.test_app import cs_settings

ANSWER = "Freeze your card in the app under Cards [1]."
ASKED, GATE = threading.Event(), threading.Event()  # the generator was asked; it may answer
PAUSED = threading.Event()  # `pauses` has sent its first words


async def completions(request: Request) -> Response:
    """`gated` answers once GATE is set; `breaks` streams two words, then the connection drops; `pauses`
    streams two words, then waits for GATE."""
    body = await request.json()
    if body["model"] == "gated":
        ASKED.set()
        await asyncio.to_thread(GATE.wait, 60)
        if not body.get("stream"):
            return JSONResponse({"choices": [{"message": {"role": "assistant", "content": ANSWER}}]})

    async def events() -> AsyncIterator[bytes]:
        for number, word in enumerate(ANSWER.split(" ")):
            if body["model"] == "breaks" and number == 2:
                raise ConnectionResetError("the model server died")
            if body["model"] == "pauses" and number == 2:
                PAUSED.set()
                await asyncio.to_thread(GATE.wait, 60)
            piece = word if number == 0 else f" {word}"
            yield f"data: {json.dumps({'choices': [{'delta': {'content': piece}}]})}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def llm() -> Iterator[str]:
    with serve_app(Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])) as url:
        yield url


def held_back(tmp_path: Path, sqlite_url: str, llm: str, model: str) -> CustomerServiceSettings:
    """Settings whose generator is the loopback `model` (`completions`), its gates reset."""
    ASKED.clear()
    GATE.clear()
    PAUSED.clear()
    generator = GeneratorSettings(kind="openai", base_url=llm, model=model, timeout_s=60)
    return cs_settings(tmp_path, sqlite_url, generator=generator, templates_file=None)


def turn(
    http: httpx.Client | TestClient, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, list[tuple[str, Any]]]:
    """The status and, for a stream, its events; for `/v1/chat` one event: ("reply", the JSON body)."""
    if path == "/v1/chat":
        response = http.post(path, json=body, headers=headers)
        return response.status_code, [("reply", response.json())]
    events: list[tuple[str, Any]] = []
    with http.stream("POST", path, json=body, headers=headers) as response:
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
        return response.status_code, events


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {what} within 60 s")
        time.sleep(0.02)


@contextmanager
def sessions_locked(url: str) -> Iterator[None]:
    """Another transaction holds the sessions table: whatever reads it waits (a slow database)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE"))
            try:
                yield
            finally:
                connection.rollback()
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("path", ["/v1/chat", "/v1/chat/stream"])
def test_a_turn_under_way_is_stored_when_every_worker_is_busy(
    tmp_path: Path, postgres_url: str, llm: str, path: str
) -> None:
    # One worker and no queue: a new message while it is busy is refused with a 429, before anything is
    # done. A message already planned and answered is not: refusing it then would throw the generated
    # answer away (a stream would end with an error after the customer read the whole answer) and lose
    # the turn.
    ASKED.clear()
    GATE.clear()
    generator = GeneratorSettings(kind="openai", base_url=llm, model="gated", timeout_s=120)
    settings = cs_settings(
        tmp_path, postgres_url, generator=generator, templates_file=None, max_workers=1, max_queue=0
    )
    with (
        serve_app(create_app(settings)) as base_url,
        httpx.Client(base_url=base_url, timeout=120) as http,
        ThreadPoolExecutor(2) as pool,
    ):

        def workers() -> str:
            return str(http.get("/readyz").json()["checks"]["workers"])

        first = pool.submit(turn, http, path, {"message": "How can I freeze my debit card?"})
        assert ASKED.wait(60), "the first message was not planned"
        with sessions_locked(postgres_url):
            second = pool.submit(turn, http, "/v1/chat", {"message": "What is the daily withdrawal limit?"})
            wait_for(lambda: workers() == "1 of 1 busy", "the second message to hold the only worker")
            refused = http.post(
                "/v1/chat", json={"message": "hello"}
            )  # a new one is refused, told when to retry
            assert (refused.status_code, refused.headers.get("retry-after")) == (429, "1")
            GATE.set()  # the first message's answer comes; storing it needs the worker the second holds
            wait_for(lambda: first.done() or workers() == "2 of 1 busy", "the first turn to wait or end")
        status, events = first.result(timeout=120)
        assert second.result(timeout=120)[0] == 200
        assert status == 200
        name, reply = events[-1]
        assert name in ("reply", "done"), events[-1]
        assert (reply["action"], reply["mode"], reply["answer"]) == ("answer", "generated", ANSWER)
        stored = http.get(f"/v1/sessions/{reply['session_id']}").json()["turns"]
        assert [(t["id"], t["answer"]) for t in stored] == [(reply["turn_id"], ANSWER)]


def test_a_generator_that_breaks_off_mid_stream_is_followed_by_the_extract(
    tmp_path: Path, sqlite_url: str, llm: str
) -> None:
    # The model server dies two words into the answer: those words are on the customer's screen and cannot
    # be taken back, but the reply does not end there. The extractive answer follows them, and the turn
    # stores what was shown.
    generator = GeneratorSettings(kind="openai", base_url=llm, model="breaks", timeout_s=30)
    settings = cs_settings(tmp_path, sqlite_url, generator=generator, templates_file=None)
    with TestClient(create_app(settings)) as client:
        status, events = turn(client, "/v1/chat/stream", {"message": "How can I freeze my debit card?"})
        names = [name for name, _ in events]
        assert (status, names[0], names[-1]) == (200, "meta", "done"), names
        shown = "".join(data["text"] for name, data in events if name == "delta")
        done = events[-1][1]
        assert events[0][1]["sources"][0]["id"] == done["sources"][0]["id"] == "lock-card"
        extract = " ".join(client.get("/v1/knowledge/lock-card").json()["text"].split())
        assert shown.startswith("Freeze your") and shown.endswith(f"\n\n{extract} [1]"), shown
        assert (done["answer"], done["mode"]) == (shown.strip(), "extractive")
        stored = client.get(f"/v1/sessions/{done['session_id']}").json()["turns"]
        assert [(t["id"], t["answer"]) for t in stored] == [(done["turn_id"], done["answer"])]


@pytest.mark.parametrize(("model", "seen"), [("pauses", "Freeze your"), ("gated", "")])
def test_a_stream_the_customer_leaves_early_stores_the_turn_with_what_was_sent(
    tmp_path: Path, sqlite_url: str, llm: str, model: str, seen: str
) -> None:
    # The customer closes the page while the answer is generated: two words in (`pauses`), or before the
    # first (`gated`). The message was received and the words may have been read: the turn is stored with
    # them, marked as cut short, for the agent console and analytics; the generation stops.
    settings = held_back(tmp_path, sqlite_url, llm, model)
    message = "How can I freeze my debit card?"
    try:
        with serve_app(create_app(settings)) as base_url, httpx.Client(base_url=base_url, timeout=30) as http:
            events: list[tuple[str, Any]] = []
            with http.stream("POST", "/v1/chat/stream", json={"message": message}) as response:
                name = ""
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        name = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        events.append((name, json.loads(line.removeprefix("data: "))))
                    if events and "".join(d["text"] for n, d in events if n == "delta") == seen:
                        assert (PAUSED if seen else ASKED).wait(30)
                        break  # the customer leaves: the connection closes
            names = [n for n, _ in events]
            assert names[0] == "meta" and "done" not in names
            sid = events[0][1]["session_id"]

            def stored() -> list[dict[str, Any]]:
                found = http.get(f"/v1/sessions/{sid}")
                return list(found.json()["turns"]) if found.status_code == 200 else []

            deadline = time.monotonic() + 20
            while not stored() and time.monotonic() < deadline:
                time.sleep(0.05)
            turns = stored()
            assert len(turns) == 1, "expected the turn of the stream the customer left to be stored"
            turn_ = turns[0]
            assert (turn_["message"], turn_["answer"], turn_["action"]) == (message, seen, "answer")
            assert turn_["reason"].endswith(f"; {CUT_SHORT}"), turn_["reason"]
            assert turn_["sources"][0]["id"] == events[0][1]["sources"][0]["id"] == "lock-card"
            assert http.get("/v1/analytics").json()["turns"] == 1
    finally:
        GATE.set()


def leave_after_first_words(
    http: httpx.Client, body: dict[str, Any], key: str | None
) -> list[tuple[str, Any]]:
    """Stream `body` until the `pauses` generator has sent its first two words, then drop the connection."""
    headers = {} if key is None else {"Idempotency-Key": key}
    events: list[tuple[str, Any]] = []
    with http.stream("POST", "/v1/chat/stream", json=body, headers=headers) as response:
        assert response.status_code == 200
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
            if "".join(d["text"] for n, d in events if n == "delta") == "Freeze your":
                assert PAUSED.wait(30)
                break  # the connection drops
    assert "done" not in [n for n, _ in events]
    return events


def stored_turns(http: httpx.Client, session_id: str) -> list[dict[str, Any]]:
    found = http.get(f"/v1/sessions/{session_id}")
    return list(found.json()["turns"]) if found.status_code == 200 else []


def test_a_keyed_stream_that_drops_is_answered_whole_for_its_retry(
    tmp_path: Path, sqlite_url: str, llm: str
) -> None:
    # A fetch-event-source client re-posts a stream that dropped, with the same Idempotency-Key. The turn
    # used to be stored cut short with the two words sent (its generation stopped), and the retry replayed
    # them: the customer could never get the rest of the reply. It is now answered to its end and stored
    # whole; the retry gets a 409 while that goes on, then the whole reply.
    settings = held_back(tmp_path, sqlite_url, llm, "pauses")
    body = {"session_id": "widget-3", "message": "How can I freeze my debit card?"}
    headers = {"Idempotency-Key": "msg-1"}
    try:
        with serve_app(create_app(settings)) as base_url, httpx.Client(base_url=base_url, timeout=30) as http:
            first = leave_after_first_words(http, body, "msg-1")
            busy = http.post("/v1/chat/stream", json=body, headers=headers)
            assert busy.status_code == 409, busy.text  # still being answered
            GATE.set()  # the generator goes on
            wait_for(lambda: bool(stored_turns(http, "widget-3")), "the dropped turn to be stored")
            status, events = turn(http, "/v1/chat/stream", body)  # without the key: a new turn
            assert status == 200 and events[-1][0] == "done"
            status, retried = turn(http, "/v1/chat/stream", body, headers)
            assert status == 200 and [n for n, _ in retried] == ["meta", "delta", "done"]
            done = retried[-1][1]
            assert (done["answer"], done["mode"], done["action"]) == (ANSWER, "generated", "answer")
            assert retried[1][1]["text"] == ANSWER and retried[0][1] == first[0][1]
            # the fresh turn's generated answer is the same: what the generator produces for this message
            assert events[-1][1]["answer"] == ANSWER
            turns = stored_turns(http, "widget-3")
            assert [(t["id"], t["answer"]) for t in turns] == [
                (done["turn_id"], ANSWER),
                (events[-1][1]["turn_id"], ANSWER),
            ]
            assert not turns[0]["reason"].endswith(CUT_SHORT), turns[0]["reason"]
    finally:
        GATE.set()


def test_an_unkeyed_stream_that_drops_stores_what_was_sent_though_its_generator_could_go_on(
    tmp_path: Path, sqlite_url: str, llm: str
) -> None:
    settings = held_back(tmp_path, sqlite_url, llm, "pauses")
    body = {"session_id": "widget-4", "message": "How can I freeze my debit card?"}
    try:
        with serve_app(create_app(settings)) as base_url, httpx.Client(base_url=base_url, timeout=30) as http:
            leave_after_first_words(http, body, None)
            # Stored once the server has seen the client go (released before that, the generator's next
            # words could still reach the socket and count as sent: they were never read)
            wait_for(lambda: bool(stored_turns(http, "widget-4")), "the dropped turn to be stored")
            GATE.set()  # the generator could answer the rest: the stream that dropped does not ask it to
            time.sleep(0.5)
            turns = stored_turns(http, "widget-4")
            assert [t["answer"] for t in turns] == ["Freeze your"]
            assert turns[0]["reason"].endswith(f"; {CUT_SHORT}"), turns[0]["reason"]
    finally:
        GATE.set()


def test_a_keyed_turn_still_being_answered_when_the_server_stops_is_stored_with_what_it_has(
    tmp_path: Path, sqlite_url: str, llm: str
) -> None:
    # The generator holds back the rest of the reply; the server stops meanwhile. Completing the turn does
    # not hold up the shutdown: it is stored with what was generated, and its key is free for the retry.
    settings = held_back(tmp_path, sqlite_url, llm, "pauses")
    body = {"session_id": "widget-5", "message": "How can I freeze my debit card?"}
    try:
        with serve_app(create_app(settings)) as base_url, httpx.Client(base_url=base_url, timeout=30) as http:
            leave_after_first_words(http, body, "msg-1")
            assert stored_turns(http, "widget-5") == []  # still being answered
        # the server has stopped (its lifespan ended) while the generator still held back its words
        assert not GATE.is_set()
        with TestClient(create_app(settings)) as client:
            turns = client.get("/v1/sessions/widget-5").json()["turns"]
            assert [t["answer"] for t in turns] == ["Freeze your"]
            assert turns[0]["reason"].endswith(f"; {CUT_SHORT}"), turns[0]["reason"]
            retried = client.post("/v1/chat", json=body, headers={"Idempotency-Key": "msg-1"})
            assert retried.status_code == 200 and retried.json()["turn_id"] == turns[0]["id"]
    finally:
        GATE.set()


def test_a_keyed_turn_that_fails_while_completed_is_logged_and_frees_its_key(
    tmp_path: Path, sqlite_url: str, llm: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The session is erased while its dropped turn is still being answered: storing the turn fails. That
    # is logged, and the key is not held forever: the retry is answered (in a new session of that id).
    settings = held_back(tmp_path, sqlite_url, llm, "pauses")
    body = {"session_id": "widget-6", "message": "How can I freeze my debit card?"}
    headers = {"Idempotency-Key": "msg-1"}
    try:
        with serve_app(create_app(settings)) as base_url, httpx.Client(base_url=base_url, timeout=30) as http:
            leave_after_first_words(http, body, "msg-1")
            assert http.delete("/v1/sessions/widget-6").status_code == 204
            GATE.set()
            tries: list[httpx.Response] = []

            def retry() -> bool:
                tries.append(http.post("/v1/chat/stream", json=body, headers=headers))
                return tries[-1].status_code != 409

            wait_for(retry, "the key to be free once the failed turn ended")
            assert tries[-1].status_code == 200
            done = json.loads(tries[-1].text.strip().split("\n\n")[-1].split("data: ", 1)[1])
            assert done["answer"] == ANSWER
            assert [t["id"] for t in stored_turns(http, "widget-6")] == [done["turn_id"]]
        failures = [r for r in caplog.records if "could not complete a keyed turn" in r.getMessage()]
        assert failures, "expected the failed keyed turn logged"
        raised = failures[0].exc_info
        assert raised is not None and "expected an existing session id" in str(raised[1])
    finally:
        GATE.set()
