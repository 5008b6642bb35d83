"""JSON API responses as raw items: where the item list and each item's fields sit, as dotted paths."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from finance_sentiment.parsing import (
    MAX_ITEMS,
    ItemScan,
    ParseError,
    RawItem,
    absolute_web_url,
    html_to_text,
    stand_in_title,
)
from finance_sentiment.timestamps import parse_time


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
        absolute = absolute_web_url(url, base_url) if isinstance(url, str) else None
        title = html_to_text(title) if isinstance(title, str) else ""
        if absolute is None:
            unlinked += 1
            continue
        text = _lookup(entry, fields.text)
        text = html_to_text(text) if isinstance(text, str) else ""
        title = title or stand_in_title(text)  # as a feed entry without a title is headed by its text
        if not title:
            empty += 1
            continue
        text = text or title
        published = parse_time(_lookup(entry, fields.time))
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
