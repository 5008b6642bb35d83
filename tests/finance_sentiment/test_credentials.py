"""A source URL with credentials (``https://user:password@host/feed``): the monitor fetches with them, and no
listing, report, error, log line or stored story shows the password."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from finance_sentiment import create_app
from tests.conftest import serve_app
from tests.finance_sentiment.test_app import CALM, PROBLEM, FeedSite, settings_for

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
