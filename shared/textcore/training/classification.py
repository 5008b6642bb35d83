"""The classification task: labelled texts -> a fine-tuned `TextClassifier`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias

from textcore.adapters import adapter_penalty, after_optimizer_step, planned_steps, wrap_encoder
from textcore.batching import Encoded, encode_texts, length_grouped_batches, map_sorted, pad_batch
from textcore.classifier import TextClassifier
from textcore.devices import autocast, resolve_device, use_bf16
from textcore.errors import InvalidInput
from textcore.labelled import LabelledTexts, split_labels
from textcore.metrics import classification_report, multilabel_report
from textcore.models import Backbone
from textcore.training.config import TrainConfig
from textcore.training.distill import distillation_loss
from textcore.training.params import encoder_param_groups, head_param_group

Batch = dict[str, torch.Tensor]


def balanced_class_weights(labels: list[int], n_labels: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 ("balanced" in scikit-learn's sense)."""
    counts = np.bincount(np.asarray(labels), minlength=n_labels).astype(np.float64)
    weights = len(labels) / (n_labels * np.maximum(counts, 1.0))
    return torch.tensor(weights, dtype=torch.float32)


def symmetric_kl(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Mean over rows of (KL(p || q) + KL(q || p)) / 2 between the softmax predictions of two logit sets."""
    p, q = F.log_softmax(first.float(), dim=-1), F.log_softmax(second.float(), dim=-1)
    forward = F.kl_div(q, p, reduction="batchmean", log_target=True)  # KL(p || q)
    backward = F.kl_div(p, q, reduction="batchmean", log_target=True)  # KL(q || p)
    return (forward + backward) / 2


def _rows_that_teach(
    train: LabelledTexts, soft_targets: torch.Tensor | None
) -> tuple[LabelledTexts, torch.Tensor | None]:
    """The training rows (and their soft targets) without those of weight 0.

    A row of weight 0 teaches nothing; left out of the batches it also takes no place in them, so training
    with it at weight 0 is training without it.
    """
    if train.weights is None or all(w > 0 for w in train.weights):
        return train, soft_targets
    kept = [i for i, w in enumerate(train.weights) if w > 0]
    if not kept:
        raise InvalidInput("row weights: expected at least one training row weighing more than 0; found none")
    return train.subset(kept), soft_targets[kept] if soft_targets is not None else None


def _row_weights(weights: list[float] | None) -> torch.Tensor | None:
    """Row weights (all > 0) scaled to mean 1, so that weighing rows moves no learning rate."""
    if weights is None:
        return None
    mean = float(np.mean(weights))
    return torch.tensor(weights, dtype=torch.float32) / mean


class ClassificationTask:
    """Fine-tunes an encoder with a linear head with cross-entropy (or per-label BCE for multi-label)."""

    def __init__(
        self,
        backbone: Backbone,
        train: LabelledTexts,
        validation: LabelledTexts,
        labels: list[str],
        config: TrainConfig,
        soft_targets: torch.Tensor | None = None,
    ) -> None:
        """`soft_targets`: teachers' softened probabilities of the training rows, `(len(train), n_labels)`,
        for distillation (`textcore.training.distill`)."""
        self.config = config
        self.labels = labels
        self.device = resolve_device(config.device)
        self.bf16 = use_bf16(config.precision, self.device)
        self.tokenizer = backbone.tokenizer
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        self.n_layers = int(backbone.model.config.num_hidden_layers)
        self.model = TextClassifier(
            backbone.model, len(labels), dropout=config.dropout, head=config.head, scale=config.scale
        ).to(self.device)
        index = {label: i for i, label in enumerate(labels)}
        expected = (len(train.texts), len(labels))
        if soft_targets is not None and tuple(soft_targets.shape) != expected:
            raise InvalidInput(f"soft targets: expected shape {expected}; found {tuple(soft_targets.shape)}")
        train, self.soft_targets = _rows_that_teach(train, soft_targets)
        self.train_ids = encode_texts(self.tokenizer, train.texts, config.max_length)
        self.train_y = self._targets(train.labels, index)
        self.train_w = _row_weights(train.weights)
        self.val_ids = encode_texts(self.tokenizer, validation.texts, config.max_length)
        self.validation = validation
        self.class_weights = (
            balanced_class_weights([index[x] for x in train.labels], len(labels)).to(self.device)
            if config.class_weights
            else None
        )
        steps = planned_steps(len(self.epoch_batches(np.random.default_rng(0))), config)
        self.model.encoder = wrap_encoder(backbone.model, config, total_steps=steps)

    def after_step(self, step: int) -> None:
        """Called by the loop after each optimizer step (AdaLoRA re-allocates its ranks)."""
        after_optimizer_step(self.model.encoder, step)

    def _targets(self, labels: list[str], index: dict[str, int]) -> torch.Tensor:
        if not self.config.multi_label:
            return torch.tensor([index[x] for x in labels], dtype=torch.long)
        targets = torch.zeros((len(labels), len(index)), dtype=torch.float32)
        for row, value in enumerate(labels):
            for label in split_labels(value):
                targets[row, index[label]] = 1.0
        return targets

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
            if self.train_w is not None:
                batch["weights"] = self.train_w[idx]
            if self.soft_targets is not None:
                batch["soft_targets"] = self.soft_targets[idx]
            batches.append(batch)
        return batches

    def loss(self, batch: Batch) -> torch.Tensor:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        if self.config.rdrop > 0:
            # one forward pass over the batch twice: each copy gets its own dropout masks
            twice = self.model(batch["input_ids"].repeat(2, 1), batch["attention_mask"].repeat(2, 1))
            first, second = twice.chunk(2)
            supervised = (self._supervised(first, batch) + self._supervised(second, batch)) / 2
            loss = supervised + self.config.rdrop * symmetric_kl(first, second)
        else:
            loss = self._supervised(self.model(batch["input_ids"], batch["attention_mask"]), batch)
        return loss + adapter_penalty(self.model.encoder)

    def _supervised(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The loss against the labels (and the teachers' soft labels when distilling).

        Row weights scale each row's loss on its label; without them (or with all of them 1) this is the
        plain mean (class-weighted mean with class weights) of PyTorch's losses.
        """
        labels, weights = batch["labels"], batch.get("weights")
        if self.config.multi_label:
            if weights is None:
                return F.binary_cross_entropy_with_logits(logits, labels)
            per_row = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(dim=1)
            return (per_row * weights).mean()
        smoothing = self.config.label_smoothing
        if weights is None:
            loss = F.cross_entropy(logits, labels, weight=self.class_weights, label_smoothing=smoothing)
        else:
            per_row = F.cross_entropy(
                logits, labels, weight=self.class_weights, label_smoothing=smoothing, reduction="none"
            )
            total = self.class_weights[labels].sum() if self.class_weights is not None else len(labels)
            loss = (per_row * weights).sum() / total
        if "soft_targets" in batch:
            weight = self.config.distill_weight
            soft = distillation_loss(logits, batch["soft_targets"], self.config.distill_temperature)
            loss = (1 - weight) * loss + weight * soft
        return loss

    @torch.inference_mode()
    def logits(self, encoded: Encoded) -> np.ndarray:
        """(n, n_labels) float32 logits in input order."""

        def forward(batch: Batch) -> np.ndarray:
            inputs = {k: v.to(self.device) for k, v in batch.items()}
            with autocast(self.device, self.bf16):
                logits: np.ndarray = (
                    self.model(inputs["input_ids"], inputs["attention_mask"]).float().cpu().numpy()
                )
                return logits

        return map_sorted(encoded, self.pad_id, 64, len(self.labels), forward)

    def predicted_labels(self, encoded: Encoded) -> list[str]:
        return self._labels_of(self.logits(encoded))

    def _labels_of(self, logits: np.ndarray) -> list[str]:
        if self.config.multi_label:
            return ["|".join(lab for lab, z in zip(self.labels, row, strict=True) if z > 0) for row in logits]
        return [self.labels[i] for i in logits.argmax(axis=1)]

    def evaluate(self) -> dict[str, float]:
        logits = self.logits(self.val_ids)  # (n, n_labels)
        truth = self.validation.labels
        scorer = multilabel_report if self.config.multi_label else classification_report
        report = scorer(truth, self._labels_of(logits), self.labels)
        return {"accuracy": report.accuracy, "macro_f1": report.macro_f1, "loss": self._loss(logits, truth)}

    def _loss(self, logits: np.ndarray, truth: list[str]) -> float:
        """Mean validation loss, unweighted and without smoothing, so runs compare on the same scale."""
        scores = torch.from_numpy(logits)
        index = {label: i for i, label in enumerate(self.labels)}
        if self.config.multi_label:
            targets = torch.zeros_like(scores)
            for row, value in enumerate(truth):
                for label in split_labels(value):
                    if label in index:
                        targets[row, index[label]] = 1.0
            return float(F.binary_cross_entropy_with_logits(scores, targets))
        return float(F.cross_entropy(scores, torch.tensor([index[label] for label in truth])))
