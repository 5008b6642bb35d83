"""The ONNX Runtime backend gives PyTorch's fp32 logits, in input order, from a cached export, and refuses
bad serving settings before exporting."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from textcore.classifier import Classifier, TextClassifier
from textcore.errors import InvalidInput
from textcore.models import load_backbone

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: the ONNX backend is optional")
pytest.importorskip("onnx", reason="onnx is not installed: the ONNX exporter needs it")

from textcore.onnx_backend import OnnxClassifier, export_onnx

ATOL = 1e-4  # observed about 1e-7 on this tiny model and 5e-7 on MiniLM
LABELS = ["negative", "neutral", "positive"]
TEXTS = [
    "profit rose",
    "the company reported " + "a sharp and unexpected fall in quarterly operating profit " * 12,
    "ok",
    "shares fell after the results were published, and analysts cut their targets",
    "",
    "sales were flat compared with the previous year",
]


@pytest.fixture(params=["linear", "cosine"])
def classifier_dir(tiny_model_dir: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    backbone = load_backbone(tiny_model_dir)
    torch.manual_seed(0)
    model = TextClassifier(backbone.model, len(LABELS), head=request.param)
    if request.param == "linear":
        with torch.no_grad():
            model.head.weight.mul_(20.0)  # spread the logits so that the argmax is not decided by rounding
    folder = tmp_path / "classifier"
    model.save(folder, backbone.tokenizer, LABELS, False)
    return folder


def test_onnx_logits_match_pytorch_in_input_order(classifier_dir: Path) -> None:
    torch_clf = Classifier.load(classifier_dir, device="cpu", precision="fp32", batch_size=4)
    onnx_clf = OnnxClassifier.load(classifier_dir, batch_size=4, threads=1)
    # one text per forward pass: no padding and no reordering on the PyTorch side
    expected = np.concatenate([torch_clf.logits([t]) for t in TEXTS])
    got = onnx_clf.logits(TEXTS)
    assert got.shape == (len(TEXTS), len(LABELS))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    assert onnx_clf.labels == LABELS
    assert onnx_clf.multi_label is False
    assert [p.label for p in onnx_clf.predict(TEXTS)] == [p.label for p in torch_clf.predict(TEXTS)]
    np.testing.assert_allclose(onnx_clf.predict_proba(TEXTS), torch_clf.predict_proba(TEXTS), atol=ATOL)
    assert onnx_clf.logits([]).shape == (0, len(LABELS))


def test_export_is_cached_until_the_weights_change(classifier_dir: Path) -> None:
    path = export_onnx(classifier_dir)
    assert path == classifier_dir / "model.onnx"
    first = path.stat().st_mtime_ns
    assert export_onnx(classifier_dir).stat().st_mtime_ns == first
    head = classifier_dir / "head.safetensors"
    later = first + 10_000_000_000
    os.utime(head, ns=(later, later))
    assert export_onnx(classifier_dir).stat().st_mtime_ns != first
    assert not list(classifier_dir.glob(".onnx-export.*"))  # the staging folder is gone


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"max_length": 4}, "max_length >= 8; found 4"), ({"batch_size": 0}, "batch_size >= 1; found 0")],
)
def test_bad_serving_settings_are_refused_before_the_export(
    classifier_dir: Path, settings: dict[str, int], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        OnnxClassifier.load(classifier_dir, **settings)  # type: ignore[arg-type]
    assert not (classifier_dir / "model.onnx").exists()  # no export was paid for
