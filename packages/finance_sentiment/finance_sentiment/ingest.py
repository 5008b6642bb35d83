"""One run of one source: fetch, parse, drop what is already stored, classify, tag, store.

Nothing is lost and nothing is stored twice: conditional-GET validators are saved only in the transaction
that stores the run's documents, so a run that fails after fetching (parse error, no model yet, database
down) fetches the same content again next time; a story is unique by canonical URL and by content hash, and
a concurrent run that stored it first simply wins. A story the retention deleted counts as stored while its
dedup keys are kept (`finance_sentiment.retention`), so a source still listing it does not bring it back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from finance_sentiment.articles import (
    LINK_MATCH_TIMEOUT_S,
    PAGE_MATCH_BUDGET_S,
    charset_of,
    parse_article,
    scan_links,
)
from finance_sentiment.credentials import redact
from finance_sentiment.database import Database
from finance_sentiment.dedup import canonical_url, content_hash, url_key
from finance_sentiment.feeds import read_feed
from finance_sentiment.fetching import Fetcher, FetchError, FetchResult, Validators
from finance_sentiment.json_api import JsonFields, read_json
from finance_sentiment.parsing import ItemScan, RawItem, clip_words
from finance_sentiment.sentiment import Sentiment, SentimentSource
from finance_sentiment.tables import (
    ETAG_CHARS,
    LAST_MODIFIED_CHARS,
    URL_CHARS,
    Document,
    DocumentTag,
    PrunedStory,
    Source,
)
from finance_sentiment.tagging import Tagger, Tags
from textcore import Conflict, CoreError, InvalidInput, ModelNotReady, NotFound
from textcore.sql import utcnow

log = logging.getLogger(__name__)

# Characters of a story given to the classifier and to the tagger (the model truncates to its own limit).
CLASSIFY_CHARS = 1_000
# A story's headline and text are stored and served at most this long (cut at a word boundary, with an
# ellipsis): a feed's 200,000-character "title" was stored and served whole. The content hash is of the
# story as found, so a copy of a story stored whole before this is still recognised.
TITLE_CHARS = 300
TEXT_CHARS = 100_000
TAG_CHARS = 5_000
ERROR_CHARS = 2_000  # of a run's error message kept on the source
# A source that keeps failing is spared: from its FAILURES_BEFORE_BACKOFF-th failed run in a row on, a
# scheduled run (the scheduler's, run-once's) waits FAILURE_BACKOFF_S after the last one, doubled with each
# further failure, at most MAX_FAILURE_BACKOFF_S; a manual run is never held back.
FAILURES_BEFORE_BACKOFF = 3
FAILURE_BACKOFF_S = 60.0
MAX_FAILURE_BACKOFF_S = 3600.0
# A list page's link that gave no article, only a copy of a story already stored (an /amp/ or print
# version, a syndicated copy), or failed, is not fetched again for a while, so that such links cannot keep
# the articles behind them from ever being read; one that failed is tried again sooner.
NO_ARTICLE_RETRY_S = 24 * 3600.0
FAILED_LINK_RETRY_S = 3600.0
MAX_REMEMBERED_LINKS = 10_000  # per kind, the oldest forgotten first
# PostgreSQL advisory lock key of the transactions that stamp stories (`seen_stamp`): "fin.seen" in ASCII.
SEEN_AT_LOCK = 0x66696E2E7365656E


@dataclass(frozen=True, slots=True)
class RunReport:
    """What one run of a source did."""

    source_id: int
    status: (
        str  # ok | not_modified | gone | failed | disabled | backoff (a failing source spared; not fetched)
    )
    items: int = 0  # stories found in the fetched content
    stored: int = 0  # new documents stored
    duplicates: int = 0  # stories already stored (this run, an earlier one, or another feed)
    error: str | None = None
    # stories left out for a missing or unusable link (not http(s), malformed, too long), or for having
    # neither a title nor a text
    skipped: int = 0
    warnings: tuple[str, ...] = ()  # what it left out and why (entries without links or words, timeouts)


@dataclass(frozen=True, slots=True)
class _SourceView:
    id: int
    url: str
    kind: str
    enabled: bool
    link_pattern: str | None
    json_fields: dict[str, str] | None
    topics: tuple[str, ...]
    entities: tuple[str, ...]
    validators: Validators
    consecutive_failures: int = 0
    last_run_at: datetime | None = None


@dataclass(slots=True)
class _Story:
    item: RawItem
    url: str  # canonical
    digest: str
    sentiment: Sentiment | None = None
    tags: Tags | None = None
    extra_tags: set[tuple[str, str]] = field(default_factory=set)


class Ingestor:
    """Runs sources; at most one run of a source at a time in this process, and at most
    ``max_concurrent_runs`` runs at once (the others wait their turn: at start every source is due).

    Args:
        db: Where sources live and documents go.
        fetcher: The polite, SSRF-guarded HTTP fetcher.
        models: Gives the sentiment model to use for each batch.
        tagger: Finds configured topics and company mentions.
        max_pages_per_run: Articles followed from one list page per run.
        max_concurrent_runs: Runs at once; a run makes one request at a time.
    """

    def __init__(
        self,
        db: Database,
        fetcher: Fetcher,
        models: SentimentSource,
        tagger: Tagger,
        *,
        max_pages_per_run: int = 20,
        max_concurrent_runs: int = 12,
    ) -> None:
        self.db = db
        self.fetcher = fetcher
        self.models = models
        self.tagger = tagger
        self.max_pages_per_run = max_pages_per_run
        self._slots = asyncio.Semaphore(max_concurrent_runs)
        self._locks: dict[int, asyncio.Lock] = {}
        # canonical link -> time.monotonic() from which it is fetched again
        self._no_article: dict[str, float] = {}
        self._failed: dict[str, float] = {}  # until fetched: its list page counts as not fully read
        self.failed_link_retry_s = FAILED_LINK_RETRY_S

    async def run(self, source_id: int, *, wait: bool = True, scheduled: bool = False) -> RunReport:
        """Run one source now.

        Args:
            source_id: The source to run.
            wait: Wait for a run already in progress to finish (the scheduler); otherwise raise `Conflict`.
            scheduled: A run of the schedule (the scheduler's, run-once's), not one asked for: a source that
                keeps failing is then not fetched until its backoff has passed (`failure_backoff_s`); the
                report says so (status ``backoff``).

        Raises:
            NotFound: No source has this id.
            Conflict: A run of this source is in progress and ``wait`` is false.
        """
        lock = self._locks.setdefault(source_id, asyncio.Lock())
        if lock.locked() and not wait:
            raise Conflict(f"expected no run of source {source_id} in progress; found one running")
        async with lock, self._slots:
            return await self._run(source_id, scheduled)

    async def _run(self, source_id: int, scheduled: bool = False) -> RunReport:
        source = await asyncio.to_thread(self._load, source_id)
        if not source.enabled:
            return RunReport(source_id, "disabled")
        if scheduled and (held := _held_back(source)) is not None:
            return RunReport(source_id, "backoff", error=held)
        try:
            result = await self.fetcher.fetch(source.url, source.validators)
            if result.gone:
                reason = redact(f"{result.url} answered 410 Gone")
                reason = await asyncio.to_thread(self._disable, source_id, source.url, reason)
                return RunReport(source_id, "gone", error=reason)
            if result.not_modified:
                await asyncio.to_thread(self._finish, source_id, source.url, result, [], "not_modified")
                return RunReport(source_id, "not_modified")
            items, complete, warnings, left_out = await self._items(source, result)
            if not complete:  # forget the validators: the next run must see the list page's remaining links
                result = replace(result, validators=Validators())
            stories, duplicates, skipped = await asyncio.to_thread(self._unseen, items)
            skipped += left_out
            if source.link_pattern and source.kind == "html":
                self._remember_copies(items, stories)
            version = await asyncio.to_thread(self._analyse, stories, source)
            stored = await asyncio.to_thread(
                self._finish, source_id, source.url, result, stories, "ok", version
            )
        except Exception as exc:  # fetch, parse, model, input errors, and defects: recorded on the source
            message = run_error(exc)
            if isinstance(exc, CoreError):
                log.warning("source %s failed: %s", source_id, message)
            else:  # a database error or a defect: the traceback goes to the log
                log.exception("source %s failed", source_id)
            # No active model is the service's failure, not the source's: it does not count towards the
            # source's failures in a row, so the schedule does not back off a healthy site meanwhile.
            counted = not isinstance(exc, ModelNotReady)
            await asyncio.to_thread(self._fail, source_id, message, counted)
            return RunReport(source_id, "failed", error=message)
        duplicates += len(stories) - stored
        found = len(items) + left_out
        return RunReport(source_id, "ok", found, stored, duplicates, skipped=skipped, warnings=warnings)

    async def _items(
        self, source: _SourceView, result: FetchResult
    ) -> tuple[list[RawItem], bool, tuple[str, ...], int]:
        """The stories in the fetched content, whether all were read (a list page may be capped), what was
        left out and why, and how many feed or JSON entries were left out for want of a link or of words."""
        # Parsing runs in worker threads, as the database steps do: a large feed or page (and the source's
        # link pattern) must not stall the event loop, which serves the API and the other sources meanwhile.
        charset = charset_of(result.content_type)
        if source.kind in ("rss", "json"):
            read = await asyncio.to_thread(_read_items, source, result)
            warnings = _unlinked_warnings(read.unlinked, result.url) + _empty_warnings(read.empty, result.url)
            return read.items, True, warnings, read.unlinked + read.empty
        if not source.link_pattern:
            article = await asyncio.to_thread(parse_article, result.content, result.url, charset)
            return ([article] if article else []), True, (), 0
        links_scan = await asyncio.to_thread(
            scan_links, result.content, result.url, source.link_pattern, charset
        )
        warnings = _timeout_warnings(links_scan.timed_out, source.link_pattern, result.url)
        links = {link: canonical for link in links_scan.links if (canonical := _canonical(link)) is not None}
        known = await asyncio.to_thread(self._known_urls, list(links.values()))
        now = time.monotonic()
        unread = {link: canonical for link, canonical in links.items() if canonical not in known}
        fresh = [
            link
            for link, canonical in unread.items()
            if self._no_article.get(canonical, 0.0) <= now and self._failed.get(canonical, 0.0) <= now
        ]
        items: list[RawItem] = []
        for link in fresh[: self.max_pages_per_run]:
            canonical = links[link]
            try:
                page = await self.fetcher.fetch(link)
            except (FetchError, InvalidInput) as exc:  # one broken article does not fail the list page
                log.info("article %s skipped: %s", redact(link), redact(exc.message))
                _remember(self._failed, canonical, self.failed_link_retry_s)
                continue
            self._failed.pop(canonical, None)
            # Stored under the link the list page gives (not where it redirects), so that the next run
            # recognises the link as read without fetching it again.
            article = (
                await asyncio.to_thread(parse_article, page.content, link, charset_of(page.content_type))
                if page.status == 200
                else None
            )
            if article is not None:
                items.append(article)
            else:
                _remember(self._no_article, canonical, NO_ARTICLE_RETRY_S)
        # Read in full when no link is left for later: none beyond the page limit, none still failing.
        pending = any(canonical in self._failed for canonical in unread.values())
        return items, len(fresh) <= self.max_pages_per_run and not pending, warnings, 0

    def _remember_copies(self, items: Sequence[RawItem], stories: Sequence[_Story]) -> None:
        """Leave out, for a while, the list page's links whose article was a story already stored: they are
        never stored under their own URL, so the stored URLs alone would have them fetched on every run."""
        new = {story.url for story in stories}
        for item in items:
            canonical = _canonical(item.url)
            if canonical is not None and canonical not in new:
                _remember(self._no_article, canonical, NO_ARTICLE_RETRY_S)

    def _analyse(self, stories: list[_Story], source: _SourceView) -> str:
        """Classify and tag the stories in place; returns the model version used."""
        if not stories:
            return ""
        model = self.models.current()  # ModelNotReady fails the run before anything is stored
        sentiments = model.classify([_classify_text(s.item) for s in stories])
        tags = self.tagger.tag([f"{s.item.title}\n{s.item.text}"[:TAG_CHARS] for s in stories])
        for story, sentiment, found in zip(stories, sentiments, tags, strict=True):
            story.sentiment, story.tags = sentiment, found
            story.extra_tags = {("topic", t) for t in source.topics}
            story.extra_tags |= {("entity", e) for e in source.entities}
        return model.version

    # --- database steps (run in worker threads) ---

    def _load(self, source_id: int) -> _SourceView:
        with self.db.session() as session:
            row = session.get(Source, source_id)
            if row is None:
                raise NotFound(f"expected an existing source id; found no source {source_id}")
            return _SourceView(
                row.id,
                row.url,
                row.kind,
                row.enabled,
                row.link_pattern,
                row.json_fields,
                tuple(row.topics),
                tuple(row.entities),
                Validators(row.etag, row.last_modified),
                row.consecutive_failures,
                row.last_run_at,
            )

    def _known_urls(self, urls: Sequence[str]) -> set[str]:
        """The canonical URLs already stored, or pruned by the retention."""
        if not urls:
            return set()
        keys = {url_key(url): url for url in urls}
        with self.db.session() as session:
            known = set(session.scalars(select(Document.url).where(Document.url.in_(set(urls)))))
            pruned = session.scalars(select(PrunedStory.url_key).where(PrunedStory.url_key.in_(keys)))
            return known | {keys[key] for key in pruned}

    def _unseen(self, items: Sequence[RawItem]) -> tuple[list[_Story], int, int]:
        """Stories not stored yet, each once; how many were dropped as duplicates, and how many skipped for
        a link that is no usable URL (one bad item does not cost the others)."""
        batch: dict[str, _Story] = {}
        hashes: set[str] = set()
        skipped = 0
        for item in items:
            url = _canonical(item.url)
            if url is None:
                log.info(
                    "story %r skipped: its link %.200r is not a usable URL",
                    item.title[:200],
                    redact(item.url),
                )
                skipped += 1
                continue
            story = _Story(_bounded(item), url, content_hash(item.title, item.text))
            if story.url not in batch and story.digest not in hashes:
                batch[story.url] = story
                hashes.add(story.digest)
        if not batch:
            return [], len(items) - skipped, skipped
        keys = {url_key(url): url for url in batch}
        with self.db.session() as session:
            seen = session.execute(
                select(Document.url, Document.content_hash).where(
                    or_(Document.url.in_(batch), Document.content_hash.in_(hashes))
                )
            ).all()
            pruned = session.execute(
                select(PrunedStory.url_key, PrunedStory.content_hash).where(
                    or_(PrunedStory.url_key.in_(keys), PrunedStory.content_hash.in_(hashes))
                )
            ).all()
        known = {url for url, _ in seen} | {digest for _, digest in seen}
        known |= {keys[key] for key, _ in pruned if key in keys} | {digest for _, digest in pruned}
        fresh = [s for s in batch.values() if s.url not in known and s.digest not in known]
        return fresh, len(items) - skipped - len(fresh), skipped

    def _finish(
        self,
        source_id: int,
        fetched_url: str,
        result: FetchResult,
        stories: list[_Story],
        status: str,
        version: str = "",
    ) -> int:
        """Store the stories and the source's new fetch state in one transaction; returns how many are new.

        The state that belongs to the URL fetched (a permanent move, the HTTP validators) is kept only while
        the source still has that URL: one changed during the run (a PATCH, a config start) stays as set, its
        validators forgotten, so its first fetch is unconditional.
        """
        with self.db.session() as session:
            now = seen_stamp(session)
            # locked until the commit, so that a delete waits for the stories or comes before and is seen
            source = session.get(Source, source_id, with_for_update=True)
            if source is None:  # deleted during the run (the API, another replica): its stories go with it
                raise NotFound(f"expected source {source_id} to exist; found no source {source_id}: deleted "
                               f"during its run, its {len(stories)} new stories not stored")  # fmt: skip
            stored = _store(session, stories, source_id, now, version)
            if source.url == fetched_url:
                if result.permanent_url and len(result.permanent_url) <= URL_CHARS:
                    source.url = result.permanent_url
                # Validators too long to store are dropped: the next fetch is then unconditional.
                source.etag = _within(result.validators.etag, ETAG_CHARS)
                source.last_modified = _within(result.validators.last_modified, LAST_MODIFIED_CHARS)
            source.last_run_at, source.last_status, source.last_error = now, status, None
            source.consecutive_failures = 0
        return stored

    def _fail(self, source_id: int, message: str, counted: bool = True) -> None:
        with self.db.session() as session:
            source = session.get(Source, source_id)
            if source is not None:
                source.last_run_at, source.last_status, source.last_error = utcnow(), "failed", message
                if counted:
                    source.consecutive_failures += 1

    def _disable(self, source_id: int, fetched_url: str, reason: str) -> str:
        """Disable the source for good after a 410, unless its URL changed during the run (the new one is
        fetched at its next run); returns the reason as recorded."""
        with self.db.session() as session:
            source = session.get(Source, source_id)
            if source is None:
                return reason
            if source.url != fetched_url:
                reason = f"{reason}; not disabled: its URL was changed during the run"
            else:
                source.enabled, source.disabled_reason = False, reason
            source.last_run_at, source.last_status, source.last_error = utcnow(), "gone", reason
            return reason


def failure_backoff_s(failures: int) -> float:
    """How long after its last run a source with ``failures`` failed runs in a row is spared by the
    schedule: nothing before `FAILURES_BEFORE_BACKOFF` of them, then `FAILURE_BACKOFF_S`, doubled with each
    further failure, at most `MAX_FAILURE_BACKOFF_S`."""
    if failures < FAILURES_BEFORE_BACKOFF:
        return 0.0
    return min(FAILURE_BACKOFF_S * 2.0 ** min(failures - FAILURES_BEFORE_BACKOFF, 32), MAX_FAILURE_BACKOFF_S)


def _held_back(source: _SourceView) -> str | None:
    """Why a scheduled run of the source is not fetched now (it keeps failing), or None when it may run."""
    pause = failure_backoff_s(source.consecutive_failures)
    if not pause or source.last_run_at is None:
        return None
    until = source.last_run_at + timedelta(seconds=pause)
    if utcnow() >= until:
        return None
    stamp = until.isoformat(timespec="seconds").replace("+00:00", "Z")
    return (
        f"not fetched: its last {source.consecutive_failures} runs failed, so scheduled runs wait until "
        f"{stamp} ({pause:.0f} s after the last one); a manual run fetches it at once"
    )


def seen_stamp(session: Session) -> datetime:
    """The ``seen_at`` of the stories this transaction stores: taken under a lock that runs storing
    transactions one at a time, so that stamps follow the order of the commits, and never before the latest
    stamp stored (the clock may step back).

    A stamp taken before another run's commit but committed after it would sort before stories already
    listed: a client asking for ``since=<the latest seen_at it has>`` would miss those for good. SQLite's
    write lock (``BEGIN IMMEDIATE``, taken at the transaction's first statement) serialises them already;
    on PostgreSQL a transaction-scoped advisory lock does, released at commit or rollback.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEEN_AT_LOCK})
    latest = session.scalar(select(func.max(Document.seen_at)))
    now = utcnow()
    return now if latest is None or latest < now else latest


def run_error(exc: Exception) -> str:
    """What a failed run reports and keeps on its source: the error's message, passwords masked, bounded."""
    message = exc.message if isinstance(exc, CoreError) else f"{type(exc).__name__}: {exc}"
    return redact(message)[:ERROR_CHARS]


def _read_items(source: _SourceView, result: FetchResult) -> ItemScan:
    """The stories of a feed or JSON API source's fetched content."""
    if source.kind == "json":
        return read_json(result.content, JsonFields(**(source.json_fields or {})), result.url)
    return read_feed(result.content, result.url)


def _unlinked_warnings(unlinked: int, url: str) -> tuple[str, ...]:
    """The run's warning (also logged) when entries of a feed or JSON API had no usable link."""
    if not unlinked:
        return ()
    message = redact(
        f"{unlinked} entr{'y' if unlinked == 1 else 'ies'} of {url} had no link, or none that is an "
        "absolute http(s) URL: skipped, as a story is stored under its link"
    )
    log.warning("%s", message)
    return (message,)


def _empty_warnings(empty: int, url: str) -> tuple[str, ...]:
    """The run's warning (also logged) when entries of a feed or JSON API had neither a title nor a text."""
    if not empty:
        return ()
    message = redact(
        f"{empty} entr{'y' if empty == 1 else 'ies'} of {url} had neither a title nor a text: skipped, "
        "as there is nothing to classify"
    )
    log.warning("%s", message)
    return (message,)


def _timeout_warnings(timed_out: int, pattern: str, url: str) -> tuple[str, ...]:
    """The run's warning (also logged) when the link pattern could not judge some links in time."""
    if not timed_out:
        return ()
    message = redact(
        f"link pattern {pattern!r} took too long on {timed_out} link(s) of {url} "
        f"(over {LINK_MATCH_TIMEOUT_S:g} s each, or {PAGE_MATCH_BUDGET_S:g} s for the page); they were "
        "skipped: simplify the pattern (nested repetition such as '(a+)+' backtracks for ever)"
    )
    log.warning("%s", message)
    return (message,)


def _remember(links: dict[str, float], canonical: str, seconds: float) -> None:
    """Note a link to leave out for the next ``seconds``, forgetting the oldest beyond the bound."""
    links.pop(canonical, None)
    links[canonical] = time.monotonic() + seconds
    while len(links) > MAX_REMEMBERED_LINKS:
        del links[next(iter(links))]


def _canonical(url: str) -> str | None:
    """The canonical form of a story's link, or None when it is malformed or too long to store."""
    try:
        canonical = canonical_url(url)
    except InvalidInput:
        return None
    return canonical if len(canonical) <= URL_CHARS else None


def _within(value: str | None, max_chars: int) -> str | None:
    return value if value is not None and len(value) <= max_chars else None


def _bounded(item: RawItem) -> RawItem:
    """The item with its headline and text cut to `TITLE_CHARS` and `TEXT_CHARS` (`clip_words`)."""
    title, text = clip_words(item.title, TITLE_CHARS), clip_words(item.text, TEXT_CHARS)
    return item if (title, text) == (item.title, item.text) else replace(item, title=title, text=text)


def _classify_text(item: RawItem) -> str:
    """The headline, plus the body when it says more than the headline."""
    if not item.text or item.text.startswith(item.title.removesuffix("…")):
        return (item.text or item.title)[:CLASSIFY_CHARS]
    return f"{item.title}. {item.text}"[:CLASSIFY_CHARS]


def _store(session: Session, stories: list[_Story], source_id: int, now: datetime, version: str) -> int:
    """Insert the stories; one another writer stored first is skipped (a savepoint per story)."""
    stored = 0
    for story in stories:
        assert story.sentiment is not None and story.tags is not None
        tags = story.extra_tags | {("topic", t) for t in story.tags.topics}
        tags |= {("entity", e) for e in story.tags.entities}
        document = Document(
            source_id=source_id,
            url=story.url,
            content_hash=story.digest,
            title=story.item.title,
            text=story.item.text,
            published_at=story.item.published_at,
            seen_at=now,
            label=story.sentiment.label,
            scores=story.sentiment.scores,
            sentiment=story.sentiment.sentiment,
            model_version=version,
            tags=[DocumentTag(kind=kind, name=name) for kind, name in sorted(tags)],
        )
        try:
            with session.begin_nested():
                session.add(document)
        except IntegrityError:
            continue
        stored += 1
    return stored
