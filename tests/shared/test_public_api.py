"""Pins the public names of `textcore`: a change to this list is a deliberate change to the API."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import textcore

PUBLIC_NAMES = [
    "DEFAULT_MODEL",
    "ActiveModelWatcher",
    "Backbone",
    "BaselineReport",
    "Classifier",
    "Conflict",
    "CoreError",
    "Encoder",
    "EncoderSettings",
    "Entity",
    "GateDecision",
    "HttpClientConfig",
    "InvalidInput",
    "LabelPredictor",
    "LabelledTexts",
    "ModelNotReady",
    "ModelRegistry",
    "ModelVersion",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "Prediction",
    "Reranker",
    "RetrainResult",
    "ScoredPairs",
    "SearchHit",
    "TaggedSentences",
    "Tagger",
    "TextClassifier",
    "TrainConfig",
    "TrainResult",
    "Unauthorized",
    "UpstreamError",
    "VectorIndex",
    "add_typos",
    "evaluate_base_model",
    "evaluate_classifier",
    "gate",
    "is_main_process",
    "load_backbone",
    "load_predictor",
    "make_http_client",
    "mine_hard_negatives",
    "read_corpus",
    "read_labelled",
    "read_scored_pairs",
    "read_table",
    "read_tagged",
    "read_texts",
    "resolve_model",
    "retrain",
    "sample_per_class",
    "stratified_split",
    "train_classifier",
    "train_embedder",
    "train_few_shot",
    "train_from_files",
    "train_mlm",
    "train_reranker",
    "train_tagger",
]


def isort_style_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps `__all__` in: CONSTANTS, then CamelCase classes, then everything else."""
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def test_all_is_pinned_and_sorted() -> None:
    assert textcore.__all__ == PUBLIC_NAMES
    assert sorted(textcore.__all__, key=isort_style_key) == textcore.__all__
    assert len(set(textcore.__all__)) == len(textcore.__all__)


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(textcore, name)
    assert value is not None
    assert name in dir(textcore)
    if callable(value) and hasattr(value, "__module__"):
        # the lazy export is the object its defining module holds, not a copy
        assert getattr(importlib.import_module(value.__module__), name) is value


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        _ = textcore.not_a_name


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from textcore import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(PUBLIC_NAMES)


def test_import_is_lazy() -> None:
    # `import textcore` (and so the CLI's --help) must not pull in torch or transformers.
    code = "import sys, textcore; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
