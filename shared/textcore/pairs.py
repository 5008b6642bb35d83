"""Text pairs: (anchor, positive[, negative]) rows for an embedding model and (query, passage, relevance)
rows for a cross-encoder re-ranker, read from CSV/TSV/JSONL files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from textcore.columns import require_columns, require_non_empty
from textcore.errors import InvalidInput
from textcore.table_files import read_table


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
    require_non_empty(path, queries, query_column)
    require_non_empty(path, passages, passage_column)
    labels = [_relevance(path, n, label_column, row[label_column]) for n, row in enumerate(rows, start=1)]
    return ScoredPairs(queries, passages, labels)
