"""What every parser of fetched documents yields, and the text and link helpers they share.

Fetched bytes become raw items in one module per format: `finance_sentiment.feeds` (RSS/Atom),
`finance_sentiment.json_api` (JSON APIs) and `finance_sentiment.articles` (HTML article and list pages);
`finance_sentiment.timestamps` reads the publication times they carry. Everything is pure: the caller
fetches, these functions only parse. Each document yields at most `MAX_ITEMS` items or links, so that one
huge or hostile document cannot flood the pipeline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from html import unescape
from urllib.parse import urldefrag, urljoin, urlsplit

import lxml.html  # type: ignore[import-untyped]
from lxml import etree

from finance_sentiment.tagging import escape_marks
from textcore.errors import InvalidInput

MAX_ITEMS = 500
STAND_IN_CHARS = 120  # a headline made of the start of an untitled story's text, ellipsis included
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


def plain_text(text: str) -> str:
    """`text` (no markup) with unreadable control characters dropped and whitespace normalised."""
    return normalise_space(_UNREADABLE.sub(" ", text))


def absolute_web_url(href: str, base: str) -> str | None:
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


def stand_in_title(text: str) -> str:
    """An untitled story's headline stand-in: the start of `text`, cut at a word boundary (`clip_words`)."""
    return clip_words(text, STAND_IN_CHARS)
