"""Reading labelled text from CSV or JSON Lines files, and carving validation splits and folds.

Every problem with a user's file (missing, unreadable encoding, missing column, empty, a single class) raises
`InvalidInput` with a message that names the file and says what was expected and what was found.

This module reads texts (`read_texts`, `read_corpus`) and labelled texts (`read_labelled`), and re-exports
what the services and the `textcore` package take from here; the parts live in modules of their own:

- `table_files`: a CSV, TSV or JSON Lines file as rows of strings (`read_table`, `file_sha256`)
- `columns`: the columns the rows must hold (`require_columns`)
- `labelled`: `LabelledTexts`, multi-label cells and the checks on labels
- `duplicates`: texts that count as the same one, and their conflicting labels
- `splits`: stratified validation splits, folds and few-shot samples
- `pairs`: `Pairs` for an embedding model and `ScoredPairs` for a re-ranker, and their readers
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from textcore.columns import require_columns, require_non_empty
from textcore.errors import InvalidInput
from textcore.labelled import LabelledTexts
from textcore.pairs import Pairs, ScoredPairs, read_pairs, read_scored_pairs
from textcore.splits import sample_per_class, stratified_folds, stratified_split
from textcore.table_files import TABLE_SUFFIXES, file_sha256, read_table, require_file

__all__ = [
    "LabelledTexts",
    "Pairs",
    "ScoredPairs",
    "file_sha256",
    "read_corpus",
    "read_labelled",
    "read_pairs",
    "read_scored_pairs",
    "read_table",
    "read_texts",
    "require_columns",
    "sample_per_class",
    "stratified_folds",
    "stratified_split",
]


def read_texts(path: str | os.PathLike[str], text_column: str) -> list[str]:
    """Read one text column (rows with an empty text are refused, not skipped)."""
    rows = read_table(path, texts=(text_column,))
    require_columns(path, rows, [text_column])
    texts = [row[text_column] for row in rows]
    require_non_empty(path, texts, text_column)
    return texts


def read_corpus(path: str | os.PathLike[str], text_column: str = "text") -> list[str]:
    """Read unlabelled texts: a `.txt` file holds one text per line, a CSV/TSV/JSONL file one per row.

    Blank lines of a `.txt` file are skipped (they separate paragraphs); an empty cell in a table is refused,
    as by `read_texts`.

    Raises:
        InvalidInput: missing file, an unknown kind, not UTF-8, a missing column, or no text at all.
    """
    file = Path(path)
    if file.suffix.lower() != ".txt":
        if file.is_file() and file.suffix.lower() not in TABLE_SUFFIXES:
            kinds = ", ".join((".txt", *TABLE_SUFFIXES))
            raise InvalidInput(f"{file}: expected one of {kinds}; found {file.suffix or 'no suffix'}")
        return read_texts(file, text_column)
    require_file(file, "text file")
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{file}: expected UTF-8 text; byte {exc.start} is not valid UTF-8") from exc
    lines = [line.strip() for line in text.split("\n")]
    texts = [line for line in lines if line]
    if not texts:
        raise InvalidInput(f"{file}: expected at least one non-blank line of text; found none")
    return texts


def read_labelled(
    path: str | os.PathLike[str],
    text_column: str,
    label_column: str,
    weight_column: str | None = None,
    *,
    multi_label: bool = False,
) -> LabelledTexts:
    """Read text and label columns (and a numeric per-row weight column) from a data file.

    Several labels of one row (`multi_label`) are written `a|b`, or in JSON Lines also as a list
    `["a", "b"]`; an empty cell (or `[]`) is a row that has none of the labels.

    Raises:
        InvalidInput: missing file or column, no rows, a row with an empty text or (single-label) label, or
            a weight that is not a finite number >= 0 (or no weight above 0).
    """
    rows = read_table(path, label_lists=(label_column,), texts=(text_column,))
    require_columns(path, rows, [text_column, label_column, *([weight_column] if weight_column else [])])
    texts = [row[text_column] for row in rows]
    labels = [row[label_column].strip() for row in rows]
    require_non_empty(path, texts, text_column)
    if not multi_label:
        require_non_empty(path, labels, label_column)
    weights = _weights(path, [row[weight_column] for row in rows], weight_column) if weight_column else None
    return LabelledTexts(texts, labels, weights)


def _weights(path: str | os.PathLike[str], values: list[str], column: str) -> list[float]:
    weights = []
    for number, value in enumerate(values, start=1):
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight) or weight < 0:
            raise InvalidInput(
                f"{path}: row {number} has {column!r} {value!r}; expected a finite number >= 0 (a row weight)"
            )
        weights.append(weight)
    if not any(weights):
        raise InvalidInput(f"{path}: every {column!r} weight is 0; expected at least one row weighing more")
    return weights
