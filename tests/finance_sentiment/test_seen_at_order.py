"""Documents are stamped (``seen_at``) in the order their runs commit, so that a client polling
``GET /v1/documents?since=<latest seen_at>`` never misses a story committed after it read that stamp.

Two runs store their stories at once, in real threads on a real database (SQLite and PostgreSQL); engine
events hold the first run at a chosen point of its transaction while the second runs to its commit.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.engine import Connection

from finance_sentiment.dedup import content_hash
from finance_sentiment.fetching import FetchResult, Validators
from finance_sentiment.ingest import Ingestor, _Story
from finance_sentiment.monitor import open_monitor
from finance_sentiment.parsing import RawItem
from finance_sentiment.schemas import SourceIn
from finance_sentiment.sentiment import Sentiment
from finance_sentiment.sources import create_source
from finance_sentiment.tables import Document
from finance_sentiment.tagging import Tags
from tests.finance_sentiment.test_ingest import settings
from textcore.sql import utcnow

HOLD_S = 1.5  # how long the first run waits for the second when the second cannot commit before it


def story(url: str) -> _Story:
    item = RawItem(url=url, title=f"Story at {url}", text="Shares moved.", published_at=None)
    found = _Story(item, url, content_hash(item.title, item.text))
    found.sentiment = Sentiment("neutral", {"negative": 0.1, "neutral": 0.8, "positive": 0.1}, 0.0)
    found.tags = Tags(topics=(), entities=())
    return found


def hold(ingestor: Ingestor, when: str, first: threading.Thread, go_on: threading.Event) -> threading.Event:
    """Hold ``first`` (until ``go_on`` or `HOLD_S`) when its session takes a connection, before its
    transaction begins ("checkout"), or when it inserts its story, its stamp taken ("insert"); returns the
    event set once it is held."""
    held = threading.Event()

    def pause() -> None:
        if threading.current_thread() is first and not held.is_set():
            held.set()
            go_on.wait(HOLD_S)

    def on_checkout(*connection: Any) -> None:
        pause()

    def on_execute(connection: Connection, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO DOCUMENTS"):
            pause()

    engine = ingestor.db.engine
    if when == "checkout":  # before SQLite's BEGIN IMMEDIATE: the first run does not hold the write lock yet
        event.listen(engine, "checkout", on_checkout)
    else:
        event.listen(engine, "before_cursor_execute", on_execute)
    return held


def finish(ingestor: Ingestor, source_id: int, url: str) -> None:
    """Store one story of ``source_id``, as a run does once it has classified it."""
    result = FetchResult(200, "http://127.0.0.1/feed.xml", b"", "application/rss+xml", Validators())
    ingestor._finish(source_id, result.url, result, [story(url)], "ok", "v1")


def stamps_of(ingestor: Ingestor) -> dict[str, datetime]:
    with ingestor.db.session() as session:
        rows = session.execute(select(Document.url, Document.seen_at)).all()
        return dict(rows)


@asynccontextmanager
async def monitor_with_source(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[Ingestor, int]]:
    async with open_monitor(settings(tmp_path, database_url, None)) as monitor:
        with monitor.db.session() as session:
            source = SourceIn(name="wire", url="http://127.0.0.1/feed.xml", kind="rss")
            source_id = create_source(session, source).id
        yield monitor.ingestor, source_id


@pytest.mark.parametrize("when", ["checkout", "insert"])
async def test_stories_are_stamped_in_the_order_their_runs_commit(
    tmp_path: Path, database_url: str, when: str
) -> None:
    async with monitor_with_source(tmp_path, database_url) as (ingestor, source_id):
        committed: list[str] = []

        def run(url: str, then: Callable[[], None] = lambda: None) -> threading.Thread:
            def store() -> None:
                finish(ingestor, source_id, url)
                committed.append(url)
                then()

            return threading.Thread(target=store)

        second_done = threading.Event()
        first = run("http://127.0.0.1/news/first")
        held = hold(ingestor, when, first, second_done)
        first.start()
        assert held.wait(10)
        second = run("http://127.0.0.1/news/second", second_done.set)
        second.start()
        for thread in (first, second):
            thread.join(30)
        stamps = stamps_of(ingestor)
    assert len(committed) == 2
    earlier, later = committed
    # A client that read the earlier commit's stamp as the latest, and then asks for since=that stamp,
    # must get the later commit's story too.
    assert stamps[later] >= stamps[earlier], (committed, stamps)


async def test_a_clock_stepping_back_does_not_stamp_stories_before_those_stored(
    tmp_path: Path, database_url: str
) -> None:
    async with monitor_with_source(tmp_path, database_url) as (ingestor, source_id):
        finish(ingestor, source_id, "http://127.0.0.1/news/before")
        ahead = utcnow() + timedelta(minutes=10)  # stamped before the clock was set back 10 minutes
        with ingestor.db.session() as session:
            session.execute(update(Document).values(seen_at=ahead))
        finish(ingestor, source_id, "http://127.0.0.1/news/after")
        stamps = stamps_of(ingestor)
    assert stamps["http://127.0.0.1/news/after"] == ahead == stamps["http://127.0.0.1/news/before"]
