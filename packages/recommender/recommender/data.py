"""Interactions and item catalogs read from CSV/TSV/JSONL files, and converters for the public datasets.

An interactions file has one row per (user, item, time[, rating]); a catalog file has one row per item with an
id, a title and optional text fields. Every problem with a file raises `InvalidInput` naming the file, the
column and the data row (1-based, header excluded) and saying what was expected and what was found. Ids
follow the rule of the API and the ingest files: no control character but tab, newline and carriage return,
no invisible format character (`format_character`), in Unicode NFC.
"""

from __future__ import annotations

import csv
import json
import math
import os
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import numpy as np

from textcore import InvalidInput, read_table
from textcore.data import require_columns
from textcore.printable import RULE as CONTROL_RULE
from textcore.printable import control_character

_T = TypeVar("_T")
TYPE_COLUMN = (
    "type"  # an interaction's kind (click, rating, purchase), as `recommender ingest-events` reads it
)


@dataclass(frozen=True)
class Interactions:
    """Parallel arrays, one row per interaction, in any order."""

    users: np.ndarray  # (n,) object: user ids (str)
    items: np.ndarray  # (n,) object: item ids (str)
    times: np.ndarray  # (n,) float64: seconds, or any number that increases with time
    values: np.ndarray  # (n,) float64: the rating, NaN when the row has none

    def __len__(self) -> int:
        return len(self.users)

    def sequences(self) -> dict[str, list[str]]:
        """Each user's item ids in time order; equal times keep the order of the rows."""
        if len(self) == 0:
            return {}
        user_ids, codes = np.unique(self.users, return_inverse=True)
        # lexsort is stable: the last key is primary, and rows tying on (user, time) keep their order
        order = np.lexsort((self.times, codes))
        sorted_items = self.items[order]
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [len(order)]))
        first_codes = codes[order][starts]
        return {
            str(user_ids[code]): [str(item) for item in sorted_items[start:end]]
            for code, start, end in zip(first_codes, starts, ends, strict=True)
        }


@dataclass(frozen=True)
class Catalog:
    """Items in catalog order; positions in this order index every score array."""

    ids: list[str]
    titles: list[str]
    texts: list[str]  # what the encoder reads: the title, then the other text fields
    index: dict[str, int]  # item id -> position

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, ids: Sequence[str], titles: Sequence[str], texts: Sequence[str]) -> Catalog:
        """A catalog from parallel lists (the index is derived).

        Raises:
            InvalidInput: If the lists differ in length or an id appears twice.
        """
        if not len(ids) == len(titles) == len(texts):
            raise InvalidInput(
                f"expected as many titles and texts as ids ({len(ids)}); found {len(titles)} and {len(texts)}"
            )
        index: dict[str, int] = {}
        for position, item_id in enumerate(ids):
            if item_id in index:
                raise InvalidInput(f"expected unique item ids; {item_id!r} appears more than once")
            index[item_id] = position
        return cls(list(ids), list(titles), list(texts), index)


def require_named_columns(
    path: str | os.PathLike[str], rows: list[dict[str, str]], chosen: Sequence[tuple[str, str]]
) -> None:
    """Refuse a file without a column that an option named instead of its default (`(option, column)`
    pairs): the column is optional, but a name given and not found is a typo or the wrong file, and reading
    its cells as empty would take every row without its text, categories, rating, type or event id.

    Raises:
        InvalidInput: Naming the file, each missing column with its option, and the columns found.
    """
    present = columns_of(rows)
    missing = [f"{column!r} ({option})" for option, column in chosen if column not in present]
    if missing:
        raise InvalidInput(
            f"{path}: expected the column(s) named by the options, {', '.join(missing)}; "
            f"found {', '.join(repr(c) for c in present)}"
        )


def columns_of(rows: list[dict[str, str]]) -> list[str]:
    """The columns of a file's rows in order of first appearance (JSON Lines rows may each leave one out)."""
    return list(dict.fromkeys(column for row in rows for column in row))


def outside_catalog(interactions: Interactions, catalog: Catalog) -> tuple[int, list[str]]:
    """The interaction rows whose item is not in the catalog (every use of them leaves such rows out):
    their count and their distinct item ids, in order of first appearance."""
    known = catalog.index
    outside = np.fromiter((item not in known for item in interactions.items.tolist()), dtype=bool)
    return int(outside.sum()), [str(item) for item in dict.fromkeys(interactions.items[outside].tolist())]


def read_interactions(
    path: str | os.PathLike[str],
    *,
    user_column: str = "user_id",
    item_column: str = "item_id",
    time_column: str | None = "timestamp",
    rating_column: str | None = "rating",
    min_rating: float | None = None,
    min_rating_if_rated: bool = False,
) -> Interactions:
    """Read interactions from a CSV, TSV or JSON Lines file.

    Args:
        path: The file.
        user_column: Column of user ids.
        item_column: Column of item ids.
        time_column: Column of times: numbers (e.g. Unix seconds) or ISO 8601 datetimes. None uses row order.
        rating_column: Column of ratings, optional under its default name ``rating`` (when the file lacks
            it every value is NaN); one named otherwise must be in the file (`require_named_columns`).
        min_rating: Keep only rows rated at least this (ratings thresholded into positives). Rows with an
            empty rating are kept: an interaction without a rating (a click, a purchase) is a positive;
            but when the user's latest rating of the item (by time, ties in row order) is below
            `min_rating`, every row of theirs with the item is left out, as the service leaves the item
            out of the user's likes.
        min_rating_if_rated: Apply `min_rating` only when the file has the rating column (a threshold
            taken from a model, not asked for): a file without ratings is every row a positive.

    A file with a ``type`` column (as `recommender ingest-events` reads it) has ratings only in its rows of
    type ``rating`` (or of no type): the number of a click or a purchase is no rating, so it is neither held
    to `min_rating` nor outweighs the user's other rows of the item; a row of type ``rating`` without one is
    refused, as `ingest-events` refuses it.

    Raises:
        InvalidInput: Missing file or required column, a rating column so named and missing, an empty id
            or one holding a control or invisible format character (`_required_id`), a time or rating
            that is not a number, or a row of type rating without a rating.
    """
    rows = read_table(path, texts=(user_column, item_column))
    if not rows:
        raise InvalidInput(f"{path}: expected at least one interaction row; found none")
    present = columns_of(rows)
    require_columns(path, rows, [c for c in (user_column, item_column, time_column) if c is not None])
    if rating_column is not None and rating_column != "rating":
        require_named_columns(path, rows, [("--rating-column", rating_column)])
    rating = rating_column if rating_column in present else None
    if min_rating_if_rated and rating is None:
        min_rating = None
    if min_rating is not None and rating is None:
        raise InvalidInput(
            f"{path}: min_rating {min_rating} needs the rating column {rating_column!r}; "
            f"found {', '.join(present)}"
        )
    n = len(rows)
    data = Interactions(
        np.array(_parsed(path, rows, user_column, _required_id), dtype=object),
        np.array(_parsed(path, rows, item_column, _required_id), dtype=object),
        np.array(_parsed(path, rows, time_column, _time) if time_column else range(n), dtype=np.float64),
        np.array(_parsed(path, rows, rating, _rating) if rating else [math.nan] * n, dtype=np.float64),
    )
    if TYPE_COLUMN in present:
        # As `ingest-events` reads the file: the number of a click or a purchase is kept with it, no rating,
        # and a row of type rating without one is refused (read as a plain interaction, it was a like).
        kinds = [str(row.get(TYPE_COLUMN) or "").strip() for row in rows]
        unrated = next(
            (i for i, kind in enumerate(kinds) if kind == "rating" and np.isnan(data.values[i])), None
        )
        if unrated is not None:
            raise InvalidInput(
                f"{path}: row {unrated + 1} column {rating_column!r}: expected a number, as the row is a "
                "rating; found none"
            )
        data.values[np.fromiter((kind not in ("", "rating") for kind in kinds), dtype=bool, count=n)] = (
            math.nan
        )
    if min_rating is None:
        return data
    keep = (np.isnan(data.values) | (data.values >= min_rating)) & ~_rated_below(data, min_rating)
    return Interactions(data.users[keep], data.items[keep], data.times[keep], data.values[keep])


def _rated_below(data: Interactions, min_rating: float) -> np.ndarray:
    """(n,) bool: the rows of a (user, item) pair whose latest rating (by time, ties in row order) is below
    `min_rating`, whatever else the row is: the user's explicit judgement outweighs their clicks."""
    rated = np.flatnonzero(~np.isnan(data.values))
    latest: dict[tuple[str, str], float] = {}
    for row in rated[np.lexsort((rated, data.times[rated]))].tolist():  # by time, ties in row order
        latest[data.users[row], data.items[row]] = float(data.values[row])
    low = {pair for pair, value in latest.items() if value < min_rating}
    if not low:
        return np.zeros(len(data), dtype=bool)
    pairs = zip(data.users.tolist(), data.items.tolist(), strict=True)
    return np.fromiter((pair in low for pair in pairs), dtype=bool, count=len(data))


def _parsed(
    path: str | os.PathLike[str], rows: list[dict[str, str]], column: str, parse: Callable[[str], _T]
) -> list[_T]:
    """Parse one column; a ValueError from `parse` becomes InvalidInput naming the file, row and column.

    A row without the column (JSON Lines may leave one out) reads as an empty cell: required columns are
    checked in every row before (`require_columns`), so only an optional one can be missing here.
    """
    values: list[_T] = []
    for number, row in enumerate(rows, start=1):
        try:
            values.append(parse(row.get(column, "")))
        except ValueError as exc:
            raise InvalidInput(f"{path}: row {number} column {column!r}: {exc}") from None
    return values


def nfc_id(value: str) -> str:
    """An id in Unicode NFC: "café" written composed or decomposed (e + U+0301) is one id, wherever it enters
    (API bodies, paths and queries; ingest files and command arguments; training and evaluation files)."""
    return unicodedata.normalize("NFC", value)


FORMAT_RULE = (
    "expected an id without invisible format characters (Unicode category Cf: zero-width spaces and joiners, "
    "byte order marks, word joiners, bidirectional controls)"
)


def format_character(value: str) -> str | None:
    """Where `value`'s first invisible format character (Unicode category Cf) is, e.g. "U+200B (ZERO WIDTH
    SPACE) at character 4", counting from 1; None when it has none.

    Such a character shows as nothing, or reorders what follows it (a bidirectional control), so an id
    holding one looks like another id, or displays as a different one, in an operator's console: new ids
    are refused with one (`check_new_id`). Ids that name what is already stored (reads, deletes, erasures,
    scoring) still take them, so an item or user stored before this rule stays reachable.
    """
    for index, char in enumerate(value):
        if unicodedata.category(char) == "Cf":
            name = unicodedata.name(char, "")
            return f"U+{ord(char):04X}{f' ({name})' if name else ''} at character {index + 1}"
    return None


def check_new_id(value: str, field: str) -> None:
    """Refuse a new id holding an invisible format character (`format_character`).

    Raises:
        InvalidInput: Naming the field, the character and its position.
    """
    if (found := format_character(value)) is not None:
        raise InvalidInput(f"{field}: {FORMAT_RULE}; found {found}")


def _required_id(raw: str) -> str:
    """An id of a training or evaluation file, under the rule of the API and `recommender ingest-events`:
    no control character but tab, newline and carriage return (`textcore.printable`: a NUL, an escape, a
    C1 control), no invisible format character; then stripped, in NFC, not empty."""
    if (found := control_character(raw)) is not None:
        raise ValueError(f"{CONTROL_RULE}; found {found}")
    if (found := format_character(raw)) is not None:
        raise ValueError(f"{FORMAT_RULE}; found {found}")
    value = nfc_id(raw.strip())
    if not value:
        raise ValueError("expected an id; found an empty cell")
    return value


def _time(raw: str) -> float:
    text = raw.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
            # a datetime without an offset is read as UTC, so results do not depend on the machine's zone
            value = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
        except ValueError:
            raise ValueError(f"expected a number or an ISO 8601 datetime; found {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite time; found {raw!r}")
    return value


def _rating(raw: str) -> float:
    text = raw.strip()
    if not text:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number or an empty cell; found {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite rating; found {raw!r}")
    return value


def read_catalog(
    path: str | os.PathLike[str],
    *,
    id_column: str = "item_id",
    title_column: str = "title",
    text_columns: Sequence[str] = ("text",),
) -> Catalog:
    """Read an item catalog; the encoder text is the title, then the non-empty text fields.

    Extra columns are ignored. The text column is optional under its default name ``text``; one named
    otherwise must be in the file (`require_named_columns`). When a text field already starts with the title
    (as converted datasets' full texts do), the title is not repeated.

    Raises:
        InvalidInput: Missing file, id or title column; a text column so named and missing; an empty id or
            one holding a control or invisible format character (`_required_id`); an item with neither
            title nor text; an id that appears twice.
    """
    rows = read_table(path, texts=(id_column, title_column, *text_columns))
    if not rows:
        raise InvalidInput(f"{path}: expected at least one item row; found none")
    present = columns_of(rows)
    require_columns(path, rows, [id_column, title_column])
    require_named_columns(path, rows, [("--text-column", c) for c in text_columns if c != "text"])
    columns = [c for c in text_columns if c in present and c != title_column]
    ids = _parsed(path, rows, id_column, _required_id)
    titles: list[str] = []
    texts: list[str] = []
    for number, row in enumerate(rows, start=1):
        title = row[title_column].strip()
        text = item_text(title, [row.get(c, "") for c in columns])
        if not text:
            raise InvalidInput(f"{path}: row {number} (item {ids[number - 1]!r}): expected a title or text")
        titles.append(title or text)
        texts.append(text)
    try:
        return Catalog.build(ids, titles, texts)
    except InvalidInput as exc:
        raise InvalidInput(f"{path}: {exc.message}") from None


def item_text(title: str, fields: Sequence[str]) -> str:
    """The text the encoder reads: ``title + ". " + fields`` (each non-empty field once, the title once)."""
    parts = [f.strip() for f in fields if f.strip()]
    title = title.strip()
    if title and not (parts and parts[0].startswith(title)):
        parts.insert(0, title)
    text = ""
    for part in parts:
        # a part that already ends a sentence is followed by a space only
        text = f"{text}{' ' if text.endswith(('.', '!', '?')) else '. '}{part}" if text else part
    return text


def convert_amazon(folder: Path, output: Path) -> tuple[Path, Path]:
    """Convert the UniSRec Amazon folder (items.csv + valid.jsonl) into interactions.csv and items.csv.

    Each valid.jsonl row ``{user, history, target}`` becomes the user's interactions in order, ``history``
    then ``target``, with the position 0..n as the timestamp; leave-last-out on the result therefore tests
    the row's target. Items: ``item_id`` = asin, ``title`` = the text up to its first ". ", ``text`` = the
    whole text.

    Returns:
        The paths of the written interactions.csv and items.csv.
    """
    _check_output(folder, output)
    items = _table(folder / "items.csv", ["asin", "text"])
    sequences = _table(folder / "valid.jsonl", ["user", "history", "target"])
    _make_output(output)
    items_path = output / "items.csv"
    with _writer(items_path, ["item_id", "title", "text"]) as write:
        for row in items:
            text = row["text"].strip()
            write([row["asin"], text.split(". ", 1)[0].rstrip("."), text])
    interactions_path = output / "interactions.csv"
    with _writer(interactions_path, ["user_id", "item_id", "timestamp"]) as write:
        for number, row in enumerate(sequences, start=1):
            for position, item in enumerate([*_item_list(folder, row, number), row["target"]]):
                write([row["user"], item, str(position)])
    return interactions_path, items_path


def _check_output(folder: Path, output: Path) -> None:
    """Refuse an output that is a file, or the dataset's own folder: its items.csv would be overwritten by
    the converted one, and the source lost (a second conversion would then read the converted file).

    Raises:
        InvalidInput: Naming the output and what it is.
    """
    if output.exists() and not output.is_dir():
        raise InvalidInput(f"{output}: expected a folder for interactions.csv and items.csv; found a file")
    if (output / "items.csv").resolve() == (folder / "items.csv").resolve():
        raise InvalidInput(
            f"{output}: expected a folder other than the dataset's {folder}; "
            "its items.csv would be overwritten"
        )


def _make_output(output: Path) -> None:
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"{output}: cannot create the output folder: {exc.strerror}") from None


def _table(path: Path, columns: list[str]) -> list[dict[str, str]]:
    rows = read_table(path)
    require_columns(path, rows, columns)
    return rows


def _item_list(folder: Path, row: dict[str, str], number: int) -> list[str]:
    try:
        history = json.loads(row["history"])
    except (KeyError, json.JSONDecodeError):
        history = None
    if not isinstance(history, list) or not all(isinstance(item, str) for item in history):
        raise InvalidInput(f"{folder}/valid.jsonl:{number}: expected 'history' to be a list of item ids")
    return history


def convert_movielens(folder: Path, output: Path) -> tuple[Path, Path]:
    """Convert MovieLens-100k (ratings.csv + items.csv) into interactions.csv (ratings kept) and items.csv.

    Items get ``text`` = "title. genres: a, b" (the ``|``-separated genres of the source).

    Returns:
        The paths of the written interactions.csv and items.csv.
    """
    _check_output(folder, output)
    ratings = _table(folder / "ratings.csv", ["user_id", "item_id", "rating", "timestamp"])
    items = _table(folder / "items.csv", ["item_id", "title"])
    _make_output(output)
    interactions_path = output / "interactions.csv"
    with _writer(interactions_path, ["user_id", "item_id", "rating", "timestamp"]) as write:
        for row in ratings:
            write([row["user_id"], row["item_id"], row["rating"], row["timestamp"]])
    items_path = output / "items.csv"
    with _writer(items_path, ["item_id", "title", "text"]) as write:
        for row in items:
            title = row["title"].strip()
            genres = [g.strip() for g in row.get("genres", "").split("|") if g.strip()]
            text = f"{title}. genres: {', '.join(genres)}" if genres else title
            write([row["item_id"], title, text])
    return interactions_path, items_path


@contextmanager
def _writer(path: Path, header: list[str]) -> Iterator[Callable[[Sequence[str]], object]]:
    """Open a UTF-8 CSV file, write its header and yield the row writer."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        yield writer.writerow
