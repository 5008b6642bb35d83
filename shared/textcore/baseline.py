"""The untuned baseline of a fine-tuned classifier: frozen base-model embeddings plus a linear head.

The "before" of the before-and-after-fine-tuning comparison (`textcore evaluate --compare-base`): the encoder
the classifier started from (metadata `base_model`, followed back through retrained versions to the first
untuned one) embeds the training texts without any change to its weights, a logistic regression learns the
labels from those vectors, and both are scored on the same evaluation data as the fine-tuned model.
Training rows whose text also occurs in the evaluation data are left out, so the baseline never sees them.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from textcore.artifacts import read_metadata, recorded_training_data
from textcore.embeddings import Encoder
from textcore.errors import InvalidInput
from textcore.labelled import LabelledTexts, require_classes
from textcore.metrics import ClassificationReport, classification_report
from textcore.models import resolve_model

CLASSIFIER_TASKS = ("classification", "setfit")


@dataclass(frozen=True, slots=True)
class BaselineReport:
    """How the untuned base model (frozen embeddings + logistic regression) scores on the evaluation data.

    Attributes:
        model: The base model's name as recorded (an alias such as `minilm`, or a folder).
        accuracy: Share of evaluation rows labelled correctly.
        macro_f1: F1 averaged over the labels true or predicted for some evaluation row (see
            `textcore.metrics.ClassificationReport`).
        n: Evaluation rows.
        train_rows: Rows the linear head was fitted on.
        excluded_overlap: Training rows left out because their text is in the evaluation data.
    """

    model: str
    accuracy: float
    macro_f1: float
    n: int
    train_rows: int
    excluded_overlap: int

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return asdict(self)


def require_classifier_folder(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a fine-tuned classifier folder, refusing any other kind of model.

    Raises:
        InvalidInput: the folder's task is not classification or setfit.
    """
    metadata = read_metadata(folder)
    task = metadata.get("task")
    if task not in CLASSIFIER_TASKS:
        raise InvalidInput(
            f"{folder}: the base-model comparison expects a classifier folder "
            f"(task {' or '.join(CLASSIFIER_TASKS)}); found task {task!r}"
        )
    return metadata


def untuned_base_model(folder: str | os.PathLike[str]) -> str:
    """The encoder a classifier folder was first fine-tuned from (following retrained versions back).

    Raises:
        InvalidInput: the metadata names no base model, or the chain of base models loops.
    """
    metadata = read_metadata(folder)
    seen: list[str] = []
    while True:
        name = metadata.get("untuned_base_model") or metadata.get("base_model")
        if not isinstance(name, str) or not name:
            where = seen[-1] if seen else folder
            raise InvalidInput(f"{where}/metadata.json: expected base_model naming the untuned encoder")
        if name in seen:
            raise InvalidInput(f"base models of {folder} form a loop: {' -> '.join([*seen, name])}")
        seen.append(name)
        metadata = read_metadata(resolve_model(name))
        if metadata.get("task") not in CLASSIFIER_TASKS:
            return name


def _baseline_training_rows(
    folder: Path, train_data: LabelledTexts | None, evaluation: LabelledTexts
) -> tuple[LabelledTexts, int]:
    rows = train_data
    if rows is None:
        rows = recorded_training_data(
            folder, hint="pass the baseline's training data (--base-train-data)"
        ).read()
    held_out = {text.strip() for text in evaluation.texts}
    keep = [i for i, text in enumerate(rows.texts) if text.strip() not in held_out]
    kept = rows.subset(keep)
    require_classes(kept, "baseline training data (after leaving out the evaluation texts)")
    return kept, len(rows) - len(kept)


def evaluate_base_model(
    folder: str | os.PathLike[str],
    data: LabelledTexts,
    *,
    train_data: LabelledTexts | None = None,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 64,
) -> BaselineReport:
    """Score the untuned base model of a classifier folder: frozen embeddings + a logistic regression.

    Args:
        folder: a fine-tuned classifier folder (task classification or setfit, one label per text).
        data: the evaluation rows (the same the fine-tuned model is scored on).
        train_data: rows to fit the linear head on; default: the training file recorded in the folder's
            metadata (refused if it changed since).
        device: auto, cpu, cuda or cuda:N.
        precision: auto, bf16 or fp32.
        batch_size: texts per forward pass.

    Raises:
        InvalidInput: not a single-label classifier folder, no usable training data, or bad metadata.
    """
    path = Path(folder)
    metadata = require_classifier_folder(path)
    hyperparameters = metadata.get("hyperparameters")
    settings = hyperparameters if isinstance(hyperparameters, dict) else {}
    if settings.get("multi_label"):
        raise InvalidInput(
            f"{path}: the base-model comparison expects a single-label classifier; found multi-label"
        )
    rows, overlap = _baseline_training_rows(path, train_data, data)
    base = untuned_base_model(path)
    encoder = Encoder.from_pretrained(
        base,
        device=device,
        precision=precision,
        batch_size=batch_size,
        max_length=int(settings.get("max_length", 128)),
    )
    report = frozen_embedding_baseline(encoder, rows, data)
    return BaselineReport(base, report.accuracy, report.macro_f1, report.n, len(rows), overlap)


def frozen_embedding_baseline(
    encoder: Encoder, train_data: LabelledTexts, evaluation: LabelledTexts
) -> ClassificationReport:
    """A logistic regression on standardised frozen embeddings of `train_data`, scored on `evaluation`."""
    head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    head.fit(encoder.encode(train_data.texts), train_data.labels)  # (n, dim) float32 frozen embeddings
    predicted = [str(label) for label in head.predict(encoder.encode(evaluation.texts))]
    labels = sorted(set(train_data.labels) | set(evaluation.labels))
    return classification_report(evaluation.labels, predicted, labels)
