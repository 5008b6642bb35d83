"""Reading a CSV, TSV or JSON Lines data file as rows of strings, and the checks on the file itself.

A file that is missing, not a regular file, of an unknown kind, not UTF-8 (a UTF-16 export is named as
such) or malformed (a repeated header name, a row with more fields than the header, an unclosed quote, a
JSON Lines line that is no object) raises `InvalidInput` naming the file, and the row or line.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from textcore.errors import InvalidInput
from textcore.labelled import LABEL_SEPARATOR

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")
csv.field_size_limit(16 * 1024 * 1024)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (recorded in model metadata)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _csv_rows(path: Path, text: str) -> Iterator[dict[str, str]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    # newline="" lets the csv module see the real line ends, so quoted fields keep their line breaks
    # strict: a quoted field that does not end where a field can ('"a "b" c",x', or a quote never closed)
    # is an error instead of text the reader made up (a quote never closed swallowed every row after it)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    if not reader.fieldnames:
        raise InvalidInput(f"{path}: expected a header row; the file is empty")
    names = reader.fieldnames
    repeated = next((name for name in names if name and names.count(name) > 1), None)
    if repeated is not None:  # a row would keep only the last of its fields: the others' values are lost
        raise InvalidInput(
            f"{path}: the header names {repeated!r} {names.count(repeated)} times; expected each column once"
        )
    columns = len(names)
    for number, row in enumerate(_records(path, reader), start=1):
        extra: list[str] = row.get(None) or []  # type: ignore[assignment]  # fields past the header's
        if any(value.strip() for value in extra):  # empty ones (a trailing delimiter) hold nothing to lose
            held = "a tab needs quotes" if delimiter == "\t" else 'a comma needs quotes: "like, this"'
            raise InvalidInput(
                f"{path}: row {number} (line {reader.line_num}) has {columns + len(extra)} fields, "
                f"the header {columns}; expected one field per column (a text holding {held})"
            )
        yield {key: value or "" for key, value in row.items() if key is not None}


def _records(path: Path, reader: csv.DictReader[str]) -> Iterator[dict[str | Any, str | Any]]:
    """The reader's rows; a malformed one is an error naming its row and the line it starts on."""
    number = 0
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InvalidInput(
                f"{path}: row {number + 1} (from line {start}): malformed CSV: {exc}; a field that starts "
                'with a quote ends with one, and a quote inside it is written twice: "said ""hi"""'
            ) from exc
        number += 1
        yield row


def _label_list(path: Path, number: int, column: str, value: list[object]) -> str:
    """A JSON array of labels as the `a|b` cell a CSV file would hold."""
    labels = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, str | int | float) or LABEL_SEPARATOR in str(item):
            found = json.dumps(item, ensure_ascii=False)[:60]
            raise InvalidInput(
                f"{path}:{number}: {column!r} holds {found} in its list; "
                f"expected label strings or numbers without {LABEL_SEPARATOR!r}"
            )
        labels.append(str(item).strip())
    return LABEL_SEPARATOR.join(labels)


def _jsonl_rows(
    path: Path,
    text: str,
    label_lists: Collection[str] = (),
    texts: Collection[str] = (),
    strings: Collection[str] = (),
) -> Iterator[dict[str, str]]:
    # JSON Lines end at "\n" only; str.splitlines would also split strings at U+2028, U+0085 and others
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path}:{number}: expected one JSON object per line; {exc.msg}") from exc
        if not isinstance(record, dict):
            raise InvalidInput(f"{path}:{number}: expected a JSON object; found {type(record).__name__}")
        for column in strings:
            if (value := record.get(column)) is not None and not isinstance(value, str):
                raise InvalidInput(
                    f"{path}:{number}: {column!r} holds {_json_kind(value)}; expected a string"
                )
        yield {str(k): _jsonl_cell(path, number, k, v, label_lists, texts) for k, v in record.items()}


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return f"{json.dumps(value)} (a boolean)"
    if isinstance(value, int | float):
        return f"the number {json.dumps(value)}"
    return "a list" if isinstance(value, list) else "an object"


def _jsonl_cell(
    path: Path, number: int, column: str, value: object, label_lists: Collection[str], texts: Collection[str]
) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if column in label_lists and isinstance(value, list):
        return _label_list(path, number, column, value)
    if column in label_lists and isinstance(value, dict):
        raise InvalidInput(f"{path}:{number}: {column!r} holds an object; expected a label or a list of them")
    if column in texts and isinstance(value, list | dict):
        kind = "a list" if isinstance(value, list) else "an object"
        raise InvalidInput(f"{path}:{number}: {column!r} holds {kind}; expected a text (one string)")
    return json.dumps(value)


def require_file(file: Path, kind: str) -> None:
    """Refuse a path that is not a regular file, saying whether nothing, a folder or another kind is there.

    Raises:
        InvalidInput: `file` does not exist or is not a file (a folder, say).
    """
    if not file.is_file():
        found = "found a folder" if file.is_dir() else "it does not exist"
        if file.exists() and not file.is_dir():
            found = "found a device, a pipe or a socket, not a regular file"
        raise InvalidInput(f"{file}: expected a readable {kind}; {found}")


def read_table(
    path: str | os.PathLike[str],
    label_lists: Collection[str] = (),
    texts: Collection[str] = (),
    strings: Collection[str] = (),
) -> list[dict[str, str]]:
    """Read every row of a CSV, TSV or JSON Lines file as a dict of strings.

    A JSON Lines value that is not a string becomes its JSON text; in a `label_lists` column a JSON array of
    labels (`["a", "b"]`) becomes `a|b`, as a CSV cell writes it, in a `texts` column a list or an object
    is refused (its JSON text is no text to learn from), and in a `strings` column any value but a string
    or null (a number, true/false, a list, an object: an answer of 5 is more likely a mistake than a text).

    Raises:
        InvalidInput: the file is missing, not UTF-8, malformed or of an unknown kind.
    """
    file = Path(path)
    require_file(file, "data file")
    suffix = file.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise InvalidInput(
            f"{file}: expected one of {', '.join(TABLE_SUFFIXES)}; found {suffix or 'no suffix'}"
        )
    data = file.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # no newline translation; the readers handle line ends
    except UnicodeDecodeError as exc:
        found = f"byte {exc.start} is not valid UTF-8"
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # a spreadsheet's "Unicode text"
            found = "it is UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8"
        raise InvalidInput(f"{file}: expected UTF-8 text; {found}") from exc
    jsonl = suffix in (".jsonl", ".ndjson")
    rows = _jsonl_rows(file, text, label_lists, texts, strings) if jsonl else _csv_rows(file, text)
    try:
        return list(rows)
    except csv.Error as exc:
        raise InvalidInput(f"{file}: malformed CSV: {exc}") from exc
