"""The monitor end to end through its real app: a local feed server, the real fine-tuned MiniLM, a real
database and a webhook receiver, all on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from finance_sentiment import create_app
from finance_sentiment.database import Database
from finance_sentiment.settings import FetchSettings, FinanceSentimentSettings
from finance_sentiment.tables import Source
from tests.conftest import Query, QueryPairs, QueryValue, problem, serve_app
from textcore import InvalidInput
from textcore.sql import utcnow

PROBLEM = "application/problem+json"
CALM = [
    "Globex opens a new office in Berlin",
    "Hooli appoints new chief financial officer",
    "Initech reports record revenue and raises dividend",
    "Umbrella completes planned acquisition of a small lab",
    "Acme presents its products at a trade fair in Hanover",
]
BURST = [
    "Acme shares plunge 30% after fraud probe widens",
    "Acme recalls 2 million cars over brake failures",
    "Acme cuts 5,000 jobs as losses deepen",
    "Acme warns of sharp drop in quarterly profit",
    "Regulator fines Acme over accounting irregularities",
    "Acme loses its biggest customer and slashes its forecast",
]


@dataclass
class FeedSite:
    """A news site on loopback: an RSS feed of `headlines` and a robots.txt."""

    headlines: list[str] = field(default_factory=list)
    hits: int = 0

    def rss(self) -> str:
        items = "".join(
            f"<item><title>{escape(h)}</title><link>/news/{hashlib.sha1(h.encode()).hexdigest()[:10]}</link>"
            f"<pubDate>{format_datetime(utcnow())}</pubDate></item>"
            for h in self.headlines
        )
        return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>{items}</channel></rss>'

    def app(self) -> Starlette:
        async def feed(request: Request) -> Response:
            self.hits += 1
            return Response(self.rss(), media_type="application/rss+xml")

        async def robots(request: Request) -> Response:
            return Response("User-agent: *\nDisallow: /private\n", media_type="text/plain")

        return Starlette(routes=[Route("/feed.xml", feed), Route("/robots.txt", robots)])


@dataclass
class Receiver:
    """A webhook receiver that records every delivery."""

    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.deliveries.append((dict(request.headers), await request.body()))
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/hooks/risk", hook, methods=["POST"])])

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.deliveries]


@pytest.fixture
def site() -> Iterator[tuple[FeedSite, str]]:
    feed = FeedSite(list(CALM))
    with serve_app(feed.app()) as base_url:
        yield feed, base_url


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    hook = Receiver()
    with serve_app(hook.app()) as base_url:
        yield hook, base_url


def settings_for(tmp_path: Path, model: Path, database_url: str, **more: Any) -> FinanceSentimentSettings:
    config = tmp_path / "monitor.toml"
    config.write_text('[[entities]]\nname = "Acme"\nticker = "ACME"\naliases = ["Acme Corp"]\n')
    fetch = FetchSettings(allowed_networks=("127.0.0.0/8",), min_host_interval_s=0.0, backoff_base_s=0.01)
    values: dict[str, Any] = {
        "database_url": database_url,
        "model_path": model,
        "config_file": config,
        "scheduler": False,
        "fetch": fetch,
        "registry": tmp_path / "registry",
        "alert_interval_s": 2,  # the rules below use 2 s windows
    }
    return FinanceSentimentSettings(**(values | more))


def rule(webhook: str, **more: Any) -> dict[str, Any]:
    return {
        "name": "company-spike",
        "group_by": "entity",
        "window_seconds": 2,
        "baseline_windows": 10,
        "min_count": 3,
        "min_negative_share": 0.5,
        "z_threshold": 3.0,
        "repeat_interval_seconds": 3600,
        "webhook_url": webhook,
        "secret": "s3cret",
    } | more


def test_calm_then_burst_fires_once_then_resolves(
    tmp_path: Path,
    finance_model_dir: Path,
    database_url: str,
    site: tuple[FeedSite, str],
    receiver: tuple[Receiver, str],
) -> None:
    feed, feed_url = site
    hook, hook_url = receiver
    app = create_app(settings_for(tmp_path, finance_model_dir, database_url))
    with TestClient(app) as client:
        portal = client.portal  # the app's event loop, open while the client is
        assert portal is not None
        source = client.post(
            "/v1/sources", json={"name": "wire", "url": f"{feed_url}/feed.xml", "kind": "rss"}
        )
        assert source.status_code == 201, source.text
        source_id = source.json()["id"]
        assert client.post("/v1/alert-rules", json=rule(f"{hook_url}/hooks/risk")).status_code == 201

        calm = client.post(f"/v1/sources/{source_id}/run").json()
        assert calm["status"] == "ok" and calm["stored"] == len(CALM)
        portal.call(app.state.monitor.evaluate_alerts)  # the scheduler's periodic job
        assert hook.deliveries == []
        assert client.get("/v1/alerts").json() == []

        feed.headlines += BURST
        burst = client.post(f"/v1/sources/{source_id}/run").json()
        assert burst["stored"] == len(BURST) and burst["duplicates"] == len(CALM)
        portal.call(app.state.monitor.evaluate_alerts)
        firing = client.get("/v1/alerts", params={"status": "firing"}).json()
        assert len(firing) == 1 and firing[0]["labels"]["entity"] == "Acme"
        assert len(hook.deliveries) == 1
        headers, body = hook.deliveries[0]
        expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert headers["x-signature-256"] == expected
        payload = json.loads(body)
        assert payload["version"] == "4" and payload["status"] == "firing"
        alert = payload["alerts"][0]
        assert alert["labels"]["entity"] == "Acme" and alert["fingerprint"] == firing[0]["fingerprint"]
        assert f"{feed_url}/news/" in alert["annotations"]["top_negative"]

        assert client.post(f"/v1/sources/{source_id}/run").json()["stored"] == 0  # nothing new, no resend
        portal.call(app.state.monitor.evaluate_alerts)
        assert len(hook.deliveries) == 1

        time.sleep(2.2)  # the burst leaves the 2 s window
        portal.call(app.state.monitor.evaluate_alerts)
        statuses = [b["status"] for b in hook.bodies()]
        assert statuses == ["firing", "resolved"]
        assert client.get("/v1/alerts").json()[0]["status"] == "resolved"


def test_a_manual_run_on_an_api_replica_judges_the_rules(
    tmp_path: Path,
    finance_model_dir: Path,
    database_url: str,
    site: tuple[FeedSite, str],
    receiver: tuple[Receiver, str],
) -> None:
    # serve --no-scheduler with no worker: the run asked for is the only one, so it must judge the rules
    feed, feed_url = site
    hook, hook_url = receiver
    feed.headlines += BURST
    with TestClient(create_app(settings_for(tmp_path, finance_model_dir, database_url))) as client:
        source_id = client.post(
            "/v1/sources", json={"name": "wire", "url": f"{feed_url}/feed.xml", "kind": "rss"}
        ).json()["id"]
        webhook = f"{hook_url}/hooks/risk"
        assert client.post("/v1/alert-rules", json=rule(webhook, window_seconds=60)).status_code == 201

        assert client.post(f"/v1/sources/{source_id}/run").json()["stored"] == len(CALM + BURST)
        firing = client.get("/v1/alerts", params={"status": "firing"}).json()
        assert [alert["labels"]["entity"] for alert in firing] == ["Acme"]
        assert [body["status"] for body in hook.bodies()] == ["firing"]


def test_documents_trends_and_classify(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str, site: tuple[FeedSite, str]
) -> None:
    feed, feed_url = site
    feed.headlines += BURST
    with TestClient(create_app(settings_for(tmp_path, finance_model_dir, sqlite_url))) as client:
        assert client.get("/readyz").json()["checks"]["database"] == "sqlite"
        source_id = client.post(
            "/v1/sources",
            json={"name": "wire", "url": f"{feed_url}/feed.xml", "kind": "rss", "topics": ["wire"]},
        ).json()["id"]
        client.post(f"/v1/sources/{source_id}/run")

        page = client.get("/v1/documents", params={"entity": "Acme", "label": "negative", "limit": 4}).json()
        assert len(page["items"]) == 4 and page["next_cursor"]
        rest = client.get(
            "/v1/documents", params={"entity": "Acme", "label": "negative", "cursor": page["next_cursor"]}
        )
        titles = {d["title"] for d in page["items"] + rest.json()["items"]}
        assert titles == set(BURST)
        # a label in another case finds the same stories, as topic and entity do
        shouted = client.get(
            "/v1/documents", params={"entity": "Acme", "label": "NEGATIVE", "limit": 4}
        ).json()
        assert [d["id"] for d in shouted["items"]] == [d["id"] for d in page["items"]]
        first = page["items"][0]
        assert "wire" in first["topics"] and first["sentiment"] == pytest.approx(
            first["scores"]["positive"] - first["scores"]["negative"], abs=1e-5
        )

        series = client.get("/v1/trends", params={"kind": "entity", "bucket": "15m"}).json()
        acme = next(s for s in series if s["name"] == "Acme")
        assert sum(p["count"] for p in acme["points"]) == len(BURST) + 1  # the calm trade-fair story too
        chart = client.get("/v1/trends/chart.png", params={"kind": "entity", "name": "Acme"})
        assert chart.headers["content-type"] == "image/png" and chart.content.startswith(b"\x89PNG")

        classified = client.post("/v1/classify", json={"texts": [BURST[0], CALM[2]]}).json()
        assert [c["label"] for c in classified] == ["negative", "positive"]
        assert -1 <= classified[0]["sentiment"] < 0 < classified[1]["sentiment"] <= 1


def test_a_query_parameter_an_endpoint_does_not_take_or_one_sent_twice_is_a_422_naming_it(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str, site: tuple[FeedSite, str]
) -> None:
    """`GET /v1/documents?lable=negative` (a typo) answered every story unfiltered, a risk analyst's
    negative news mixed with the rest without a word; `?label=negative&label=positive` gave the positive
    ones, and `DELETE /v1/sources/{id}?dry_run=true` deleted. Now each is a problem+json 422 whose `errors`
    name the parameter, and nothing is changed; the documented filters, cursor pages and a repeated `name`
    of the trends (a list) work as before."""
    feed, feed_url = site
    feed.headlines += BURST
    with TestClient(create_app(settings_for(tmp_path, finance_model_dir, sqlite_url))) as client:
        source = {"name": "wire", "url": f"{feed_url}/feed.xml", "kind": "rss"}
        source_id = client.post("/v1/sources", json=source).json()["id"]
        client.post(f"/v1/sources/{source_id}/run")
        unknown: list[tuple[str, str, QueryPairs, list[str]]] = [
            ("GET", "/v1/documents", [("lable", "negative")], ["lable"]),
            (
                "GET",
                "/v1/documents",
                [("entity", "Acme"), ("sentiment", "neg"), ("sort", "asc")],
                ["sentiment", "sort"],
            ),
            ("GET", "/v1/alerts", [("staus", "firing")], ["staus"]),
            ("GET", f"/v1/sources/{source_id}", [("fields", "url")], ["fields"]),
            ("DELETE", f"/v1/sources/{source_id}", [("dry_run", "true")], ["dry_run"]),
        ]
        for method, path, params, names in unknown:
            errors = problem(client.request(method, path, params=params), 422)["errors"]
            assert [(e["loc"], e["type"]) for e in errors] == [
                (["query", n], "extra_forbidden") for n in names
            ]
        twice: list[tuple[str, QueryPairs, dict[str, int]]] = [
            ("/v1/documents", [("label", "negative"), ("label", "positive")], {"label": 2}),
            ("/v1/documents", [("limit", "2"), ("entity", "Acme"), ("limit", "500")], {"limit": 2}),
            ("/v1/trends", [("bucket", "1h"), ("bucket", "1d"), ("name", "Acme")], {"bucket": 2}),
        ]
        for path, params, counts in twice:
            errors = problem(client.get(path, params=params), 422)["errors"]
            assert [(e["loc"], e["msg"], e["type"]) for e in errors] == [
                (["query", name], f"expected one value, found {n}", "repeated") for name, n in counts.items()
            ]
        assert client.get(f"/v1/sources/{source_id}").status_code == 200  # not deleted

        negative: dict[str, QueryValue] = {"entity": "Acme", "label": "negative", "limit": 4}
        page = client.get("/v1/documents", params=negative).json()
        rest = client.get("/v1/documents", params=negative | {"cursor": page["next_cursor"]}).json()
        stories = page["items"] + rest["items"]
        assert {d["title"] for d in stories} == set(BURST) and {d["label"] for d in stories} == {"negative"}
        series = client.get(
            "/v1/trends", params=[("kind", "entity"), ("name", "Acme"), ("name", "ACME Corp")]
        )
        assert series.status_code == 200 and [s["name"] for s in series.json()] == ["Acme"]
        both = client.get("/v1/trends", params=[("kind", "topic"), ("name", "a"), ("name", "b")])
        assert both.status_code == 200 and [s["name"] for s in both.json()] == ["a", "b"]


def test_the_app_starts_again_in_the_same_process_and_its_counters_count_on(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str, site: tuple[FeedSite, str]
) -> None:
    # Each start registered the monitor's counters on the app's registry again: a second start of the
    # same app (a test client entered twice, an in-process server restarted) failed with "Duplicated
    # timeseries in CollectorRegistry".
    _, feed_url = site  # the five calm headlines
    app = create_app(settings_for(tmp_path, finance_model_dir, sqlite_url))
    with TestClient(app) as client:
        source = {"name": "wire", "url": f"{feed_url}/feed.xml", "kind": "rss"}
        source_id = client.post("/v1/sources", json=source).json()["id"]
        assert client.post(f"/v1/sources/{source_id}/run").json()["stored"] == len(CALM)
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        client.post(f"/v1/sources/{source_id}/run")
        metrics = client.get("/metrics").text
    assert "finance_documents_stored_total 5.0" in metrics  # the first start's, kept
    assert "finance_documents_duplicate_total 5.0" in metrics
    assert 'finance_source_runs_total{status="ok"} 2.0' in metrics
    with TestClient(create_app(settings_for(tmp_path, finance_model_dir, sqlite_url))) as client:
        assert "finance_documents_stored_total 0.0" in client.get("/metrics").text  # another app's own


def test_bad_input_is_refused_and_changes_nothing(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    with TestClient(create_app(settings_for(tmp_path, finance_model_dir, sqlite_url))) as client:
        cases = [
            ("/v1/sources", {"name": "x", "url": "ftp://example.com/feed", "kind": "rss"}),
            ("/v1/sources", {"name": "x", "url": "http://127.0.0.1/f", "kind": "podcast"}),
            ("/v1/sources", {"name": "x", "url": "http://127.0.0.1/f", "kind": "rss", "cron": "99 * * * *"}),
            ("/v1/alert-rules", {"name": "r", "webhook_url": "http://127.0.0.1/h", "min_negative_share": 2}),
            ("/v1/sources", {"name": "x", "url": "http://127.0.0.1:99999/feed", "kind": "rss"}),
            ("/v1/alert-rules", rule("http://127.0.0.1:99999/hook")),
            ("/v1/classify", {"texts": []}),
            ("/v1/classify", {"texts": ["x" * 10_001]}),
        ]
        for path, body in cases:
            response = client.post(path, json=body)
            assert response.status_code == 422, (path, body, response.text)
            assert response.headers["content-type"] == PROBLEM
        assert client.get("/v1/sources/999").status_code == 404
        too_big = str(2**63)  # no row id can be this large
        for path in ("/v1/sources/", "/v1/documents/", "/v1/alert-rules/"):
            assert client.get(path + too_big).status_code == 422, path
        assert client.post(f"/v1/sources/{too_big}/run").status_code == 422
        early = "0001-01-01T00:00:00+05:00"  # before year 1 in UTC
        bad_queries = [
            ("/v1/documents", {"cursor": "not-a-cursor"}),
            ("/v1/documents", {"source_id": too_big}),
            ("/v1/documents", {"since": early}),
            ("/v1/documents", {"until": "9999-12-31T23:59:59-05:00"}),
            ("/v1/alerts", {"rule_id": too_big}),
            ("/v1/trends", {"bucket": "5m"}),
            ("/v1/trends", {"since": early}),
            ("/v1/trends", {"until": "0001-01-02T00:00:00Z"}),
            ("/v1/trends", {"kind": "topic", "name": "n" * 201}),
        ]
        for path, params in bad_queries:
            response = client.get(path, params=params)
            assert response.status_code == 422, (path, params, response.text)
            assert response.headers["content-type"] == PROBLEM
        assert client.get("/v1/sources").json() == [] and client.get("/v1/alert-rules").json() == []


def test_a_rule_window_shorter_than_the_evaluation_interval_is_refused(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    # Each evaluation judges the window ending at its own time: with a 10 s window evaluated every 30 s,
    # two thirds of the stories fell in no judged window, so a burst among them raised nothing.
    settings = settings_for(tmp_path, finance_model_dir, sqlite_url, alert_interval_s=30)
    hook = "http://127.0.0.1:9/hook"
    with TestClient(create_app(settings)) as client:
        short = client.post("/v1/alert-rules", json=rule(hook, window_seconds=10))
        assert short.status_code == 422, short.text
        assert short.headers["content-type"] == PROBLEM
        assert "FIN_ALERT_INTERVAL_S = 30 s), found 10" in short.json()["detail"]
        assert client.get("/v1/alert-rules").json() == []
        created = client.post("/v1/alert-rules", json=rule(hook, window_seconds=30))
        assert created.status_code == 201, created.text
        path = f"/v1/alert-rules/{created.json()['id']}"
        assert client.patch(path, json={"window_seconds": 29}).status_code == 422
        assert client.get(path).json()["window_seconds"] == 30
        # A disabled rule is never judged: it may keep a short window (so a rule can always be switched off).
        off = client.patch(path, json={"enabled": False, "window_seconds": 5})
        assert off.status_code == 200, off.text
        assert client.patch(path, json={"enabled": True}).status_code == 422
    assert settings.config_file is not None
    with settings.config_file.open("a") as config:
        config.write(
            '[[alert_rules]]\nname = "fast"\nwindow_seconds = 10\nwebhook_url = "http://127.0.0.1:9/hook"\n'
        )
    refused = r"monitor\.toml'.*'fast'.*found 10"
    with pytest.raises(InvalidInput, match=refused), TestClient(create_app(settings)):
        pass


def test_ssrf_guard_refuses_private_sources_unless_allowed(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    settings = settings_for(tmp_path, finance_model_dir, sqlite_url, fetch=FetchSettings())
    with TestClient(create_app(settings)) as client:
        for url in ("http://127.0.0.1:9/feed", "http://169.254.169.254/latest/meta-data", "http://10.1.2.3/"):
            response = client.post("/v1/sources", json={"name": "x", "url": url, "kind": "rss"})
            assert response.status_code == 422, response.text  # the operator's input, not an upstream fault
            assert "public addresses or allowed_networks" in response.json()["detail"], response.text
            # A webhook is a request the monitor makes too: the same guard applies.
            response = client.post("/v1/alert-rules", json=rule(url.replace("/feed", "/hook")))
            assert response.status_code == 422, response.text
            assert "webhook_url" in response.json()["detail"], response.text
        assert client.get("/v1/sources").json() == [] and client.get("/v1/alert-rules").json() == []


def test_a_config_file_url_on_a_blocked_address_stops_the_start(tmp_path: Path, sqlite_url: str) -> None:
    settings = settings_for(tmp_path, tmp_path, sqlite_url, model_path=None, fetch=FetchSettings())
    assert settings.config_file is not None
    settings.config_file.write_text('[[alert_rules]]\nname = "banks"\nwebhook_url = "http://127.0.0.1:9/h"\n')
    refused = r"alert_rules\[0\]\.webhook_url of 'banks' is refused: expected http://127.0.0.1:9/h to resolve"
    with pytest.raises(InvalidInput, match=refused), TestClient(create_app(settings)):
        pass
    allowed = settings.model_copy(update={"fetch": FetchSettings(allowed_networks=("127.0.0.0/8",))})
    with TestClient(create_app(allowed)) as client:
        assert [rule["name"] for rule in client.get("/v1/alert-rules").json()] == ["banks"]


@contextmanager
def scheduled_api(tmp_path: Path, model_dir: Path, database_url: str) -> Iterator[httpx.Client]:
    """The served app with its real scheduler, and a client of it."""
    settings = settings_for(tmp_path, model_dir, database_url, scheduler=True)
    with (
        serve_app(create_app(settings)) as api,
        httpx.Client(base_url=api, trust_env=False, timeout=30) as http,
    ):
        yield http


def add_feed(http: httpx.Client | TestClient, feed_url: str, interval_seconds: int) -> int:
    body = {
        "name": "wire",
        "url": f"{feed_url}/feed.xml",
        "kind": "rss",
        "interval_seconds": interval_seconds,
    }
    created = http.post("/v1/sources", json=body)
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def wait_for_hits(feed: FeedSite, hits: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and feed.hits < hits:
        time.sleep(0.1)


def test_the_real_scheduler_runs_sources(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str, site: tuple[FeedSite, str]
) -> None:
    feed, feed_url = site
    with scheduled_api(tmp_path, finance_model_dir, sqlite_url) as http:
        source_id = add_feed(http, feed_url, 1)
        wait_for_hits(feed, 2)
        assert feed.hits >= 2  # the first run at once, then on the interval
        assert len(http.get("/v1/documents").json()["items"]) == len(CALM)
        source = http.get(f"/v1/sources/{source_id}").json()
        assert source["last_status"] in ("ok", "not_modified") and source["consecutive_failures"] == 0
        assert f"finance_documents_stored_total {float(len(CALM))}" in http.get("/metrics").text


def test_a_new_schedule_takes_effect_without_a_restart(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str, site: tuple[FeedSite, str]
) -> None:
    feed, feed_url = site
    with scheduled_api(tmp_path, finance_model_dir, sqlite_url) as http:
        source_id = add_feed(http, feed_url, 3600)
        wait_for_hits(feed, 1)
        assert feed.hits == 1  # the first run at once; the next is an hour away
        patched = http.patch(f"/v1/sources/{source_id}", json={"interval_seconds": 1})
        assert patched.status_code == 200, patched.text
        wait_for_hits(feed, 3)
        assert feed.hits >= 3  # the source now runs every second instead of never again


def test_a_scheduled_source_deleted_through_another_replica_is_dropped_quietly(
    tmp_path: Path,
    finance_model_dir: Path,
    sqlite_url: str,
    site: tuple[FeedSite, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A worker keeps the job of a source an API replica deleted until its next sync: each run in between
    # raised NotFound, which the scheduler logged as an error with a traceback, and the job stayed.
    feed, feed_url = site
    caplog.set_level(logging.INFO)
    worker_settings = settings_for(
        tmp_path, finance_model_dir, sqlite_url, scheduler=True, sync_interval_s=3600
    )
    worker = create_app(worker_settings)
    with TestClient(create_app(settings_for(tmp_path, finance_model_dir, sqlite_url))) as replica:
        source_id = add_feed(replica, feed_url, 1)
        with serve_app(worker):
            wait_for_hits(feed, 1)  # the worker's first run of the source
            scheduler = worker.state.scheduler
            assert source_id in scheduler.source_jobs
            assert replica.delete(f"/v1/sources/{source_id}").status_code == 204
            deadline = time.monotonic() + 20  # its next run is due within a second; the sync an hour away
            while time.monotonic() < deadline and source_id in scheduler.source_jobs:
                time.sleep(0.1)
            assert source_id not in scheduler.source_jobs
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert tracebacks == [], [record.getMessage() for record in tracebacks]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    scheduling = [r.getMessage() for r in caplog.records if r.name == "finance_sentiment.scheduling"]
    dropped = [message for message in scheduling if "deleted" in message]
    assert dropped == [f"source {source_id}: deleted since the scheduler last read the sources; job dropped"]


def test_a_start_with_many_sources_due_at_once_keeps_their_fetches_within_the_http_pool(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    # Every source's first run is due at start. Unbounded, 100 sources on slow sites held more requests
    # than the client's 20 pooled connections, and runs that waited over 5 s for one failed (PoolTimeout).
    sources, in_flight, most = 30, 0, 0

    async def feed(request: Request) -> Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.5)  # a slow site
        in_flight -= 1
        name = request.path_params["name"]
        return Response(FeedSite([f"Acme story {name}"]).rss(), media_type="application/rss+xml")

    settings = settings_for(tmp_path, finance_model_dir, sqlite_url, scheduler=True)
    assert settings.config_file is not None and settings.max_concurrent_runs < sources
    with serve_app(Starlette(routes=[Route("/feed/{name}.xml", feed)])) as site:
        entries = "".join(
            f'[[sources]]\nname = "s{i}"\nurl = "{site}/feed/{i}.xml"\nkind = "rss"\n' for i in range(sources)
        )
        settings.config_file.write_text(entries)
        with serve_app(create_app(settings)) as api, httpx.Client(base_url=api, timeout=30) as http:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                rows = http.get("/v1/sources").json()
                if all(row["last_run_at"] for row in rows):
                    break
                time.sleep(0.2)
    assert [row["last_status"] for row in rows] == ["ok"] * sources
    assert 1 < most <= settings.max_concurrent_runs


def test_a_control_character_in_a_filter_is_refused_alike_on_both_databases(
    tmp_path: Path, finance_model_dir: Path, database_url: str
) -> None:
    # SQLite answered an empty page for a NUL in a topic, entity, label or trend name; PostgreSQL refused the
    # query itself, with a generic message naming no parameter.
    with TestClient(create_app(settings_for(tmp_path, finance_model_dir, database_url))) as client:
        cases: list[tuple[str, Query, str]] = [
            ("/v1/documents", {"topic": "rates\x00"}, "topic"),
            ("/v1/documents", {"entity": "Ac\x00me"}, "entity"),
            ("/v1/documents", {"label": "negative\x00"}, "label"),
            ("/v1/trends", {"kind": "topic", "name": ["rates", "ra\x00tes"]}, "name"),
            ("/v1/trends/chart.png", {"kind": "entity", "name": "Acme\x1b"}, "name"),
        ]
        for path, params, field_name in cases:
            response = client.get(path, params=params)
            assert response.status_code == 422, (path, params, response.text)
            assert response.headers["content-type"] == PROBLEM
            assert response.json()["detail"].startswith(f"{field_name}: expected text without control"), (
                response.text
            )
        assert client.get("/v1/documents", params={"topic": "rates\tbonds"}).status_code == 200


@pytest.mark.parametrize(
    "field",
    [
        "window_seconds",
        "baseline_windows",
        "min_count",
        "min_negative_share",
        "z_threshold",
        "min_sentiment_drop",
        "repeat_interval_seconds",
    ],
)
def test_a_boolean_is_no_number_of_an_alert_rule(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str, field: str
) -> None:
    # Pydantic's lax mode read `true` as 1: a repeat every second, a negative share of 1, a window of 1 s.
    settings = settings_for(tmp_path, finance_model_dir, sqlite_url, alert_interval_s=1)
    with TestClient(create_app(settings)) as client:
        for value in (True, "60"):
            response = client.post("/v1/alert-rules", json=rule("http://127.0.0.1:9/hook") | {field: value})
            assert response.status_code == 422, (value, response.text)
            assert response.headers["content-type"] == PROBLEM
            assert response.json()["errors"][0]["loc"] == ["body", field]
        assert client.get("/v1/alert-rules").json() == []
        created = client.post("/v1/alert-rules", json=rule("http://127.0.0.1:9/hook"))
        assert created.status_code == 201, created.text
        path = f"/v1/alert-rules/{created.json()['id']}"
        before = client.get(path).json()
        assert client.patch(path, json={field: True}).status_code == 422
        assert client.get(path).json() == before


def test_a_boolean_is_no_fetch_interval(tmp_path: Path, finance_model_dir: Path, sqlite_url: str) -> None:
    # Pydantic's lax mode read `"interval_seconds": true` as 1: the source was fetched every second.
    with TestClient(create_app(settings_for(tmp_path, finance_model_dir, sqlite_url))) as client:
        feed = {"name": "wire", "url": "http://127.0.0.1:9/feed.xml", "kind": "rss"}
        for value in (True, False, "60"):
            response = client.post("/v1/sources", json=feed | {"interval_seconds": value})
            assert response.status_code == 422, (value, response.text)
            assert response.headers["content-type"] == PROBLEM
            assert response.json()["errors"][0]["loc"] == ["body", "interval_seconds"]
        assert client.get("/v1/sources").json() == []
        created = client.post("/v1/sources", json=feed | {"interval_seconds": 60})
        assert created.status_code == 201, created.text
        path = f"/v1/sources/{created.json()['id']}"
        assert client.patch(path, json={"interval_seconds": True}).status_code == 422
        assert client.get(path).json()["interval_seconds"] == 60


def test_a_source_stored_with_a_cron_that_never_fires_is_warned_of_at_start_and_in_its_listing(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A source stored with '0 0 31 2 *' before such a cron was refused was never fetched, and nothing said so.
    settings = settings_for(tmp_path, finance_model_dir, sqlite_url)
    body = {"name": "wire", "url": "http://127.0.0.1:9/feed.xml", "kind": "rss", "cron": "*/15 * * * *"}
    with TestClient(create_app(settings)) as client:
        source_id = client.post("/v1/sources", json=body).json()["id"]
    with Database(sqlite_url).session() as session:
        session.execute(update(Source).values(cron="0 0 31 2 *"))
    expected = (
        "cron: '0 0 31 2 *' names a date that never exists (no month it names has that day), so the "
        "scheduler never fetches this source; set a cron that fires, or interval_seconds"
    )
    with (
        caplog.at_level(logging.WARNING, logger="finance_sentiment"),
        TestClient(create_app(settings)) as client,
    ):
        assert [r.getMessage() for r in caplog.records if "cron" in r.getMessage()] == [
            f"source 'wire': {expected}"
        ]
        (listed,) = client.get("/v1/sources").json()
        assert (listed["cron"], listed["warnings"]) == ("0 0 31 2 *", [expected])
        assert client.get(f"/v1/sources/{source_id}").json()["warnings"] == [expected]
        # a change that leaves the schedule alone is not refused for it; a new schedule ends the warning
        disabled = client.patch(f"/v1/sources/{source_id}", json={"enabled": False})
        assert disabled.status_code == 200, disabled.text
        assert (disabled.json()["cron"], disabled.json()["warnings"]) == ("0 0 31 2 *", [expected])
        fixed = client.patch(f"/v1/sources/{source_id}", json={"cron": "0 6 * * *"}).json()
        assert (fixed["cron"], fixed["warnings"]) == ("0 6 * * *", [])
