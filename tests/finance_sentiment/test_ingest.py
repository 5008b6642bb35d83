"""The ingest pipeline through `open_monitor`: loopback sites, the real fine-tuned MiniLM, a real database.

Each test serves a small site whose pages it sets and changes (`Site`), runs sources with `Monitor.run_source`
and checks the reports, the stored documents and the sources' fetch state.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from finance_sentiment.fetching import BlockedAddress
from finance_sentiment.monitor import Monitor, open_monitor
from finance_sentiment.schemas import SourceIn, SourceKind, SourcePatch
from finance_sentiment.settings import FetchSettings, FinanceSentimentSettings
from finance_sentiment.sources import create_source, delete_source, update_source
from finance_sentiment.tables import Document, DocumentTag, Source
from tests.conftest import serve_app
from textcore import ModelRegistry

RSS = "application/rss+xml"
HTML = "text/html; charset=utf-8"
STORIES = [
    ("Initech reports record revenue and raises its dividend", "Sales beat every forecast."),
    ("Acme shares plunge after fraud probe widens", "Investors fled the stock on Monday."),
    ("Globex opens a new office in Berlin", "The office will employ 40 people."),
]


@dataclass
class Page:
    """One resource of a `Site`: a body, or a bare status (with a Location for redirects)."""

    body: bytes = b""
    media_type: str = HTML
    status: int = 200
    etag: str | None = None
    location: str | None = None
    hang: bool = False  # accept the request and never answer it


@dataclass
class Site:
    """A loopback web site whose pages the test sets; it records requests and honours If-None-Match."""

    pages: dict[str, Page] = field(default_factory=dict)
    robots: str = "User-agent: *\nDisallow: /private\n"
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def hits(self, path: str) -> int:
        return sum(seen == path for seen, _ in self.requests)

    def headers_of(self, path: str) -> list[dict[str, str]]:
        return [headers for seen, headers in self.requests if seen == path]

    def app(self) -> Starlette:
        async def serve(request: Request) -> Response:
            path = request.url.path
            self.requests.append((path, dict(request.headers)))
            if path == "/robots.txt":
                return Response(self.robots, media_type="text/plain")
            page = self.pages.get(path)
            if page is None:
                return Response("not found", status_code=404)
            if page.hang:
                while (await request.receive())["type"] != "http.disconnect":
                    pass
            headers = {"ETag": page.etag} if page.etag else {}
            if page.etag and request.headers.get("if-none-match") == page.etag:
                return Response(status_code=304, headers=headers)
            if page.location:
                return Response(status_code=page.status, headers={"Location": page.location})
            return Response(page.body, status_code=page.status, media_type=page.media_type, headers=headers)

        return Starlette(routes=[Route("/{path:path}", serve)])


def rss(items: list[tuple[str, str, str]]) -> bytes:
    """An RSS 2.0 feed of (link, title, description) items."""
    body = "".join(
        f"<item><title>{escape(title)}</title><link>{escape(link)}</link>"
        f"<description>{escape(text)}</description></item>"
        for link, title, text in items
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>{body}</channel></rss>'.encode()
    )


def feed_of(stories: list[tuple[str, str]], prefix: str = "/news") -> bytes:
    return rss([(f"{prefix}/{i}", title, text) for i, (title, text) in enumerate(stories)])


def article(title: str, lead: str) -> bytes:
    """A realistic article page: navigation, a headline, several paragraphs and a footer."""
    paragraphs = "".join(
        f"<p>{lead} {detail}</p>"
        for detail in (
            "Analysts said the figures came in well ahead of their estimates for the period.",
            "The company will publish its full annual report at the end of next month.",
            "Its shares have moved sharply since the start of the year on heavy trading volumes.",
        )
    )
    return (
        f"<html><head><title>{title}</title></head><body><nav><a href='/'>Home</a> "
        f"<a href='/markets'>Markets</a></nav><article><h1>{title}</h1>{paragraphs}</article>"
        "<footer>Copyright Example News</footer></body></html>"
    ).encode()


NAV_ONLY = (
    b"<html><head><title>Markets</title></head><body><nav><ul><li><a href='/'>Home</a></li>"
    b"<li><a href='/markets'>Markets</a></li><li><a href='/about'>About us</a></li></ul></nav></body></html>"
)


def settings(tmp_path: Path, database_url: str, model: Path | None, **more: Any) -> FinanceSentimentSettings:
    fetch = FetchSettings(
        allowed_networks=("127.0.0.0/8",), min_host_interval_s=0.0, backoff_base_s=0.01, max_retries=1
    )
    values: dict[str, Any] = {
        "database_url": database_url,
        "model_path": model,
        "scheduler": False,
        "fetch": fetch,
        "registry": tmp_path / "registry",
    }
    return FinanceSentimentSettings(**(values | more))


def add_source(monitor: Monitor, name: str, url: str, kind: SourceKind = "rss", **more: Any) -> int:
    with monitor.db.session() as session:
        return create_source(session, SourceIn(name=name, url=url, kind=kind, **more)).id


def source_row(monitor: Monitor, source_id: int) -> Source:
    with monitor.db.session() as session:
        row = session.get(Source, source_id)
        assert row is not None
        return row


def documents(monitor: Monitor) -> list[Document]:
    with monitor.db.session() as session:
        return list(session.scalars(select(Document).order_by(Document.id)))


async def test_etag_then_not_modified(tmp_path: Path, finance_model_dir: Path, sqlite_url: str) -> None:
    web = Site({"/feed.xml": Page(feed_of(STORIES), RSS, etag='"v1"')})
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, finance_model_dir)) as monitor:
            source_id = add_source(monitor, "wire", f"{base}/feed.xml")
            first = await monitor.run_source(source_id)
            assert (first.status, first.items, first.stored) == ("ok", 3, 3)
            assert source_row(monitor, source_id).etag == '"v1"'

            second = await monitor.run_source(source_id)
            assert second.status == "not_modified" and second.stored == second.items == 0
            assert web.headers_of("/feed.xml")[1]["if-none-match"] == '"v1"'
            assert "if-none-match" not in web.headers_of("/feed.xml")[0]
            row = source_row(monitor, source_id)
            assert row.last_status == "not_modified" and row.etag == '"v1"' and row.consecutive_failures == 0
            assert len(documents(monitor)) == 3


async def test_the_monitors_client_checks_addresses_when_it_connects(tmp_path: Path, sqlite_url: str) -> None:
    # Sources and webhooks share this client: past the fetcher's own check, a connection to an address
    # outside allowed_networks is refused too (a name that resolved elsewhere a moment earlier included).
    web = Site({"/feed.xml": Page(feed_of(STORIES), RSS)})
    fetch = FetchSettings(allowed_networks=("10.0.0.0/8",))
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, None, fetch=fetch)) as monitor:
            with pytest.raises(BlockedAddress, match=r"when connecting, found loopback address 127\.0\.0\.1"):
                await monitor.http.get(f"{base}/feed.xml")
    assert web.hits("/feed.xml") == 0


async def test_the_same_story_in_two_feeds_is_stored_once(
    tmp_path: Path, finance_model_dir: Path, database_url: str
) -> None:
    (title, text), other = STORIES[0], STORIES[1]
    web = Site()
    # The first feed carries one story twice (tracking parameters only); the second carries the same link
    # again, and the same words under a different URL.
    web.pages["/a.xml"] = Page(
        rss([("/news/1", title, text), ("/news/1?utm_source=rss&utm_medium=feed", title, text)]), RSS
    )
    web.pages["/b.xml"] = Page(
        rss(
            [
                ("/news/1?utm_campaign=b#comments", title, text),
                ("/mirror/77?utm_source=partner", f"  {title.upper()} ", text),
                ("/news/2", *other),
            ]
        ),
        RSS,
    )
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, database_url, finance_model_dir)) as monitor:
            first = await monitor.run_source(add_source(monitor, "a", f"{base}/a.xml"))
            assert (first.items, first.stored, first.duplicates) == (2, 1, 1)
            second = await monitor.run_source(add_source(monitor, "b", f"{base}/b.xml"))
            assert (second.items, second.stored, second.duplicates) == (3, 1, 2)
            stored = documents(monitor)
            assert [d.url for d in stored] == [f"{base}/news/1", f"{base}/news/2"]
            assert stored[0].title == title


async def test_headlines_are_stored_as_plain_text_whatever_control_characters_a_feed_carries(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    # One entry whose description held a control character inside markup failed the whole feed's run; one
    # whose title held one was stored with its entities as written ("AT&amp;T", "&#8217;").
    entries = [("/news/0", "AT&amp;T\x0b shares fall", "<p>AT&amp;T\x1b cut its outlook.</p>")]
    entries += [(f"/news/{i}", title, text) for i, (title, text) in enumerate(STORIES, start=1)]
    web = Site({"/feed.xml": Page(rss(entries), RSS)})
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, finance_model_dir)) as monitor:
            report = await monitor.run_source(add_source(monitor, "wire", f"{base}/feed.xml"))
            assert (report.status, report.stored) == ("ok", len(entries)), report.error
            first = documents(monitor)[0]
    assert (first.title, first.text) == ("AT&T shares fall", "AT&T cut its outlook.")


async def test_parallel_runs_of_overlapping_feeds_store_each_story_once(
    tmp_path: Path, finance_model_dir: Path, database_url: str
) -> None:
    web = Site({f"/{name}.xml": Page(feed_of(STORIES), RSS) for name in ("a", "b", "c")})
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, database_url, finance_model_dir)) as monitor:
            for name in ("a", "b", "c"):
                add_source(monitor, name, f"{base}/{name}.xml")
            reports = await monitor.run_all()
            assert [r.status for r in reports] == ["ok"] * 3
            assert sum(r.stored for r in reports) == len(STORIES)
            assert sum(r.duplicates for r in reports) == 2 * len(STORIES)
            assert len(documents(monitor)) == len(STORIES)


async def test_malformed_feed_fails_keeps_no_validators_and_loses_nothing(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    feed = Page(b"\x00\x01garbage \xff\xfe <<<not a feed", RSS, etag='"broken"')
    web = Site({"/feed.xml": feed})
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, finance_model_dir)) as monitor:
            source_id = add_source(monitor, "wire", f"{base}/feed.xml")
            failed = await monitor.run_source(source_id)
            assert failed.status == "failed" and failed.error and "feed" in failed.error
            row = source_row(monitor, source_id)
            assert row.consecutive_failures == 1 and row.last_status == "failed"
            assert row.etag is None and row.last_error == failed.error and row.enabled

            # Fixed in place under the same ETag: a saved validator would have got a 304 and lost the items.
            feed.body = feed_of(STORIES)
            fixed = await monitor.run_source(source_id)
            assert "if-none-match" not in web.headers_of("/feed.xml")[1]
            assert (fixed.status, fixed.stored) == ("ok", len(STORIES))
            row = source_row(monitor, source_id)
            assert row.consecutive_failures == 0 and row.last_error is None and row.etag == '"broken"'


async def test_a_source_that_never_answers_fails_at_the_fetch_deadline_and_runs_again_next_time(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    feed = Page(feed_of(STORIES), RSS, hang=True)
    web = Site({"/feed.xml": feed})
    fetch = FetchSettings(
        allowed_networks=("127.0.0.0/8",),
        min_host_interval_s=0.0,
        backoff_base_s=0.0,
        timeout_s=0.4,
        deadline_s=1.0,
        max_retries=10,
    )
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, finance_model_dir, fetch=fetch)) as monitor:
            source_id = add_source(monitor, "wire", f"{base}/feed.xml")
            failed = await monitor.run_source(source_id)
            assert failed.status == "failed" and failed.error
            found = re.fullmatch(
                rf"gave up on {re.escape(base)}/feed\.xml after (\d+) tr(?:y|ies) within the 1 s fetch "
                r"deadline \(deadline_s\): no complete response .*",
                failed.error,
            )
            assert found is not None, failed.error
            assert 1 <= int(found[1]) < 11  # the deadline, not the retries, ended the run
            row = source_row(monitor, source_id)
            assert row.enabled and row.consecutive_failures == 1 and row.last_error == failed.error

            feed.hang = False  # the next run tries again, as after any failure
            recovered = await monitor.run_source(source_id)
            assert (recovered.status, recovered.stored) == ("ok", len(STORIES))
            assert source_row(monitor, source_id).consecutive_failures == 0


async def test_gone_disables_the_source_for_good(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    web = Site({"/feed.xml": Page(b"gone", status=410)})
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, finance_model_dir)) as monitor:
            source_id = add_source(monitor, "wire", f"{base}/feed.xml")
            gone = await monitor.run_source(source_id)
            assert gone.status == "gone" and gone.error and "410" in gone.error
            row = source_row(monitor, source_id)
            assert not row.enabled and row.disabled_reason and "410" in row.disabled_reason
            assert row.last_status == "gone"

            again = await monitor.run_source(source_id)
            assert again.status == "disabled" and again.stored == 0
            assert web.hits("/feed.xml") == 1
            assert monitor.enabled_sources() == []


async def test_permanent_redirect_moves_the_source(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    web = Site({"/new.xml": Page(feed_of(STORIES), RSS)})
    with serve_app(web.app()) as base:
        web.pages["/old.xml"] = Page(status=301, location=f"{base}/new.xml")
        async with open_monitor(settings(tmp_path, sqlite_url, finance_model_dir)) as monitor:
            source_id = add_source(monitor, "wire", f"{base}/old.xml")
            report = await monitor.run_source(source_id)
            assert (report.status, report.stored) == ("ok", len(STORIES))
            assert source_row(monitor, source_id).url == f"{base}/new.xml"

            await monitor.run_source(source_id)
            assert (web.hits("/old.xml"), web.hits("/new.xml")) == (1, 2)


def editing_while_answering(web: Site, path: str, edit: Callable[[], None]) -> Starlette:
    """`web`'s app, but a request for `path` first runs `edit` (an operator's change made while the run
    that asked for it is in flight), then is answered as usual."""
    inner = web.app()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == path:
            edit()
        await inner(scope, receive, send)

    return Starlette(routes=[Mount("/", app=app)])


async def test_a_url_changed_while_the_source_runs_is_kept_and_fetched_unconditionally(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    # The run of the old URL, answered with a permanent move and an ETag, used to write both over the URL
    # the operator had just set: the edit was silently undone (or, without the move, the new URL was
    # fetched with the old one's validators, and a server answering 304 to them hid its stories).
    fresh = [("Initech wins a large defence contract", "The deal runs for ten years.")]
    web = Site(
        {
            "/moved.xml": Page(feed_of(STORIES), RSS, etag='"moved-1"'),
            "/new.xml": Page(feed_of(fresh, prefix="/fresh"), RSS, etag='"new-1"'),
        }
    )
    box: dict[str, Any] = {}

    def edit() -> None:
        with box["monitor"].db.session() as session:
            update_source(session, box["id"], SourcePatch(url=f"{box['base']}/new.xml"))

    with serve_app(editing_while_answering(web, "/old.xml", edit)) as base:
        web.pages["/old.xml"] = Page(status=301, location=f"{base}/moved.xml")
        async with open_monitor(settings(tmp_path, sqlite_url, finance_model_dir)) as monitor:
            source_id = add_source(monitor, "wire", f"{base}/old.xml")
            box.update(monitor=monitor, id=source_id, base=base)
            report = await monitor.run_source(source_id)
            assert (report.status, report.stored) == ("ok", len(STORIES))  # what the old URL gave is kept
            row = source_row(monitor, source_id)
            assert (row.url, row.etag, row.last_status) == (f"{base}/new.xml", None, "ok")

            again = await monitor.run_source(source_id)
            assert (again.status, again.stored) == ("ok", 1)
            assert "if-none-match" not in web.headers_of("/new.xml")[0]
            assert source_row(monitor, source_id).etag == '"new-1"'


async def test_a_410_of_the_url_a_source_had_before_an_edit_does_not_disable_it(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    web = Site({"/old.xml": Page(b"gone", status=410), "/new.xml": Page(feed_of(STORIES), RSS)})
    box: dict[str, Any] = {}

    def edit() -> None:  # the operator moves the source to the feed's new address as the old one goes
        with box["monitor"].db.session() as session:
            update_source(session, box["id"], SourcePatch(url=f"{box['base']}/new.xml"))

    with serve_app(editing_while_answering(web, "/old.xml", edit)) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, finance_model_dir)) as monitor:
            source_id = add_source(monitor, "wire", f"{base}/old.xml")
            box.update(monitor=monitor, id=source_id, base=base)
            gone = await monitor.run_source(source_id)
            assert gone.status == "gone"
            assert (
                gone.error
                == f"{base}/old.xml answered 410 Gone; not disabled: its URL was changed during the run"
            )
            row = source_row(monitor, source_id)
            assert (row.enabled, row.disabled_reason, row.url) == (True, None, f"{base}/new.xml")
            assert monitor.enabled_sources() == [source_id]

            recovered = await monitor.run_source(source_id)
            assert (recovered.status, recovered.stored) == ("ok", len(STORIES))


async def test_list_page_follows_article_links_once(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    links = "".join(f"<li><a href='/articles/{i}?utm_source=home'>Story {i}</a></li>" for i in (1, 2, 3))
    web = Site(
        {
            "/markets": Page(
                f"<html><body><ul>{links}<li><a href='/about'>About</a></li></ul></body></html>".encode()
            ),
            "/articles/1": Page(
                article("Initech raises its dividend", "Initech lifted its payout by a fifth.")
            ),
            "/articles/2": Page(article("Acme warns on profit", "Acme cut its outlook after weak orders.")),
            "/articles/3": Page(NAV_ONLY),
        }
    )
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, finance_model_dir)) as monitor:
            source_id = add_source(
                monitor, "markets", f"{base}/markets", kind="html", link_pattern=r"/articles/\d+"
            )
            first = await monitor.run_source(source_id)
            assert (first.status, first.items, first.stored) == ("ok", 2, 2)
            stored = documents(monitor)
            assert [d.url for d in stored] == [f"{base}/articles/1", f"{base}/articles/2"]
            assert stored[0].title == "Initech raises its dividend" and "payout by a fifth" in stored[0].text
            assert web.hits("/about") == 0

            second = await monitor.run_source(source_id)
            assert second.status == "ok" and second.stored == 0
            assert (web.hits("/markets"), web.hits("/articles/1"), web.hits("/articles/2")) == (2, 1, 1)
            assert len(documents(monitor)) == 2


async def test_a_link_the_pattern_backtracks_on_is_skipped_and_the_run_says_why(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    # '(a|aa)+$' backtracks exponentially on a run of a's that does not end the link: re took seconds on
    # this one link (hours with a few more a's), holding a worker thread and the GIL meanwhile.
    slow = "/" + "a" * 34 + "!"
    page = f"<html><body><a href='/articles/1'>1</a><a href='{slow}'>x</a></body></html>"
    web = Site({"/markets": Page(page.encode()), "/articles/1": Page(article(*STORIES[0]))})
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, finance_model_dir)) as monitor:
            pattern = r"/articles/\d+|(a|aa)+$"
            source_id = add_source(monitor, "markets", f"{base}/markets", kind="html", link_pattern=pattern)
            report = await monitor.run_source(source_id)
            assert (report.status, report.stored) == ("ok", 1)
            assert report.warnings == (
                f"link pattern {pattern!r} took too long on 1 link(s) of {base}/markets (over 0.05 s each, "
                "or 1 s for the page); they were skipped: simplify the pattern (nested repetition such as "
                "'(a+)+' backtracks for ever)",
            )
            assert source_row(monitor, source_id).last_status == "ok"


async def test_list_page_links_deferred_by_the_page_limit_are_not_lost(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    links = "".join(f"<li><a href='/articles/{i}'>Story {i}</a></li>" for i in (1, 2, 3))
    web = Site({"/markets": Page(f"<html><body><ul>{links}</ul></body></html>".encode(), etag='"list-1"')})
    for i, (title, lead) in enumerate(STORIES, start=1):
        web.pages[f"/articles/{i}"] = Page(article(title, lead))
    with serve_app(web.app()) as base:
        async with open_monitor(
            settings(tmp_path, sqlite_url, finance_model_dir, max_pages_per_run=2)
        ) as monitor:
            source_id = add_source(
                monitor, "markets", f"{base}/markets", kind="html", link_pattern=r"/articles/\d+"
            )
            assert (await monitor.run_source(source_id)).stored == 2
            await monitor.run_source(source_id)  # the list page is unchanged: the server answers 304
            assert web.hits("/articles/3") == 1
            assert len(documents(monitor)) == 3


async def test_list_page_links_without_articles_do_not_starve_the_rest(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    # Three links to pages without text come first; with two pages a run, the articles behind them must
    # still be read, and no page without text is fetched twice.
    links = "".join(f"<li><a href='/articles/{i}'>Story {i}</a></li>" for i in range(1, 6))
    web = Site({"/markets": Page(f"<html><body><ul>{links}</ul></body></html>".encode())})
    for i in (1, 2, 3):
        web.pages[f"/articles/{i}"] = Page(NAV_ONLY)
    web.pages["/articles/4"] = Page(article(*STORIES[0]))
    web.pages["/articles/5"] = Page(article(*STORIES[1]))
    with serve_app(web.app()) as base:
        async with open_monitor(
            settings(tmp_path, sqlite_url, finance_model_dir, max_pages_per_run=2)
        ) as monitor:
            source_id = add_source(
                monitor, "markets", f"{base}/markets", kind="html", link_pattern=r"/articles/\d+"
            )
            stored = [(await monitor.run_source(source_id)).stored for _ in range(3)]
            assert stored == [0, 1, 1]
            assert [web.hits(f"/articles/{i}") for i in range(1, 6)] == [1, 1, 1, 1, 1]
            assert [d.url for d in documents(monitor)] == [f"{base}/articles/4", f"{base}/articles/5"]


async def test_list_page_links_to_copies_of_stored_stories_do_not_starve_the_rest(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    # /amp/ copies of stored articles are duplicates by content and never stored under their own link: each
    # is fetched once, and the new article behind them is still read.
    paths = ["/articles/1", "/articles/2", "/amp/articles/1", "/amp/articles/2", "/articles/9"]
    links = "".join(f"<li><a href='{path}'>{path}</a></li>" for path in paths)
    web = Site({"/markets": Page(f"<html><body><ul>{links}</ul></body></html>".encode())})
    for i, (title, lead) in enumerate(STORIES[:2], start=1):
        web.pages[f"/articles/{i}"] = web.pages[f"/amp/articles/{i}"] = Page(article(title, lead))
    web.pages["/articles/9"] = Page(article(*STORIES[2]))
    with serve_app(web.app()) as base:
        async with open_monitor(
            settings(tmp_path, sqlite_url, finance_model_dir, max_pages_per_run=2)
        ) as monitor:
            source_id = add_source(
                monitor, "markets", f"{base}/markets", kind="html", link_pattern="articles"
            )
            reports = [await monitor.run_source(source_id) for _ in range(4)]
            assert [(r.status, r.stored) for r in reports] == [("ok", 2), ("ok", 0), ("ok", 1), ("ok", 0)]
            assert reports[1].duplicates == 2
            assert [web.hits(path) for path in paths] == [1] * len(paths)
            assert len(documents(monitor)) == 3


async def test_a_list_pages_article_that_failed_is_read_once_it_recovers(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    links = "".join(f"<li><a href='/articles/{i}'>Story {i}</a></li>" for i in (1, 2))
    web = Site({"/markets": Page(f"<html><body><ul>{links}</ul></body></html>".encode(), etag='"list-1"')})
    web.pages["/articles/1"] = Page(b"busy", status=503)
    web.pages["/articles/2"] = Page(article(*STORIES[1]))
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, finance_model_dir)) as monitor:
            monitor.ingestor.failed_link_retry_s = 0.0  # try a failed article again at the next run
            source_id = add_source(
                monitor, "markets", f"{base}/markets", kind="html", link_pattern=r"/articles/\d+"
            )
            assert (await monitor.run_source(source_id)).stored == 1
            # The failed article keeps the list page unread: no validator is kept that would hide it.
            assert source_row(monitor, source_id).etag is None
            web.pages["/articles/1"] = Page(article(*STORIES[0]))
            assert (await monitor.run_source(source_id)).stored == 1
            assert "if-none-match" not in web.headers_of("/markets")[1]
            assert source_row(monitor, source_id).etag == '"list-1"'  # read in full now
            assert len(documents(monitor)) == 2


async def test_one_unusable_link_or_header_costs_nothing_else(
    tmp_path: Path, finance_model_dir: Path, database_url: str
) -> None:
    # A link with an impossible port, a link too long to store, and an ETag too long to store: on both
    # databases the good stories are stored and the run succeeds; the ETag is dropped, not the run.
    items = [
        ("/news/1", *STORIES[0]),
        ("http://example.com:99999/story", "Bad port", "A link no client can open."),
        ("/news/" + "x" * 2100, "Too long", "A link longer than any stored URL."),
        ("/news/2", *STORIES[1]),
    ]
    web = Site({"/feed.xml": Page(rss(items), RSS, etag='"' + "e" * 600 + '"')})
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, database_url, finance_model_dir)) as monitor:
            source_id = add_source(monitor, "wire", f"{base}/feed.xml")
            first = await monitor.run_source(source_id)
            assert (first.status, first.items, first.stored, first.skipped) == ("ok", 4, 2, 2)
            row = source_row(monitor, source_id)
            assert row.last_status == "ok" and row.etag is None and row.consecutive_failures == 0
            assert [d.url for d in documents(monitor)] == [f"{base}/news/1", f"{base}/news/2"]

            second = await monitor.run_source(source_id)  # unconditional, since no ETag was kept
            assert (second.status, second.stored, second.duplicates, second.skipped) == ("ok", 0, 2, 2)
            assert "if-none-match" not in web.headers_of("/feed.xml")[1]


async def test_feed_entries_without_a_usable_link_are_counted_as_skipped_and_named(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    # A press-release feed whose entries carry no <link> (or a mailto: one, or a guid that is no permalink)
    # was read as an empty feed: a run said "ok, 0 items" and the operator never learnt why nothing came.
    entries = (
        f"<item><title>{escape(STORIES[0][0])}</title><link>/news/1</link></item>"
        f"<item><title>{escape(STORIES[1][0])}</title><description>No link at all.</description></item>"
        "<item><title>Globex opens a new office</title><link>mailto:press@example.com</link></item>"
        '<item><title>Hooli names a new chair</title><guid isPermaLink="false">pr-1234</guid></item>'
    )
    feed = f'<?xml version="1.0"?><rss version="2.0"><channel><title>PR</title>{entries}</channel></rss>'
    web = Site({"/feed.xml": Page(feed.encode(), RSS)})
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, finance_model_dir)) as monitor:
            source_id = add_source(monitor, "press", f"{base}/feed.xml")
            report = await monitor.run_source(source_id)
            assert (report.status, report.items, report.stored, report.skipped) == ("ok", 4, 1, 3)
            assert len(report.warnings) == 1
            assert report.warnings[0].startswith(f"3 entries of {base}/feed.xml had no link"), report.warnings
            assert [d.url for d in documents(monitor)] == [f"{base}/news/1"]


async def test_a_source_that_keeps_failing_is_spared_by_the_schedule_not_by_a_manual_run(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    # A feed answering 500 for months was asked at its interval (say every minute), each run with its
    # retries, for as long as it failed. From the third failure in a row, scheduled runs wait 60 s after the
    # last one, doubled with each further failure (at most an hour); a manual run fetches at once.
    web = Site({"/feed.xml": Page(status=500)})
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, finance_model_dir)) as monitor:
            source_id = add_source(monitor, "broken", f"{base}/feed.xml")
            for _ in range(3):  # run-once's runs
                assert [report.status for report in await monitor.run_all()] == ["failed"]
            hits = web.hits("/feed.xml")
            (held,) = await monitor.run_all()
            assert held.status == "backoff"
            assert held.error is not None and held.error.startswith("not fetched: its last 3 runs failed")
            scheduler_run = await monitor.run_source(source_id, scheduled=True)
            assert scheduler_run.status == "backoff"
            assert web.hits("/feed.xml") == hits
            assert source_row(monitor, source_id).consecutive_failures == 3  # not counted as a failure
            assert (await monitor.run_source(source_id)).status == "failed"  # manual: fetched
            assert web.hits("/feed.xml") > hits
            with monitor.db.session() as session:  # the 120 s after the fourth failure have passed
                row = session.get_one(Source, source_id)
                assert row.last_run_at is not None
                row.last_run_at -= timedelta(seconds=121)
            assert (await monitor.run_source(source_id, scheduled=True)).status == "failed"
            web.pages["/feed.xml"] = Page(feed_of(STORIES[:1]), RSS)
            assert (await monitor.run_source(source_id)).status == "ok"  # recovered: back to its schedule
            assert (await monitor.run_source(source_id, scheduled=True)).status in ("ok", "not_modified")


async def test_entries_without_title_or_text_are_counted_as_skipped_and_named(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    # Entries with a link but no words (an empty <item>, a JSON item whose headline and body are blank)
    # were dropped without a trace: the run said "ok, 1 item" of a feed of three.
    entries = (
        f"<item><title>{escape(STORIES[0][0])}</title><link>/news/1</link></item>"
        "<item><link>/news/2</link></item>"
        "<item><title> </title><description></description><link>/news/3</link></item>"
    )
    feed = f'<?xml version="1.0"?><rss version="2.0"><channel><title>PR</title>{entries}</channel></rss>'
    items = [
        {"headline": "Acme beats estimates", "link": "/a/1"},
        {"headline": "", "body": "", "link": "/a/2"},
    ]
    web = Site(
        {
            "/feed.xml": Page(feed.encode(), RSS),
            "/api/news": Page(json.dumps({"data": items}).encode(), "application/json"),
        }
    )
    registry = CollectorRegistry()
    fields = {"items": "data", "title": "headline", "text": "body", "url": "link"}
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, finance_model_dir), registry) as monitor:
            feed_id = add_source(monitor, "press", f"{base}/feed.xml")
            report = await monitor.run_source(feed_id)
            assert (report.status, report.items, report.stored, report.skipped) == ("ok", 3, 1, 2)
            assert report.warnings == (
                f"2 entries of {base}/feed.xml had neither a title nor a text: skipped, as there is nothing "
                "to classify",
            )
            api_id = add_source(monitor, "api", f"{base}/api/news", kind="json", json_fields=fields)
            report = await monitor.run_source(api_id)
            assert (report.status, report.items, report.stored, report.skipped) == ("ok", 2, 1, 1)
            assert report.warnings[0].startswith(f"1 entry of {base}/api/news had neither a title nor a text")
    assert registry.get_sample_value("finance_documents_skipped_total") == 3


@pytest.mark.parametrize(("href", "path"), [("/go/1", "/articles/1"), ("/articles/café", "/articles/café")])
async def test_list_page_does_not_refetch_stored_articles_whatever_the_link_spelling(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str, href: str, path: str
) -> None:
    listing = f"<html><head><meta charset='utf-8'></head><body><a href='{href}'>Story</a></body></html>"
    web = Site({"/markets": Page(listing.encode())})
    web.pages[path] = Page(article(*STORIES[0]))
    if href != path:
        web.pages[href] = Page(status=302, location=path)
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, finance_model_dir)) as monitor:
            source_id = add_source(monitor, "markets", f"{base}/markets", kind="html", link_pattern="/")
            assert (await monitor.run_source(source_id)).stored == 1
            second = await monitor.run_source(source_id)
            assert web.hits(path) == 1 and second.duplicates == 0


async def test_list_page_links_are_read_in_the_charset_the_server_declares(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    listing = "<html><body><a href='/märkte/übernahme'>Übernahme</a></body></html>"
    web = Site({"/markets": Page(listing.encode(), "text/html; charset=utf-8")})
    web.pages["/märkte/übernahme"] = Page(article(*STORIES[0]))
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, finance_model_dir)) as monitor:
            source_id = add_source(monitor, "markets", f"{base}/markets", kind="html", link_pattern="/")
            report = await monitor.run_source(source_id)
            assert web.hits("/märkte/übernahme") == 1 and report.stored == 1


async def test_json_api_source(tmp_path: Path, finance_model_dir: Path, sqlite_url: str) -> None:
    articles = [
        {"headline": "Acme beats estimates", "body": "Profit rose 20%.", "link": "/a/1", "ts": 1_700_000_000},
        {
            "headline": "Hooli cuts jobs",
            "body": "<p>Losses <b>deepen</b>.</p>",
            "link": "/a/2",
            "ts": "2024-03-01T09:30:00Z",
        },
        {"headline": "No link, skipped", "body": "x"},
    ]
    payload = {"data": {"articles": articles}}
    web = Site({"/api/news": Page(json.dumps(payload).encode(), "application/json")})
    fields = {"items": "data.articles", "title": "headline", "text": "body", "url": "link", "time": "ts"}
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, finance_model_dir)) as monitor:
            source_id = add_source(monitor, "api", f"{base}/api/news", kind="json", json_fields=fields)
            report = await monitor.run_source(source_id)
            assert (report.status, report.items, report.stored, report.skipped) == ("ok", 3, 2, 1)
            assert report.warnings == (
                f"1 entry of {base}/api/news had no link, or none that is an absolute http(s) URL: skipped, "
                "as a story is stored under its link",
            )
            first, second = documents(monitor)
            assert (first.url, first.title, first.text) == (
                f"{base}/a/1",
                "Acme beats estimates",
                "Profit rose 20%.",
            )
            assert first.published_at == datetime.fromtimestamp(1_700_000_000, tz=UTC)
            assert (second.text, second.published_at) == (
                "Losses deepen.",
                datetime(2024, 3, 1, 9, 30, tzinfo=UTC),
            )
            assert {first.label, second.label} <= {"negative", "neutral", "positive"}


async def test_no_model_yet_then_promoted_without_restart(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    web = Site({"/feed.xml": Page(feed_of(STORIES), RSS, etag='"v1"')})
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, None)) as monitor:
            source_id = add_source(monitor, "wire", f"{base}/feed.xml")
            failed = await monitor.run_source(source_id)
            assert failed.status == "failed" and failed.error and "no active version" in failed.error
            assert documents(monitor) == []
            row = source_row(monitor, source_id)
            # the service's failure, not the site's: not counted against the source, so its schedule
            # does not back off while no model is active (a healthy site would wait up to an hour after the
            # first promotion)
            assert row.etag is None and row.last_status == "failed" and row.consecutive_failures == 0
            for _ in range(3):
                assert [r.status for r in await monitor.run_all()] == ["failed"]
            assert source_row(monitor, source_id).consecutive_failures == 0

            registry = ModelRegistry(tmp_path / "registry")
            version = registry.register("finance-sentiment", finance_model_dir)
            registry.promote("finance-sentiment", version.version)

            report = await monitor.run_source(source_id, scheduled=True)  # the schedule's next run
            assert (report.status, report.stored) == ("ok", len(STORIES))
            assert "if-none-match" not in web.headers_of("/feed.xml")[-1]
            assert {d.model_version for d in documents(monitor)} == {"finance-sentiment@1"}
            assert source_row(monitor, source_id).etag == '"v1"'


async def test_a_promoted_version_that_cannot_load_leaves_the_loaded_one_classifying(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    registry.register("finance-sentiment", finance_model_dir, promote=True)
    broken = tmp_path / "broken"
    shutil.copytree(finance_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")  # e.g. a file damaged after training
    web = Site(
        {
            "/a.xml": Page(feed_of(STORIES[:2]), RSS),
            "/b.xml": Page(feed_of(STORIES[2:], prefix="/more"), RSS),
        }
    )
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, None)) as monitor:
            first = await monitor.run_source(add_source(monitor, "a", f"{base}/a.xml"))
            assert (first.status, first.stored) == ("ok", 2)
            registry.register("finance-sentiment", broken, promote=True)
            second = await monitor.run_source(add_source(monitor, "b", f"{base}/b.xml"))
            assert (second.status, second.stored) == ("ok", len(STORIES) - 2)
            assert {d.model_version for d in documents(monitor)} == {"finance-sentiment@1"}
            assert monitor.model_status() == "finance-sentiment@1"


async def test_robots_txt_disallowing_the_feed_fails_the_run(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    web = Site({"/private/feed.xml": Page(feed_of(STORIES), RSS)})
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, finance_model_dir)) as monitor:
            source_id = add_source(monitor, "wire", f"{base}/private/feed.xml")
            report = await monitor.run_source(source_id)
            assert report.status == "failed" and report.error and "robots.txt" in report.error
            assert web.hits("/robots.txt") == 1 and web.hits("/private/feed.xml") == 0
            assert source_row(monitor, source_id).consecutive_failures == 1
            assert documents(monitor) == []


async def test_config_topics_and_entities_tag_documents(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str
) -> None:
    web = Site()
    web.pages["/feed.xml"] = Page(
        rss(
            [
                ("/n/1", "Acme Corp posts strong quarterly results", "Earnings beat forecasts."),
                ("/n/2", "Traders pile into $ACME and $XYZ", "ACME rose 5% in early trading."),
                ("/n/3", "Globex opens a new office in Berlin", "The office will employ 40 people."),
            ]
        ),
        RSS,
    )
    with serve_app(web.app()) as base:
        config = tmp_path / "monitor.toml"
        config.write_text(
            f'[[sources]]\nname = "wire"\nurl = "{base}/feed.xml"\nkind = "rss"\ntopics = ["newswire"]\n\n'
            '[[topics]]\nname = "earnings"\nkeywords = ["earnings", "quarterly results"]\n\n'
            '[[entities]]\nname = "Acme"\nticker = "ACME"\naliases = ["Acme Corp"]\n'
        )
        async with open_monitor(
            settings(tmp_path, sqlite_url, finance_model_dir, config_file=config)
        ) as monitor:
            (source_id,) = monitor.enabled_sources()
            report = await monitor.run_source(source_id)
            assert (report.status, report.stored) == ("ok", 3)
            with monitor.db.session() as session:
                rows = session.execute(
                    select(Document.url, DocumentTag.kind, DocumentTag.name).join(DocumentTag.document)
                ).all()
            tags: dict[str, set[tuple[str, str]]] = {}
            for url, kind, name in rows:
                tags.setdefault(url.rsplit("/", 1)[1], set()).add((kind, name))
            assert tags == {
                "1": {("topic", "newswire"), ("topic", "earnings"), ("entity", "Acme")},
                "2": {("topic", "newswire"), ("entity", "Acme"), ("entity", "XYZ")},
                "3": {("topic", "newswire")},
            }


async def test_a_source_deleted_during_its_run_stores_nothing_and_logs_no_traceback(
    tmp_path: Path, finance_model_dir: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The operator deletes a source (through the API, another replica) while its run is fetching: the run
    # reported "ok" with its new stories counted as duplicates (their insert under the deleted source's id
    # failed), though nothing was stored. The run now finds the source gone and fails saying so.
    holder: dict[str, Monitor] = {}

    async def feed(request: Request) -> Response:
        with holder["monitor"].db.session() as session:  # deleted while its feed is being fetched
            delete_source(session, int(request.query_params["id"]))
        return Response(feed_of(STORIES), media_type=RSS)

    site = Starlette(routes=[Route("/robots.txt", lambda _: Response("")), Route("/feed.xml", feed)])
    with serve_app(site) as base:
        async with open_monitor(settings(tmp_path, database_url, finance_model_dir)) as monitor:
            holder["monitor"] = monitor
            source_id = add_source(monitor, "wire", f"{base}/feed.xml?id=0")
            with monitor.db.session() as session:
                session.get_one(Source, source_id).url = f"{base}/feed.xml?id={source_id}"
            with caplog.at_level("WARNING"):
                report = await monitor.run_source(source_id)
            assert report.status == "failed" and report.stored == 0, report
            assert report.error is not None and f"no source {source_id}" in report.error, report.error
            assert documents(monitor) == []
            assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


LONG_TITLE = "Acme shares plunge " + "after the probe widens " * 9000  # about 207,000 characters


@pytest.mark.parametrize("kind", ["rss", "json", "html"])
async def test_a_huge_headline_is_stored_cut_at_a_word_and_its_copies_still_found(
    tmp_path: Path, finance_model_dir: Path, sqlite_url: str, kind: SourceKind
) -> None:
    # A 200,000-character feed title was stored and served whole (only an alert's evidence clipped it).
    web = Site(
        {
            "/feed.xml": Page(rss([("/news/1", LONG_TITLE, "Investors fled.")]), RSS),
            "/api": Page(
                json.dumps([{"title": LONG_TITLE, "text": "Investors fled.", "url": "/news/1"}]).encode()
            ),
            "/news/1": Page(
                article(LONG_TITLE, "Acme lost a third of its value as investors fled the stock.")
            ),
        }
    )
    path = {"rss": "/feed.xml", "json": "/api", "html": "/news/1"}[kind]
    more: dict[str, Any] = {"json_fields": {"items": "", "title": "title", "text": "text", "url": "url"}}
    with serve_app(web.app()) as base:
        async with open_monitor(settings(tmp_path, sqlite_url, finance_model_dir)) as monitor:
            source_id = add_source(
                monitor, "wire", f"{base}{path}", kind=kind, **(more if kind == "json" else {})
            )
            report = await monitor.run_source(source_id)
            assert (report.status, report.stored) == ("ok", 1), report.error
            (stored,) = documents(monitor)
            assert len(stored.title) <= 300 and stored.title.endswith("widens…"), stored.title[-40:]
            assert LONG_TITLE.startswith(stored.title.removesuffix("…"))
            # the same story under another link is still a duplicate: the hash is of the story as found
            web.pages["/feed.xml"] = Page(rss([("/mirror/9", LONG_TITLE, "Investors fled.")]), RSS)
            if kind == "rss":
                again = await monitor.run_source(source_id)
                assert (again.stored, again.duplicates) == (0, 1)
