"""Items as the catalog takes and returns them, and what the catalog's modules share about them: the hash of
an item's encoder text, and how ids are listed in an error message."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from recommender.data import item_text
from recommender.tables import Item
from textcore import InvalidInput


@dataclass(frozen=True)
class ItemRecord:
    """An item as given to the catalog."""

    id: str
    title: str
    text: str = ""
    categories: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def encoder_text(self) -> str:
        """What the model reads: the title, then the text."""
        return item_text(self.title, [self.text]) or self.id


@dataclass(frozen=True)
class StoredItem:
    """An item as stored, with its timestamps."""

    id: str
    title: str
    text: str
    categories: list[str]
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class UpsertReport:
    """What an upsert did: rows created and updated, and how many items were (re-)embedded."""

    created: int
    updated: int
    embedded: int


def text_hash(text: str) -> str:
    """A short stable digest of an encoder text (a change means the vector must be recomputed)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stored_item(row: Item) -> StoredItem:
    """An item row as the catalog returns it."""
    return StoredItem(
        row.id, row.title, row.text, list(row.categories), dict(row.meta), row.created_at, row.updated_at
    )


def require_unique(ids: list[str]) -> None:
    """Refuse ids that appear more than once (`InvalidInput`, listing them)."""
    repeats = sorted(i for i, count in Counter(ids).items() if count > 1)
    if repeats:
        raise InvalidInput(f"expected each item id once per request; repeated: {id_listing(repeats)}")


def id_listing(ids: Sequence[str], shown: int = 20) -> str:
    """The ids for an error message: at most `shown` of them, then how many more."""
    text = ", ".join(repr(i) for i in ids[:shown])
    return f"{text} (and {len(ids) - shown} more)" if len(ids) > shown else text
