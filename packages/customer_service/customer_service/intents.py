"""Intent recognition with an out-of-scope rule: a `textcore` classifier plus a rejection threshold.

A text is out of scope when the classifier's top label is the out-of-scope label (``oos``; rows with that
label stay a class of their own, so the model learns what "none of the above" looks like) or when the best
in-scope intent's probability is below the threshold `t`. Training picks `t` on validation data and stores it
beside the model in ``intents.json``:

    {"oos_label": "oos", "threshold": 0.42, "selection": "bounded",
     "validation": {"at_threshold": {...figures...}, "at_zero": {...figures...}}}

When the validation data has out-of-scope rows, `t` comes from a grid 0.00, 0.01, ..., 0.99 by one of two
rules. "bounded" (the default): the highest out-of-scope recall among the thresholds that cost at most
`max_in_scope_drop` (1 point by default) of in-scope accuracy against no threshold, the lowest such `t` on a
tie. It does not depend on how many out-of-scope rows the validation data happens to hold: CLINC150's
validation split has 3% of them, its test split 18%, and a bank's live traffic its own share. "balanced":
maximise (in-scope accuracy + out-of-scope recall) / 2 (the middle of a tied plateau), which weighs the two
equally however rare out-of-scope rows are and so gives up more in-scope accuracy.

Without out-of-scope rows there is nothing to weigh a rejection against, and every rejected in-scope row is
an error: on BANKING77 a threshold rejecting 2% of the validation rows cost a full point of accuracy (0.935 to
0.925), as half of the rejected rows were right. So `t` is 0 ("none": the bot's hand-off then rests on
retrieval relevance) unless the caller asks for a share `in_scope_rejection` of in-scope validation rows to
be rejected ("in-scope-rejection": `t` is set so that at most that share falls below it).

With `refit` (train again on the training and validation rows once the validation rows have chosen when to
stop) no threshold is chosen, so refit is refused when the validation data has out-of-scope rows or an
in-scope rejection is asked for; the stored figures are then the first run's, with ``"refit": true``.

A model folder without ``intents.json`` (a plain `textcore train` classifier) works with threshold 0;
`calibrate` chooses the threshold of a trained model again on other validation data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from textcore import InvalidInput, LabelledTexts, LabelPredictor, TrainConfig, TrainResult, load_predictor
from textcore.artifacts import read_json, write_json_atomic
from textcore.classifier import Classifier
from textcore.data import stratified_split
from textcore.embeddings import Encoder
from textcore.errors import some_of
from textcore.frozen_view import Embed
from textcore.metrics import classification_report
from textcore.training import train_classifier

INTENTS_FILE = "intents.json"
THRESHOLD_GRID = np.round(np.arange(0.0, 1.0, 0.01), 2)  # candidate thresholds, 0.00 .. 0.99
MAX_IN_SCOPE_DROP = 0.01  # "bounded": in-scope accuracy the threshold may cost, against no threshold
RULES = ("bounded", "balanced")


@dataclass(frozen=True, slots=True)
class IntentResult:
    """One text's intent.

    Attributes:
        name: the intent, or None when the text is out of scope.
        confidence: probability of the best in-scope intent (also when rejected: how close it came).
        out_of_scope: True when the top label is the out-of-scope label or `confidence` < the threshold.
        alternatives: the (up to) three most probable in-scope intents with their probabilities, best first.
    """

    name: str | None
    confidence: float
    out_of_scope: bool
    alternatives: list[tuple[str, float]]


@dataclass(frozen=True)
class IntentTraining:
    """A finished intent training: the classifier run, and the threshold chosen on validation data."""

    output: Path
    threshold: float
    oos_label: str
    selection: str  # "bounded", "balanced", "none" or "in-scope-rejection"
    validation: dict[str, dict[str, float]]  # {"at_threshold": figures, "at_zero": figures}
    result: TrainResult


def _decide(
    probabilities: np.ndarray, labels: Sequence[str], oos_label: str, threshold: float
) -> tuple[list[str], np.ndarray]:
    """Predicted label per row (the oos label when rejected) and the best in-scope probability, (n,)."""
    in_scope = np.array([label != oos_label for label in labels])
    if not in_scope.any():
        raise InvalidInput(
            f"expected at least one in-scope intent besides {oos_label!r}; found {list(labels)}"
        )
    scoped = np.where(in_scope[None, :], probabilities, -1.0)  # (n, n_labels), oos column masked out
    best = scoped.argmax(axis=1)
    best_p = scoped.max(axis=1)
    top_is_oos = ~in_scope[probabilities.argmax(axis=1)]
    rejected = top_is_oos | (best_p < threshold)
    predicted = [oos_label if reject else labels[int(i)] for reject, i in zip(rejected, best, strict=True)]
    return predicted, best_p


def intent_figures(
    truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str], oos_label: str
) -> dict[str, float]:
    """Accuracy and macro-F1 (out of scope counted as a class), in-scope accuracy, oos recall and precision.

    In-scope accuracy counts an in-scope row right only when it is predicted as its own intent (a rejection is
    wrong). Figures without rows to measure them on (no oos rows, say) are 0.0.
    """
    truth_oos = np.array([t == oos_label for t in truth])
    pred_oos = np.array([p == oos_label for p in predicted])
    correct = np.array([t == p for t, p in zip(truth, predicted, strict=True)])
    report = classification_report(truth, predicted, sorted({*labels, oos_label}))

    def share(mask: np.ndarray, of: np.ndarray) -> float:
        return float(mask[of].mean()) if of.any() else 0.0

    return {
        "accuracy": report.accuracy,
        "macro_f1": report.macro_f1,
        "in_scope_accuracy": share(correct, ~truth_oos),
        "oos_recall": share(pred_oos, truth_oos),
        "oos_precision": share(truth_oos, pred_oos),
        "n": len(truth),  # a count: an integer in the JSON, as textcore evaluate's
    }


def choose_threshold(
    probabilities: np.ndarray,
    labels: Sequence[str],
    truth: Sequence[str],
    oos_label: str = "oos",
    *,
    rule: str = "bounded",
    max_in_scope_drop: float = MAX_IN_SCOPE_DROP,
    in_scope_rejection: float = 0.0,
) -> tuple[float, str]:
    """The out-of-scope threshold for validation rows and how it was chosen (see the module docstring).

    Args:
        probabilities: (n, n_labels) class probabilities of the validation texts.
        labels: the classifier's labels, in column order.
        truth: the validation texts' true labels (`oos_label` for out-of-scope rows).
        oos_label: the out-of-scope label.
        rule: "bounded" or "balanced" (see the module docstring).
        max_in_scope_drop: for "bounded", the in-scope accuracy the threshold may cost.
        in_scope_rejection: without out-of-scope rows, the share of in-scope rows the threshold may reject
            (0: no threshold).

    Returns:
        (threshold, selection) with selection "bounded", "balanced", "none" or "in-scope-rejection".
    """
    if len(truth) == 0:
        raise InvalidInput("expected validation rows to choose the out-of-scope threshold on; found none")
    if rule not in RULES or not 0.0 <= max_in_scope_drop <= 1.0:
        raise InvalidInput(
            f"expected a rule in {RULES} and max_in_scope_drop in [0, 1]; found {rule!r}, {max_in_scope_drop}"
        )
    if not 0.0 <= in_scope_rejection < 1.0:
        raise InvalidInput(f"expected in_scope_rejection in [0, 1); found {in_scope_rejection}")
    truth_oos = np.array([t == oos_label for t in truth])
    if truth_oos.any():
        grid = [
            intent_figures(truth, _decide(probabilities, labels, oos_label, float(t))[0], labels, oos_label)
            for t in THRESHOLD_GRID
        ]
        in_scope = np.array([f["in_scope_accuracy"] for f in grid])
        recall = np.array([f["oos_recall"] for f in grid])
        if rule == "bounded":
            allowed = in_scope >= in_scope.max() - max_in_scope_drop - 1e-9
            best_recall = recall[allowed].max()
            return float(THRESHOLD_GRID[np.flatnonzero(allowed & np.isclose(recall, best_recall))[0]]), rule
        scores = (in_scope + recall) / 2
        best = np.flatnonzero(np.isclose(scores, scores.max()))
        # the middle of the tied maximisers: small validation sets give wide plateaus; the centre is robust
        return float(THRESHOLD_GRID[best[len(best) // 2]]), rule
    if in_scope_rejection == 0:
        return 0.0, "none"
    _, best_p = _decide(probabilities, labels, oos_label, 0.0)
    ordered = np.sort(best_p[~truth_oos])
    allowed = int(np.floor(in_scope_rejection * len(ordered)))  # rows that may fall below t
    return float(np.floor(ordered[allowed] * 100) / 100), "in-scope-rejection"


def train_intents(
    data: LabelledTexts,
    output: Path,
    config: TrainConfig,
    *,
    validation: LabelledTexts | None = None,
    oos_label: str = "oos",
    rule: str = "bounded",
    max_in_scope_drop: float = MAX_IN_SCOPE_DROP,
    in_scope_rejection: float = 0.0,
    sources: dict[str, Any] | None = None,
    progress: bool = True,
) -> IntentTraining:
    """Fine-tune an intent classifier and choose its out-of-scope threshold.

    Args:
        data: labelled texts; rows labelled `oos_label` are kept as a class of their own.
        output: the model folder to write (a `textcore` classifier folder plus ``intents.json``).
        config: classification hyperparameters.
        validation: validation data; None carves a stratified ``config.validation_fraction`` split from `data`
            (the same split `textcore.train_classifier` would carve). The threshold is chosen on it, which is
            also the data checkpoint selection used, so its figures are slightly optimistic.
        oos_label: the out-of-scope label.
        rule: how the threshold is chosen, "bounded" or "balanced" (see the module docstring).
        max_in_scope_drop: for "bounded", the in-scope accuracy the threshold may cost.
        in_scope_rejection: without out-of-scope validation rows, the share of in-scope rows the threshold may
            reject (0: no threshold).
        sources: where the data came from (recorded in the model's metadata).
        progress: show a progress bar.

    Raises:
        InvalidInput: bad configuration or data (see `textcore.train_classifier`), or only out-of-scope rows.
    """
    if config.multi_label:
        raise InvalidInput("expected a single-label intent configuration; found multi_label=True")
    if not any(label != oos_label for label in data.labels):
        raise InvalidInput(
            f"expected in-scope intents besides {oos_label!r} in the training data; found none"
        )
    if validation is None:
        data, validation = stratified_split(data, config.validation_fraction, config.seed)
    if config.refit and (oos_label in validation.labels or in_scope_rejection > 0):
        raise InvalidInput(
            "refit: the out-of-scope threshold is chosen on the validation rows, which a refit trains on; "
            f"train without refit, or with validation data free of {oos_label!r} rows and no in-scope "
            "rejection"
        )
    # out-of-scope validation rows calibrate the threshold even when the classifier has no oos class
    keep = [i for i, label in enumerate(validation.labels) if label != oos_label or oos_label in data.labels]
    result = train_classifier(
        data, config, output, validation=validation.subset(keep), sources=sources, progress=progress
    )
    if config.refit:
        return _refit_training(output, oos_label, result)
    model = IntentModel.load(
        output, device=config.device, precision=config.precision, max_length=config.max_length
    )
    threshold, selection, figures = calibrate(
        model,
        output,
        validation,
        oos_label=oos_label,
        rule=rule,
        max_in_scope_drop=max_in_scope_drop,
        in_scope_rejection=in_scope_rejection,
    )
    return IntentTraining(output, threshold, oos_label, selection, figures, result)


def _refit_training(output: Path, oos_label: str, result: TrainResult) -> IntentTraining:
    """A refit model has no threshold (nothing held out is left to choose one on); its figures are the first
    run's on the validation rows, before the refit trained on them."""
    measured = result.metadata["validation_metrics"]
    figures = {
        "accuracy": float(measured["accuracy"]),
        "macro_f1": float(measured["macro_f1"]),
        "in_scope_accuracy": float(measured["accuracy"]),  # no out-of-scope rows: every row is in scope
        "oos_recall": 0.0,
        "oos_precision": 0.0,
        "n": int(measured["n"]),
    }
    validation = {"at_threshold": figures, "at_zero": figures}
    write_json_atomic(
        output / INTENTS_FILE,
        {
            "oos_label": oos_label,
            "threshold": 0.0,
            "selection": "none",
            "validation": validation,
            "refit": True,
        },
    )
    return IntentTraining(output, 0.0, oos_label, "none", validation, result)


def calibrate(
    model: IntentModel,
    output: Path,
    validation: LabelledTexts,
    *,
    oos_label: str = "oos",
    rule: str = "bounded",
    max_in_scope_drop: float = MAX_IN_SCOPE_DROP,
    in_scope_rejection: float = 0.0,
) -> tuple[float, str, dict[str, dict[str, float]]]:
    """Choose the out-of-scope threshold of a trained model on `validation` and write ``intents.json``.

    Returns:
        (threshold, selection, {"at_threshold": figures, "at_zero": figures}).

    Raises:
        InvalidInput: `validation` holds intents the model does not know (`require_known_intents`).
    """
    require_known_intents(model, validation.labels, oos_label)
    probabilities = model.predictor.predict_proba(validation.texts)
    labels = model.predictor.labels
    threshold, selection = choose_threshold(
        probabilities,
        labels,
        validation.labels,
        oos_label,
        rule=rule,
        max_in_scope_drop=max_in_scope_drop,
        in_scope_rejection=in_scope_rejection,
    )
    figures = {
        name: intent_figures(
            validation.labels, _decide(probabilities, labels, oos_label, t)[0], labels, oos_label
        )
        for name, t in (("at_threshold", threshold), ("at_zero", 0.0))
    }
    write_json_atomic(
        output / INTENTS_FILE,
        {"oos_label": oos_label, "threshold": threshold, "selection": selection, "validation": figures},
    )
    model.oos_label, model.threshold = oos_label, threshold
    return threshold, selection, figures


class IntentModel:
    """A loaded intent classifier with its out-of-scope rule; `predict` is blocking (call it from a thread).

    Raises:
        InvalidInput: a multi-label classifier, a threshold outside [0, 1], or no in-scope intent.
    """

    def __init__(self, predictor: LabelPredictor, *, oos_label: str = "oos", threshold: float = 0.0) -> None:
        if predictor.multi_label:
            raise InvalidInput("expected a single-label intent classifier; found a multi-label one")
        if not 0.0 <= threshold <= 1.0:
            raise InvalidInput(f"expected an out-of-scope threshold in [0, 1]; found {threshold}")
        self.predictor = predictor
        self.oos_label = oos_label
        self.threshold = threshold
        self.intents = [label for label in predictor.labels if label != oos_label]
        if not self.intents:
            raise InvalidInput(f"expected in-scope intents besides {oos_label!r}; found {predictor.labels}")

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike[str],
        *,
        device: str = "auto",
        precision: str = "auto",
        max_length: int | None = None,
        batch_size: int = 64,
        backend: str = "torch",
    ) -> IntentModel:
        """Load a model folder written by `train_intents` (or any single-label `textcore` classifier)."""
        path = Path(folder)
        predictor = load_predictor(
            path,
            backend=backend,
            device=device,
            precision=precision,
            max_length=max_length,
            batch_size=batch_size,
        )
        if not (path / INTENTS_FILE).is_file():
            return cls(predictor)
        config = read_json(path / INTENTS_FILE)
        if not isinstance(config, dict):
            raise InvalidInput(
                f"{path / INTENTS_FILE}: expected a JSON object; found {type(config).__name__}"
            )
        oos_label, threshold = config.get("oos_label", "oos"), config.get("threshold", 0.0)
        if not isinstance(oos_label, str) or not isinstance(threshold, int | float):
            raise InvalidInput(
                f"{path / INTENTS_FILE}: expected a string oos_label and a numeric threshold; "
                f"found {oos_label!r} and {threshold!r}"
            )
        return cls(predictor, oos_label=oos_label, threshold=float(threshold))

    def share_frozen_encoder(self, encoder: Encoder, embed: Embed) -> bool:
        """Let a classifier's frozen view read `embed`'s embeddings when `encoder` is its encoder (see
        `textcore.Classifier.share_frozen_encoder`); whether it does (False for a model without a view)."""
        predictor = self.predictor
        return isinstance(predictor, Classifier) and predictor.share_frozen_encoder(encoder, embed)

    @property
    def frozen_view_shared(self) -> bool:
        """Whether the classifier's frozen view reads another encoder's embeddings."""
        return isinstance(self.predictor, Classifier) and self.predictor.frozen_view_shared

    def predict(self, texts: Sequence[str]) -> list[IntentResult]:
        """The intent of each text, in input order."""
        probabilities = self.predictor.predict_proba(texts)  # (n, n_labels)
        labels = self.predictor.labels
        predicted, best_p = _decide(probabilities, labels, self.oos_label, self.threshold)
        results = []
        for row, label, confidence in zip(probabilities, predicted, best_p, strict=True):
            order = [int(i) for i in np.argsort(-row, kind="stable") if labels[int(i)] != self.oos_label]
            out = label == self.oos_label
            results.append(
                IntentResult(
                    name=None if out else label,
                    confidence=float(confidence),
                    out_of_scope=out,
                    alternatives=[(labels[i], float(row[i])) for i in order[:3]],
                )
            )
        return results


def evaluate_intents(
    model: IntentModel, data: LabelledTexts, oos_label: str | None = None
) -> dict[str, float]:
    """Accuracy, macro_f1, in_scope_accuracy, oos_recall, oos_precision and n of `model` on `data`.

    Args:
        model: the intent model, with its threshold.
        data: labelled texts; out-of-scope rows carry `oos_label`.
        oos_label: the label of out-of-scope rows in `data`; None: the model's.

    Raises:
        InvalidInput: `data` is empty or holds intents the model does not know.
    """
    oos = model.oos_label if oos_label is None else oos_label
    if len(data) == 0:
        raise InvalidInput("expected labelled rows to evaluate the intent model on; found none")
    require_known_intents(model, data.labels, oos)
    predicted = [oos if r.out_of_scope else str(r.name) for r in model.predict(data.texts)]
    return intent_figures(data.labels, predicted, model.intents, oos)


def require_known_intents(model: IntentModel, labels: Sequence[str], oos_label: str) -> None:
    """Refuse labelled rows whose intent the model does not know (nor is `oos_label`): no threshold or
    figure can be right on them, as each such row counts as an error whatever the model answers."""
    unknown = sorted(set(labels) - set(model.intents) - {oos_label})
    if unknown:
        raise InvalidInput(
            f"intents {some_of(unknown)} are not known to the model; it knows {some_of(model.intents)} "
            f"and {oos_label!r}"
        )
