"""textcore.web and textcore.http through a real FastAPI app, real threads and httpx transports."""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy.exc import DataError, IntegrityError

from tests.conftest import problem, serve_app
from textcore.errors import ALL_ERRORS, CoreError, Overloaded, UpstreamError
from textcore.http import HttpClientConfig, make_http_client
from textcore.settings import ServiceSettings
from textcore.web import BodySizeLimit, CapacityLimiter, install_problem_handlers, service_app

PROBLEM = "application/problem+json"
MAX_BODY = 1_000


class Item(BaseModel):
    name: str
    count: int


def make_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY)
    errors = {cls.__name__: cls for cls in ALL_ERRORS}

    @app.get("/raise/{name}")
    async def raise_error(name: str) -> None:
        raise errors[name](f"expected nothing to go wrong, found {name}")

    @app.post("/items")
    async def create_item(item: Item) -> Item:
        return item

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    @app.get("/database/{what}")
    async def database(what: str) -> None:
        driver_error = ValueError("secret driver message")
        if what == "data":
            raise DataError("INSERT INTO t VALUES (%s)", ("a\x00b",), driver_error)
        raise IntegrityError("INSERT INTO t VALUES (%s)", ("k",), driver_error)

    return app


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(make_app(), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda cls: cls.__name__)
def test_every_core_error_maps_to_its_status(client: TestClient, cls: type[CoreError]) -> None:
    response = client.get(f"/raise/{cls.__name__}")
    assert response.status_code == cls.status
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == {
        "type": "about:blank",
        "title": cls.title,
        "status": cls.status,
        "detail": f"expected nothing to go wrong, found {cls.__name__}",
        "instance": f"/raise/{cls.__name__}",
    }
    # a client told "too many requests" is told when to come back (RFC 9110 Retry-After); no other is
    assert response.headers.get("retry-after") == ("1" if cls is Overloaded else None)


def test_validation_error_is_422_problem_without_input_echo(client: TestClient) -> None:
    secret = "s" * 500
    response = client.post("/items", json={"name": "ok", "count": secret})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == 422
    assert body["instance"] == "/items"
    assert [e["loc"] for e in body["errors"]] == [["body", "count"]]
    assert set(body["errors"][0]) == {"loc", "msg", "type"}
    assert secret not in response.text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 10_000 + b"]" * 10_000, "nested too deeply to read"),
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "nested too deeply to read"),
        (b'{"name": "\xff", "count": 1}', "expected UTF-8, found byte b'\\xff' at 10"),
        (b'{"name": "n", "count": ' + b"1" * 5_000 + b"}", "a value too large to read"),
    ],
    ids=["deep lists", "deep objects", "not UTF-8", "5,000 digits"],
)
def test_json_the_parser_gives_up_on_is_422_as_malformed_json_is(body: bytes, reason: str) -> None:
    # FastAPI answers these with a bare 400 "There was an error parsing the body"; malformed JSON with 422
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/items")
    async def create_item(item: Item) -> Item:
        return item

    headers = {"content-type": "application/json"}
    with TestClient(app) as unbounded:  # no body limit: 10,000 levels take 20 kB
        malformed = problem(unbounded.post("/items", content=b"{not json", headers=headers), 422)
        refused = problem(unbounded.post("/items", content=body, headers=headers), 422)
    assert malformed["errors"] == [{"loc": ["body", 1], "msg": "JSON decode error", "type": "json_invalid"}]
    assert refused == malformed | {
        "errors": [{"loc": ["body"], "msg": f"JSON decode error: {reason}", "type": "json_invalid"}]
    }


def test_unexpected_error_is_generic_500_problem(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="textcore.web.problems"):
        response = client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["status"] == 500
    assert "secret" not in response.text
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)


def test_unknown_route_is_404_problem(client: TestClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["instance"] == "/nowhere"


def test_body_limit_refuses_declared_oversized_body(client: TestClient) -> None:
    response = client.post("/echo", content=b"x" * (MAX_BODY + 1))
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["status"] == 413


def test_body_limit_passes_bodies_within_bound(client: TestClient) -> None:
    assert client.post("/echo", content=b"x" * MAX_BODY).json() == {"received": MAX_BODY}


def test_body_limit_counts_streamed_chunks_over_real_http() -> None:
    def chunks(count: int) -> Iterator[bytes]:
        for _ in range(count):
            yield b"x" * 100

    with serve_app(make_app()) as base_url, httpx.Client(base_url=base_url, trust_env=False) as http:
        small = http.post("/echo", content=chunks(5))  # chunked transfer: no Content-Length
        assert small.json() == {"received": 500}
        large = http.post("/echo", content=chunks(20))
        declared = http.post("/echo", content=b"x" * 5 * MAX_BODY)
    for response in (large, declared):
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM


async def test_capacity_limiter_runs_calls_in_threads() -> None:
    limiter = CapacityLimiter(max_workers=2)
    caller = threading.get_ident()
    assert await limiter.run(lambda a, b: a + b, 1, b=2) == 3
    assert await limiter.run(threading.get_ident) != caller
    with pytest.raises(ZeroDivisionError):
        await limiter.run(lambda: 1 / 0)
    assert limiter.in_flight == 0
    assert limiter.max_workers == 2


async def test_capacity_limiter_refuses_when_saturated() -> None:
    limiter = CapacityLimiter(max_workers=1, max_queue=1)
    release = threading.Event()
    running = threading.Semaphore(0)

    def hold() -> str:
        running.release()
        assert release.wait(timeout=10)
        return "done"

    tasks = [asyncio.create_task(limiter.run(hold)) for _ in range(2)]
    try:
        assert await asyncio.to_thread(running.acquire, timeout=10)  # one runs, one waits for the worker
        assert limiter.in_flight == 2
        with pytest.raises(Overloaded):
            await limiter.run(hold)
    finally:
        release.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
    assert results == ["done", "done"]
    assert limiter.in_flight == 0
    assert await asyncio.wait_for(limiter.run(hold), timeout=10) == "done"


async def test_capacity_limiter_finishes_admitted_work_when_saturated() -> None:
    # `finish` waits for the worker where `run` refuses: the end of work that was let in is not thrown away
    limiter = CapacityLimiter(max_workers=1, max_queue=0)
    release = threading.Event()
    running = threading.Semaphore(0)

    def hold() -> str:
        running.release()
        assert release.wait(timeout=10)
        return "held"

    holder = asyncio.create_task(limiter.run(hold))
    try:
        assert await asyncio.to_thread(running.acquire, timeout=10)
        with pytest.raises(Overloaded):
            await limiter.run(hold)
        finishing = asyncio.create_task(limiter.finish(lambda a, b: a + b, 1, b=2))
        await asyncio.sleep(0)
        assert limiter.in_flight == 2  # counted while it waits: new calls see the load
    finally:
        release.set()
    assert await asyncio.wait_for(holder, timeout=10) == "held"
    assert await asyncio.wait_for(finishing, timeout=10) == 3
    assert limiter.in_flight == 0


@pytest.mark.parametrize(("workers", "queue"), [(0, 0), (1, -1)])
def test_capacity_limiter_rejects_bad_bounds(workers: int, queue: int) -> None:
    with pytest.raises(ValueError, match="expected"):
        CapacityLimiter(workers, queue)


async def test_http_client_sets_timeouts_and_user_agent() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ua": request.headers["user-agent"]})

    config = HttpClientConfig(connect_timeout=1.5, read_timeout=2.5, user_agent="probe/1")
    async with make_http_client(config, transport=httpx.MockTransport(handler)) as client:
        response = await client.get("http://upstream.test/x")
    assert response.json() == {"ua": "probe/1"}
    assert client.timeout == httpx.Timeout(connect=1.5, read=2.5, write=30.0, pool=5.0)
    assert config.limits == httpx.Limits(max_connections=20, max_keepalive_connections=10)


def test_values_the_database_refuses_are_422_and_a_lost_race_409(client: TestClient) -> None:
    refused = problem(client.get("/database/data"), 422)
    assert "NUL" in refused["detail"] and "secret" not in refused["detail"]
    conflict = problem(client.get("/database/integrity"), 409)
    assert "retry" in conflict["detail"] and "secret" not in conflict["detail"]


def test_database_errors_are_logged_without_statement_parameters_or_driver_message(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    # The parameters are what the caller sent (a customer's chat message) and the driver's message may quote
    # a value: personal data, which the log at INFO must not carry.
    with caplog.at_level(logging.INFO, logger="textcore.web.problems"):
        client.get("/database/data")
        client.get("/database/integrity")
    logged = [record.getMessage() for record in caplog.records]
    assert logged == [
        "database refused the values of GET /database/data: ValueError",
        "database conflict on GET /database/integrity: ValueError",
    ]


async def test_http_client_bounds_response_size() -> None:
    async def stream() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"y" * 10

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/declared":
            return httpx.Response(200, content=b"y" * 100)
        return httpx.Response(200, content=stream())  # no Content-Length

    config = HttpClientConfig(max_response_bytes=50)
    async with make_http_client(config, transport=httpx.MockTransport(handler)) as client:
        for path in ("/declared", "/streamed"):
            with pytest.raises(UpstreamError, match="at most 50 bytes"):
                await client.get(f"http://upstream.test{path}")


async def test_http_client_bounds_the_decoded_size_of_a_compressed_body() -> None:
    bomb = gzip.compress(b" " * 1_000_000)  # about 1 KB on the wire
    small = gzip.compress(b"fine")

    def handler(request: httpx.Request) -> httpx.Response:
        body = bomb if request.url.path == "/bomb" else small
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=body)

    config = HttpClientConfig(max_response_bytes=10_000)
    async with make_http_client(config, transport=httpx.MockTransport(handler)) as client:
        assert len(bomb) < config.max_response_bytes
        with pytest.raises(UpstreamError, match="at most 10000 bytes"):
            await client.get("http://upstream.test/bomb")
        response = await client.get("http://upstream.test/small")
    assert response.content == b"fine"
    assert "Content-Encoding" not in response.headers  # what the caller gets is the decoded body


async def test_http_client_default_transport_on_loopback() -> None:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    with serve_app(app) as base_url:
        async with make_http_client() as client:
            response = await client.get(f"{base_url}/ping")
    assert response.json() == {"pong": "yes"}


def test_http_client_config_validates() -> None:
    with pytest.raises(ValueError, match="max_keepalive"):
        HttpClientConfig(max_connections=2, max_keepalive=3)
    with pytest.raises(ValueError, match="read_timeout"):
        HttpClientConfig(read_timeout=0)


def request_id_app() -> FastAPI:
    app = service_app(title="t", distribution="textcore", description="d", settings=ServiceSettings())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    return app


def test_every_response_carries_a_request_id_the_callers_when_plausible() -> None:
    with TestClient(request_id_app(), raise_server_exceptions=False) as client:
        fresh = [client.get("/healthz").headers["x-request-id"] for _ in range(2)]
        kept = client.get("/nowhere", headers={"X-Request-ID": "gateway-7f3a.42:1"})
        oversized = client.get("/healthz", headers={"X-Request-ID": "a" * 129})
        injected = client.get("/healthz", headers={"X-Request-ID": 'x y" level=CRITICAL'})
        refused = client.post("/healthz", content=b"x" * 2_000_000)  # 413 from the body limit
    assert all(len(value) == 32 and int(value, 16) >= 0 for value in fresh)
    assert fresh[0] != fresh[1]
    assert problem(kept, 404) and kept.headers["x-request-id"] == "gateway-7f3a.42:1"
    for response in (oversized, injected):
        assert len(response.headers["x-request-id"]) == 32  # replaced, not echoed
    assert problem(refused, 413) and len(refused.headers["x-request-id"]) == 32


def test_a_500_names_its_request_id_in_the_problem_and_the_log(caplog: pytest.LogCaptureFixture) -> None:
    with (
        TestClient(request_id_app(), raise_server_exceptions=False) as client,
        caplog.at_level(logging.ERROR, logger="textcore.web.problems"),
    ):
        response = client.get("/boom", headers={"X-Request-ID": "front-end.42"})
        generated = client.get("/boom")
    assert problem(response, 500)["detail"].endswith("logged with request id front-end.42")
    assert response.headers["x-request-id"] == "front-end.42"
    assert "secret" not in response.text
    # sent from outside every middleware, yet with the security headers
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    request_id = generated.headers["x-request-id"]
    assert problem(generated, 500)["detail"].endswith(f"request id {request_id}")
    logged = [r.getMessage() for r in caplog.records if r.exc_info]
    assert logged == [
        "unhandled error on GET /boom (request front-end.42)",
        f"unhandled error on GET /boom (request {request_id})",
    ]
