"""Repeated texts and validation: a carved split and cross-validation folds keep every row of one text on
one side, given validation rows whose texts are also training texts are counted (metadata) and warned about,
and so are training texts that carry more than one label."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import shared_data
from tests.shared.test_cli import _train_args, assert_quiet_stderr, ok, run_cli, write_csv
from tests.shared.test_training import tiny_config
from textcore.data import LabelledTexts, read_labelled, stratified_folds, stratified_split
from textcore.duplicates import label_conflicts, text_key
from textcore.errors import InvalidInput
from textcore.labelled import look_alike_labels
from textcore.training import train_classifier


def repeated(counts: dict[str, int], copies: int) -> LabelledTexts:
    """`counts[label]` distinct texts of each label, each written `copies` times in varied case and spacing,
    the copies spread over the file (as a file that was appended to would hold them)."""
    texts, labels = [], []
    for copy in range(copies):
        for label, n in counts.items():
            for i in range(n):
                text = f"{label} text number {i}"
                texts.append([text, f"  {text.upper()}", text.replace(" ", "\n  ")][copy % 3])
                labels.append(label)
    return LabelledTexts(texts, labels)


def shared_keys(train: LabelledTexts, validation: LabelledTexts) -> set[str]:
    return {text_key(t) for t in train.texts} & {text_key(t) for t in validation.texts}


def test_text_key_ignores_case_and_spacing_only() -> None:
    assert text_key("\nWhere can I  withdraw money?\u00a0") == text_key("where can i withdraw money?")
    assert text_key("profit rose") != text_key("profit rose.")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_copy_of_a_text_lands_on_one_side(seed: int) -> None:
    data = repeated({"big": 40, "mid": 10, "small": 2}, copies=3)
    train, validation = stratified_split(data, 0.1, seed)
    assert shared_keys(train, validation) == set()
    assert sorted(train.texts + validation.texts) == sorted(data.texts)
    # stratified as before: a tenth of each class's texts (at least one), all three copies of each
    assert validation.label_counts() == {"big": 12, "mid": 3, "small": 3}


def test_the_split_with_repeated_texts_is_reproducible_per_seed() -> None:
    data = repeated({"a": 30, "b": 30}, copies=2)
    first = stratified_split(data, 0.2, seed=7)
    assert stratified_split(data, 0.2, seed=7) == first
    other = stratified_split(data, 0.2, seed=8)
    assert other != first
    assert shared_keys(*first) == shared_keys(*other) == set()
    assert other[1].label_counts() == first[1].label_counts() == {"a": 12, "b": 12}


def test_a_text_with_two_labels_stays_on_one_side_under_its_majority_label() -> None:
    texts = ["shares flat", "shares flat", "SHARES FLAT", *[f"up {i}" for i in range(9)], "down 0", "down 1"]
    labels = ["neutral", "neutral", "positive", *["positive"] * 9, "negative", "negative"]
    for seed in range(10):
        train, validation = stratified_split(LabelledTexts(texts, labels), 0.3, seed)
        assert shared_keys(train, validation) == set()
        assert len(train) + len(validation) == len(texts)


def test_small_classes_keep_their_guarantees() -> None:
    # one text however often: training only; two texts: one each side; a single row: training
    texts = ["hello"] * 4 + ["bye", "BYE", "see you", "see you"] + ["once"]
    labels = ["greet"] * 4 + ["leave"] * 4 + ["odd"]
    for seed in range(10):
        train, validation = stratified_split(LabelledTexts(texts, labels), 0.1, seed)
        assert validation.label_counts() == {"leave": 2}
        assert train.label_counts() == {"greet": 4, "leave": 2, "odd": 1}


def test_multi_label_rows_are_split_by_text_too() -> None:
    data = repeated({"a|b": 10, "a": 10, "b": 10}, copies=2)
    train, validation = stratified_split(data, 0.2, seed=3)
    assert shared_keys(train, validation) == set()
    assert validation.label_counts() == {"a": 4, "a|b": 4, "b": 4}


def test_no_phrasebank_sentence_is_on_both_sides_of_the_default_split() -> None:
    data = read_labelled(shared_data("financial_phrasebank/train.csv"), "sentence", "label")
    assert len({text_key(t) for t in data.texts}) < len(data)  # the file repeats sentences
    train, validation = stratified_split(data, 0.1, 42)
    assert shared_keys(train, validation) == set()
    assert len(validation) == 388
    share = {k: v / len(data) for k, v in data.label_counts().items()}
    assert all(abs(v / len(validation) - share[k]) < 0.01 for k, v in validation.label_counts().items())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_copy_of_a_text_is_held_out_in_one_fold(seed: int) -> None:
    data = repeated({"big": 40, "mid": 10, "small": 3}, copies=3)
    folds = stratified_folds(data, 5, seed)
    held_out = [text for _, held in folds for text in held.texts]
    assert sorted(held_out) == sorted(data.texts)  # every row scored exactly once over the folds
    for rest, held in folds:
        assert shared_keys(rest, held) == set()
        assert sorted(rest.texts + held.texts) == sorted(data.texts)
        # stratified by text: a fifth of each class's texts, all three copies of each
        assert {k: v for k, v in held.label_counts().items() if k != "small"} == {"big": 24, "mid": 6}
    assert sorted(held.label_counts().get("small", 0) for _, held in folds) == [0, 0, 3, 3, 3]


def test_folds_of_texts_repeated_unevenly_stay_stratified_and_balanced() -> None:
    # texts written 1 to 4 times, two of them with a second label
    texts, labels = [], []
    for label, n in {"a": 30, "b": 12}.items():
        for i in range(n):
            texts += [f"{label} {i}"] * (1 + i % 4)
            labels += [label] * (1 + i % 4)
    texts += ["A 0", "b 1"]
    labels += ["b", "a"]
    data = LabelledTexts(texts, labels)
    for seed in range(5):
        folds = stratified_folds(data, 4, seed)
        assert sorted(t for _, held in folds for t in held.texts) == sorted(texts)
        sizes = [len(held) for _, held in folds]
        assert max(sizes) - min(sizes) <= 4  # at most one text's copies apart
        for rest, held in folds:
            assert shared_keys(rest, held) == set()
            assert 17 <= held.label_counts()["a"] <= 20 and 6 <= held.label_counts()["b"] <= 9
        assert stratified_folds(data, 4, seed) == folds


def test_folds_count_the_distinct_texts() -> None:
    data = repeated({"a": 2, "b": 2}, copies=3)  # 12 rows, 4 texts
    assert [len(held) for _, held in stratified_folds(data, 4, seed=0)] == [3, 3, 3, 3]
    with pytest.raises(InvalidInput, match=r"folds: expected an integer in \[2, 4\] \(the distinct texts"):
        stratified_folds(data, 5, seed=0)


def test_no_phrasebank_sentence_is_on_both_sides_of_a_fold() -> None:
    data = read_labelled(shared_data("financial_phrasebank/train.csv"), "sentence", "label")
    folds = stratified_folds(data, 5, 42)
    assert sorted(t for _, held in folds for t in held.texts) == sorted(data.texts)
    share = {k: v / len(data) for k, v in data.label_counts().items()}
    for rest, held in folds:
        assert shared_keys(rest, held) == set()
        assert abs(len(held) - len(data) / 5) <= 2
        assert all(abs(v / len(held) - share[k]) < 0.01 for k, v in held.label_counts().items())


def test_a_carved_split_has_no_training_text_in_validation(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = repeated({"pos": 8, "neg": 8}, copies=3)
    with caplog.at_level(logging.WARNING):
        result = train_classifier(data, tiny_config(tiny_model_dir, epochs=1), tmp_path / "m", progress=False)
    assert result.metadata["data"]["validation"]["texts_in_training"] == 0
    # repeated with the same label: no conflict, counted or warned about
    assert result.metadata["data"]["train"]["conflicting_texts"] == 0
    assert result.metadata["data"]["validation"]["conflicting_texts"] == 0
    assert not [r.getMessage() for r in caplog.records if "more than one label" in r.getMessage()]


def test_texts_with_more_than_one_label_are_found_case_and_spacing_aside() -> None:
    texts = ["Shares flat", "shares  FLAT", "up", "Profit steady", "down", "profit steady", "shares flat"]
    labels = ["neutral", "positive", "positive", "positive", "negative", "neutral", "neutral"]
    assert label_conflicts(LabelledTexts(texts, labels)) == [
        ("Shares flat", ["neutral", "positive"]),
        ("Profit steady", ["positive", "neutral"]),
    ]
    assert label_conflicts(LabelledTexts(texts, ["neutral"] * 7)) == []


def test_multi_label_rows_conflict_only_with_a_different_set_of_labels() -> None:
    # a single-label "a|b" is a label of its own; as multi-label sets "a|b", "b|a" and "a||b" are one
    same = LabelledTexts(["gold up", "Gold up", "GOLD UP", "oil"], ["a|b", "b|a", "a||b", "a"])
    assert label_conflicts(same, multi_label=True) == []
    assert label_conflicts(same) == [("gold up", ["a|b", "b|a", "a||b"])]
    other = LabelledTexts(["gold up", "gold up", "oil"], ["a|b", "a", "a|b"])
    assert label_conflicts(other, multi_label=True) == [("gold up", ["a|b", "a"])]


def test_cli_training_counts_and_warns_of_texts_with_more_than_one_label(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    rows = [(f"good service {i}", "pos") for i in range(8)] + [(f"bad service {i}", "neg") for i in range(8)]
    rows += [
        ("Delivery was on time", "pos"),
        ("delivery was on  TIME", "neg"),
        ("delivery was on time", "pos"),
    ]
    rows += [("okay I guess", "neg"), ("Okay I guess", "pos")]
    data = write_csv(tmp_path / "train.csv", rows)
    validation = write_csv(tmp_path / "val.csv", [("great staff", "pos"), ("rude staff", "neg")])
    output = tmp_path / "out"
    result = ok(run_cli(*_train_args(data, tiny_model_dir, output), "--validation", validation))
    assert_quiet_stderr(result.stderr)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: 2 texts of the training data carry more than one label (case and spacing aside), "
        'e.g. "Delivery was on time" (pos, neg); training learns from every row as given'
    ]
    metadata = json.loads((output / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["data"]["train"]["rows"] == 21  # every row trained on, as given
    assert metadata["data"]["train"]["conflicting_texts"] == 2
    assert metadata["data"]["validation"]["conflicting_texts"] == 0


def test_labels_that_differ_only_in_case_spacing_or_number_form_are_found() -> None:
    labels = ["Positive", "positive", " positive ", "neg", "1", "1.0", "01", "2", "nan", "NaN", "inf"]
    assert look_alike_labels(labels) == [
        [" positive ", "Positive", "positive"],
        ["01", "1", "1.0"],
        ["NaN", "nan"],
    ]
    assert look_alike_labels(["negative", "neutral", "positive"]) == []


def test_cli_training_warns_of_labels_that_are_one_class_written_two_ways(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # "Pos" and "pos" were two classes without a word: the model split one class's rows between them
    rows = [(f"good service {i}", "pos") for i in range(6)] + [(f"fine staff {i}", "Pos") for i in range(3)]
    rows += [(f"bad service {i}", "neg") for i in range(6)]
    output = tmp_path / "out"
    result = ok(run_cli(*_train_args(write_csv(tmp_path / "train.csv", rows), tiny_model_dir, output)))
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: labels that differ only in case, spacing or number form are trained as separate classes: "
        "'Pos', 'pos'; write each class one way in the data if they are one"
    ]
    labels = json.loads((output / "labels.json").read_text(encoding="utf-8"))
    assert sorted(labels if isinstance(labels, list) else labels["labels"]) == ["Pos", "neg", "pos"]


def test_given_validation_rows_seen_in_training_are_counted_and_warned_about(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = repeated({"pos": 6, "neg": 6}, copies=1)
    validation = LabelledTexts(
        ["POS text number 0", "neg  text number 1", "neg text number 1", "pos brand new", "neg brand new"],
        ["pos", "neg", "neg", "pos", "neg"],
    )
    with caplog.at_level(logging.WARNING):
        result = train_classifier(
            data, tiny_config(tiny_model_dir, epochs=1), tmp_path / "m", validation=validation, progress=False
        )
    assert result.metadata["data"]["validation"]["rows"] == 5  # the user's split is kept whole
    assert result.metadata["data"]["validation"]["texts_in_training"] == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    expected = "3 of 5 validation rows have a text that is also in the training data"
    assert Counter(expected in line for line in warnings)[True] == 1, warnings
