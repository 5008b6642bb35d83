"""Turn fetched bytes (RSS/Atom feeds, HTML article and list pages, JSON APIs) into raw items.

Everything here is pure: the caller fetches, these functions only parse. Each document yields at most
`MAX_ITEMS` items or links, so that one huge or hostile document cannot flood the pipeline.
"""

from __future__ import annotations

import calendar
import codecs
import functools
import io
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from html import unescape
from html.entities import entitydefs
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import feedparser
import lxml.html  # type: ignore[import-untyped]
import lxml.html.defs  # type: ignore[import-untyped]
import regex
import trafilatura
from lxml import etree
from trafilatura.settings import Document, set_date_params

from finance_sentiment.tagging import blank_marks, escape_marks, escape_marks_in_bytes
from textcore.errors import InvalidInput

MAX_ITEMS = 500
# A link pattern is the operator's regular expression, applied to every link of every list page: one with
# catastrophic backtracking ('(a|aa)+$') could hold a worker thread for hours on one long link. Each match
# may take this long (seconds) and a page's matches this long in all; a link over the limit is skipped.
LINK_MATCH_TIMEOUT_S = 0.05
PAGE_MATCH_BUDGET_S = 1.0
MAX_LINK_CHARS = 2048  # as tables.URL_CHARS: a longer link could not be stored anyway
# Extracted "main text" shorter than this is a menu, a cookie banner or a caption, not an article.
MIN_ARTICLE_CHARS = 40
_WEB_SCHEMES = ("http", "https")
# Elements whose text must not run into the next element's text when the markup is flattened.
_BLOCK_TAGS = (
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "figure",
    "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre",
    "section", "table", "td", "th", "tr", "ul",
)  # fmt: skip


@dataclass(frozen=True)
class RawItem:
    """One story as found in a source, before scoring.

    Attributes:
        url: Absolute http(s) URL of the story.
        title: Headline, plain text.
        text: Plain text body (HTML stripped, whitespace normalised); the title for headline-only feeds.
        published_at: Publication time in UTC, or None when the source gives none.
    """

    url: str
    title: str
    text: str
    published_at: datetime | None

    def __post_init__(self) -> None:
        # NUL characters carry nothing readable, and PostgreSQL cannot store them in text.
        for name in ("url", "title", "text"):
            value = getattr(self, name)
            if "\x00" in value:
                object.__setattr__(self, name, value.replace("\x00", ""))


@dataclass(frozen=True)
class JsonFields:
    """Where the items and their fields sit in a JSON document, as dotted paths such as ``data.articles``.

    Attributes:
        items: Path to the list of items; "" means the document root is the list.
        title: Path to the headline inside an item.
        text: Path to the body inside an item; a missing body falls back to the title.
        url: Path to the (absolute or relative) link inside an item.
        time: Path to the publication time: an ISO 8601 string or epoch seconds.
    """

    items: str = ""
    title: str = "title"
    text: str = "text"
    url: str = "url"
    time: str = "published_at"


class ParseError(InvalidInput):
    """A fetched document cannot be read as the format its source declares."""


# What lxml (XML 1.0) refuses in text: C0 control characters but tab, newline and carriage return (feeds carry
# a vertical tab or a form feed pasted from a word processor, a BEL, an ANSI escape), the two noncharacters
# U+FFFE and U+FFFF, and lone surrogates (a JSON "\ud800" decodes to one; UTF-8, and so PostgreSQL, has none).
# None of them is readable: each becomes a space, so the markup around it is still parsed and its entities
# decoded (lxml refused the whole string, whose entities were then stored as written: "AT&amp;T").
_UNREADABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def normalise_space(text: str) -> str:
    """Collapse every run of whitespace (including non-breaking spaces) to one space and trim the ends."""
    return " ".join(text.split())


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment or page: scripts and styles dropped, entities decoded, blocks separated.

    Args:
        html: Markup, or plain text (returned with its whitespace normalised).

    Returns:
        The visible text with whitespace normalised, entities decoded once (``AT&amp;T`` is ``AT&T``),
        ticker marks kept as written (``Apple <AAPL.O> beats``) and unreadable control characters dropped;
        "" for empty input.
    """
    html = escape_marks(_UNREADABLE.sub(" ", html))
    if "<" not in html and "&" not in html:
        return normalise_space(html)
    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
    except (etree.ParserError, ValueError):
        # lxml refuses some inputs outright; they hold no markup worth keeping, but their entities are
        # still decoded, so that the text is plain.
        return normalise_space(unescape(html))
    for junk in list(root.iter("script", "style", "noscript", "template")):
        junk.drop_tree()
    for block in root.iter(*_BLOCK_TAGS):
        block.text = " " + (block.text or "")
        block.tail = " " + (block.tail or "")
    return normalise_space(root.text_content())


def parse_feed(content: bytes, base_url: str) -> list[RawItem]:
    """Read an RSS or Atom feed (`read_feed` without the count of entries left out for want of a link)."""
    return read_feed(content, base_url).items


@dataclass(frozen=True)
class ItemScan:
    """The stories of a feed or JSON document, and how many of its entries were left out for want of a link
    or of any words.

    Attributes:
        items: The stories, in document order.
        unlinked: Entries with no link, or one that is no absolute http(s) URL (``mailto:``, ``ftp:``, a
            non-permalink guid alone): a story is stored under its link, so these cannot be.
        empty: Entries with a usable link but neither a title nor a text: nothing to classify.
    """

    items: list[RawItem]
    unlinked: int = 0
    empty: int = 0


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
        url = _absolute_web_url(dict.get(entry, "link") or "", base_url)
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
    title = title or _clip(text)
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


def plain_text(text: str) -> str:
    """`text` (no markup) with unreadable control characters dropped and whitespace normalised."""
    return normalise_space(_UNREADABLE.sub(" ", text))


def parse_article(content: bytes, url: str, charset: str | None = None) -> RawItem | None:
    """Extract the main text, title and date of one HTML article page.

    Args:
        content: The page as fetched.
        url: The page's absolute URL.
        charset: The encoding the server declared (Content-Type); else the page's own declaration or a guess.

    Returns:
        The article, or None when the page has no main text (menus, scripts or a too-short snippet only).
    """
    if not content.strip():
        return None
    # The default output format is date only; asking for time and offset keeps them when the page has them.
    date_params = {**set_date_params(True), "outputformat": "%Y-%m-%dT%H:%M:%S%z"}
    tree = trafilatura.load_html(_decoded(escape_marks_in_bytes(content), charset))
    if tree is None:
        return None
    if _extraction_decodes_again():
        _escape_ampersands(tree)
    # favor_precision keeps navigation and link lists out of the text: they would pollute the sentiment.
    document = trafilatura.bare_extraction(
        tree,
        url=url,
        with_metadata=True,
        favor_precision=True,
        date_extraction_params=date_params,
    )
    if not isinstance(document, Document):
        return None
    text = normalise_space(document.text or "")
    if len(text) < MIN_ARTICLE_CHARS:
        return None
    title = normalise_space(document.title or "") or _clip(text)
    return RawItem(url=url, title=title, text=text, published_at=_parse_time(document.date))


@functools.cache
def _extraction_decodes_again() -> bool:
    """Whether trafilatura decodes entities once more in the title and text it extracts, after the HTML
    parser did (2.3 runs both through html.unescape): a page showing "&amp;" as written came out "&"."""
    shown = "A page shows &amp;amp; as written. "
    probe = (
        f"<html><head><title>{shown}</title></head><body><article><p>{shown * 4}</p></article></body></html>"
    )
    document = trafilatura.bare_extraction(probe, with_metadata=True)
    found = [document.title, document.text] if isinstance(document, Document) else []
    return bool(found) and all(field and "&" in field and "&amp;" not in field for field in found)


def _escape_ampersands(tree: lxml.html.HtmlElement) -> None:
    """Escape "&" once in the text and meta values of a parsed page, for trafilatura's second decoding to
    undo. Scripts and styles stay as written: trafilatura reads JSON-LD metadata from them raw."""
    for element in tree.iter():
        raw = not isinstance(element.tag, str) or element.tag in ("script", "style")  # or a comment
        if element.text and not raw:
            element.text = element.text.replace("&", "&amp;")
        if element.tag == "meta":
            for name, value in element.attrib.items():
                element.set(name, value.replace("&", "&amp;"))
        if element.tail:
            element.tail = element.tail.replace("&", "&amp;")


@dataclass(frozen=True)
class LinkScan:
    """The article links of a list page, and how many links the pattern could not judge in time.

    Attributes:
        links: Matching absolute http(s) links, in first-seen order, without duplicates.
        timed_out: Links skipped because matching them took longer than `LINK_MATCH_TIMEOUT_S`, or came
            after the page's `PAGE_MATCH_BUDGET_S` was spent.
    """

    links: list[str]
    timed_out: int = 0


def compile_link_pattern(pattern: str) -> regex.Pattern[str]:
    """Compile a link pattern as the list-page scan applies it (the `regex` engine, `re` syntax).

    Raises:
        InvalidInput: `pattern` is not a valid regular expression.
    """
    try:
        return regex.compile(pattern)
    except regex.error as exc:
        raise InvalidInput(
            f"expected a valid regular expression for the link pattern; found {pattern!r} ({exc})"
        ) from exc


def extract_links(content: bytes, base_url: str, pattern: str, charset: str | None = None) -> list[str]:
    """The article links of a list page (`scan_links` without the count of links skipped)."""
    return scan_links(content, base_url, pattern, charset).links


def scan_links(content: bytes, base_url: str, pattern: str, charset: str | None = None) -> LinkScan:
    """Collect the article links of a list page.

    Args:
        content: The HTML page as fetched.
        base_url: The page's URL; relative links resolve against it (or against its ``<base href>``).
        pattern: Regular expression an absolute link must match (search) to be kept; a link it cannot
            judge within `LINK_MATCH_TIMEOUT_S` (or once the page's `PAGE_MATCH_BUDGET_S` is spent) is
            skipped and counted, as is one longer than `MAX_LINK_CHARS` is skipped.
        charset: The encoding the server declared (Content-Type); else the page's own declaration or a guess.

    Returns:
        Up to `MAX_ITEMS` absolute http(s) links without fragments, and the count of links timed out.

    Raises:
        InvalidInput: `pattern` is not a valid regular expression.
        ParseError: The page cannot be parsed as HTML.
    """
    wanted = compile_link_pattern(pattern)
    if not content.strip():
        return LinkScan([])
    try:
        root = lxml.html.document_fromstring(_decoded(content, charset))
    except (etree.ParserError, ValueError) as exc:
        raise ParseError(
            f"expected an HTML page at {base_url}; found an unparsable document ({exc})"
        ) from exc
    base_tag = root.find(".//base[@href]")
    base = urljoin(base_url, base_tag.get("href").strip()) if base_tag is not None else base_url
    links: dict[str, None] = {}  # an insertion-ordered set
    timed_out, deadline = 0, time.monotonic() + PAGE_MATCH_BUDGET_S
    for anchor in root.iter("a"):
        url = _absolute_web_url(anchor.get("href") or "", base)
        if url is None or len(url) > MAX_LINK_CHARS or url in links:
            continue
        if (matched := _search(wanted, url, deadline)) is None:
            timed_out += 1
        elif matched:
            links.setdefault(url)
            if len(links) >= MAX_ITEMS:
                break
    return LinkScan(list(links), timed_out)


def _search(wanted: regex.Pattern[str], url: str, deadline: float) -> bool | None:
    """Whether `wanted` finds a match in `url`; None when it cannot tell in time."""
    left = min(LINK_MATCH_TIMEOUT_S, deadline - time.monotonic())
    if left <= 0:
        return None
    try:
        return wanted.search(url, timeout=left) is not None
    except TimeoutError:
        return None


def charset_of(content_type: str) -> str | None:
    """The ``charset`` parameter of a Content-Type header, if it names an encoding Python knows."""
    match = re.search(r"charset\s*=\s*\"?([\w.:-]+)", content_type, re.IGNORECASE)
    if match is None:
        return None
    try:
        return codecs.lookup(match.group(1)).name
    except LookupError:
        return None


def _decoded(content: bytes, charset: str | None) -> bytes | str:
    """Text in the declared charset; the bytes as they are (for the parser to sniff) when none is declared."""
    if charset is None:
        return content
    # An XML declaration inside a decoded string makes lxml refuse it; the declared charset wins anyway.
    return re.sub(r"^\s*<\?xml[^>]*\?>", "", content.decode(charset, errors="replace"))


def parse_json(content: bytes, fields: JsonFields, base_url: str) -> list[RawItem]:
    """Read items from a JSON API response (`read_json` without the count of items left out for want of a
    link)."""
    return read_json(content, fields, base_url).items


def read_json(content: bytes, fields: JsonFields, base_url: str) -> ItemScan:
    """Read items from a JSON API response.

    Args:
        content: The JSON document as fetched.
        fields: Where the item list and each item's fields sit.
        base_url: The API URL; relative item links resolve against it.

    Returns:
        Up to `MAX_ITEMS` items in document order (one without a title is headed by the start of its text,
        as a feed entry is; one with neither is skipped), and how many were left out for want of a web link
        and for want of both a title and a text.

    Raises:
        ParseError: The document is not JSON, or `fields.items` does not lead to a list.
    """
    try:
        document = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ParseError(f"expected a JSON document at {base_url}; found invalid JSON ({exc})") from exc
    entries = _lookup(document, fields.items)
    if not isinstance(entries, list):
        where = repr(fields.items) if fields.items else "the document root"
        raise ParseError(f"expected a list at {where} in {base_url}; found {type(entries).__name__}")
    items = []
    unlinked = empty = 0
    for entry in entries[:MAX_ITEMS]:
        url, title = _lookup(entry, fields.url), _lookup(entry, fields.title)
        absolute = _absolute_web_url(url, base_url) if isinstance(url, str) else None
        title = html_to_text(title) if isinstance(title, str) else ""
        if absolute is None:
            unlinked += 1
            continue
        text = _lookup(entry, fields.text)
        text = html_to_text(text) if isinstance(text, str) else ""
        title = title or _clip(text)  # as a feed entry without a title is headed by its text
        if not title:
            empty += 1
            continue
        text = text or title
        published = _parse_time(_lookup(entry, fields.time))
        items.append(RawItem(url=absolute, title=title, text=text, published_at=published))
    return ItemScan(items, unlinked, empty)


def _lookup(value: Any, path: str) -> Any:
    """Follow a dotted path through nested objects (numeric parts index lists); None when it leads nowhere."""
    for part in path.split(".") if path else ():
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _parse_time(value: Any) -> datetime | None:
    """An ISO 8601 string or epoch seconds as an aware UTC datetime; None when absent or unreadable.

    Naive times are taken as UTC. Numbers too large to be seconds (after year 5138) are read as milliseconds,
    which many APIs send.
    """
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = value / 1000 if abs(value) >= 1e11 else value
            return datetime.fromtimestamp(seconds, tz=UTC)
        if isinstance(value, str) and value.strip():
            parsed = datetime.fromisoformat(value.strip())
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        pass
    return None


def _absolute_web_url(href: str, base: str) -> str | None:
    """`href` resolved against `base`, without its fragment; None unless it is an http(s) URL with a host."""
    if not href.strip():  # an empty href would resolve to the base page itself
        return None
    try:
        url = urldefrag(urljoin(base, href.strip())).url
        parts = urlsplit(url)
    except ValueError:  # e.g. a malformed IPv6 host
        return None
    if parts.scheme.lower() not in _WEB_SCHEMES or not parts.hostname:
        return None
    return url


STAND_IN_CHARS = 120  # a headline made of the start of an untitled story's text, ellipsis included


def clip_words(text: str, limit: int) -> str:
    """`text` when at most `limit` characters, else its start cut at a word boundary (a hard cut when the
    first half holds none) with an ellipsis, `limit` characters at most in all."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    if not text[limit - 1].isspace():
        boundary = max(head.rfind(" "), head.rfind("\n"))
        if boundary >= limit // 2:
            head = head[:boundary]
    return head.rstrip() + "…"


def _clip(text: str) -> str:
    """A headline stand-in: the start of `text`, cut at a word boundary (`clip_words`)."""
    return clip_words(text, STAND_IN_CHARS)
