"""Evaluating a trained classifier on labelled data."""

from __future__ import annotations

import os
from typing import Any

from textcore.classifier import Classifier
from textcore.data import LabelledTexts, read_labelled
from textcore.errors import InvalidInput
from textcore.metrics import classification_report, multilabel_report


def evaluate_classifier(classifier: Classifier, data: LabelledTexts) -> dict[str, Any]:
    """Accuracy, macro-F1, per-label scores and confusion of `classifier` on `data`.

    Raises:
        InvalidInput: the data holds labels the model was not trained on.
    """
    given = (
        {x.strip() for value in data.labels for x in value.split("|")}
        if classifier.multi_label
        else set(data.labels)
    )
    unknown = sorted(given - set(classifier.labels))
    if unknown:
        raise InvalidInput(f"labels {unknown} are not known to the model; it knows {classifier.labels}")
    predictions = classifier.predict(data.texts)
    if classifier.multi_label:
        chosen = ["|".join(p.labels) for p in predictions]
        return multilabel_report(data.labels, chosen, classifier.labels).to_dict()
    return classification_report(data.labels, [p.label for p in predictions], classifier.labels).to_dict()


def evaluate_classifier_file(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    text_column: str,
    label_column: str,
    *,
    device: str = "auto",
    precision: str = "auto",
) -> dict[str, Any]:
    """`evaluate_classifier` on a model folder and a CSV/JSONL file."""
    rows = read_labelled(data, text_column, label_column)
    classifier = Classifier.load(model, device=device, precision=precision)
    return evaluate_classifier(classifier, rows)
