"""RSS and Atom feeds (read with feedparser) as raw items, ticker marks (``Apple <AAPL.O> beats``) kept."""

from __future__ import annotations

import calendar
import io
import re
from datetime import UTC, datetime
from html.entities import entitydefs
from typing import Any

import feedparser
import lxml.html.defs  # type: ignore[import-untyped]

from finance_sentiment.parsing import (
    MAX_ITEMS,
    ItemScan,
    ParseError,
    RawItem,
    absolute_web_url,
    html_to_text,
    plain_text,
    stand_in_title,
)
from finance_sentiment.tagging import blank_marks


def parse_feed(content: bytes, base_url: str) -> list[RawItem]:
    """Read an RSS or Atom feed (`read_feed` without the count of entries left out for want of a link)."""
    return read_feed(content, base_url).items


def read_feed(content: bytes, base_url: str) -> ItemScan:
    """Read an RSS or Atom feed.

    Args:
        content: The feed document as fetched.
        base_url: The feed's URL; relative entry links resolve against it (or against the feed's xml:base).

    Returns:
        Up to `MAX_ITEMS` items in feed order, and how many entries were left out for want of a web link or
        of both a title and a text.

    Raises:
        ParseError: The document is not a feed, or is malformed and yields no usable entry.
    """
    # A file object (not the bytes) keeps feedparser from treating the input as a path or URL to open.
    # Its HTML sanitizer and URI resolver rewrite markup we only flatten to text (html_to_text drops scripts
    # and styles), and dropped a ticker mark ("Apple <AAPL.O> beats") as an unknown element: values come raw.
    parsed = feedparser.parse(
        io.BytesIO(content),
        response_headers={"content-location": base_url, "content-type": "application/xml"},
        sanitize_html=False,
        resolve_relative_uris=False,
    )
    items: list[RawItem] = []
    unlinked = empty = 0
    atom = str(parsed.get("version") or "").startswith("atom")
    for entry in parsed.get("entries", [])[:MAX_ITEMS]:
        # dict.get bypasses FeedParserDict's key aliases, which emit DeprecationWarnings on access.
        url = absolute_web_url(dict.get(entry, "link") or "", base_url)
        if url is None:
            unlinked += 1
        elif item := _feed_item(entry, url, atom):
            items.append(item)
        else:
            empty += 1
    if not items and (parsed.get("bozo") or not parsed.get("version")):
        problem = parsed.get("bozo_exception") or "no RSS or Atom root element"
        raise ParseError(
            f"expected an RSS or Atom feed at {base_url}; found an unreadable document ({problem})"
        )
    return ItemScan(items, unlinked, empty)


def _feed_item(entry: dict[str, Any], url: str, atom: bool) -> RawItem | None:
    title = _feed_text(dict.get(entry, "title") or "", dict.get(entry, "title_detail"), atom)
    contents = dict.get(entry, "content") or []
    if contents:
        text = _feed_text(contents[0].get("value", ""), contents[0], atom)
    else:
        text = _feed_text(dict.get(entry, "summary") or "", dict.get(entry, "summary_detail"), atom)
    text = text or title
    title = title or stand_in_title(text)
    if not title:
        return None
    stamp = dict.get(entry, "published_parsed") or dict.get(entry, "updated_parsed")
    # feedparser hands back struct_time already converted to UTC.
    published = datetime.fromtimestamp(calendar.timegm(stamp), tz=UTC) if stamp else None
    return RawItem(url=url, title=title, text=text, published_at=published)


def _feed_text(value: str, detail: dict[str, Any] | None, atom: bool) -> str:
    """A feed element's value as plain text. feedparser hands back plain text (Atom ``type="text"``, an RSS
    title without markup) already decoded, and says so: read as HTML again, ``Apple <AAPL.O> beats`` lost
    its ticker and a headline quoting ``&amp;`` was decoded twice. Markup (html, xhtml) is flattened, ticker
    marks kept."""
    plain = (detail or {}).get("type") == "text/plain"
    if plain and (atom or not _rss_html_beside_ticker_marks(value)):
        return plain_text(value)
    return html_to_text(value)


def _rss_html_beside_ticker_marks(value: str) -> bool:
    """Whether an RSS value feedparser took for plain text is HTML but for its ticker marks. feedparser reads
    an RSS element as HTML when it looks like HTML (`looks_like_html`); a ticker mark is no tag it knows, so
    ``AT&amp;T <T.N> <b>cuts</b>`` was taken for plain text, markup and all."""
    masked = blank_marks(value)
    return masked != value and looks_like_html(masked)


# feedparser's rule for an RSS element that does not say what it holds (its own helper is private): HTML when
# it has an end tag or an entity reference, every tag is a known HTML element and every named entity is
# defined. Conservative on purpose: plain text read as HTML loses what looked like a tag ("x <y z> w").
_END_TAG = re.compile(r"</(\w+)>")
_ENTITY_REFERENCE = re.compile(r"&#?\w+;")
_TAG_NAME = re.compile(r"</?(\w+)")
_NAMED_ENTITY = re.compile(r"&(\w+);")
_KNOWN_TAGS = frozenset(lxml.html.defs.tags)


def looks_like_html(text: str) -> bool:
    """Whether `text` is HTML rather than plain text, by feedparser's rule for RSS: ``<b>up</b>`` and
    ``AT&amp;T`` are HTML; ``EPS < 1.0``, ``AT&T``, ``&bogus;`` and ``<custom>x</custom>`` are not."""
    if not (_END_TAG.search(text) or _ENTITY_REFERENCE.search(text)):
        return False
    if any(name.lower() not in _KNOWN_TAGS for name in _TAG_NAME.findall(text)):
        return False
    return all(name in entitydefs for name in _NAMED_ENTITY.findall(text))
