"""R-Drop: two dropout passes per batch and a symmetric KL term between their predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.shared.test_cli import assert_clean_failure, invoke_cli, ok, write_labelled_csv
from tests.shared.test_training import keyword_data, tiny_config
from textcore.errors import InvalidInput
from textcore.models import load_backbone
from textcore.training import TrainConfig, train_classifier
from textcore.training.classification import ClassificationTask, symmetric_kl

LABELS = ["negative", "positive"]


def test_symmetric_kl_is_zero_for_equal_predictions_and_averages_both_directions() -> None:
    first = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.3, -2.0]])
    second = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    assert float(symmetric_kl(first, first + 5.0)) == pytest.approx(0.0, abs=1e-6)  # same softmax
    p, q = torch.softmax(first, dim=1), torch.softmax(second, dim=1)
    kl_pq = (p * (p.log() - q.log())).sum(dim=1).mean()
    kl_qp = (q * (q.log() - p.log())).sum(dim=1).mean()
    assert float(symmetric_kl(first, second)) == pytest.approx(float(kl_pq + kl_qp) / 2, rel=1e-5)
    assert float(symmetric_kl(first, second)) == pytest.approx(float(symmetric_kl(second, first)), rel=1e-6)


def test_rdrop_adds_nothing_without_dropout_and_a_positive_term_with_it(tiny_model_dir: Path) -> None:
    data = keyword_data(16)
    train_part, val_part = data.subset(range(12)), data.subset(range(12, 16))

    def task(rdrop: float) -> ClassificationTask:
        torch.manual_seed(0)  # the same head for both tasks
        config = tiny_config(tiny_model_dir, rdrop=rdrop, dropout=0.3)
        return ClassificationTask(load_backbone(tiny_model_dir), train_part, val_part, LABELS, config)

    plain, rdrop = task(0.0), task(10.0)
    batch = plain.epoch_batches(np.random.default_rng(0))[0]
    plain.model.eval()
    rdrop.model.eval()
    # In eval mode both passes agree, so the loss is the plain supervised loss.
    assert float(rdrop.loss(batch).detach()) == pytest.approx(float(plain.loss(batch).detach()), rel=1e-5)
    # In training mode the passes draw different dropout masks: the KL term makes the loss larger on average.
    plain.model.train()
    rdrop.model.train()
    torch.manual_seed(1)
    with_term = sum(float(rdrop.loss(batch).detach()) for _ in range(8)) / 8
    torch.manual_seed(1)
    without = sum(float(plain.loss(batch).detach()) for _ in range(8)) / 8
    assert with_term > without + 1e-3


def test_a_classifier_trained_with_rdrop_learns_and_records_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(tiny_model_dir, epochs=6, rdrop=1.0)
    result = train_classifier(keyword_data(160), config, tmp_path / "m", progress=False)
    assert result.metrics["accuracy"] >= 0.85
    assert result.metadata["hyperparameters"]["rdrop"] == 1.0


def test_rdrop_is_refused_where_it_has_no_meaning() -> None:
    with pytest.raises(InvalidInput, match=r"rdrop: expected a number >= 0; found -0.5"):
        TrainConfig(rdrop=-0.5)
    with pytest.raises(InvalidInput, match="rdrop: expected 0 unless task is single-label classification"):
        TrainConfig(rdrop=1.0, multi_label=True)
    with pytest.raises(InvalidInput, match="rdrop"):
        TrainConfig(task="embedding", rdrop=1.0)


def test_cli_trains_with_rdrop_and_refuses_it_for_multi_label(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = keyword_data(32, seed=5)
    train_csv = write_labelled_csv(tmp_path / "train.csv", data)
    common = ["train", "--data", train_csv, "--base-model", tiny_model_dir, "--epochs", "1"]
    ok(invoke_cli(*common, "--output", tmp_path / "m", "--rdrop", "0.5"))
    recorded = json.loads((tmp_path / "m" / "metadata.json").read_text())["hyperparameters"]
    assert recorded["rdrop"] == 0.5
    failed = invoke_cli(*common, "--output", tmp_path / "ml", "--rdrop", "0.5", "--multi-label")
    assert_clean_failure(failed, "rdrop: expected 0 unless task is single-label classification")
    assert not (tmp_path / "ml").exists()
