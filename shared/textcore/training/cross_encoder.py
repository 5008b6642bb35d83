"""The cross-encoder task: (query, passage, relevance) rows -> a re-ranker.

The query and passage are encoded together as one token sequence (`[CLS] query [SEP] passage [SEP]`, the
longer side truncated first), mean-pooled and scored by a one-output linear head; the loss is binary
cross-entropy on the logit. Unlike an embedding model, every layer attends across both texts, which ranks a
short candidate list more accurately than comparing two independent vectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias

from textcore.batching import Encoded, encode_texts, length_grouped_batches, map_sorted, pad_batch
from textcore.classifier import TextClassifier
from textcore.data import ScoredPairs
from textcore.devices import autocast, resolve_device, use_bf16
from textcore.metrics import reranking_metrics
from textcore.models import Backbone
from textcore.training.config import TrainConfig
from textcore.training.params import encoder_param_groups, head_param_group

Batch = dict[str, torch.Tensor]
RELEVANT = "relevant"  # the single label of a cross-encoder folder's labels.json


class CrossEncoderTask:
    """Fine-tunes an encoder with a one-logit head on query-passage pairs with binary cross-entropy."""

    def __init__(
        self, backbone: Backbone, train: ScoredPairs, validation: ScoredPairs, config: TrainConfig
    ) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.bf16 = use_bf16(config.precision, self.device)
        self.tokenizer = backbone.tokenizer
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        self.n_layers = int(backbone.model.config.num_hidden_layers)
        self.model = TextClassifier(backbone.model, 1, dropout=config.dropout).to(self.device)
        self.train_ids = encode_texts(self.tokenizer, train.queries, config.max_length, pairs=train.passages)
        self.train_y = torch.tensor(train.labels, dtype=torch.float32)  # (n,) relevance in [0, 1]
        self.val_ids = encode_texts(
            self.tokenizer, validation.queries, config.max_length, pairs=validation.passages
        )
        self.validation = validation
        # class weights: the relevant rows weigh (irrelevant / relevant), as BCE's pos_weight does
        positives = float((self.train_y >= 0.5).sum())
        self.pos_weight = (
            torch.tensor([(len(train) - positives) / max(positives, 1.0)], device=self.device)
            if config.class_weights
            else None
        )

    def param_groups(self) -> list[dict[str, Any]]:
        return [
            *encoder_param_groups(self.model.encoder, self.config, self.n_layers),
            head_param_group(self.model.head, self.config),
        ]

    def epoch_batches(self, rng: np.random.Generator) -> list[Batch]:
        batches = []
        for idx in length_grouped_batches(self.train_ids.lengths, self.config.batch_size, rng):
            batch = pad_batch([self.train_ids.ids[i] for i in idx], self.pad_id)
            batch["labels"] = self.train_y[idx]
            batches.append(batch)
        return batches

    def loss(self, batch: Batch) -> torch.Tensor:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        logits = self.model(batch["input_ids"], batch["attention_mask"])[:, 0]  # (batch,)
        return F.binary_cross_entropy_with_logits(logits, batch["labels"], pos_weight=self.pos_weight)

    @torch.inference_mode()
    def logits(self, encoded: Encoded) -> np.ndarray:
        """(n,) float32 relevance logits in input order."""

        def forward(batch: Batch) -> np.ndarray:
            inputs = {k: v.to(self.device) for k, v in batch.items()}
            with autocast(self.device, self.bf16):
                logits: np.ndarray = (
                    self.model(inputs["input_ids"], inputs["attention_mask"]).float().cpu().numpy()
                )
                return logits

        return map_sorted(encoded, self.pad_id, 64, 1, forward)[:, 0]

    def evaluate(self) -> dict[str, float]:
        """MRR@10 over each validation query's own candidates, accuracy at 0.5 and the unweighted BCE."""
        logits = self.logits(self.val_ids)
        # float32 like Reranker.score, so the recorded figures match the saved model's to the last tie
        probabilities = (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
        metrics = reranking_metrics(self.validation.queries, self.validation.labels, probabilities)
        loss = F.binary_cross_entropy_with_logits(
            torch.from_numpy(logits), torch.tensor(self.validation.labels, dtype=torch.float32)
        )
        return {**metrics, "loss": float(loss)}
