"""Request and response bodies of the recommender's API (pydantic v2).

Inputs forbid unknown fields and bound every string, list and mapping, so one request cannot smuggle in a
typo or megabytes of text. No id, title, text or category may hold a control character but tab, newline and
carriage return (`textcore.printable`), so such a request is refused alike on SQLite and on PostgreSQL, which
cannot store NUL. Ids, titles, texts and categories are stripped of surrounding whitespace before their
length is checked, as `recommender ingest-items` reads them from a file. Ids (of items, users and events) are
also brought to Unicode NFC, as the files' are (`recommender.data.nfc_id`): "café" sent composed or
decomposed is one id. An id to store (`ItemId`) may not hold an invisible format character (a zero-width
space, a bidirectional control: `recommender.data.format_character`), which would make it look like another
id; an id that names what is stored (`StoredId`: reads, deletes, scoring) may, so ids stored before that rule
stay reachable. The per-request counts the operator
configures (``max_items_per_request``, ``max_events_per_request``) are checked by the service; the bounds
here are the hard ceilings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
)

from recommender.data import FORMAT_RULE, format_character, nfc_id
from recommender.events import MAX_VALUE, EventRecord, unix_seconds
from recommender.item_records import ItemRecord, StoredItem
from recommender.serving import ScoredItem
from recommender.tables import (
    CATEGORY_LENGTH,
    ID_LENGTH,
    MAX_CATEGORIES,
    MAX_METADATA_CHARS,
    TEXT_LENGTH,
    TITLE_LENGTH,
)
from textcore import InvalidInput
from textcore.printable import Printable


def _nfc(value: object) -> object:
    # The same visible id is one id, whichever Unicode form a client's keyboard or file system sent.
    return nfc_id(value) if isinstance(value, str) else value


def _no_format_character(value: object) -> object:
    # Checked as sent (before NFC and stripping), so the position is that of the id sent.
    if isinstance(value, str) and (found := format_character(value)) is not None:
        raise ValueError(f"{FORMAT_RULE}; found {found}")
    return value


# An id that names something stored (a read, a delete, an erasure, an item or user to score): it may hold an
# invisible format character, so an item or user stored before ids were refused one stays reachable.
StoredId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=ID_LENGTH),
    Printable,
    BeforeValidator(_nfc),
]
# An id to store (an item's, an event's user, item and event ids): no invisible format character either.
ItemId = Annotated[StoredId, BeforeValidator(_no_format_character)]
Title = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_LENGTH), Printable
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=TEXT_LENGTH), Printable]
Category = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=CATEGORY_LENGTH), Printable
]
Interests = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2_000), Printable
]
_INPUT = ConfigDict(extra="forbid")


def _small_json(value: dict[str, Any]) -> dict[str, Any]:
    # NaN and Infinity are no JSON (Python's parser takes them): SQLite would keep them as null and
    # PostgreSQL refuse them, so they are refused here, alike on both.
    try:
        size = len(json.dumps(value, allow_nan=False))
    except ValueError:
        raise ValueError("expected metadata of finite numbers, found NaN or Infinity") from None
    if size > MAX_METADATA_CHARS:
        raise ValueError(f"expected metadata of at most {MAX_METADATA_CHARS} JSON characters, found {size}")
    return value


Metadata = Annotated[dict[str, Any], AfterValidator(_small_json)]


def _seconds(value: object) -> object:
    # pydantic reads a number above 2e10 as milliseconds (1e11 -> 1973); the README, and `ingest-events`,
    # read every number as Unix seconds, and one too large to be seconds is refused, not guessed at.
    if isinstance(value, bool):
        raise ValueError("expected ISO 8601 text or Unix seconds; found a boolean")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return value  # ISO 8601 text, for pydantic to read
    if isinstance(value, int | float):
        try:
            return unix_seconds(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
    return value


EventTime = Annotated[AwareDatetime, BeforeValidator(_seconds)]


class ItemBody(BaseModel):
    """An item's content (the id comes from the path)."""

    model_config = _INPUT

    title: Title = Field(description="Short name shown in explanations; the model reads it first.")
    text: Text = Field("", description="Description, body or other text the model reads after the title.")
    categories: list[Category] = Field(default_factory=list, max_length=MAX_CATEGORIES)
    metadata: Metadata = Field(default_factory=dict, description="Free JSON kept with the item.")

    def record(self, item_id: str) -> ItemRecord:
        """The domain record of this item."""
        return ItemRecord(item_id, self.title, self.text, list(self.categories), dict(self.metadata))


class ItemIn(ItemBody):
    """An item to create or replace."""

    id: ItemId = Field(description="Your id of the item (1-200 characters).")


class ItemsIn(BaseModel):
    """A batch of items to upsert."""

    model_config = _INPUT

    items: list[ItemIn] = Field(min_length=1, max_length=100_000)


class ItemOut(BaseModel):
    """A stored item."""

    id: str
    title: str
    text: str
    categories: list[str]
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, item: StoredItem) -> ItemOut:
        """The response body of a stored item."""
        return cls(
            id=item.id,
            title=item.title,
            text=item.text,
            categories=item.categories,
            metadata=item.metadata,
            created_at=item.created_at,
            updated_at=item.updated_at,
        )


class ItemPage(BaseModel):
    """A page of items in id order; pass `next_cursor` back as `cursor` for the next one."""

    items: list[ItemOut]
    next_cursor: str | None


class UpsertOut(BaseModel):
    """What an upsert did."""

    created: int
    updated: int
    embedded: int = Field(description="Items whose text changed and were embedded again.")


class EventIn(BaseModel):
    """One interaction."""

    model_config = _INPUT

    user_id: ItemId
    item_id: ItemId
    timestamp: EventTime | None = Field(
        None,
        description="ISO 8601 with an offset, or Unix seconds (a number from 2200-01-01 on is refused: it "
        "looks like milliseconds), at most REC_EVENT_FUTURE_TOLERANCE_S (1 day) after the server's clock; "
        "the time of arrival when omitted.",
    )
    type: Literal["click", "rating", "purchase"] = "click"
    value: float | None = Field(
        None,
        strict=True,  # a JSON number: lax mode took true as 1.0 (and "5" as 5.0)
        ge=-MAX_VALUE,
        le=MAX_VALUE,
        allow_inf_nan=False,
        description="The rating (required for ratings), or a number kept with another event: a JSON number "
        "(not a boolean or a string), finite, at most 1,000,000 from 0.",
    )

    event_id: ItemId | None = Field(
        None,
        description="Your id of the event (1-200 characters), so that a retried request is stored once: an "
        "event whose event_id is already stored, or earlier in the request, is not stored or counted again. "
        "Events with different event_ids are all stored, even when they are otherwise identical (two order "
        "lines of one item in one second); an event without one is not stored when an identical event is.",
    )

    def record(self, now: datetime) -> EventRecord:
        """The domain record of this event (`now` when it has no timestamp)."""
        return EventRecord(
            self.user_id, self.item_id, self.timestamp or now, self.type, self.value, self.event_id
        )


class EventsIn(BaseModel):
    """A batch of events, stored all or nothing."""

    model_config = _INPUT

    events: list[EventIn] = Field(min_length=1, max_length=1_000_000)


class EventsOut(BaseModel):
    """How many events were stored (events already stored, by content or by event_id, are not counted)."""

    stored: int


class ScoreIn(BaseModel):
    """Whom to score for (`user_id`, or `history`, and/or `interests`) and which items."""

    model_config = _INPUT

    user_id: StoredId | None = Field(None, description="A user with stored events.")
    history: list[StoredId] | None = Field(
        None, max_length=1_000, description="Item ids the user liked, oldest first."
    )
    interests: Interests | None = Field(None, description='Free text, e.g. "telescopes, astronomy".')
    items: list[StoredId] = Field(max_length=100_000, description="Candidate item ids to score.")


class HistoryMatchOut(BaseModel):
    """A history item that speaks for a result."""

    item_id: str
    title: str
    similarity: float = Field(
        description="Content cosine plus co-occurrence similarity to the result, each in [-1, 1]: up to 2."
    )


class ExplanationOut(BaseModel):
    """Why an item scored as it did."""

    because: list[HistoryMatchOut]
    matched_interests: list[str]


class ScoredOut(BaseModel):
    """One scored item, with its explanation."""

    item_id: str
    title: str
    score: float
    explanation: ExplanationOut
    rated_below_threshold: bool = Field(
        False,
        description="The user's latest rating of the item is below the threshold: /v1/score ranks it after "
        "every other item, its score left as the model gave it (/v1/recommend never offers one).",
    )


# The scored items' dataclasses have the fields of `ScoredOut` (a test holds them to it), so pydantic writes
# their JSON in one pass; building 1,000 `ScoredOut` models first and validating them cost ~5 ms a request.
_SCORED = TypeAdapter(list[ScoredItem])


def scored_json(items: Sequence[ScoredItem]) -> bytes:
    """The JSON body of scored items, a list of `ScoredOut` objects, best first."""
    return _SCORED.dump_json(list(items))
