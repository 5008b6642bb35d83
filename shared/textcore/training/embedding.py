"""The embedding task: (anchor, positive[, negative]) pairs -> an encoder for retrieval and recommendation.

Loss: multiple-negatives ranking. Within a batch every other positive (and every hard negative) is a negative
for an anchor; cross-entropy over scaled cosine similarities. A candidate whose text is the anchor's own
positive (two questions with one answer, two users whose next item is the same popular one, in one batch) is
left out of that anchor's negatives: scored as a negative, the same text would be pushed down and pulled up
at once, and the loss could not go below ln 2 for either row. Validation ranks each anchor's positive among
the distinct positive texts: a text shared by several anchors (two questions, one answer) is right for each.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias

from textcore.adapters import adapter_penalty, after_optimizer_step, planned_steps, wrap_encoder
from textcore.batching import Encoded, encode_texts, length_grouped_batches, pad_batch
from textcore.embeddings import Encoder
from textcore.metrics import retrieval_metrics
from textcore.models import Backbone
from textcore.pairs import Pairs
from textcore.training.config import TrainConfig
from textcore.training.params import encoder_param_groups

Batch = dict[str, torch.Tensor]


class EmbeddingTask:
    """Contrastive fine-tuning of a mean-pooled encoder."""

    def __init__(self, backbone: Backbone, train: Pairs, validation: Pairs, config: TrainConfig) -> None:
        self.config = config
        self.encoder = Encoder(
            backbone, device=config.device, precision=config.precision, max_length=config.max_length
        )
        self.device, self.bf16 = self.encoder.device, self.encoder.bf16
        self.n_layers = int(backbone.model.config.num_hidden_layers)
        self.pad_id = int(backbone.tokenizer.pad_token_id or 0)
        tok = backbone.tokenizer
        self.anchors = encode_texts(tok, train.anchors, config.max_length)
        self.positives = encode_texts(tok, train.positives, config.max_length)
        self.negatives = encode_texts(tok, train.negatives, config.max_length) if train.negatives else None
        # one number per distinct candidate text, so that a batch can tell a copy of an anchor's own positive
        numbers: dict[str, int] = {}
        texts = [*train.positives, *(train.negatives or [])]
        keys = np.fromiter((numbers.setdefault(t, len(numbers)) for t in texts), np.int64, len(texts))
        self.positive_keys, self.negative_keys = keys[: len(train.positives)], keys[len(train.positives) :]
        self.validation = validation
        steps = planned_steps(len(self.epoch_batches(np.random.default_rng(0))), config)
        self.encoder.model = wrap_encoder(backbone.model, config, total_steps=steps)
        self.model = self.encoder.model  # the encoder, or its peft wrapper while an adapter trains

    def after_step(self, step: int) -> None:
        """Called by the loop after each optimizer step (AdaLoRA re-allocates its ranks)."""
        after_optimizer_step(self.model, step)

    def param_groups(self) -> list[dict[str, Any]]:
        return encoder_param_groups(self.model, self.config, self.n_layers)

    def _pad(self, encoded: Encoded, idx: np.ndarray) -> dict[str, torch.Tensor]:
        return pad_batch([encoded.ids[i] for i in idx], self.pad_id)

    def epoch_batches(self, rng: np.random.Generator) -> list[Batch]:
        batches = []
        for idx in length_grouped_batches(self.anchors.lengths, self.config.batch_size, rng):
            if len(idx) < 2:  # one pair has no in-batch negative
                continue
            anchor, positive = self._pad(self.anchors, idx), self._pad(self.positives, idx)
            batch = {
                "input_ids": anchor["input_ids"],
                "attention_mask": anchor["attention_mask"],
                "pos_ids": positive["input_ids"],
                "pos_mask": positive["attention_mask"],
                "pos_key": torch.from_numpy(self.positive_keys[idx]),
            }
            if self.negatives is not None:
                negative = self._pad(self.negatives, idx)
                batch.update(neg_ids=negative["input_ids"], neg_mask=negative["attention_mask"])
                batch["neg_key"] = torch.from_numpy(self.negative_keys[idx])
            batches.append(batch)
        return batches

    def loss(self, batch: Batch) -> torch.Tensor:
        anchors = self.encoder.embed_batch(
            {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        )
        candidates = [
            self.encoder.embed_batch({"input_ids": batch["pos_ids"], "attention_mask": batch["pos_mask"]})
        ]
        if "neg_ids" in batch:
            candidates.append(
                self.encoder.embed_batch({"input_ids": batch["neg_ids"], "attention_mask": batch["neg_mask"]})
            )
        # (batch, batch * (1 + has_negatives)) cosine similarities; the diagonal holds the positives
        scores = anchors @ torch.cat(candidates).T * self.config.scale
        keys = torch.cat([batch["pos_key"], batch["neg_key"]]) if "neg_key" in batch else batch["pos_key"]
        # candidates with the text of the row's own positive, but for the positive itself
        own = batch["pos_key"][:, None] == keys[None, :]
        own.fill_diagonal_(False)
        scores = scores.masked_fill(own.to(scores.device), float("-inf"))
        loss = F.cross_entropy(scores, torch.arange(len(anchors), device=scores.device))
        return loss + adapter_penalty(self.model)

    def evaluate(self) -> dict[str, float]:
        """Each validation anchor retrieves among the distinct validation positives (a text shared by several
        anchors is one candidate, the right one for each of them)."""
        texts = list(dict.fromkeys(self.validation.positives))
        position = {text: i for i, text in enumerate(texts)}
        targets = np.array([position[text] for text in self.validation.positives])  # (queries,) int
        queries = self.encoder.encode(self.validation.anchors)
        docs = self.encoder.encode(texts)
        return retrieval_metrics(queries @ docs.T, targets, k=10)
