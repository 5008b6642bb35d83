"""Texts that count as the same one (case and spacing aside): the rows of each, the texts whose rows carry
more than one label, and the validation texts that are also training texts."""

from __future__ import annotations

import unicodedata

from textcore.labelled import LabelledTexts, split_labels


def text_key(text: str) -> str:
    """The form in which two texts count as the same one: Unicode NFKC, case-folded, whitespace collapsed.

    `"\\nWhere can I withdraw money from?"` and `"where can I  withdraw money from?"` are one text: the
    default base model lower-cases its input, so a text that differs from another only in case or spacing
    is the same input to it.
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def rows_by_text(texts: list[str]) -> list[list[int]]:
    """The row indices of each distinct text (`text_key`), in the order of their first row."""
    rows: dict[str, list[int]] = {}
    for index, text in enumerate(texts):
        rows.setdefault(text_key(text), []).append(index)
    return list(rows.values())


def label_conflicts(data: LabelledTexts, multi_label: bool = False) -> list[tuple[str, list[str]]]:
    """The texts (`text_key`: case and spacing aside) whose rows carry more than one label: each as its first
    row writes it, with its distinct labels in row order, in the order of their first row.

    Single-label data compares labels as written: `a|b` is a label of its own. Multi-label data compares
    each row's set of labels: `a|b`, `b|a` and `a||b` are one set, so a row (or a text repeated with the same
    labels in another order) never conflicts with itself, while `a|b` against `a` does (one row says `b`
    applies, the other that it does not).
    """
    conflicts = []
    for rows in rows_by_text(data.texts):
        labels: dict[object, str] = {}
        for i in rows:
            value = data.labels[i]
            labels.setdefault(frozenset(split_labels(value)) if multi_label else value, value)
        if len(labels) > 1:
            conflicts.append((data.texts[rows[0]], list(labels.values())))
    return conflicts


def texts_in_common(train: LabelledTexts, validation: LabelledTexts) -> int:
    """How many validation rows have a text (`text_key`) that is also a training text."""
    seen = {text_key(text) for text in train.texts}
    return sum(text_key(text) in seen for text in validation.texts)
