"""The token-classification task: BIO-tagged sentences -> a fine-tuned `TokenTagger`.

Each word's tag is learnt on its first sub-word (the other sub-words are ignored by the loss), with
cross-entropy over the tags `O`, `B-T`, `I-T`. Validation scores entities exactly (span and type), as seqeval
does; `f1` selects the checkpoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias

from textcore.adapters import adapter_penalty, after_optimizer_step, planned_steps, wrap_encoder
from textcore.batching import length_grouped_batches, pad_batch
from textcore.bio import OUTSIDE, TaggedSentences, to_iob2
from textcore.devices import resolve_device, use_bf16
from textcore.metrics import tagging_report
from textcore.models import Backbone
from textcore.tagger import IGNORE, TokenTagger, encode_words, word_probabilities
from textcore.training.classification import balanced_class_weights
from textcore.training.config import TrainConfig
from textcore.training.params import encoder_param_groups, head_param_group

Batch = dict[str, torch.Tensor]


class TokenClassificationTask:
    """Fine-tunes an encoder with a linear head on every token, with cross-entropy on first sub-words."""

    def __init__(
        self,
        backbone: Backbone,
        train: TaggedSentences,
        validation: TaggedSentences,
        labels: list[str],
        config: TrainConfig,
    ) -> None:
        self.config = config
        self.labels = labels
        self.device = resolve_device(config.device)
        self.bf16 = use_bf16(config.precision, self.device)
        self.tokenizer = backbone.tokenizer
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        self.n_layers = int(backbone.model.config.num_hidden_layers)
        self.model = TokenTagger(backbone.model, len(labels), dropout=config.dropout).to(self.device)
        self.index = {label: i for i, label in enumerate(labels)}
        self.train_words = encode_words(self.tokenizer, train.tokens, config.max_length)
        self.train_y = self.train_words.targets([[self.index[t] for t in tags] for tags in train.tags])
        self.val_words = encode_words(self.tokenizer, validation.tokens, config.max_length)
        self.validation = validation
        seen = [y for row in self.train_y for y in row if y != IGNORE]
        self.class_weights = (
            balanced_class_weights(seen, len(labels)).to(self.device) if config.class_weights else None
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
        batches = []
        lengths = self.train_words.encoded.lengths
        for idx in length_grouped_batches(lengths, self.config.batch_size, rng):
            batch = pad_batch([self.train_words.encoded.ids[i] for i in idx], self.pad_id)
            labels = torch.full_like(batch["input_ids"], IGNORE)
            for row, i in enumerate(idx):
                labels[row, : len(self.train_y[i])] = torch.tensor(self.train_y[i], dtype=torch.long)
            batch["labels"] = labels
            batches.append(batch)
        return batches

    def loss(self, batch: Batch) -> torch.Tensor:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        logits = self.model(batch["input_ids"], batch["attention_mask"])  # (batch, tokens, n_labels)
        loss = F.cross_entropy(
            logits.flatten(0, 1),
            batch["labels"].flatten(),
            weight=self.class_weights,
            ignore_index=IGNORE,
            label_smoothing=self.config.label_smoothing,
        )
        return loss + adapter_penalty(self.model.encoder)

    def probabilities(self) -> list[np.ndarray]:
        """Per validation sentence, (n_words, n_labels) tag probabilities."""
        return word_probabilities(
            self.model,
            self.val_words,
            device=self.device,
            bf16=self.bf16,
            pad_id=self.pad_id,
            outside=self.index[OUTSIDE],
        )

    def predicted_tags(self, probabilities: list[np.ndarray]) -> list[list[str]]:
        """The IOB2 tags of the most probable label of each word."""
        return [to_iob2([self.labels[i] for i in p.argmax(axis=1)]) for p in probabilities]

    def evaluate(self) -> dict[str, float]:
        """Entity precision, recall and F1, token accuracy and the mean cross-entropy of the words' tags."""
        probabilities = self.probabilities()
        report = tagging_report(self.validation.tags, self.predicted_tags(probabilities))
        return {
            "f1": report.f1,
            "precision": report.precision,
            "recall": report.recall,
            "accuracy": report.accuracy,
            "loss": self._loss(probabilities),
        }

    def _loss(self, probabilities: list[np.ndarray]) -> float:
        """Mean cross-entropy over the words that kept a sub-word (unweighted, without smoothing)."""
        losses = []
        for p, tags, word_ids in zip(
            probabilities, self.validation.tags, self.val_words.word_ids, strict=True
        ):
            for word in sorted({w for w in word_ids if w is not None}):
                losses.append(-np.log(max(float(p[word, self.index[tags[word]]]), 1e-12)))
        return float(np.mean(losses)) if losses else 0.0
