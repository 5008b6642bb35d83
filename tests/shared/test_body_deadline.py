"""The deadline on reading a request body, over real HTTP on loopback with raw sockets: a client that sends
its headers and then stalls, or trickles, gets 408 problem+json and a closed connection; bodies that finish
in time, requests without a body and responses that take longer than the deadline are unaffected."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from tests.conftest import serve_app
from textcore.settings import ServiceSettings
from textcore.web import BodySizeLimit, service_app

PROBLEM = "application/problem+json"
DEADLINE = 1.0  # seconds, the served app's BODY_TIMEOUT
MAX_BODY = 1_000
GENEROUS = 20.0  # seconds a test waits for an answer before calling it missing


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_")


def demo_app() -> FastAPI:
    settings = DemoSettings(body_timeout=DEADLINE, max_body_bytes=MAX_BODY)
    app = service_app(title="demo", distribution="textcore", description="d", settings=settings)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.get("/slow")
    async def slow() -> dict[str, float]:
        await asyncio.sleep(DEADLINE * 1.5)  # no body: the answer may take longer than the body deadline
        return {"slept": DEADLINE * 1.5}

    @app.post("/stream")
    async def stream(request: Request) -> StreamingResponse:
        size = len(await request.body())

        async def events() -> AsyncIterator[bytes]:
            for n in range(3):  # 3 x 0.6 s: the response outlasts the body deadline
                await asyncio.sleep(0.6)
                yield f"data: {n} of {size}\n\n".encode()

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def address() -> Iterator[tuple[str, int]]:
    with serve_app(demo_app()) as base_url:
        url = urlsplit(base_url)
        assert url.hostname is not None and url.port is not None
        yield url.hostname, url.port


def head(host: str, *lines: str) -> bytes:
    return "\r\n".join(["POST /echo HTTP/1.1", f"Host: {host}", *lines, "", ""]).encode()


def answer(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read until the server closes the connection: the status, headers and body of its one response.
    Raises TimeoutError when nothing more comes within `GENEROUS` seconds (no answer, or no close)."""
    connection.settimeout(GENEROUS)
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    status_headers, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = status_headers.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body


def problem_of(status: int, headers: dict[str, str], body: bytes, expected: int) -> dict[str, Any]:
    assert status == expected, body
    assert headers["content-type"] == PROBLEM
    assert headers["connection"] == "close"
    document: dict[str, Any] = json.loads(body)
    assert document["status"] == expected
    return document


@pytest.mark.parametrize(
    ("framing", "sent", "found"),
    [
        (["Content-Length: 100"], b'{"text": "', "10 bytes of the 100 declared"),
        (["Transfer-Encoding: chunked"], b'a\r\n{"text": "\r\n', "10 bytes"),
    ],
    ids=["content-length", "chunked"],
)
def test_a_body_that_stalls_half_way_is_408_and_its_connection_closed(
    address: tuple[str, int], framing: list[str], sent: bytes, found: str
) -> None:
    host = address[0]
    with socket.create_connection(address, timeout=GENEROUS) as connection:
        # A keep-alive request: the server closes the connection because it timed out, not because asked.
        connection.sendall(head(host, "Content-Type: application/json", *framing) + sent)
        document = problem_of(*answer(connection), 408)  # TimeoutError: no answer, or the connection kept
    assert document["title"] == "Request Timeout"
    assert document["detail"] == (
        f"expected the whole request body within {DEADLINE:g} seconds, found {found} by then "
        "(the service's DEMO_BODY_TIMEOUT sets the deadline)"
    )


def test_a_body_trickled_past_the_deadline_is_408(address: tuple[str, int]) -> None:
    host = address[0]
    with socket.create_connection(address, timeout=GENEROUS) as connection:
        connection.sendall(head(host, "Content-Length: 1000"))
        # A byte every 0.2 s, well within the deadline each, would take 200 s for the whole body.
        for _ in range(int(GENEROUS / 0.2)):
            answered, _, _ = select.select([connection], [], [], 0.2)
            if answered:
                break
            connection.sendall(b"x")
        document = problem_of(*answer(connection), 408)
    assert document["title"] == "Request Timeout"
    assert "of the 1000 declared by then" in document["detail"]


def test_a_refused_body_left_unsent_gets_its_413_and_a_closed_connection(address: tuple[str, int]) -> None:
    # Over the bound by less than the middleware drains: it reads the rest, for a while, not forever.
    host = address[0]
    with socket.create_connection(address, timeout=GENEROUS) as connection:
        connection.sendall(head(host, f"Content-Length: {MAX_BODY + 10}") + b"x" * 10)
        document = problem_of(*answer(connection), 413)
    assert document["detail"].startswith(f"expected a request body of at most {MAX_BODY} bytes")


def test_a_slow_body_that_finishes_in_time_is_answered(address: tuple[str, int]) -> None:
    host = address[0]
    with socket.create_connection(address, timeout=GENEROUS) as connection:
        connection.sendall(head(host, "Content-Length: 40", "Connection: close"))
        for _ in range(4):
            time.sleep(0.05)
            connection.sendall(b"y" * 10)
        status, _, body = answer(connection)
    assert status == 200, body
    assert json.loads(body) == {"received": 40}


def test_requests_without_a_slow_body_and_long_responses_are_unaffected(address: tuple[str, int]) -> None:
    host, port = address
    with httpx.Client(base_url=f"http://{host}:{port}", trust_env=False, timeout=GENEROUS) as http:
        assert http.post("/echo", content=b"z" * MAX_BODY).json() == {"received": MAX_BODY}
        assert http.get("/slow").json() == {"slept": DEADLINE * 1.5}
        # A stream of events lasts longer than the body deadline; its request body came in at once.
        with http.stream("POST", "/stream", content=b"abc") as response:
            assert response.status_code == 200
            events = [line for line in response.iter_lines() if line]
    assert events == ["data: 0 of 3", "data: 1 of 3", "data: 2 of 3"]


@pytest.mark.parametrize("seconds", ["0", "-1", "soon"])
def test_a_body_timeout_that_is_no_positive_number_is_refused(
    monkeypatch: pytest.MonkeyPatch, seconds: str
) -> None:
    monkeypatch.setenv("DEMO_BODY_TIMEOUT", seconds)
    with pytest.raises(ValidationError, match="body_timeout"):
        DemoSettings()
    with pytest.raises(ValueError, match="expected a timeout above 0 seconds"):
        BodySizeLimit(demo_app(), MAX_BODY, timeout=0)
