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
    from textcore.classifier import Classifier, LabelPredictor, Prediction, TextClassifier
    from textcore.data import (
        LabelledTexts,
        ScoredPairs,
        read_labelled,
        read_scored_pairs,
        read_table,
        read_texts,
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
        UpstreamError,
    )
    from textcore.evaluation import evaluate_classifier, load_predictor
    from textcore.http import HttpClientConfig, make_http_client
    from textcore.index import SearchHit, VectorIndex
    from textcore.mining import mine_hard_negatives
    from textcore.models import DEFAULT_MODEL, Backbone, load_backbone, resolve_model
    from textcore.registry import ActiveModelWatcher, ModelRegistry, ModelVersion
    from textcore.reranker import Reranker
    from textcore.settings import EncoderSettings
    from textcore.training import (
        TrainConfig,
        TrainResult,
        train_classifier,
        train_embedder,
        train_from_files,
        train_reranker,
    )

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "ActiveModelWatcher": "textcore.registry",
    "Backbone": "textcore.models",
    "Classifier": "textcore.classifier",
    "Conflict": "textcore.errors",
    "CoreError": "textcore.errors",
    "DEFAULT_MODEL": "textcore.models",
    "Encoder": "textcore.embeddings",
    "EncoderSettings": "textcore.settings",
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
    "ScoredPairs": "textcore.data",
    "SearchHit": "textcore.index",
    "TextClassifier": "textcore.classifier",
    "TrainConfig": "textcore.training",
    "TrainResult": "textcore.training",
    "UpstreamError": "textcore.errors",
    "VectorIndex": "textcore.index",
    "evaluate_classifier": "textcore.evaluation",
    "load_predictor": "textcore.evaluation",
    "load_backbone": "textcore.models",
    "make_http_client": "textcore.http",
    "mine_hard_negatives": "textcore.mining",
    "read_labelled": "textcore.data",
    "read_scored_pairs": "textcore.data",
    "read_table": "textcore.data",
    "read_texts": "textcore.data",
    "resolve_model": "textcore.models",
    "stratified_split": "textcore.data",
    "train_classifier": "textcore.training",
    "train_embedder": "textcore.training",
    "train_from_files": "textcore.training",
    "train_reranker": "textcore.training",
}

__all__ = [
    "DEFAULT_MODEL",
    "ActiveModelWatcher",
    "Backbone",
    "Classifier",
    "Conflict",
    "CoreError",
    "Encoder",
    "EncoderSettings",
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
    "ScoredPairs",
    "SearchHit",
    "TextClassifier",
    "TrainConfig",
    "TrainResult",
    "UpstreamError",
    "VectorIndex",
    "evaluate_classifier",
    "load_backbone",
    "load_predictor",
    "make_http_client",
    "mine_hard_negatives",
    "read_labelled",
    "read_scored_pairs",
    "read_table",
    "read_texts",
    "resolve_model",
    "stratified_split",
    "train_classifier",
    "train_embedder",
    "train_from_files",
    "train_reranker",
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
