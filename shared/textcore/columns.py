"""The columns a data file's rows must hold, and cells that must not be empty."""

from __future__ import annotations

import os

from textcore.errors import InvalidInput


def require_columns(path: str | os.PathLike[str], rows: list[dict[str, str]], columns: list[str]) -> None:
    """Refuse rows without every one of `columns` (a JSON Lines row may leave one out where the first row has
    it), naming the file, the row and the column.

    Raises:
        InvalidInput: No rows, a column missing from the first row, or from a later one.
    """
    if not rows:
        raise InvalidInput(f"{path}: expected at least one data row; found none")
    present = list(rows[0])
    missing = [c for c in columns if c not in present]
    if missing:
        raise InvalidInput(f"{path}: expected column(s) {', '.join(missing)}; found {_header(present)}")
    for number, row in enumerate(rows, start=1):
        missing = [c for c in columns if c not in row]
        if missing:
            raise InvalidInput(f"{path}: row {number} has no {missing[0]!r}; expected it in every row")


def _header(names: list[str]) -> str:
    """The column names found, quoted where spaces around a name hide it; a header read as one column that
    holds another delimiter (a spreadsheet's `;`-separated export) says so."""
    shown = ", ".join(repr(name) if name != name.strip() else name for name in names)
    held = next((d for d in (";", "\t", ",", "|") if len(names) == 1 and d in names[0]), None)
    if held:
        shown += (
            f" (one column holding {held!r}: a .csv file is read comma-separated, a .tsv file tab-separated)"
        )
    return shown


def require_non_empty(path: str | os.PathLike[str], values: list[str], column: str) -> None:
    for number, value in enumerate(values, start=1):
        if not value.strip():
            raise InvalidInput(f"{path}: row {number} has an empty {column!r}; expected text in every row")
