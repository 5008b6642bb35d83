"""Few-shot (SetFit-style) training: pairs, the folded head, the saved folder, bad input and the CLI."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.shared.test_cli import invoke_cli, ok
from tests.shared.test_training import keyword_data, tiny_config
from textcore.classifier import Classifier
from textcore.data import LabelledTexts, sample_per_class
from textcore.errors import InvalidInput
from textcore.evaluation import evaluate_classifier
from textcore.training import TrainConfig, train_few_shot
from textcore.training.setfit import HEAD_C, class_spread_order, fit_linear_head, positive_pairs


def few_shot_config(model: Path, **changes: object) -> TrainConfig:
    # 16 examples make 2 steps an epoch; the random tiny model also needs its word embeddings to train
    base = tiny_config(model, task="setfit", epochs=40, learning_rate=5e-3, freeze_embeddings=False)
    return base.replace(**changes)


def write_csv(path: Path, data: LabelledTexts) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(data.texts, data.labels, strict=True))
    return path


def test_sample_per_class_draws_k_of_each_class_nested_and_disjoint() -> None:
    data = LabelledTexts([f"t{i}" for i in range(30)], ["a"] * 20 + ["b"] * 7 + ["c"] * 3)
    small, rest = sample_per_class(data, 4, seed=1)
    assert Counter(small.labels) == {"a": 4, "b": 4, "c": 3}  # a class with fewer rows gives all of them
    assert sorted(small.texts + rest.texts) == sorted(data.texts)
    large, _ = sample_per_class(data, 6, seed=1)
    assert set(small.texts) <= set(large.texts)
    assert sample_per_class(data, 4, seed=1) == (small, rest)
    assert sample_per_class(data, 4, seed=2)[0] != small
    with pytest.raises(InvalidInput, match="k: expected an integer >= 1"):
        sample_per_class(data, 0, seed=1)


def test_pairs_are_seeded_same_class_and_one_per_example() -> None:
    labels = [0] * 5 + [1] * 3 + [2] * 8
    pairs = positive_pairs(labels, np.random.default_rng(3))
    np.testing.assert_array_equal(pairs, positive_pairs(labels, np.random.default_rng(3)))
    assert not np.array_equal(pairs, positive_pairs(labels, np.random.default_rng(4)))
    np.testing.assert_array_equal(pairs[:, 0], np.arange(len(labels)))  # every example anchors once
    assert all(labels[a] == labels[p] and a != p for a, p in pairs)
    with pytest.raises(InvalidInput, match="at least 2 examples"):
        positive_pairs([0, 0, 1], np.random.default_rng(0))


def test_batches_spread_the_classes() -> None:
    labels = np.repeat(np.arange(6), 4)  # 6 classes of 4
    order = class_spread_order(labels, np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(len(labels)))
    for start in range(0, len(order), 6):  # each run of 6 consecutive rows holds every class once
        assert sorted(labels[order[start : start + 6]].tolist()) == list(range(6))


@pytest.mark.parametrize("n_labels", [2, 4])
def test_folded_head_gives_the_logistic_regression_probabilities(n_labels: int) -> None:
    rng = np.random.default_rng(0)
    targets = np.arange(60) % n_labels
    features = (rng.normal(size=(60, 8)) * 3 + targets[:, None] + 5).astype(np.float32)
    head = fit_linear_head(features, targets, n_labels, seed=0)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=HEAD_C, max_iter=1000, random_state=0))
    expected = pipeline.fit(features, targets).predict_proba(features)
    with torch.no_grad():
        probs = torch.softmax(head(torch.from_numpy(features)), dim=-1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_few_shot_beats_chance_and_saves_a_classifier_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    train, _ = sample_per_class(keyword_data(60), 8, seed=0)
    validation = keyword_data(10, seed=5)
    result = train_few_shot(
        train, few_shot_config(tiny_model_dir), tmp_path / "m", validation=validation, progress=False
    )
    folder = tmp_path / "m"
    assert {"head.safetensors", "labels.json", "metadata.json", "model.safetensors"} <= {
        p.name for p in folder.iterdir()
    }
    metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["task"] == "setfit"
    assert metadata["data"]["train"]["label_counts"] == {"negative": 8, "positive": 8}
    # the folder reproduces the model scored in memory at the end of training
    classifier = Classifier.load(folder, device="cpu", precision="fp32")
    assert classifier.labels == ["negative", "positive"]
    report = evaluate_classifier(classifier, validation)
    assert report["accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert report["accuracy"] == pytest.approx(metadata["validation_metrics"]["accuracy"])
    held_out = keyword_data(40, seed=99)
    assert evaluate_classifier(classifier, held_out)["accuracy"] >= 0.85  # chance is 0.5


def test_a_class_with_one_example_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = LabelledTexts(
        ["profit rose", "sales grew", "record revenue", "profit fell"], ["pos"] * 3 + ["neg"]
    )
    config = few_shot_config(tiny_model_dir)
    with pytest.raises(InvalidInput, match=r"setfit.*2 examples of every class.*1 of 'neg'"):
        train_few_shot(data, config, tmp_path / "m", validation=data, progress=False)
    two_each = LabelledTexts([*data.texts, "shares plunged"], [*data.labels, "neg"])
    with pytest.raises(InvalidInput, match=r"3 examples of every class.*or separate validation data"):
        train_few_shot(two_each, config, tmp_path / "m", progress=False)  # one of 2 would go to validation


def test_cli_trains_setfit_and_refuses_a_single_example_class(tiny_model_dir: Path, tmp_path: Path) -> None:
    train, _ = sample_per_class(keyword_data(40), 8, seed=1)
    train_file = write_csv(tmp_path / "train.csv", train)
    val_file = write_csv(tmp_path / "val.csv", keyword_data(8, seed=2))
    output = tmp_path / "model"
    result = ok(
        invoke_cli(
            "train", "--task", "setfit", "--data", train_file, "--validation", val_file, "--output", output,
            "--base-model", tiny_model_dir, "--epochs", 2, "--batch-size", 8,
        )
    )  # fmt: skip
    assert json.loads(result.stdout.strip().splitlines()[-1])["output"] == str(output)
    classifier = Classifier.load(output, device="cpu")
    assert classifier.labels == ["negative", "positive"]
    assert json.loads((output / "metadata.json").read_text(encoding="utf-8"))["task"] == "setfit"
    one_example = write_csv(tmp_path / "bad.csv", LabelledTexts(["a b", "c d", "e f"], ["x", "x", "y"]))
    refused = invoke_cli("train", "--task", "setfit", "--data", one_example, "--output", tmp_path / "bad")
    assert refused.returncode == 2
    assert "task setfit expects at least 2 examples of every class" in refused.stderr


def test_few_shot_with_a_lora_adapter_saves_a_small_loadable_folder(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    train, _ = sample_per_class(keyword_data(40), 4, seed=2)
    config = few_shot_config(tiny_model_dir, epochs=2, adapter="lora", lora_rank=2)
    result = train_few_shot(train, config, tmp_path / "m", validation=keyword_data(6, seed=3), progress=False)
    assert (tmp_path / "m" / "adapter_config.json").is_file()
    assert not (tmp_path / "m" / "config.json").exists()  # only the adapter is kept; it merges at load
    classifier = Classifier.load(tmp_path / "m", device="cpu", precision="fp32")
    report = evaluate_classifier(classifier, keyword_data(6, seed=3))
    assert report["accuracy"] == pytest.approx(result.metrics["accuracy"])
