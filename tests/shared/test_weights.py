"""Per-row loss weights for classifiers: read from a column, kept through splits, applied to the loss."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.nn import functional

from tests.shared.test_cli import assert_clean_failure, invoke_cli, ok
from tests.shared.test_training import keyword_data, tiny_config
from textcore.data import LabelledTexts, read_labelled, stratified_split
from textcore.errors import InvalidInput
from textcore.models import load_backbone
from textcore.training import train_classifier
from textcore.training.classification import ClassificationTask

LABELS = ["negative", "positive"]


def write_rows(path: Path, header: tuple[str, ...], rows: Sequence[tuple[object, ...]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_weights_are_read_from_a_column_and_bad_values_are_refused(tmp_path: Path) -> None:
    good = write_rows(
        tmp_path / "good.csv", ("text", "label", "agreement"), [("up", "a", "100"), ("down", "b", "0.5")]
    )
    assert read_labelled(good, "text", "label", "agreement").weights == [100.0, 0.5]
    assert read_labelled(good, "text", "label").weights is None
    with pytest.raises(InvalidInput, match="expected column\\(s\\) share"):
        read_labelled(good, "text", "label", "share")
    for bad in ("high", "-1", "nan", "inf", ""):
        path = write_rows(
            tmp_path / "bad.csv", ("text", "label", "w"), [("up", "a", "1"), ("down", "b", bad)]
        )
        with pytest.raises(InvalidInput, match=f"row 2 has 'w' '{bad}'; expected a finite number >= 0"):
            read_labelled(path, "text", "label", "w")
    zeros = write_rows(tmp_path / "zeros.csv", ("text", "label", "w"), [("up", "a", "0"), ("down", "b", "0")])
    with pytest.raises(InvalidInput, match="every 'w' weight is 0"):
        read_labelled(zeros, "text", "label", "w")


def test_weights_follow_their_rows_through_subsets_splits_and_concatenation() -> None:
    data = LabelledTexts([f"t{i}" for i in range(20)], ["a", "b"] * 10, [float(i) for i in range(20)])
    train, validation = stratified_split(data, 0.2, seed=3)
    for part in (train, validation):
        assert part.weights == [float(text[1:]) for text in part.texts]
    both = train.concat(validation)
    assert both.texts == train.texts + validation.texts
    assert both.weights == (train.weights or []) + (validation.weights or [])
    plain = LabelledTexts(["x", "y"], ["a", "b"])
    assert plain.concat(plain).weights is None
    assert train.concat(plain).weights == [*(train.weights or []), 1.0, 1.0]
    assert train.unweighted().weights is None


def _task(model: Path, data: LabelledTexts, **changes: object) -> ClassificationTask:
    torch.manual_seed(0)  # the same head for every task built here
    config = tiny_config(model, **changes)
    task = ClassificationTask(load_backbone(model), data, data.subset(range(4)), LABELS, config)
    task.model.eval()  # no dropout: the same logits on every call
    return task


def test_equal_weights_give_the_plain_loss_and_uneven_ones_a_weighted_mean(tiny_model_dir: Path) -> None:
    data = keyword_data(8)
    plain = _task(tiny_model_dir, data)
    equal = _task(tiny_model_dir, LabelledTexts(data.texts, data.labels, [2.5] * 8))
    batch = plain.epoch_batches(np.random.default_rng(0))[0]
    weighted_batch = equal.epoch_batches(np.random.default_rng(0))[0]
    assert torch.equal(batch["input_ids"], weighted_batch["input_ids"])
    assert torch.allclose(weighted_batch["weights"], torch.ones(8))  # scaled to mean 1
    assert float(equal.loss(weighted_batch).detach()) == pytest.approx(
        float(plain.loss(batch).detach()), rel=1e-5
    )

    uneven = _task(tiny_model_dir, LabelledTexts(data.texts, data.labels, [3.0, 1.0] * 4))
    batch = uneven.epoch_batches(np.random.default_rng(0))[0]
    with torch.no_grad():
        logits = uneven.model(batch["input_ids"], batch["attention_mask"])
        per_row = functional.cross_entropy(logits, batch["labels"], reduction="none")
    assert sorted(batch["weights"].tolist()) == [0.5] * 4 + [1.5] * 4  # scaled to mean 1
    expected = float((per_row * batch["weights"]).mean())
    assert float(uneven.loss(batch).detach()) == pytest.approx(expected, rel=1e-5)


def test_rows_of_weight_0_train_exactly_as_if_they_were_left_out(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data, held_out = keyword_data(40), keyword_data(12, seed=3)
    weights = [0.0 if i % 3 == 0 else 1.0 for i in range(40)]
    config = tiny_config(tiny_model_dir, epochs=2)
    weighted = train_classifier(
        LabelledTexts(data.texts, data.labels, weights), config, tmp_path / "w", validation=held_out,
        progress=False,
    )  # fmt: skip
    kept = data.subset([i for i, w in enumerate(weights) if w > 0])
    without = train_classifier(kept, config, tmp_path / "o", validation=held_out, progress=False)
    assert weighted.metadata["training"]["steps"] == without.metadata["training"]["steps"]
    assert weighted.metrics == without.metrics
    assert weighted.metadata["data"]["train"]["weights"]["left_out"] == 14  # rows 0, 3, ..., 39
    first = load_file(str(tmp_path / "w" / "head.safetensors"))
    second = load_file(str(tmp_path / "o" / "head.safetensors"))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_training_rows_that_all_weigh_nothing_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = keyword_data(12)
    weightless = LabelledTexts(data.texts[:8], data.labels[:8], [0.0] * 8)
    config = tiny_config(tiny_model_dir)
    with pytest.raises(InvalidInput, match="expected at least one training row weighing more than 0"):
        train_classifier(
            weightless, config, tmp_path / "m", validation=data.subset(range(8, 12)), progress=False
        )


def test_with_class_weights_equal_row_weights_still_give_the_plain_loss(tiny_model_dir: Path) -> None:
    data = keyword_data(9)  # 5 negative, 4 positive: unequal class weights
    plain = _task(tiny_model_dir, data, class_weights=True)
    equal = _task(tiny_model_dir, LabelledTexts(data.texts, data.labels, [0.7] * 9), class_weights=True)
    batch = plain.epoch_batches(np.random.default_rng(1))[0]
    weighted_batch = equal.epoch_batches(np.random.default_rng(1))[0]
    assert float(equal.loss(weighted_batch).detach()) == pytest.approx(
        float(plain.loss(batch).detach()), rel=1e-5
    )


def test_zero_weighted_contradictions_do_not_stop_a_classifier_learning(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    clean = keyword_data(120)
    flipped = [LABELS[1 - LABELS.index(label)] for label in clean.labels]
    # every text twice, once with the wrong label; the wrong copies weigh nothing
    noisy = LabelledTexts(clean.texts * 2, clean.labels + flipped, [1.0] * 120 + [0.0] * 120)
    held_out = keyword_data(40, seed=3)
    # 8 epochs: after 5 the clean rows alone reached only 0.85 in fp32 and 0.825 in bf16 (`precision` auto on
    # a CPU with bf16 units), too close to the bound below; after 8 both reach 1.0
    config = tiny_config(tiny_model_dir, epochs=8)
    weighted = train_classifier(noisy, config, tmp_path / "w", validation=held_out, progress=False)
    unweighted = train_classifier(
        noisy.unweighted(), config, tmp_path / "u", validation=held_out, progress=False
    )
    assert weighted.metrics["accuracy"] >= 0.85
    assert unweighted.metrics["accuracy"] <= 0.7  # the same rows unweighted contradict each other
    recorded = weighted.metadata["data"]["train"]["weights"]
    assert recorded == {"min": 0.0, "max": 1.0, "mean": 0.5, "left_out": 120}


def test_cli_trains_with_a_weight_column_and_refuses_bad_weights(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = keyword_data(32, seed=5)
    rows = [
        (t, lab, 100 if i % 3 else 50) for i, (t, lab) in enumerate(zip(data.texts, data.labels, strict=True))
    ]
    train_csv = write_rows(tmp_path / "train.csv", ("text", "label", "agreement"), rows)
    common = ["train", "--data", train_csv, "--base-model", tiny_model_dir, "--epochs", "1"]
    ok(invoke_cli(*common, "--output", tmp_path / "m", "--weight-column", "agreement"))
    recorded = json.loads((tmp_path / "m" / "metadata.json").read_text())["data"]
    assert recorded["weight_column"] == "agreement"
    assert recorded["file"]["weights"]["min"] == 50.0 and recorded["file"]["weights"]["max"] == 100.0

    bad = write_rows(
        tmp_path / "bad.csv", ("text", "label", "agreement"), [*rows[:5], ("odd", "negative", "?")]
    )
    failed = invoke_cli("train", "--data", bad, "--output", tmp_path / "b", "--weight-column", "agreement")
    assert_clean_failure(failed, "row 6 has 'agreement' '?'; expected a finite number >= 0")
    no_column = write_rows(tmp_path / "val.csv", ("text", "label"), [(t, lab) for t, lab, _ in rows[:6]])
    failed = invoke_cli(
        *common, "--output", tmp_path / "v", "--validation", no_column, "--weight-column", "agreement"
    )
    assert_clean_failure(failed, "expected column(s) agreement")
    failed = invoke_cli(
        *common, "--output", tmp_path / "e", "--task", "embedding", "--weight-column", "agreement"
    )
    assert_clean_failure(failed, "row weights apply to --task classification only")
    assert not any((tmp_path / name).exists() for name in ("b", "v", "e"))
