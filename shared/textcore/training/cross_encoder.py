"""The cross-encoder task: (query, passage, relevance) rows -> a re-ranker.

The query and passage are encoded together as one token sequence (`[CLS] query [SEP] passage [SEP]`, the
longer side truncated first), mean-pooled and scored by a one-output linear head. A batch holds whole
queries; the loss is binary cross-entropy on each logit (so that sigmoid(logit) is a usable probability of
relevance, which the apps threshold) plus, per query, the cross-entropy of a softmax over its candidates
against its relevant ones (so that the relevant passage is ranked above its hard negatives: with pointwise
BCE alone on a few thousand rows, a small encoder learns little beyond the base rate).

Unlike an embedding model, every layer attends across both texts, which ranks a
short candidate list more accurately than comparing two independent vectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias

from textcore.adapters import adapter_penalty, after_optimizer_step, planned_steps, wrap_encoder
from textcore.batching import Encoded, encode_texts, map_sorted, pad_batch
from textcore.classifier import TextClassifier
from textcore.devices import autocast, resolve_device, use_bf16
from textcore.metrics import reranking_metrics
from textcore.models import Backbone
from textcore.pairs import ScoredPairs
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
        self.groups = _query_groups(train.queries)  # row indices of each distinct query
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
        steps = planned_steps(len(self.epoch_batches(np.random.default_rng(0))), config)
        self.model.encoder = wrap_encoder(backbone.model, config, total_steps=steps)

    def after_step(self, step: int) -> None:
        """Called by the loop after each optimizer step (AdaLoRA re-allocates its ranks)."""
        after_optimizer_step(self.model.encoder, step)

    def param_groups(self) -> list[dict[str, Any]]:
        return [
            *encoder_param_groups(self.model.encoder, self.config, self.n_layers),
            head_param_group(self.model.head, self.config),
        ]

    def epoch_batches(self, rng: np.random.Generator) -> list[Batch]:
        """Whole queries per batch (about `batch_size` rows), in a random order of queries."""
        batches = []
        for queries in _packed(self.groups, rng.permutation(len(self.groups)), self.config.batch_size):
            idx = np.concatenate([self.groups[q] for q in queries])
            batch = pad_batch([self.train_ids.ids[i] for i in idx], self.pad_id)
            batch["labels"] = self.train_y[idx]
            batch["group"] = torch.tensor(
                [g for g, q in enumerate(queries) for _ in self.groups[q]], dtype=torch.long
            )
            batches.append(batch)
        return batches

    def loss(self, batch: Batch) -> torch.Tensor:
        """Pointwise BCE (calibrated probabilities) plus listwise cross-entropy per query (ranking)."""
        batch = {k: v.to(self.device) for k, v in batch.items()}
        logits = self.model(batch["input_ids"], batch["attention_mask"])[:, 0]  # (batch,)
        labels, group = batch["labels"], batch["group"]
        pointwise = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=self.pos_weight)
        listwise = []
        for g in range(int(group.max()) + 1):
            rows = group == g
            target = labels[rows]
            if rows.sum() > 1 and target.sum() > 0:  # a query with a positive and something to rank it above
                listwise.append(-(target / target.sum() * F.log_softmax(logits[rows].float(), dim=0)).sum())
        loss = pointwise + torch.stack(listwise).mean() if listwise else pointwise
        return loss + adapter_penalty(self.model.encoder)

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


def _query_groups(queries: list[str]) -> list[np.ndarray]:
    """The row indices of each distinct query, in first-seen order."""
    rows: dict[str, list[int]] = {}
    for i, query in enumerate(queries):
        rows.setdefault(query, []).append(i)
    return [np.asarray(r) for r in rows.values()]


def _packed(groups: list[np.ndarray], order: np.ndarray, batch_size: int) -> list[list[int]]:
    """Consecutive queries of `order` in batches of about `batch_size` rows; a query is never split."""
    packed: list[list[int]] = [[]]
    rows = 0
    for q in order:
        if packed[-1] and rows + len(groups[q]) > batch_size:
            packed.append([])
            rows = 0
        packed[-1].append(int(q))
        rows += len(groups[q])
    return packed
