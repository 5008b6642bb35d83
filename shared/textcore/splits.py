"""Validation splits, cross-validation folds and few-shot samples of labelled texts, stratified by label.

Rows of one text (`text_key`: case and spacing aside) stay on one side of a split and in one fold.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from textcore.duplicates import rows_by_text
from textcore.errors import InvalidInput
from textcore.labelled import LabelledTexts


def _rows_by_label(labels: list[str]) -> dict[str, list[int]]:
    """Each label's row indices, in row order (iterate in sorted label order for a seeded draw)."""
    rows: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        rows.setdefault(label, []).append(index)
    return rows


def _groups_by_label(data: LabelledTexts) -> dict[str, list[list[int]]]:
    """The row indices of each distinct text (`text_key`), filed under the label most of its rows carry (the
    first in sorted order on a tie); each label's groups in the order of their first row."""
    groups: dict[str, list[list[int]]] = {}
    for group in rows_by_text(data.texts):
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
