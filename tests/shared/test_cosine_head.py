"""The cosine classification head: bounded logits, training, and a saved folder that loads as what it was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.shared.test_cli import assert_clean_failure, invoke_cli, ok, write_labelled_csv
from tests.shared.test_training import keyword_data, tiny_config
from textcore.artifacts import HEAD_FILE
from textcore.classifier import Classifier, CosineHead, TextClassifier
from textcore.errors import InvalidInput
from textcore.training import TrainConfig, train_classifier


def test_cosine_logits_are_scaled_cosines_whatever_the_lengths() -> None:
    torch.manual_seed(0)
    head = CosineHead(hidden=8, n_labels=3, scale=16.0)
    pooled = torch.randn(5, 8)
    logits = head(pooled).detach()
    expected = 16.0 * torch.nn.functional.cosine_similarity(
        pooled.unsqueeze(1), head.weight.detach().unsqueeze(0), dim=-1
    )
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    assert float(logits.abs().max()) <= 16.0 + 1e-4
    # Neither a longer text vector nor a longer weight row changes a logit: only directions count.
    torch.testing.assert_close(head(pooled * 7.0).detach(), logits)
    with torch.no_grad():
        head.weight[1] *= 50.0
    torch.testing.assert_close(head(pooled).detach(), logits)


def test_a_cosine_classifier_learns_and_loads_back_as_one(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(tiny_model_dir, epochs=6, head="cosine", scale=10.0)
    result = train_classifier(keyword_data(160), config, tmp_path / "m", progress=False)
    assert result.metrics["accuracy"] >= 0.85
    assert result.metadata["hyperparameters"]["head"] == "cosine"
    saved = load_file(str(tmp_path / "m" / HEAD_FILE))
    assert set(saved) == {"weight", "scale"} and float(saved["scale"]) == 10.0

    model, _, labels, _ = TextClassifier.load(tmp_path / "m")
    assert isinstance(model.head, CosineHead) and labels == ["negative", "positive"]
    held_out = keyword_data(40, seed=99)
    loaded = Classifier.load(tmp_path / "m", precision="fp32")
    logits = loaded.logits(held_out.texts)
    assert np.abs(logits).max() <= 10.0 + 1e-3  # the saved scale is the one served
    predictions = loaded.predict(held_out.texts)
    assert np.mean([p.label == y for p, y in zip(predictions, held_out.labels, strict=True)]) >= 0.85
    # Loading twice gives the same predictions (no head is drawn afresh on load).
    again = Classifier.load(tmp_path / "m", precision="fp32")
    np.testing.assert_array_equal(again.logits(held_out.texts), logits)


def test_a_linear_head_is_still_the_default_and_saves_no_scale(tiny_model_dir: Path, tmp_path: Path) -> None:
    train_classifier(keyword_data(40), tiny_config(tiny_model_dir, epochs=1), tmp_path / "m", progress=False)
    assert set(load_file(str(tmp_path / "m" / HEAD_FILE))) == {"weight", "bias"}
    model, *_ = TextClassifier.load(tmp_path / "m")
    assert isinstance(model.head, torch.nn.Linear)


def test_the_head_is_refused_where_it_has_no_meaning() -> None:
    with pytest.raises(InvalidInput, match=r"head: expected one of linear, cosine for classification"):
        TrainConfig(head="arcface")
    with pytest.raises(InvalidInput, match=r"head: expected .* linear for embedding; found 'cosine'"):
        TrainConfig(task="embedding", head="cosine")


def test_cli_trains_a_cosine_head_at_its_scale_and_refuses_bad_settings(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = keyword_data(32, seed=5)
    train_csv = write_labelled_csv(tmp_path / "train.csv", data)
    common = ["train", "--data", train_csv, "--base-model", tiny_model_dir, "--epochs", "1"]
    ok(invoke_cli(*common, "--output", tmp_path / "m", "--head", "cosine", "--scale", "12.5"))
    recorded = json.loads((tmp_path / "m" / "metadata.json").read_text())["hyperparameters"]
    assert (recorded["head"], recorded["scale"]) == ("cosine", 12.5)
    assert float(load_file(str(tmp_path / "m" / HEAD_FILE))["scale"]) == 12.5
    failed = invoke_cli(*common, "--output", tmp_path / "x", "--head", "arcface")
    assert_clean_failure(failed, "head: expected one of linear, cosine")
    assert not (tmp_path / "x").exists()
    failed = invoke_cli(*common, "--output", tmp_path / "y", "--head", "cosine", "--scale", "0")
    assert_clean_failure(failed, "scale")
    assert not (tmp_path / "y").exists()
