"""Serving a trained cross-encoder: relevance probabilities of (query, passage) pairs.

A cross-encoder folder has the classifier layout (encoder, tokenizer, `head.safetensors` with one output,
`labels.json` with the single label `relevant`) and `metadata.json` with task `cross-encoder`; it is written
by `textcore.train_reranker`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import PreTrainedTokenizerBase

from textcore.artifacts import trained_head
from textcore.batching import check_batch_settings, encode_texts, map_sorted
from textcore.classifier import TextClassifier
from textcore.devices import autocast, resolve_device, use_bf16
from textcore.errors import InvalidInput
from textcore.metrics import reranking_metrics
from textcore.models import fit_max_length, load_backbone
from textcore.pairs import ScoredPairs, read_scored_pairs

TASK = "cross-encoder"


class Reranker:
    """Scores how relevant passages are to a query, one forward pass per (query, passage) pair.

    Batched and length-sorted like `Classifier`, bf16 where the hardware is fast at it. Safe to call from
    several threads at once: tokenisation is serialised (the fast tokenizer is not re-entrant), the forward
    passes run concurrently under `torch.inference_mode`.
    """

    def __init__(
        self,
        model: TextClassifier,
        tokenizer: PreTrainedTokenizerBase,
        *,
        device: str = "auto",
        precision: str = "auto",
        max_length: int = 256,
        batch_size: int = 64,
    ) -> None:
        check_batch_settings(max_length, batch_size)
        outputs = int(model.head.weight.shape[0])
        if outputs != 1:
            raise InvalidInput(f"expected a one-output relevance head; found {outputs} outputs")
        self.device = resolve_device(device)
        self.bf16 = use_bf16(precision, self.device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.max_length = fit_max_length(max_length, model.encoder.config, tokenizer)
        self.batch_size = batch_size
        self._pad_id = int(tokenizer.pad_token_id or 0)
        self._tokenizer_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike[str],
        *,
        device: str = "auto",
        precision: str = "auto",
        max_length: int = 256,
        batch_size: int = 64,
    ) -> Reranker:
        """Load a cross-encoder folder written by `train_reranker`.

        Raises:
            InvalidInput: the folder is not a cross-encoder (its metadata names another task, or none).
        """
        head_path = trained_head(folder, TASK, "cross-encoder")
        backbone = load_backbone(folder)
        model = TextClassifier(backbone.model, 1)
        model.head.load_state_dict(load_file(str(head_path)))
        return cls(
            model,
            backbone.tokenizer,
            device=device,
            precision=precision,
            max_length=max_length,
            batch_size=batch_size,
        )

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """(len(passages),) float32 probabilities in [0, 1] that each passage is relevant to `query`."""
        if not isinstance(query, str):
            raise InvalidInput(f"expected the query as one string; found {type(query).__name__}")
        if isinstance(passages, str):
            raise InvalidInput("expected a list of passages; found a single string")
        return self.score_pairs([query] * len(passages), passages)

    def score_pairs(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """(n,) float32 relevance probabilities of the pairs (queries[i], passages[i]), in input order."""
        if isinstance(queries, str) or isinstance(passages, str):
            raise InvalidInput("expected lists of queries and passages; found a single string")
        if len(queries) != len(passages):
            raise InvalidInput(
                f"expected as many queries as passages; found {len(queries)} and {len(passages)}"
            )
        if not queries:
            return np.zeros(0, dtype=np.float32)
        with self._tokenizer_lock:
            encoded = encode_texts(self.tokenizer, queries, self.max_length, pairs=passages)
        logits = map_sorted(encoded, self._pad_id, self.batch_size, 1, self._forward)[:, 0]  # (n,)
        return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)

    @torch.inference_mode()
    def _forward(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        """(batch, 1) float32 logits of one padded batch."""
        inputs = {k: v.to(self.device) for k, v in batch.items()}
        with autocast(self.device, self.bf16):
            logits: np.ndarray = self.model(**inputs).float().cpu().numpy()
            return logits


def evaluate_reranker(reranker: Reranker, pairs: ScoredPairs) -> dict[str, Any]:
    """MRR@10 over each query's own candidates and accuracy at 0.5, with row and query counts."""
    scores = reranker.score_pairs(pairs.queries, pairs.passages)
    return {
        **reranking_metrics(pairs.queries, pairs.labels, scores),
        "n": len(pairs),
        "queries": len(set(pairs.queries)),
    }


def evaluate_reranker_file(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    query_column: str,
    passage_column: str,
    label_column: str,
    *,
    device: str = "auto",
    precision: str = "auto",
) -> dict[str, Any]:
    """`evaluate_reranker` on a model folder and a CSV/JSONL file."""
    pairs = read_scored_pairs(data, query_column, passage_column, label_column)
    return evaluate_reranker(Reranker.load(model, device=device, precision=precision), pairs)
