"""Evaluating a trained classifier on labelled data, and choosing the backend that serves it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textcore.artifacts import LABELS_FILE, read_labels, read_metadata
from textcore.data import read_labelled
from textcore.errors import InvalidInput, some_of
from textcore.labelled import LabelledTexts, require_label_sets, split_labels

if TYPE_CHECKING:
    from textcore.classifier import LabelPredictor


def evaluate_classifier(
    classifier: LabelPredictor, data: LabelledTexts, *, unknown_labels_count_as_errors: bool = False
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-label scores and confusion of `classifier` on `data`.

    Args:
        classifier: the model to score.
        data: labelled texts.
        unknown_labels_count_as_errors: score rows whose label the model does not know as mistakes (the
            promotion gate compares a model against one trained on more labels) instead of refusing them.

    Raises:
        InvalidInput: the data holds labels the model was not trained on (unless they count as errors).
    """
    from textcore.metrics import classification_report, multilabel_report  # noqa: PLC0415 - scikit-learn

    if classifier.multi_label:
        require_label_sets(data, "evaluation data")
    given = (
        {x for value in data.labels for x in split_labels(value)}
        if classifier.multi_label
        else set(data.labels)
    )
    unknown = sorted(given - set(classifier.labels))
    if unknown and not unknown_labels_count_as_errors:
        raise InvalidInput(
            f"labels {some_of(unknown)} are not known to the model; it knows {some_of(classifier.labels)}"
        )
    labels = [*classifier.labels, *unknown]
    predictions = classifier.predict(data.texts)
    if classifier.multi_label:
        chosen = ["|".join(p.labels) for p in predictions]
        return multilabel_report(data.labels, chosen, labels).to_dict()
    return classification_report(data.labels, [p.label for p in predictions], labels).to_dict()


def evaluate_classifier_file(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    text_column: str,
    label_column: str,
    *,
    device: str = "auto",
    precision: str = "auto",
    backend: str = "torch",
) -> dict[str, Any]:
    """`evaluate_classifier` on a model folder and a CSV/JSONL file."""
    rows = read_labelled(data, text_column, label_column, multi_label=holds_label_sets(model))
    classifier = load_predictor(model, backend=backend, device=device, precision=precision)
    return evaluate_classifier(classifier, rows)


def holds_label_sets(folder: str | os.PathLike[str]) -> bool:
    """Whether `folder` holds a multi-label classifier, whose data rows may name none of its labels (False
    for a folder that is no classifier: loading it says what it is)."""
    path = Path(folder)
    return (path / LABELS_FILE).is_file() and read_labels(path)[1]


BACKENDS = ("torch", "onnx")


def load_predictor(
    folder: str | os.PathLike[str],
    *,
    backend: str = "torch",
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 64,
    max_length: int | None = None,
) -> LabelPredictor:
    """Load a classifier folder with PyTorch (`torch`, any device) or ONNX Runtime (`onnx`, CPU, fp32).

    `max_length`: tokens per text; by default the length the model was trained with.
    """
    task = read_metadata(folder).get("task")
    if task == "cross-encoder":
        raise InvalidInput(
            f"{folder} holds a cross-encoder (re-ranker), not a classifier; load it with Reranker"
        )
    if task == "token-classification":
        raise InvalidInput(
            f"{folder} holds a token-classification model (tagger), not a classifier; load it with Tagger"
        )
    if backend == "torch":
        read_labels(Path(folder))  # a folder that is no classifier is named before torch loads
        from textcore.classifier import Classifier  # noqa: PLC0415 - torch, once a model is loaded

        return Classifier.load(
            folder, device=device, precision=precision, batch_size=batch_size, max_length=max_length
        )
    if backend == "onnx":
        from textcore.onnx_backend import OnnxClassifier  # noqa: PLC0415 - optional, heavier import

        return OnnxClassifier.load(
            folder,
            batch_size=batch_size,
            max_length=max_length,
            device="cpu" if device == "auto" else device,
        )
    raise InvalidInput(f"expected backend one of {', '.join(BACKENDS)}; found {backend!r}")
