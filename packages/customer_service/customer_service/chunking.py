"""Documents (Markdown, HTML, plain text) cut into retrievable chunks of a few paragraphs.

A document is first read into blocks (paragraphs, list items, table rows, code blocks), each under the
headings it sits in; then the blocks of each section are packed into chunks of at most `max_words` words.
A chunk never spans two sections, and breaks between blocks where it can: only a block longer than a chunk
is split, at sentence ends where possible. Consecutive chunks of one section overlap: a chunk starts with
the last ~`overlap_words` words of the one before (from a sentence start when one is near), so that a
passage cut at a boundary is still found whole in one of them. A chunk's title is "Doc title > Section"
(the heading path; a top heading equal to the document title is not repeated).
"""

from __future__ import annotations

import html as html_entities
import re
from dataclasses import dataclass
from itertools import groupby
from pathlib import PurePath
from typing import Literal, get_args

import lxml.html  # type: ignore[import-untyped]
from lxml import etree
from markdown_it import MarkdownIt
from markdown_it.token import Token

from textcore import InvalidInput

Format = Literal["markdown", "html", "text"]
FORMATS: tuple[str, ...] = get_args(Format)
SUFFIXES: dict[str, Format] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
}
_DROPPED = frozenset({"script", "style", "nav", "noscript", "template", "head", "svg", "iframe"})
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_BLOCKS = frozenset({
    "p", "div", "section", "article", "main", "aside", "header", "footer", "li", "ul", "ol", "dl", "dt", "dd",
    "blockquote", "table", "thead", "tbody", "tfoot", "tr", "figure", "figcaption", "form", "fieldset",
    "details", "summary", "address", "hr",
})  # fmt: skip
_CELLS = frozenset({"td", "th"})
# lxml refuses a str that declares its encoding (XHTML pages open with one): the text is already decoded
_XML_DECLARATION = re.compile(r"^\ufeff?\s*<\?xml\b[^>]*\?>", re.IGNORECASE)
_DROPPED_ELEMENTS = re.compile(
    r"<(" + "|".join(sorted(_DROPPED)) + r")\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL
)  # with their content
_MARKUP = re.compile(r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<[!?/]?[A-Za-z][^>]*>|<\?[^>]*>", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_MARKDOWN = MarkdownIt("commonmark").enable("table")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One retrievable piece of a document: its title ("Doc title > Section"), text and 0-based position."""

    title: str
    text: str
    position: int


@dataclass(frozen=True, slots=True)
class _Block:
    section: tuple[str, ...]  # the heading path above the block
    text: str


def format_of(filename: str) -> Format:
    """The document format given by a file name's suffix.

    Raises:
        InvalidInput: If the suffix is not one of .md, .markdown, .html, .htm, .txt.
    """
    suffix = PurePath(filename).suffix.lower()
    found = SUFFIXES.get(suffix)
    if found is None:
        raise InvalidInput(
            f"expected a document file ending in {', '.join(SUFFIXES)}; found {suffix or 'no suffix'} "
            f"in {filename!r}"
        )
    return found


# A Markdown heading line ("# Mortgage guide", "## Fixed rates"): a document sent without its format that
# holds one is Markdown, not text whose "#" markers would be answered as words
_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+\S", re.MULTILINE)


# An HTML page: one that opens (after an XML declaration, comments and white space) with its doctype or
# <html>, <head> or <body>; or a fragment holding a block element, opened and closed ("<p>...</p>",
# "<h2>Fees</h2>", "<li>...</li>"). Read as text, its tags were stored in the passages and answered as words.
_HTML_PAGE = re.compile(
    r"^\ufeff?\s*(?:<\?xml\b[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b",
    re.IGNORECASE | re.DOTALL,
)
_BLOCK_NAMES = (
    r"(?:p|div|h[1-6]|ul|ol|li|table|tr|td|th|section|article|main|header|footer|blockquote|dl|dd|pre)"
)
_HTML_BLOCK_OPENS = re.compile(rf"<{_BLOCK_NAMES}(?:\s[^<>]*)?>", re.IGNORECASE)
_HTML_BLOCK_CLOSES = re.compile(rf"</{_BLOCK_NAMES}\s*>", re.IGNORECASE)


def guess_format(text: str) -> Format:
    """The format of a document sent without one: "html" for an HTML page (`_HTML_PAGE`); else "markdown"
    when a line is a Markdown heading (one to six "#", a space, text); else "html" when it holds an HTML
    block element, opened and closed (`_HTML_BLOCK_OPENS`, `_HTML_BLOCK_CLOSES`); else "text" (plain text
    without any of these is read as it always was)."""
    if _HTML_PAGE.match(text):
        return "html"
    if _ATX_HEADING.search(text):
        return "markdown"
    fragment = _HTML_BLOCK_OPENS.search(text) and _HTML_BLOCK_CLOSES.search(text)
    return "html" if fragment else "text"


def chunk_document(
    text: str, *, format: str, title: str, max_words: int = 180, overlap_words: int = 40
) -> list[Chunk]:
    """Cut a document into chunks.

    Args:
        text: The document's content.
        format: "markdown", "html" or "text" (see `format_of`).
        title: The document title, the first part of every chunk title.
        max_words: The most words in one chunk, overlap included.
        overlap_words: About how many words of a chunk are repeated at the start of the next one in the
            same section (0 for none).

    Returns:
        The chunks in document order, positions 0, 1, ...; empty for a document without text.

    Raises:
        InvalidInput: On an unknown format or sizes that do not fit (max_words >= 10, 0 <= overlap < half).
    """
    if format not in FORMATS:
        raise InvalidInput(f"format: expected one of {', '.join(FORMATS)}; found {format!r}")
    if max_words < 10 or not 0 <= overlap_words <= max_words // 2:
        raise InvalidInput(
            f"expected max_words >= 10 and 0 <= overlap_words <= max_words / 2; found {max_words}, "
            f"{overlap_words}"
        )
    if format == "markdown":
        blocks = _markdown_blocks(text)
    elif format == "html":
        blocks = _html_blocks(text)
    else:
        blocks = [_Block((), p) for part in re.split(r"\n\s*\n", text) if (p := _normalise(part))]
    chunks: list[Chunk] = []
    for section, group in groupby(blocks, key=lambda block: block.section):
        heading = _title(title, section)
        for body in _pack([block.text for block in group], max_words, overlap_words):
            chunks.append(Chunk(heading, body, len(chunks)))
    return chunks


# ------------------------------------------------------------------------------------------ reading


def _markdown_blocks(text: str) -> list[_Block]:
    tokens = _MARKDOWN.parse(text)
    headings: list[tuple[int, str]] = []
    blocks: list[_Block] = []
    cells: list[str] | None = None  # the cells of the table row being read
    lists = 0  # list nesting depth
    for i, token in enumerate(tokens):
        section = tuple(h for _, h in headings)
        kind = token.type
        if kind == "inline":
            content = _inline_text(token)
            if i > 0 and tokens[i - 1].type == "heading_open":
                _enter(headings, int(tokens[i - 1].tag[1:]), content)
            elif cells is not None:
                cells.append(content)
            elif content:
                blocks.append(_Block(section, f"- {content}" if lists else content))
        elif kind in ("bullet_list_open", "ordered_list_open"):
            lists += 1
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists -= 1
        elif kind == "tr_open":
            cells = []
        elif kind == "tr_close" and cells is not None:
            if any(cells):
                blocks.append(_Block(section, " | ".join(cells)))
            cells = None
        elif kind in ("fence", "code_block") and token.content.strip():
            blocks.append(_Block(section, token.content.strip("\n")))
        elif kind == "html_block" and (content := _html_fragment_text(token.content)):
            blocks.append(_Block(section, content))
    return blocks


def _inline_text(token: Token) -> str:
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(child.content)  # the alt text
    return _normalise("".join(parts))


def _html_fragment_text(html: str) -> str:
    try:
        root = lxml.html.fragment_fromstring(_XML_DECLARATION.sub("", html, count=1), create_parent="div")
    except (etree.ParserError, ValueError):
        return _strip_tags(html)
    return _normalise(" ".join(b.text for b in _walk_html(root)))


def _html_blocks(html: str) -> list[_Block]:
    html = _XML_DECLARATION.sub("", html, count=1)
    if not html.strip():
        return []
    try:
        root = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        # what lxml still refuses (e.g. a page of comments only: "Document is empty") is read as the text
        # between its tags, never as markup: a chunk's text may become the bot's answer
        return [_Block((), p) for p in [_strip_tags(html)] if p]
    return _walk_html(root)


def _strip_tags(html: str) -> str:
    """The text of markup lxml could not parse: dropped elements (script, style, nav...) with their content,
    comments and tags removed, character references decoded."""
    text = _MARKUP.sub(" ", _DROPPED_ELEMENTS.sub(" ", html))
    return _normalise(html_entities.unescape(text))


def _walk_html(root: lxml.html.HtmlElement) -> list[_Block]:
    """Blocks of an HTML tree in document order: block elements end a paragraph, headings open sections."""
    headings: list[tuple[int, str]] = []
    blocks: list[_Block] = []
    buffer: list[str] = []

    def flush() -> None:
        text = _normalise("".join(buffer))
        buffer.clear()
        if text:
            blocks.append(_Block(tuple(h for _, h in headings), text))

    def walk(element: lxml.html.HtmlElement) -> None:
        tag = element.tag if isinstance(element.tag, str) else ""  # comments have a function as tag
        if tag in _DROPPED or not tag:
            return
        if tag == "br":
            buffer.append(" ")
            return
        if tag in _HEADINGS:
            flush()
            _enter(headings, _HEADINGS[tag], _normalise(element.text_content()))
            return
        if tag == "pre":
            flush()
            if code := element.text_content().strip("\n"):
                blocks.append(_Block(tuple(h for _, h in headings), code))
            return
        block = tag in _BLOCKS
        if block:
            flush()
        buffer.append(element.text or "")
        for child in element:
            walk(child)
            buffer.append(child.tail or "")
        if tag in _CELLS:
            buffer.append(" | ")
        if block:
            flush()

    walk(root)
    flush()
    return [_Block(b.section, b.text.strip(" |")) for b in blocks if b.text.strip(" |")]


def _enter(headings: list[tuple[int, str]], level: int, text: str) -> None:
    """Open a section: drop the headings at this level or deeper, then push this one."""
    while headings and headings[-1][0] >= level:
        headings.pop()
    if text:
        headings.append((level, text))


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _title(document: str, section: tuple[str, ...]) -> str:
    document = _normalise(document)
    parts = list(section)
    if parts and document and parts[0].casefold() == document.casefold():
        parts = parts[1:]
    return " > ".join(p for p in [document, *parts] if p)


# ------------------------------------------------------------------------------------------ packing


def _pack(blocks: list[str], max_words: int, overlap_words: int) -> list[str]:
    """Pack one section's blocks into chunk texts of at most `max_words` words, overlapping."""
    units: list[str] = []
    for block in blocks:
        if _words(block) <= max_words - overlap_words:
            units.append(block)
        else:
            units.extend(_split_long(block, max_words - overlap_words))
    chunks: list[str] = []
    current: list[str] = []
    for unit in units:
        if current and sum(map(_words, current)) + _words(unit) > max_words:
            chunks.append("\n".join(current))
            tail = _tail(chunks[-1], min(overlap_words, max_words - _words(unit)))
            current = [tail] if tail else []
        current.append(unit)
    if current:
        chunks.append("\n".join(current))
    return chunks


def _split_long(block: str, limit: int) -> list[str]:
    """Pieces of at most `limit` words: whole sentences where they fit, else runs of words."""
    pieces: list[str] = []
    current: list[str] = []
    for sentence in _SENTENCE_END.split(block):
        words = sentence.split()
        if current and (len(words) > limit or _words(" ".join(current)) + len(words) > limit):
            pieces.append(" ".join(current))
            current = []
        if len(words) > limit:  # a sentence longer than a chunk: cut it into runs of words
            pieces.extend(" ".join(words[i : i + limit]) for i in range(0, len(words), limit))
        else:
            current.append(sentence)
    if current:
        pieces.append(" ".join(current))
    return pieces


def _tail(text: str, n: int) -> str:
    """The last ~n words of a chunk, starting at the first sentence start among them when there is one."""
    if n < 5:  # a few words of overlap carry no context
        return ""
    words = text.split()[-n:]
    for i in range(1, len(words)):
        if words[i - 1][-1] in ".!?:" and words[i][:1].isupper():
            return " ".join(words[i:]) if len(words) - i >= n // 2 else " ".join(words)
    return " ".join(words)


def _words(text: str) -> int:
    return len(text.split())
