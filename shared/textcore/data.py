"""Reading labelled text from CSV or JSON Lines files, and carving validation splits and folds.

Every problem with a user's file (missing, unreadable encoding, missing column, empty, a single class) raises
`InvalidInput` with a message that names the file and says what was expected and what was found.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import math
import os
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from textcore.errors import InvalidInput

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")
LABEL_SEPARATOR = "|"  # between the labels of one multi-label row
csv.field_size_limit(16 * 1024 * 1024)


@dataclass(frozen=True, slots=True)
class LabelledTexts:
    """Parallel lists of texts and their string labels, with optional per-row loss weights.

    `weights` (non-negative, at least one positive) scale each row's share of a classifier's training loss,
    e.g. the share of annotators who agreed on the label; None weighs every row alike.
    """

    texts: list[str]
    labels: list[str]
    weights: list[float] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> LabelledTexts:
        weights = self.weights
        return LabelledTexts(
            [self.texts[i] for i in indices],
            [self.labels[i] for i in indices],
            [weights[i] for i in indices] if weights is not None else None,
        )

    def concat(self, other: LabelledTexts) -> LabelledTexts:
        """These rows, then `other`'s; a side without weights counts as weight 1 when the other has them."""
        weights = None
        if self.weights is not None or other.weights is not None:
            weights = (self.weights or [1.0] * len(self)) + (other.weights or [1.0] * len(other))
        return LabelledTexts(self.texts + other.texts, self.labels + other.labels, weights)

    def unweighted(self) -> LabelledTexts:
        return LabelledTexts(self.texts, self.labels)

    def label_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.labels).items()))


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


def split_labels(value: str) -> list[str]:
    """The labels of a multi-label cell `a|b`, stripped; empty parts (`a|`, `a||b`) name no label."""
    return [part for part in (x.strip() for x in value.split(LABEL_SEPARATOR)) if part]


def require_label_sets(data: LabelledTexts, where: str) -> None:
    """Refuse a multi-label row whose cell holds only separators (`|`); an empty cell is a row with none of
    the labels.

    Raises:
        InvalidInput: naming the first such row.
    """
    for number, value in enumerate(data.labels, start=1):
        if value.strip() and not split_labels(value):
            raise InvalidInput(
                f"{where}: row {number} has the labels {value!r}, which name none; expected one or more "
                "(a|b), or an empty cell for a row with none of the labels"
            )


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


def read_texts(path: str | os.PathLike[str], text_column: str) -> list[str]:
    """Read one text column (rows with an empty text are refused, not skipped)."""
    rows = read_table(path, texts=(text_column,))
    require_columns(path, rows, [text_column])
    texts = [row[text_column] for row in rows]
    _require_non_empty(path, texts, text_column)
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
    _require_non_empty(path, texts, text_column)
    if not multi_label:
        _require_non_empty(path, labels, label_column)
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


def _require_non_empty(path: str | os.PathLike[str], values: list[str], column: str) -> None:
    for number, value in enumerate(values, start=1):
        if not value.strip():
            raise InvalidInput(f"{path}: row {number} has an empty {column!r}; expected text in every row")


def require_classes(data: LabelledTexts, where: str) -> list[str]:
    """Return the sorted label set, refusing data with fewer than two classes."""
    classes = sorted(set(data.labels))
    if len(classes) < 2:
        raise InvalidInput(f"{where}: expected at least two distinct labels; found only {classes!r}")
    return classes


def _rows_by_label(labels: list[str]) -> dict[str, list[int]]:
    """Each label's row indices, in row order (iterate in sorted label order for a seeded draw)."""
    rows: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        rows.setdefault(label, []).append(index)
    return rows


def text_key(text: str) -> str:
    """The form in which two texts count as the same one: Unicode NFKC, case-folded, whitespace collapsed.

    `"\\nWhere can I withdraw money from?"` and `"where can I  withdraw money from?"` are one text: the
    default base model lower-cases its input, so a text that differs from another only in case or spacing
    is the same input to it.
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _rows_by_text(texts: list[str]) -> list[list[int]]:
    """The row indices of each distinct text (`text_key`), in the order of their first row."""
    rows: dict[str, list[int]] = {}
    for index, text in enumerate(texts):
        rows.setdefault(text_key(text), []).append(index)
    return list(rows.values())


def _groups_by_label(data: LabelledTexts) -> dict[str, list[list[int]]]:
    """The row indices of each distinct text (`text_key`), filed under the label most of its rows carry (the
    first in sorted order on a tie); each label's groups in the order of their first row."""
    groups: dict[str, list[list[int]]] = {}
    for group in _rows_by_text(data.texts):
        counts = Counter(data.labels[i] for i in group)
        groups.setdefault(min(counts, key=lambda label: (-counts[label], label)), []).append(group)
    return groups


def _held_out(sizes: list[int], fraction: float) -> set[int]:
    """Which of one class's groups (their sizes, in drawn order) go to validation.

    In drawn order, each group that brings the validation rows nearer `fraction` of the class's rows (at
    least one row), but never the last group left; the smallest group when none does. A class with a single
    text gives none.
    """
    if len(sizes) < 2:
        return set()
    target = max(1, round(sum(sizes) * fraction))
    held: set[int] = set()
    rows = 0
    for position, size in enumerate(sizes):
        if len(held) == len(sizes) - 1:
            break
        if abs(rows + size - target) < abs(rows - target):
            held.add(position)
            rows += size
    return held or {sizes.index(min(sizes))}


def stratified_split(data: LabelledTexts, fraction: float, seed: int) -> tuple[LabelledTexts, LabelledTexts]:
    """Split off about `fraction` of each class for validation, keeping all rows of one text on one side.

    Rows whose texts are the same (`text_key`: case and spacing aside) form one group, filed under the label
    most of them carry (a multi-label row's `a|b` counts as one label here). Each class with two or more
    distinct texts gives at least one text to validation and keeps at least one for training; a class with a
    single text stays in training. Without repeated texts each class gives `round(fraction * rows)` rows (at
    least one, at most all but one).

    Returns:
        (train, validation), both in a seeded random order.
    """
    if not 0.0 < fraction < 1.0:
        raise InvalidInput(f"expected a validation fraction in (0, 1); found {fraction}")
    rng = np.random.default_rng(seed)
    by_label = _groups_by_label(data)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for label in sorted(by_label):
        groups = by_label[label]
        order = rng.permutation(len(groups))
        held = _held_out([len(groups[i]) for i in order], fraction)
        for position, i in enumerate(order):
            (val_idx if position in held else train_idx).extend(groups[i])
    rng.shuffle(train_idx)
    rng.shuffle(val_idx)
    return data.subset(train_idx), data.subset(val_idx)


def label_conflicts(data: LabelledTexts, multi_label: bool = False) -> list[tuple[str, list[str]]]:
    """The texts (`text_key`: case and spacing aside) whose rows carry more than one label: each as its first
    row writes it, with its distinct labels in row order, in the order of their first row.

    Single-label data compares labels as written: `a|b` is a label of its own. Multi-label data compares
    each row's set of labels: `a|b`, `b|a` and `a||b` are one set, so a row (or a text repeated with the same
    labels in another order) never conflicts with itself, while `a|b` against `a` does (one row says `b`
    applies, the other that it does not).
    """
    conflicts = []
    for rows in _rows_by_text(data.texts):
        labels: dict[object, str] = {}
        for i in rows:
            value = data.labels[i]
            labels.setdefault(frozenset(split_labels(value)) if multi_label else value, value)
        if len(labels) > 1:
            conflicts.append((data.texts[rows[0]], list(labels.values())))
    return conflicts


def look_alike_labels(labels: Collection[str]) -> list[list[str]]:
    """Groups of distinct labels that differ only in case or surrounding spaces (`Positive`, `positive`), or
    name one number (`1`, `1.0`, as a float column of a spreadsheet writes it): each is trained as a class of
    its own, which is seldom what a file meant. Each group sorted; groups in the order of their first label.
    """
    groups: dict[object, list[str]] = {}
    for label in sorted(set(labels)):
        key: object = " ".join(label.casefold().split())
        try:
            number = float(label)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                key = number
        groups.setdefault(key, []).append(label)
    return [group for group in groups.values() if len(group) > 1]


def texts_in_common(train: LabelledTexts, validation: LabelledTexts) -> int:
    """How many validation rows have a text (`text_key`) that is also a training text."""
    seen = {text_key(text) for text in train.texts}
    return sum(text_key(text) in seen for text in validation.texts)


def stratified_folds(data: LabelledTexts, k: int, seed: int) -> list[tuple[LabelledTexts, LabelledTexts]]:
    """Cross-validation: `k` disjoint held-out parts that together hold every row once, stratified by label,
    with every row of one text (`text_key`: case and spacing aside) in the same part.

    Rows are grouped by text and each group filed under its majority label, as `stratified_split` does. Each
    class's groups, in an order drawn by one seeded generator (labels in sorted order), largest first, go one
    by one to the part holding the fewest rows of that class, on a tie the part holding the fewest rows in
    all (then the first). Without repeated texts this deals the rows in turn, so each class's count and the
    part sizes differ by at most one row between parts; a repeated text moves its rows as one.

    Returns:
        for each part, (the other rows, that part), both in a seeded random order.

    Raises:
        InvalidInput: `k` is below 2 or above the number of distinct texts.
    """
    by_label = _groups_by_label(data)
    distinct = sum(len(groups) for groups in by_label.values())
    if not 2 <= k <= distinct:
        found = "the rows" if distinct == len(data) else f"the distinct texts of the {len(data)} rows"
        raise InvalidInput(f"folds: expected an integer in [2, {distinct}] ({found}); found {k!r}")
    rng = np.random.default_rng(seed)
    part_of = [0] * len(data)
    sizes = [0] * k
    for label in sorted(by_label):
        groups = [by_label[label][i] for i in rng.permutation(len(by_label[label]))]
        of_class = [0] * k
        for group in sorted(groups, key=len, reverse=True):  # stable: equal sizes keep the drawn order
            part = min(range(k), key=lambda p: (of_class[p], sizes[p], p))
            for i in group:
                part_of[i] = part
            of_class[part] += len(group)
            sizes[part] += len(group)
    folds = []
    for part in range(k):
        held = [i for i in range(len(data)) if part_of[i] == part]
        rest = [i for i in range(len(data)) if part_of[i] != part]
        rng.shuffle(held)
        rng.shuffle(rest)
        folds.append((data.subset(rest), data.subset(held)))
    return folds


def sample_per_class(data: LabelledTexts, k: int, seed: int) -> tuple[LabelledTexts, LabelledTexts]:
    """Draw `k` rows of each class (every row of a class that has fewer): a few-shot training set.

    Each class's rows are permuted by one seeded generator in sorted label order, and the first `k` taken, so
    that with the same data and seed the draw for a smaller `k` is contained in the draw for a larger one.

    Args:
        data: single-label texts.
        k: rows per class, at least 1.
        seed: decides which rows are drawn.

    Returns:
        (sample, rest): the drawn rows in a seeded random order, and every other row in its original order.

    Raises:
        InvalidInput: `k` is below 1.
    """
    if k < 1:
        raise InvalidInput(f"k: expected an integer >= 1 rows per class; found {k!r}")
    rng = np.random.default_rng(seed)
    by_label = _rows_by_label(data.labels)
    picked: list[int] = []
    for label in sorted(by_label):
        indices = by_label[label]
        order = rng.permutation(len(indices))
        picked.extend(indices[i] for i in order[:k])
    chosen = set(picked)
    rng.shuffle(picked)
    return data.subset(picked), data.subset([i for i in range(len(data)) if i not in chosen])


@dataclass(frozen=True, slots=True)
class Pairs:
    """Parallel anchors and positives, with optional hard negatives."""

    anchors: list[str]
    positives: list[str]
    negatives: list[str] | None = None

    def __len__(self) -> int:
        return len(self.anchors)

    def subset(self, idx: np.ndarray | list[int]) -> Pairs:
        pick = [int(i) for i in idx]
        return Pairs(
            [self.anchors[i] for i in pick],
            [self.positives[i] for i in pick],
            [self.negatives[i] for i in pick] if self.negatives is not None else None,
        )

    def split(self, fraction: float, seed: int) -> tuple[Pairs, Pairs]:
        """Random (train, validation) split; at least two validation pairs."""
        order = np.random.default_rng(seed).permutation(len(self))
        n_val = max(2, round(len(self) * fraction))
        if len(self) - n_val < 2:
            raise InvalidInput(f"expected at least 4 pairs to carve a validation split; found {len(self)}")
        return self.subset(order[n_val:]), self.subset(order[:n_val])


def read_pairs(
    path: str | os.PathLike[str], anchor: str, positive: str, negative: str | None = None
) -> Pairs:
    """Read pairs (and optional negatives) from a CSV/JSONL file; refuses empty cells."""
    wanted = [c for c in (anchor, positive, negative) if c]
    rows = read_table(path, texts=wanted)
    require_columns(path, rows, wanted)
    for number, row in enumerate(rows, start=1):
        empty = [c for c in wanted if not row[c].strip()]
        if empty:
            raise InvalidInput(f"{path}: row {number} has an empty {empty[0]!r}; expected text in every row")
    return Pairs(
        [r[anchor] for r in rows],
        [r[positive] for r in rows],
        [r[negative] for r in rows] if negative else None,
    )


@dataclass(frozen=True, slots=True)
class ScoredPairs:
    """(query, passage, relevance) rows: the training data of a cross-encoder re-ranker.

    A label is 1.0 for a relevant passage and 0.0 for an irrelevant one; any number in [0, 1] is allowed (a
    graded or soft label). Rows of one query need not be adjacent.
    """

    queries: list[str]
    passages: list[str]
    labels: list[float]

    def __post_init__(self) -> None:
        if not len(self.queries) == len(self.passages) == len(self.labels):
            raise InvalidInput(
                "expected as many queries, passages and labels; found "
                f"{len(self.queries)}, {len(self.passages)} and {len(self.labels)}"
            )
        bad = next((x for x in self.labels if not 0.0 <= x <= 1.0), None)  # NaN fails both comparisons
        if bad is not None:
            raise InvalidInput(f"expected relevance labels in [0, 1]; found {bad!r}")

    def __len__(self) -> int:
        return len(self.queries)

    def subset(self, idx: np.ndarray | Sequence[int]) -> ScoredPairs:
        pick = [int(i) for i in idx]
        return ScoredPairs(
            [self.queries[i] for i in pick], [self.passages[i] for i in pick], [self.labels[i] for i in pick]
        )

    def split(self, fraction: float, seed: int) -> tuple[ScoredPairs, ScoredPairs]:
        """Random (train, validation) split by query: every row of one query lands on the same side.

        `fraction` of the distinct queries (at least one) go to validation.
        """
        if not 0.0 < fraction < 1.0:
            raise InvalidInput(f"expected a validation fraction in (0, 1); found {fraction}")
        distinct = list(dict.fromkeys(self.queries))
        if len(distinct) < 2:
            raise InvalidInput(
                f"expected at least 2 distinct queries to carve a validation split; found {len(distinct)}"
            )
        order = np.random.default_rng(seed).permutation(len(distinct))
        n_val = min(len(distinct) - 1, max(1, round(len(distinct) * fraction)))
        held_out = {distinct[i] for i in order[:n_val]}
        rows = range(len(self))
        return (
            self.subset([i for i in rows if self.queries[i] not in held_out]),
            self.subset([i for i in rows if self.queries[i] in held_out]),
        )


def require_relevance_mix(pairs: ScoredPairs, where: str) -> None:
    """Refuse training pairs that are all relevant or all irrelevant (nothing to tell apart)."""
    relevant = sum(x >= 0.5 for x in pairs.labels)
    if relevant in (0, len(pairs)):
        raise InvalidInput(
            f"{where}: expected both relevant (label >= 0.5) and irrelevant (< 0.5) pairs; "
            f"found {relevant} relevant of {len(pairs)}"
        )


def _relevance(path: str | os.PathLike[str], number: int, column: str, value: str) -> float:
    text = value.strip().lower()
    if text in ("true", "false"):
        return 1.0 if text == "true" else 0.0
    try:
        label = float(text)
    except ValueError:
        label = float("nan")
    if not 0.0 <= label <= 1.0:
        raise InvalidInput(
            f"{path}: row {number} has {column!r} = {value!r}; "
            "expected a number in [0, 1] (1 relevant, 0 not)"
        )
    return label


def read_scored_pairs(
    path: str | os.PathLike[str], query_column: str, passage_column: str, label_column: str
) -> ScoredPairs:
    """Read (query, passage, relevance) rows from a CSV/TSV/JSONL file.

    Labels are numbers in [0, 1] (`true`/`false` are read as 1/0).

    Raises:
        InvalidInput: missing file or column, no rows, an empty query or passage, or a label that is not a
            number in [0, 1].
    """
    rows = read_table(path, texts=(query_column, passage_column))
    require_columns(path, rows, [query_column, passage_column, label_column])
    queries = [row[query_column] for row in rows]
    passages = [row[passage_column] for row in rows]
    _require_non_empty(path, queries, query_column)
    _require_non_empty(path, passages, passage_column)
    labels = [_relevance(path, n, label_column, row[label_column]) for n, row in enumerate(rows, start=1)]
    return ScoredPairs(queries, passages, labels)
