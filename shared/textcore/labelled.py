"""Labelled texts (texts, their string labels and optional row weights) and the checks on their labels.

Several labels of one row are written `a|b` (`LABEL_SEPARATOR`); `split_labels` reads such a cell.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from textcore.errors import InvalidInput

LABEL_SEPARATOR = "|"  # between the labels of one multi-label row


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


def require_classes(data: LabelledTexts, where: str) -> list[str]:
    """Return the sorted label set, refusing data with fewer than two classes."""
    classes = sorted(set(data.labels))
    if len(classes) < 2:
        raise InvalidInput(f"{where}: expected at least two distinct labels; found only {classes!r}")
    return classes


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
