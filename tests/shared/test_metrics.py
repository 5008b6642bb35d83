"""Macro-F1 averages over the labels that occur as a true or a predicted label, in both report kinds; the
ranking metrics refuse a cut-off below 1."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from textcore.errors import InvalidInput
from textcore.metrics import classification_report, multilabel_report, reranking_metrics, retrieval_metrics


def test_a_label_predicted_but_never_true_counts_as_f1_0() -> None:
    # a: 1 of 2 found, 1 predicted (p 1, r 1/2, F1 2/3); b: perfect (F1 1); c: predicted once, never true
    # (F1 0); d: neither true nor predicted, left out. Macro-F1 = (2/3 + 1 + 0) / 3 = 5/9.
    truth = ["a", "a", "b", "b"]
    predicted = ["a", "c", "b", "b"]
    report = classification_report(truth, predicted, ["a", "b", "c", "d"])
    assert report.per_label["a"].f1 == pytest.approx(2 / 3)
    assert report.per_label["c"].f1 == 0.0
    assert report.macro_f1 == pytest.approx(5 / 9)
    assert report.macro_f1 == pytest.approx(f1_score(truth, predicted, average="macro"))


def test_labels_neither_true_nor_predicted_do_not_lower_the_macro_f1() -> None:
    report = classification_report(["a", "b"], ["a", "b"], ["a", "b", "c"])
    assert report.macro_f1 == 1.0


def test_multilabel_macro_f1_follows_the_same_rule() -> None:
    # perfect on a and b; c never occurs: 1.0, not (1 + 1 + 0) / 3
    assert multilabel_report(["a", "a|b", "b"], ["a", "a|b", "b"], ["a", "b", "c"]).macro_f1 == 1.0
    # c predicted once and never true (F1 0), d never occurs: (1 + 1 + 0) / 3
    report = multilabel_report(["a", "b", "b"], ["a", "b", "b|c"], ["a", "b", "c", "d"])
    assert report.per_label["c"].f1 == 0.0
    assert report.macro_f1 == pytest.approx(2 / 3)


def test_both_reports_agree_on_single_label_data() -> None:
    truth = ["a", "a", "b", "b", "b"]
    predicted = ["a", "c", "b", "a", "b"]
    labels = ["a", "b", "c", "d"]
    single = classification_report(truth, predicted, labels)
    multi = multilabel_report(truth, predicted, labels)
    # a: p 1/2 r 1/2 F1 1/2; b: p 1 r 2/3 F1 4/5; c: F1 0; d left out
    assert single.macro_f1 == pytest.approx((1 / 2 + 4 / 5 + 0) / 3)
    assert multi.macro_f1 == pytest.approx(single.macro_f1)


@pytest.mark.parametrize("k", [0, -1])
def test_ranking_metrics_refuse_a_cut_off_below_1(k: int) -> None:
    # k = 0 scored every query 0 (recall@0, mrr@0) instead of saying the cut-off was wrong
    scores = np.array([[0.9, 0.1], [0.2, 0.8]])
    with pytest.raises(InvalidInput, match=f"k >= 1; found k={k}"):
        retrieval_metrics(scores, np.array([0, 1]), k=k)
    with pytest.raises(InvalidInput, match=f"k >= 1; found k={k}"):
        reranking_metrics(["q", "q"], [1.0, 0.0], np.array([0.9, 0.1]), k=k)
