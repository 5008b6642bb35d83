"""A `max_length` above what the model takes (its position embeddings) is lowered to that limit."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from tests.shared.test_cli import _train_args, assert_quiet_stderr, ok, run_cli, write_csv
from textcore.classifier import Classifier, TextClassifier
from textcore.embeddings import Encoder
from textcore.models import load_backbone
from textcore.reranker import Reranker
from textcore.tagger import Tagger, TokenTagger

LONG_TEXT = "revenue " * 400  # far more tokens than the tiny model's 128 positions


def test_cli_training_with_max_length_above_the_model_limit_trains_at_the_limit(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    rows = [(LONG_TEXT, "pos"), ("great service", "pos"), ("awful service", "neg"), ("rude staff", "neg")]
    data = write_csv(tmp_path / "long.csv", rows * 4)
    output = tmp_path / "out"
    result = ok(run_cli(*_train_args(data, tiny_model_dir, output), "--max-length", 1024))
    assert_quiet_stderr(result.stderr)
    # the library's warning reads as the command's own, not as a bare line of unknown standing
    assert "warning: max_length 1024 is more than the model takes (128 tokens)" in result.stderr
    metadata = json.loads((output / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["hyperparameters"]["max_length"] == 128  # the tiny model's max_position_embeddings
    # a longer length asked of the loaded model is lowered too, not a crash on a long text
    classifier = Classifier.load(output, precision="fp32", max_length=1024)
    assert classifier.max_length == 128
    (prediction,) = classifier.predict([LONG_TEXT])
    assert prediction.label in {"pos", "neg"}


def test_reranker_with_max_length_above_the_model_limit_scores_long_pairs(tiny_model_dir: Path) -> None:
    backbone = load_backbone(tiny_model_dir)
    model = TextClassifier(backbone.model, 1)
    reranker = Reranker(model, backbone.tokenizer, precision="fp32", max_length=1024)
    assert reranker.max_length == 128
    assert reranker.score("revenue", [LONG_TEXT, "short"]).shape == (2,)


def test_onnx_classifier_with_max_length_above_the_model_limit_predicts_long_texts(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("onnxruntime", reason="the ONNX backend needs onnxruntime")
    from textcore.onnx_backend import OnnxClassifier  # noqa: PLC0415 - optional dependency

    backbone = load_backbone(tiny_model_dir)
    folder = tmp_path / "classifier"
    TextClassifier(backbone.model, 2).save(folder, backbone.tokenizer, ["neg", "pos"], False)
    with caplog.at_level(logging.WARNING):
        classifier = OnnxClassifier.load(folder, max_length=1024, threads=1)
    assert classifier.max_length == 128
    assert "max_length 1024 is more than the model takes (128 tokens)" in caplog.text
    expected = Classifier.load(folder, precision="fp32", max_length=1024).logits([LONG_TEXT, "short"])
    np.testing.assert_allclose(classifier.logits([LONG_TEXT, "short"]), expected, atol=1e-4)


def test_tagger_with_max_length_above_the_model_limit_tags_long_texts(tiny_model_dir: Path) -> None:
    backbone = load_backbone(tiny_model_dir)
    tagger = Tagger(
        TokenTagger(backbone.model, 3),
        backbone.tokenizer,
        ["O", "B-ORG", "I-ORG"],
        precision="fp32",
        max_length=1024,
    )
    assert tagger.max_length == 128
    assert len(tagger.tag([LONG_TEXT, "short"])) == 2


def test_embedding_encoder_with_max_length_above_the_model_limit_encodes_long_texts(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        encoder = Encoder.from_pretrained(tiny_model_dir, precision="fp32", max_length=1024)
    assert encoder.max_length == 128
    assert "max_length 1024 is more than the model takes (128 tokens)" in caplog.text
    vectors = encoder.encode([LONG_TEXT, "short"])
    assert vectors.shape == (2, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
