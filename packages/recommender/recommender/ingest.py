"""Catalog and event files (CSV, TSV or JSON Lines) read into records for the catalog and the events table.

Every problem names the file, the data row (1-based, header excluded) and the column, and says what was
expected and what was found; nothing is stored from a file with a bad row. The rules are the API's: ids of
1-200 characters (an item id once in a file), titles of at most 1,000 characters, texts of at most 20,000
(the text columns joined), at most 50 categories of at most 200 characters, metadata of at most 10,000 JSON
characters, no control character but tab, newline and carriage return in an id, title, text or category
(`textcore.printable`: PostgreSQL cannot store NUL), no invisible format character (a zero-width space, a
bidirectional control: `recommender.data.check_new_id`) in an id, nor a rating beyond 1,000,000 from 0.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from recommender.data import check_new_id, item_text, nfc_id, require_named_columns
from recommender.events import FUTURE_TOLERANCE, EventRecord, future_problem, unix_seconds, value_problem
from recommender.item_records import ItemRecord
from recommender.tables import (
    CATEGORY_LENGTH,
    EVENT_TYPES,
    ID_LENGTH,
    MAX_CATEGORIES,
    MAX_METADATA_CHARS,
    TEXT_LENGTH,
    TITLE_LENGTH,
)
from textcore import InvalidInput, read_table
from textcore.data import require_columns
from textcore.printable import check_printable
from textcore.sql import aware_utc, utcnow


@dataclass(frozen=True)
class ItemColumns:
    """Where an item file keeps each field; any other column is kept as metadata."""

    id: str = "item_id"
    title: str = "title"
    texts: tuple[str, ...] = ("text",)
    categories: str = "categories"


@dataclass(frozen=True)
class EventColumns:
    """Where an interactions file keeps each field; `type` and `rating` may be absent from the file."""

    user: str = "user_id"
    item: str = "item_id"
    time: str = "timestamp"
    rating: str = "rating"
    type: str = "type"
    event_id: str = "event_id"  # optional in the file, and an empty cell: no id


def _rows(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """The file's rows, every one of them with every required column (a JSON Lines row may lack one); a
    JSON Lines list or object in one of them is refused (a number is read as its digits)."""
    rows = read_table(path, texts=required)
    require_columns(path, rows, list(required))
    return rows


def _id(path: Path, number: int, column: str, raw: str, *, new: bool = True) -> str:
    return clean_id(raw, f"{path}: row {number} column {column!r}", new=new)


def clean_id(raw: str, where: str, *, new: bool = True) -> str:
    """An id as the API takes it: surrounding whitespace stripped, in Unicode NFC (an id written composed or
    decomposed is one id), then 1-200 characters, no control character but tab, newline and carriage return,
    and, for a `new` id (one to store), no invisible format character (`recommender.data.check_new_id`). An
    id that only names what is stored (an item to delete, a user to erase) may hold one, so an id stored
    before that rule can still be deleted or erased.

    Raises:
        InvalidInput: Naming `where` when the id is empty, too long or holds a control character (or, when
            new, an invisible format character).
    """
    check_printable(raw, where)
    if new:
        check_new_id(raw, where)
    value = nfc_id(raw.strip())
    if not value or len(value) > ID_LENGTH:
        raise InvalidInput(f"{where}: expected 1-{ID_LENGTH} characters; found {raw!r:.80}")
    return value


def read_item_ids(path: Path, column: str = "item_id") -> list[str]:
    """The item ids in one column of a file (a catalog file will do: its other columns are ignored), to name
    stored items: an id holding an invisible format character is taken (`clean_id`)."""
    rows = _rows(path, [column])
    return [_id(path, number, column, row[column], new=False) for number, row in enumerate(rows, 1)]


def read_items(path: Path, columns: ItemColumns = ItemColumns()) -> list[ItemRecord]:
    """Items of a catalog file: title (or, without one, the start of the text), text fields, categories.

    Categories are a JSON list or ``|``-separated. The text and categories columns are optional, under
    their default names: one named otherwise must be in the file. Raises `InvalidInput` for a missing id
    or title column, a missing text or categories column so named (`require_named_columns`), an empty id,
    a row with neither title nor text, a row beyond the API's limits (`_check_limits`), or an id that
    appears in more than one row (naming them all).
    """
    rows = _rows(path, [columns.id, columns.title])
    default = ItemColumns()
    chosen = [("--text-column", c) for c in columns.texts if c not in default.texts]
    if columns.categories != default.categories:
        chosen.append(("--categories-column", columns.categories))
    require_named_columns(path, rows, chosen)
    used = {columns.id, columns.title, columns.categories, *columns.texts}
    items = []
    for number, row in enumerate(rows, start=1):
        item_id = _id(path, number, columns.id, row[columns.id])
        for column in (columns.title, *columns.texts, columns.categories):
            check_printable(row.get(column, ""), f"{path}: row {number} column {column!r}")
        text = item_text("", [row.get(c, "") for c in columns.texts])
        title = row[columns.title].strip() or text[:200]
        if not title:
            raise InvalidInput(
                f"{path}: row {number} (item {item_id!r}): expected a title or text; found neither"
            )
        categories = _categories(row.get(columns.categories, ""))
        for category in categories:  # a JSON list's escapes (\u0000) become characters only now
            check_printable(category, f"{path}: row {number} column {columns.categories!r}")
        metadata = {k: v for k, v in row.items() if k not in used and v != ""}
        item = ItemRecord(item_id, title, text, categories, metadata)
        _check_limits(f"{path}: row {number}", columns, item)
        items.append(item)
    _require_unique_ids(path, [item.id for item in items])
    return items


def _check_limits(where: str, columns: ItemColumns, item: ItemRecord) -> None:
    """The API's limits of an item (`recommender.schemas.ItemIn`), checked on a row of a file."""
    texts = ", ".join(repr(c) for c in columns.texts)
    problems = [
        (f"column {columns.title!r}", _too_long(item.title, TITLE_LENGTH)),
        (f"column{'s' if len(columns.texts) > 1 else ''} {texts}", _too_long(item.text, TEXT_LENGTH)),
        (f"column {columns.categories!r}", _categories_problem(item.categories)),
    ]
    for label, problem in problems:
        if problem:
            raise InvalidInput(f"{where} {label}: {problem}")
    size = len(json.dumps(item.metadata))
    if size > MAX_METADATA_CHARS:
        raise InvalidInput(
            f"{where}: expected metadata (the other columns) of at most {MAX_METADATA_CHARS:,} JSON "
            f"characters; found {size:,}"
        )


def _too_long(value: str, limit: int) -> str | None:
    return f"expected at most {limit:,} characters; found {len(value):,}" if len(value) > limit else None


def _categories_problem(categories: list[str]) -> str | None:
    if len(categories) > MAX_CATEGORIES:
        return f"expected at most {MAX_CATEGORIES} categories; found {len(categories)}"
    longest = max((len(c) for c in categories), default=0)
    if longest > CATEGORY_LENGTH:
        return f"expected categories of at most {CATEGORY_LENGTH} characters; found one of {longest:,}"
    return None


def _require_unique_ids(path: Path, ids: list[str]) -> None:
    """Every id once in a file; a repeated one is named with its rows (1-based, header excluded)."""
    rows: dict[str, list[int]] = {}
    for number, item_id in enumerate(ids, start=1):
        rows.setdefault(item_id, []).append(number)
    repeats = [(item_id, numbers) for item_id, numbers in rows.items() if len(numbers) > 1]
    if repeats:
        shown = ", ".join(f"{item_id!r:.80} in rows {_numbers(numbers)}" for item_id, numbers in repeats[:20])
        more = f" (and {len(repeats) - 20} more ids)" if len(repeats) > 20 else ""
        raise InvalidInput(f"{path}: expected each item id once; found {shown}{more}")


def _numbers(numbers: list[int]) -> str:
    listed = [str(n) for n in numbers[:10]] + ([f"{len(numbers) - 10} more"] if len(numbers) > 10 else [])
    return f"{', '.join(listed[:-1])} and {listed[-1]}"


def _categories(raw: str) -> list[str]:
    text = raw.strip()
    if text.startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError:
            values = None
        if isinstance(values, list):
            return [str(v).strip() for v in values if str(v).strip()]
    return [part.strip() for part in text.split("|") if part.strip()]


def read_events(
    path: Path, columns: EventColumns = EventColumns(), *, future_tolerance: timedelta = FUTURE_TOLERANCE
) -> list[EventRecord]:
    """Events of an interactions file.

    Times are Unix seconds (a number from 2200-01-01 on is refused: it looks like milliseconds) or ISO 8601
    (UTC when no offset is given), and at most `future_tolerance` after the clock now (a later one is a wrong
    clock or a typo). A row's type comes from the type
    column when the file has one, else it is a rating when the rating cell is filled and a click otherwise.
    An event id column (optional; an empty cell is no id) gives each row the client's own id of the event.
    The rating, type and event id columns may be absent under their default names; one named otherwise must
    be in the file (`require_named_columns`).
    """
    rows = _rows(path, [columns.user, columns.item, columns.time])
    default = EventColumns()
    options = (
        ("--rating-column", columns.rating, default.rating),
        ("--type-column", columns.type, default.type),
        ("--event-id-column", columns.event_id, default.event_id),
    )
    require_named_columns(
        path, rows, [(option, column) for option, column, usual in options if column != usual]
    )
    now = utcnow()
    events = []
    for number, row in enumerate(rows, start=1):
        where = f"{path}: row {number}"
        rating = _number(where, columns.rating, row.get(columns.rating, ""))
        kind = row.get(columns.type, "").strip() or ("rating" if rating is not None else "click")
        if kind not in EVENT_TYPES:
            raise InvalidInput(
                f"{where} column {columns.type!r}: expected one of {', '.join(EVENT_TYPES)}; "
                f"found {kind!r:.40}"
            )
        if kind == "rating" and rating is None:  # else `check_events` would name events[n], not the row
            raise InvalidInput(
                f"{where} column {columns.rating!r}: expected a number, as the row is a rating; found none"
            )
        user = _id(path, number, columns.user, row[columns.user])
        item = _id(path, number, columns.item, row[columns.item])
        moment = _time(where, columns.time, row[columns.time])
        if problem := future_problem("a time", moment, now, future_tolerance):
            raise InvalidInput(f"{where} column {columns.time!r}: {problem}")
        raw_id = row.get(columns.event_id, "")
        event_id = _id(path, number, columns.event_id, raw_id) if raw_id.strip() else None
        events.append(EventRecord(user, item, moment, kind, rating, event_id))
    return events


def _number(where: str, column: str, raw: str) -> float | None:
    if not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(
            f"{where} column {column!r}: expected a number or nothing; found {raw!r:.40}"
        ) from None
    if (problem := value_problem(value)) is not None:
        raise InvalidInput(f"{where} column {column!r}: {problem}")
    return value


def _time(where: str, column: str, raw: str) -> datetime:
    text = raw.strip()
    try:
        seconds = float(text)
    except ValueError:
        moment = _iso_time(where, column, raw)
    else:  # a number is Unix seconds, as the API reads it
        try:
            moment = unix_seconds(seconds)
        except InvalidInput as exc:
            raise InvalidInput(f"{where} column {column!r}: {exc.message}") from None
    try:
        return aware_utc("a time", moment)
    except InvalidInput as exc:
        raise InvalidInput(f"{where} column {column!r}: {exc.message}") from None


def _iso_time(where: str, column: str, raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise InvalidInput(
            f"{where} column {column!r}: expected Unix seconds or an ISO 8601 time; found {raw!r:.40}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
