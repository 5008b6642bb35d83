"""A source URL with credentials (``https://user:password@host/feed``): the monitor fetches with them, and no
listing, report, error, log line or stored story shows the password."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from finance_sentiment import create_app
from finance_sentiment.database import Database
from finance_sentiment.tables import AlertRule, Source
from tests.conftest import migrated, serve_app
from tests.finance_sentiment.test_app import CALM, PROBLEM, FeedSite, rule, settings_for

PASSWORD = "pa55-Risk-Team"
MASKED = "****"


@pytest.fixture
def private_feed() -> Iterator[tuple[FeedSite, str]]:
    """A feed that answers only with HTTP Basic credentials risk:PASSWORD; /gone answers 410."""
    feed = FeedSite(list(CALM))
    expected = "Basic " + base64.b64encode(f"risk:{PASSWORD}".encode()).decode()
    plain = feed.app()

    async def guarded(request: Request) -> Response:
        if request.headers.get("authorization") != expected:
            return Response("who are you?", status_code=401)
        return Response(feed.rss(), media_type="application/rss+xml")

    async def gone(request: Request) -> Response:
        return Response(status_code=410)

    app = Starlette(routes=[Route("/feed.xml", guarded), Route("/gone", gone), *plain.routes[1:]])
    with serve_app(app) as base_url:
        yield feed, base_url


def test_a_source_password_is_masked_everywhere_and_kept_for_fetching(
    tmp_path: Path,
    finance_model_dir: Path,
    sqlite_url: str,
    private_feed: tuple[FeedSite, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, base_url = private_feed
    host = base_url.removeprefix("http://")
    secret_url = f"http://risk:{PASSWORD}@{host}/feed.xml"
    shown = f"http://risk:{MASKED}@{host}/feed.xml"
    caplog.set_level(logging.INFO)
    with TestClient(create_app(settings_for(tmp_path, finance_model_dir, sqlite_url))) as client:
        created = client.post("/v1/sources", json={"name": "risk", "url": secret_url, "kind": "rss"})
        assert created.status_code == 201, created.text
        path = f"/v1/sources/{created.json()['id']}"
        assert created.json()["url"] == shown
        assert client.get(path).json()["url"] == shown
        assert [s["url"] for s in client.get("/v1/sources").json()] == [shown]

        run = client.post(f"{path}/run").json()  # fetched with the real password
        assert run["status"] == "ok" and run["stored"] == len(CALM), run
        urls = [d["url"] for d in client.get("/v1/documents").json()["items"]]
        assert len(urls) == len(CALM) and all(u.startswith(f"http://{host}/news/") for u in urls), urls

        # The listed (masked) URL sent back keeps the stored password: the next run still authenticates.
        assert client.patch(path, json={"url": shown, "topics": ["risk"]}).status_code == 200
        assert client.get(path).json()["url"] == shown
        assert client.post(f"{path}/run").json()["status"] == "ok"

        # The mask anywhere else is no password: refused, nothing changes.
        before = client.get(path).json()
        for url in (f"http://risk:{MASKED}@{host}/other.xml", f"http://other:{MASKED}@{host}/feed.xml"):
            refused = client.patch(path, json={"url": url})
            assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM
            assert "url" in refused.json()["detail"] and "masked" in refused.json()["detail"]
            assert client.get(path).json() == before
        again = client.post("/v1/sources", json={"name": "copy", "url": shown, "kind": "rss"})
        assert again.status_code == 422 and again.json()["errors"][0]["loc"] == ["body", "url"]

        # Failures: the error reported, kept on the source, and logged shows the mask.
        wrong = f"http://risk:{PASSWORD}@{host}/missing.xml"
        assert client.patch(path, json={"url": wrong}).status_code == 200
        failed = client.post(f"{path}/run").json()
        assert failed["status"] == "failed" and f"risk:{MASKED}@" in failed["error"], failed
        assert f"risk:{MASKED}@" in client.get(path).json()["last_error"]
        assert client.patch(path, json={"url": f"http://risk:{PASSWORD}@{host}/gone"}).status_code == 200
        gone = client.post(f"{path}/run").json()
        assert gone["status"] == "gone" and f"risk:{MASKED}@" in gone["error"], gone
        assert f"risk:{MASKED}@" in client.get(path).json()["disabled_reason"]

        assert PASSWORD not in client.get("/v1/sources").text
        assert PASSWORD not in client.get("/v1/documents").text
        assert PASSWORD not in client.get("/metrics").text
    assert PASSWORD not in caplog.text


TOKEN = "tok-7f3a9c1e5b"


def stored_url(database_url: str, table: type[Source] | type[AlertRule], row_id: int) -> str:
    """The URL a row holds in the database itself (credentials included)."""
    with migrated(Database(database_url)) as db, db.session() as session:
        row = session.get(table, row_id)
        assert isinstance(row, table), f"expected a stored row {row_id}"
        return row.url if isinstance(row, Source) else row.webhook_url


def test_a_token_as_user_name_or_query_parameter_of_a_source_is_masked_and_kept(
    tmp_path: Path, sqlite_url: str
) -> None:
    given = f"http://{TOKEN}@127.0.0.1:9/feed.xml?token={TOKEN}1&page=2"
    shown = f"http://{MASKED}@127.0.0.1:9/feed.xml?token={MASKED}&page=2"
    with TestClient(create_app(settings_for(tmp_path, None, sqlite_url))) as client:  # type: ignore[arg-type]
        created = client.post("/v1/sources", json={"name": "api", "url": given, "kind": "rss"})
        assert created.status_code == 201, created.text
        path = f"/v1/sources/{created.json()['id']}"
        assert created.json()["url"] == shown and client.get(path).json()["url"] == shown
        assert TOKEN not in client.get("/v1/sources").text
        # Sent back as listed: the stored token stays; the mask as anyone's token is refused.
        assert client.patch(path, json={"url": shown, "topics": ["risk"]}).status_code == 200
        assert stored_url(sqlite_url, Source, created.json()["id"]) == given
        for url in (f"http://{MASKED}@127.0.0.1:9/a.xml?token={TOKEN}", f"http://127.0.0.1:9/a?key={MASKED}"):
            refused = client.patch(path, json={"url": url})
            assert refused.status_code == 422 and "url" in refused.json()["detail"], refused.text
            assert TOKEN not in refused.text
        assert stored_url(sqlite_url, Source, created.json()["id"]) == given


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        (f"http://hooks:{PASSWORD}@127.0.0.1:9/hook", f"http://hooks:{MASKED}@127.0.0.1:9/hook"),
        (f"http://{TOKEN}@127.0.0.1:9/hook", f"http://{MASKED}@127.0.0.1:9/hook"),
        (
            f"http://127.0.0.1:9/hook?team=risk&token={TOKEN}&key={PASSWORD}&sig={TOKEN}2",
            f"http://127.0.0.1:9/hook?team=risk&token={MASKED}&key={MASKED}&sig={MASKED}",
        ),
    ],
)
def test_webhook_credentials_and_the_signing_secret_are_never_listed(
    tmp_path: Path, sqlite_url: str, given: str, shown: str
) -> None:
    secret = "hmac-signing-key-0042"
    with TestClient(create_app(settings_for(tmp_path, None, sqlite_url))) as client:  # type: ignore[arg-type]
        created = client.post("/v1/alert-rules", json=rule(given, secret=secret))
        assert created.status_code == 201, created.text
        path = f"/v1/alert-rules/{created.json()['id']}"
        assert created.json()["webhook_url"] == shown and client.get(path).json()["webhook_url"] == shown
        assert client.get(path).json()["has_secret"] is True
        for listing in (created.text, client.get(path).text, client.get("/v1/alert-rules").text):
            assert TOKEN not in listing and PASSWORD not in listing and secret not in listing
        # Sent back as listed: the stored credentials stay; the mask in another URL or a new rule is refused.
        patched = client.patch(path, json={"webhook_url": shown, "min_count": 4})
        assert patched.status_code == 200 and patched.json()["webhook_url"] == shown, patched.text
        assert stored_url(sqlite_url, AlertRule, created.json()["id"]) == given
        other = shown.replace("/hook", "/other")
        refused = client.patch(path, json={"webhook_url": other})
        assert refused.status_code == 422 and "webhook_url" in refused.json()["detail"], refused.text
        copy = client.post("/v1/alert-rules", json=rule(shown) | {"name": "copy"})
        assert copy.status_code == 422 and copy.json()["errors"][0]["loc"] == ["body", "webhook_url"]
        assert stored_url(sqlite_url, AlertRule, created.json()["id"]) == given


@pytest.mark.parametrize(
    "url",
    [
        f"ftp://risk:{PASSWORD}@127.0.0.1/feed.xml",  # not http(s)
        f"http://risk:{PASSWORD}@/feed.xml",  # no host
        f"http://risk:{PASSWORD}@127.0.0.1:99999/feed.xml",  # no such port
        f"https://{TOKEN}@127.0.0.1:0/feed.xml",
        f"http://127.0.0.1:99999/hook?token={TOKEN}",
    ],
)
def test_a_malformed_url_is_refused_without_quoting_its_credentials(
    tmp_path: Path, sqlite_url: str, url: str
) -> None:
    with TestClient(create_app(settings_for(tmp_path, None, sqlite_url))) as client:  # type: ignore[arg-type]
        for path, body, field in (
            ("/v1/sources", {"name": "api", "url": url, "kind": "rss"}, "url"),
            ("/v1/alert-rules", rule(url), "webhook_url"),
        ):
            refused = client.post(path, json=body)
            assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM
            (error,) = refused.json()["errors"]
            assert error["loc"] == ["body", field] and MASKED in error["msg"], error
            assert PASSWORD not in refused.text and TOKEN not in refused.text


@pytest.mark.parametrize(
    "url",
    [
        f"http://risk:{PASSWORD}@bad!host.example/feed.xml",  # a character no host name has
        f"https://{TOKEN}@{'a' * 64}.example.com/feed.xml",  # a DNS label over 63 characters
        f"http://bad_host!.example/hook?token={TOKEN}",
    ],
)
def test_a_url_the_address_guard_cannot_read_is_refused_without_quoting_its_credentials(
    tmp_path: Path, sqlite_url: str, url: str
) -> None:
    # These pass the schema's check and are refused by the address guard, whose message quoted the URL as
    # given: the password or token was in the 422's detail (and in the access log's error line).
    with TestClient(create_app(settings_for(tmp_path, None, sqlite_url))) as client:  # type: ignore[arg-type]
        for path, body, field in (
            ("/v1/sources", {"name": "api", "url": url, "kind": "rss"}, "url"),
            ("/v1/alert-rules", rule(url), "webhook_url"),
        ):
            refused = client.post(path, json=body)
            assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM
            detail = refused.json()["detail"]
            assert detail.startswith(f"{field}: expected a URL with a valid host name"), detail
            assert MASKED in detail and PASSWORD not in refused.text and TOKEN not in refused.text


def test_the_http_clients_log_lines_mask_feed_and_webhook_credentials(
    tmp_path: Path,
    finance_model_dir: Path,
    sqlite_url: str,
    private_feed: tuple[FeedSite, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # httpx logs every request's URL at INFO: a token in a feed's query string, and a webhook URL's password
    # and token (the webhook post goes through the monitor's client as the outbox worker sends it).
    _, base_url = private_feed
    host = base_url.removeprefix("http://")
    caplog.set_level(logging.INFO)
    app = create_app(settings_for(tmp_path, finance_model_dir, sqlite_url))
    with TestClient(app) as client:
        feed = f"http://risk:{PASSWORD}@{host}/feed.xml?token={TOKEN}"
        created = client.post("/v1/sources", json={"name": "risk", "url": feed, "kind": "rss"})
        assert created.status_code == 201, created.text
        assert client.post(f"/v1/sources/{created.json()['id']}/run").json()["status"] == "ok"
        hook = f"http://hooks:{PASSWORD}@{host}/hook?team=risk&sig={TOKEN}"

        async def post() -> int:
            response: httpx.Response = await app.state.monitor.http.post(hook, json={"ping": 1})
            return response.status_code

        assert client.portal is not None  # the app's event loop, running while the client is open
        assert client.portal.call(post) == 404  # reached the site; the site has no /hook
    requests = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any("/feed.xml?token=****" in line for line in requests), requests
    assert any(f"hooks:****@{host}/hook?team=risk&sig=****" in line for line in requests), requests
    assert PASSWORD not in caplog.text and TOKEN not in caplog.text
