"""textcore: the shared fine-tuning core.

Resolve a pretrained encoder offline, embed text, index it with faiss, fine-tune it on labelled data
(classification, contrastive embedding or a cross-encoder re-ranker, with hard negatives mined by an encoder),
and keep trained models as versioned folders in a registry. Names are imported lazily so that
`import textcore` (and the CLI's `--help`) stays fast; the web layer lives in `textcore.web` and is not
re-exported here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textcore.baseline import BaselineReport, evaluate_base_model
    from textcore.bio import TaggedSentences, read_tagged
    from textcore.classifier import Classifier, LabelPredictor, Prediction, TextClassifier
    from textcore.continual import GateDecision, RetrainResult, gate, retrain
    from textcore.data import (
        LabelledTexts,
        ScoredPairs,
        read_corpus,
        read_labelled,
        read_scored_pairs,
        read_table,
        read_texts,
        sample_per_class,
        stratified_split,
    )
    from textcore.embeddings import Encoder
    from textcore.errors import (
        Conflict,
        CoreError,
        InvalidInput,
        ModelNotReady,
        NotFound,
        Overloaded,
        PayloadTooLarge,
        Unauthorized,
        UpstreamError,
    )
    from textcore.evaluation import evaluate_classifier, load_predictor
    from textcore.http import HttpClientConfig, make_http_client
    from textcore.index import SearchHit, VectorIndex
    from textcore.mining import mine_hard_negatives
    from textcore.models import DEFAULT_MODEL, Backbone, load_backbone, resolve_model
    from textcore.noise import add_typos
    from textcore.registry import ActiveModelWatcher, ModelRegistry, ModelVersion
    from textcore.reranker import Reranker
    from textcore.settings import EncoderSettings
    from textcore.tagger import Entity, Tagger
    from textcore.training import (
        TrainConfig,
        TrainResult,
        is_main_process,
        train_classifier,
        train_embedder,
        train_few_shot,
        train_from_files,
        train_mlm,
        train_reranker,
        train_tagger,
    )

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "ActiveModelWatcher": "textcore.registry",
    "Backbone": "textcore.models",
    "BaselineReport": "textcore.baseline",
    "Classifier": "textcore.classifier",
    "Conflict": "textcore.errors",
    "CoreError": "textcore.errors",
    "DEFAULT_MODEL": "textcore.models",
    "Encoder": "textcore.embeddings",
    "EncoderSettings": "textcore.settings",
    "Entity": "textcore.tagger",
    "GateDecision": "textcore.continual",
    "HttpClientConfig": "textcore.http",
    "InvalidInput": "textcore.errors",
    "LabelPredictor": "textcore.classifier",
    "LabelledTexts": "textcore.data",
    "ModelNotReady": "textcore.errors",
    "ModelRegistry": "textcore.registry",
    "ModelVersion": "textcore.registry",
    "NotFound": "textcore.errors",
    "Overloaded": "textcore.errors",
    "PayloadTooLarge": "textcore.errors",
    "Prediction": "textcore.classifier",
    "Reranker": "textcore.reranker",
    "RetrainResult": "textcore.continual",
    "ScoredPairs": "textcore.data",
    "SearchHit": "textcore.index",
    "TaggedSentences": "textcore.bio",
    "Tagger": "textcore.tagger",
    "TextClassifier": "textcore.classifier",
    "TrainConfig": "textcore.training",
    "TrainResult": "textcore.training",
    "Unauthorized": "textcore.errors",
    "UpstreamError": "textcore.errors",
    "VectorIndex": "textcore.index",
    "add_typos": "textcore.noise",
    "evaluate_base_model": "textcore.baseline",
    "evaluate_classifier": "textcore.evaluation",
    "gate": "textcore.continual",
    "is_main_process": "textcore.training",
    "load_predictor": "textcore.evaluation",
    "load_backbone": "textcore.models",
    "make_http_client": "textcore.http",
    "mine_hard_negatives": "textcore.mining",
    "read_corpus": "textcore.data",
    "read_labelled": "textcore.data",
    "read_scored_pairs": "textcore.data",
    "read_table": "textcore.data",
    "read_tagged": "textcore.bio",
    "read_texts": "textcore.data",
    "resolve_model": "textcore.models",
    "retrain": "textcore.continual",
    "sample_per_class": "textcore.data",
    "stratified_split": "textcore.data",
    "train_classifier": "textcore.training",
    "train_embedder": "textcore.training",
    "train_few_shot": "textcore.training",
    "train_from_files": "textcore.training",
    "train_mlm": "textcore.training",
    "train_reranker": "textcore.training",
    "train_tagger": "textcore.training",
}

__all__ = [
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'textcore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
