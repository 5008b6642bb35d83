"""Evaluation metrics for classification, retrieval and tagging, as plain JSON-ready values."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
)

from textcore.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class LabelScores:
    """Precision, recall, F1 and support of one label."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True, slots=True)
class ClassificationReport:
    """Accuracy, macro-F1, per-label scores and the confusion matrix (rows = true, columns = predicted).

    `macro_f1` is the unweighted mean of the per-label F1 over the labels that occur, as a true or as a
    predicted label, in at least one example. A label the model predicted but no example has counts with
    F1 0; a label of `labels` that is neither true nor predicted anywhere is left out (its F1 is undefined,
    not 0). 0.0 when no label occurs. For single-label data this is scikit-learn's default
    `f1_score(y_true, y_pred, average="macro")`.
    """

    accuracy: float
    macro_f1: float
    n: int
    labels: list[str]
    per_label: dict[str, LabelScores]
    confusion: list[list[int]] | list[list[list[int]]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "n": self.n,
            "labels": self.labels,
            "per_label": {k: vars_of(v) for k, v in self.per_label.items()},
            "confusion": self.confusion,
        }


def vars_of(scores: LabelScores) -> dict[str, float | int]:
    return {
        "precision": scores.precision,
        "recall": scores.recall,
        "f1": scores.f1,
        "support": scores.support,
    }


def _macro_f1(f1: np.ndarray, true_counts: np.ndarray, predicted_counts: np.ndarray) -> float:
    """The mean of per-label F1 over the labels with at least one true or one predicted example.

    Args:
        f1: (labels,) F1 of each label (0 where it is undefined).
        true_counts: (labels,) examples that have each label.
        predicted_counts: (labels,) examples predicted to have each label.

    Returns:
        The macro-F1; 0.0 when no label occurs at all.
    """
    occurring = (np.asarray(true_counts) > 0) | (np.asarray(predicted_counts) > 0)
    return float(np.mean(np.asarray(f1)[occurring])) if occurring.any() else 0.0


def classification_report(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]
) -> ClassificationReport:
    """Score predicted labels against true ones over a fixed label order (macro-F1: see
    `ClassificationReport`); labels outside `labels` are not scored."""
    label_list = list(labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=label_list, zero_division=0
    )
    per_label = {
        label: LabelScores(float(p), float(r), float(f), int(s))
        for label, p, r, f, s in zip(label_list, precision, recall, f1, support, strict=True)
    }
    predicted = Counter(y_pred)
    predicted_counts = np.array([predicted[label] for label in label_list])
    return ClassificationReport(
        accuracy=float(accuracy_score(y_true, y_pred)),
        macro_f1=_macro_f1(f1, support, predicted_counts),
        n=len(y_true),
        labels=label_list,
        per_label=per_label,
        confusion=confusion_matrix(y_true, y_pred, labels=label_list).astype(int).tolist(),
    )


def multilabel_report(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str], separator: str = "|"
) -> ClassificationReport:
    """Score label sets written as `a|b`: accuracy is exact-set match, F1 is per label and macro-F1 averages
    it over the labels some example has or is predicted to have (see `ClassificationReport`); `confusion`
    holds one [[tn, fp], [fn, tp]] matrix per label."""
    label_list = list(labels)

    def indicator(values: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(values), len(label_list)), dtype=np.int64)
        index = {label: i for i, label in enumerate(label_list)}
        for row, value in enumerate(values):
            for label in filter(None, (x.strip() for x in value.split(separator))):
                out[row, index[label]] = 1
        return out

    truth, predicted = indicator(y_true), indicator(y_pred)
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, zero_division=0)
    return ClassificationReport(
        accuracy=float(np.mean(np.all(truth == predicted, axis=1))),
        macro_f1=_macro_f1(f1, truth.sum(axis=0), predicted.sum(axis=0)),
        n=len(y_true),
        labels=label_list,
        per_label={
            label: LabelScores(float(p), float(r), float(f), int(s))
            for label, p, r, f, s in zip(label_list, precision, recall, f1, support, strict=True)
        },
        confusion=multilabel_confusion_matrix(truth, predicted).astype(int).tolist(),
    )


def _require_cutoff(k: int) -> None:
    """A ranking cut-off counts positions from 1: k = 0 or below would score every query 0."""
    if k < 1:
        raise InvalidInput(f"expected a cut-off k >= 1; found k={k}")


def retrieval_metrics(scores: np.ndarray, targets: np.ndarray, k: int = 10) -> dict[str, float]:
    """Recall@1, recall@k and MRR@k of a query-by-candidate score matrix.

    Args:
        scores: (queries, candidates) similarity; higher is better.
        targets: (queries,) index of each query's correct candidate.
        k: cut-off for recall@k and MRR@k.

    Raises:
        InvalidInput: If `k` is below 1.
    """
    _require_cutoff(k)
    target_scores = scores[np.arange(len(targets)), targets][:, None]
    # rank 1 = best; ties count against the target so a constant scorer does not look perfect
    ranks = (scores >= target_scores).sum(axis=1)
    return {
        "recall@1": float(np.mean(ranks <= 1)),
        f"recall@{k}": float(np.mean(ranks <= k)),
        f"mrr@{k}": float(np.mean(np.where(ranks <= k, 1.0 / ranks, 0.0))),
    }


def reranking_metrics(
    queries: Sequence[str], labels: Sequence[float], scores: np.ndarray, k: int = 10
) -> dict[str, float]:
    """MRR@k and accuracy of a re-ranker scoring each query's own candidate passages.

    Rows sharing a query text form that query's candidate list. A query's rank is one plus the number of
    irrelevant candidates scoring at least as high as its best relevant one (ties count against it, so a
    constant scorer does not look perfect); queries without a relevant candidate are left out of the MRR.

    Args:
        queries: (n,) query text of each row.
        labels: (n,) relevance in [0, 1]; >= 0.5 counts as relevant.
        scores: (n,) relevance probabilities in [0, 1]; accuracy counts score > 0.5 as a relevant prediction.
        k: cut-off of MRR@k.

    Raises:
        InvalidInput: If `k` is below 1.
    """
    _require_cutoff(k)
    relevant = np.asarray(labels, dtype=np.float64) >= 0.5
    values = np.asarray(scores, dtype=np.float64)
    groups: dict[str, list[int]] = {}
    for row, query in enumerate(queries):
        groups.setdefault(query, []).append(row)
    reciprocal = []
    for rows in groups.values():
        idx = np.asarray(rows)
        hits, misses = values[idx][relevant[idx]], values[idx][~relevant[idx]]
        if len(hits):
            rank = 1 + int((misses >= hits.max()).sum())
            reciprocal.append(1.0 / rank if rank <= k else 0.0)
    return {
        f"mrr@{k}": float(np.mean(reciprocal)) if reciprocal else 0.0,
        "accuracy": float(np.mean((values > 0.5) == relevant)) if len(values) else 0.0,
    }


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities of one sentence's BIO tags as (type, first word, end word exclusive), in order.

    As conlleval and seqeval read IOB: `B-T` opens an entity of type T; `I-T` continues an open T entity
    and otherwise opens one (IOB1); anything else (`O`, another type) closes the open entity.
    """
    spans: list[tuple[str, int, int]] = []
    kind: str | None = None
    start = 0
    for position, tag in enumerate([*tags, "O"]):
        continues = kind is not None and tag == f"I-{kind}"
        if kind is not None and not continues:
            spans.append((kind, start, position))
            kind = None
        if tag.startswith(("B-", "I-")) and not continues:
            kind, start = tag[2:], position
    return spans


@dataclass(frozen=True, slots=True)
class TaggingReport:
    """Entity-level precision, recall and F1 (exact span and type, micro-averaged), token accuracy and
    per-type scores; `n` counts sentences, `entities` the true entities."""

    precision: float
    recall: float
    f1: float
    accuracy: float
    n: int
    entities: int
    per_type: dict[str, LabelScores]

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "accuracy": self.accuracy,
            "n": self.n,
            "entities": self.entities,
            "per_type": {k: vars_of(v) for k, v in self.per_type.items()},
        }


def _prf(hits: int, predicted: int, true: int) -> tuple[float, float, float]:
    precision = hits / predicted if predicted else 0.0
    recall = hits / true if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def tagging_report(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> TaggingReport:
    """Score predicted BIO tags against true ones, sentence by sentence (as seqeval's default mode).

    Raises:
        ValueError: the two sides differ in their number of sentences or of tags in a sentence.
    """
    if len(y_true) != len(y_pred) or any(len(t) != len(p) for t, p in zip(y_true, y_pred, strict=True)):
        raise ValueError("expected predicted tags of the same shape as the true tags")
    true_spans = {(i, *span) for i, tags in enumerate(y_true) for span in entity_spans(tags)}
    pred_spans = {(i, *span) for i, tags in enumerate(y_pred) for span in entity_spans(tags)}
    hits = true_spans & pred_spans
    per_type = {}
    for kind in sorted({span[1] for span in true_spans | pred_spans}):
        true_n = sum(span[1] == kind for span in true_spans)
        scores = _prf(
            sum(span[1] == kind for span in hits), sum(span[1] == kind for span in pred_spans), true_n
        )
        per_type[kind] = LabelScores(*scores, support=true_n)
    precision, recall, f1 = _prf(len(hits), len(pred_spans), len(true_spans))
    pairs = [
        (t, p) for true, pred in zip(y_true, y_pred, strict=True) for t, p in zip(true, pred, strict=True)
    ]
    return TaggingReport(
        precision=precision,
        recall=recall,
        f1=f1,
        accuracy=sum(t == p for t, p in pairs) / len(pairs) if pairs else 0.0,
        n=len(y_true),
        entities=len(true_spans),
        per_type=per_type,
    )
