"""HTML pages as raw items: an article page's main text (trafilatura), a list page's article links."""

from __future__ import annotations

import codecs
import functools
import re
import time
from dataclasses import dataclass
from urllib.parse import urljoin

import lxml.html  # type: ignore[import-untyped]
import regex
import trafilatura
from lxml import etree
from trafilatura.settings import Document, set_date_params

from finance_sentiment.parsing import (
    MAX_ITEMS,
    ParseError,
    RawItem,
    absolute_web_url,
    normalise_space,
    stand_in_title,
)
from finance_sentiment.tagging import escape_marks_in_bytes
from finance_sentiment.timestamps import parse_time
from textcore.errors import InvalidInput

# A link pattern is the operator's regular expression, applied to every link of every list page: one with
# catastrophic backtracking ('(a|aa)+$') could hold a worker thread for hours on one long link. Each match
# may take this long (seconds) and a page's matches this long in all; a link over the limit is skipped.
LINK_MATCH_TIMEOUT_S = 0.05
PAGE_MATCH_BUDGET_S = 1.0
MAX_LINK_CHARS = 2048  # as tables.URL_CHARS: a longer link could not be stored anyway
# Extracted "main text" shorter than this is a menu, a cookie banner or a caption, not an article.
MIN_ARTICLE_CHARS = 40


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
    title = normalise_space(document.title or "") or stand_in_title(text)
    return RawItem(url=url, title=title, text=text, published_at=parse_time(document.date))


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
        url = absolute_web_url(anchor.get("href") or "", base)
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
