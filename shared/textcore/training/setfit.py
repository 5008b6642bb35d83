"""The few-shot task (SetFit-style): contrastive tuning of the encoder on pairs, then a logistic head.

For 8 to 64 labelled examples per class, a classification head trained jointly with the encoder sees too few
gradients to move a large body; SetFit (Tunstall et al., 2022) instead tunes the encoder so that texts of one
class embed close together and texts of different classes far apart, then fits a simple classifier on the
frozen embeddings. With `config.adapter` set, only LoRA/AdaLoRA adapters of the encoder train (peft).

Pairs and loss. Each epoch (SetFit's "iteration") draws, for every training example, one partner of the same
class (never itself): `n` positive pairs per epoch, seeded by the loop's per-epoch generator. Batches are
ordered so that the classes spread evenly over the epoch and a batch holds distinct classes where it can. The
loss is multiple-negatives ranking with label-aware masking: for each anchor, its own partner is the positive
and every other partner in the batch whose class differs is a negative (partners of the anchor's own class are
masked out rather than pushed away). So each example meets 1 positive and up to `batch_size - 1` negatives per
epoch, where SetFit's CosineSimilarityLoss meets 1 positive and 1 negative per iteration: many more
comparisons per forward pass, which is what makes the method affordable on a CPU (the in-batch objective of
sentence-transformers' newer releases; SetFit v1 offers it too). Similarities are cosines scaled by
`config.scale`.

Head. A scikit-learn `LogisticRegression` on standardised features is fitted to the un-normalised mean-pooled
embeddings of the training examples (dropout off), which is exactly what `TextClassifier` feeds its linear
head; the scaler and the regression are folded into one `torch.nn.Linear`. The saved folder is therefore an
ordinary classifier folder. The same fit scores each validation step, so early stopping and best-weights
selection follow the accuracy of the model that will be saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from textcore.adapters import after_optimizer_step, planned_steps, wrap_encoder
from textcore.batching import Encoded, encode_texts, map_sorted, pad_batch
from textcore.classifier import TextClassifier
from textcore.devices import autocast, resolve_device, use_bf16
from textcore.embeddings import mean_pool
from textcore.errors import InvalidInput, some_of
from textcore.labelled import LabelledTexts
from textcore.metrics import classification_report
from textcore.models import Backbone
from textcore.splits import stratified_split
from textcore.training.config import TrainConfig
from textcore.training.params import encoder_param_groups

Batch = dict[str, torch.Tensor]
# inverse L2 strength of the logistic regression (scikit-learn's default), on standardised features
HEAD_C = 1.0
MIN_PER_CLASS = 2  # a positive pair needs two examples of the class


def positive_pairs(labels: Sequence[int] | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One same-class partner for every example.

    Args:
        labels: (n,) class ids; every class must occur at least twice.
        rng: the seeded generator that picks the partners.

    Returns:
        (n, 2) int64 rows (anchor, partner) with anchor = 0..n-1 in order and partner != anchor.
    """
    targets = np.asarray(labels, dtype=np.int64)
    pairs = np.empty((len(targets), 2), dtype=np.int64)
    pairs[:, 0] = np.arange(len(targets))
    for label in np.unique(targets):
        members = np.flatnonzero(targets == label)
        if len(members) < MIN_PER_CLASS:
            raise InvalidInput(
                f"class {int(label)}: expected at least 2 examples to pair; found {len(members)}"
            )
        # a random offset in 1..m-1 along the members never lands on the anchor itself
        offsets = rng.integers(1, len(members), size=len(members))
        pairs[members, 1] = members[(np.arange(len(members)) + offsets) % len(members)]
    return pairs


def class_spread_order(labels: Sequence[int] | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random order of 0..n-1 in which every class is spread evenly from start to end.

    Member j of a class of size m (after a shuffle) sits at position (j + u) / m, u uniform in [0, 1) per
    class; sorting by position interleaves the classes, so consecutive rows (one batch) rarely share a class.
    """
    targets = np.asarray(labels, dtype=np.int64)
    position = np.empty(len(targets), dtype=np.float64)
    for label in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == label))
        position[members] = (np.arange(len(members)) + rng.random()) / len(members)
    return np.argsort(position, kind="stable")


def fit_linear_head(features: np.ndarray, targets: np.ndarray, n_labels: int, seed: int) -> nn.Linear:
    """Logistic regression on standardised features, folded into a Linear layer on the raw features.

    Args:
        features: (n, dim) float32 un-normalised sentence vectors.
        targets: (n,) class ids covering 0..n_labels-1.
        n_labels: number of classes (at least 2).
        seed: for the solver's tie-breaking.

    Returns:
        A float32 `nn.Linear(dim, n_labels)` whose logits give the regression's class probabilities under a
        softmax (for two classes: logits (-z/2, z/2), whose softmax is the sigmoid of z).
    """
    scaler = StandardScaler().fit(features)
    regression = LogisticRegression(C=HEAD_C, max_iter=1000, random_state=seed)
    regression.fit(scaler.transform(features), targets)
    if list(regression.classes_) != list(range(n_labels)):
        raise InvalidInput(
            f"training data: expected every one of {n_labels} classes; found {regression.classes_}"
        )
    coef = np.asarray(regression.coef_, dtype=np.float64)  # (n_labels or 1, dim) on standardised inputs
    intercept = np.asarray(regression.intercept_, dtype=np.float64)
    if n_labels == 2:
        coef, intercept = (
            np.concatenate([-coef / 2, coef / 2]),
            np.concatenate([-intercept / 2, intercept / 2]),
        )
    # w . (x - mean) / scale + b = (w / scale) . x + (b - w . (mean / scale))
    weight = coef / scaler.scale_
    bias = intercept - coef @ (scaler.mean_ / scaler.scale_)
    head = nn.Linear(features.shape[1], n_labels)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight))
        head.bias.copy_(torch.from_numpy(bias))
    return head


class SetFitTask:
    """Contrastive few-shot tuning of a mean-pooled encoder; `classifier_with_head()` adds the fitted head."""

    def __init__(
        self,
        backbone: Backbone,
        train: LabelledTexts,
        validation: LabelledTexts,
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
        self.dim = backbone.hidden_size
        # the classifier that will be saved; its encoder is what the contrastive phase trains
        self.classifier = TextClassifier(backbone.model, len(labels), dropout=config.dropout).to(self.device)
        index = {label: i for i, label in enumerate(labels)}
        self.train_ids = encode_texts(self.tokenizer, train.texts, config.max_length)
        self.train_y = np.array([index[x] for x in train.labels], dtype=np.int64)
        self.val_ids = encode_texts(self.tokenizer, validation.texts, config.max_length)
        self.validation = validation
        # refuses a class with a single example; with an adapter, only the adapters (and no head) train
        steps = planned_steps(len(self.epoch_batches(np.random.default_rng(0))), config)
        self.classifier.encoder = wrap_encoder(backbone.model, config, total_steps=steps)
        self.model: nn.Module = self.classifier.encoder  # the encoder, or its peft wrapper (adapter)

    def after_step(self, step: int) -> None:
        """Called by the loop after each optimizer step (AdaLoRA re-allocates its ranks)."""
        after_optimizer_step(self.model, step)

    def param_groups(self) -> list[dict[str, Any]]:
        return encoder_param_groups(self.model, self.config, self.n_layers)

    def epoch_batches(self, rng: np.random.Generator) -> list[Batch]:
        """Batches of `batch_size` pairs; `input_ids` holds the anchors, then their partners."""
        pairs = positive_pairs(self.train_y, rng)[class_spread_order(self.train_y, rng)]
        size = self.config.batch_size
        batches = []
        for start in range(0, len(pairs), size):
            part = pairs[start : start + size]
            if len(part) < 2:  # a lone pair has no negative
                continue
            rows = [self.train_ids.ids[i] for i in part[:, 0]] + [self.train_ids.ids[i] for i in part[:, 1]]
            batch = pad_batch(rows, self.pad_id)
            batch["labels"] = torch.from_numpy(self.train_y[part[:, 0]])
            batches.append(batch)
        return batches

    def _pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask)[0]
        return mean_pool(hidden, attention_mask)

    def loss(self, batch: Batch) -> torch.Tensor:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        labels = batch["labels"]
        vectors = F.normalize(self._pooled(batch["input_ids"], batch["attention_mask"]), dim=-1)
        anchors, partners = vectors[: len(labels)], vectors[len(labels) :]
        scores = anchors @ partners.T * self.config.scale  # (pairs, pairs); the diagonal holds the positives
        own = torch.eye(len(labels), dtype=torch.bool, device=scores.device)
        scores = scores.masked_fill((labels[:, None] == labels[None, :]) & ~own, float("-inf"))
        return F.cross_entropy(scores, torch.arange(len(labels), device=scores.device))

    @torch.inference_mode()
    def features(self, encoded: Encoded) -> np.ndarray:
        """(n, dim) float32 un-normalised mean-pooled embeddings in input order (what the head sees)."""

        def forward(batch: Batch) -> np.ndarray:
            inputs = {k: v.to(self.device) for k, v in batch.items()}
            with autocast(self.device, self.bf16):
                pooled: np.ndarray = (
                    self._pooled(inputs["input_ids"], inputs["attention_mask"]).float().cpu().numpy()
                )
                return pooled

        return map_sorted(encoded, self.pad_id, 64, self.dim, forward)

    def fit_head(self) -> nn.Linear:
        """Fit the logistic-regression head on the current encoder's training embeddings."""
        was_training = self.model.training
        self.model.eval()
        features = self.features(self.train_ids)
        self.model.train(was_training)
        return fit_linear_head(features, self.train_y, len(self.labels), self.config.seed).to(self.device)

    def classifier_with_head(self) -> TextClassifier:
        """The saved model: the current encoder with a freshly fitted head, in eval mode."""
        head = self.fit_head()
        self.classifier.head.load_state_dict(head.state_dict())
        return self.classifier.eval()

    @torch.inference_mode()
    def predicted_labels(self, model: TextClassifier, encoded: Encoded) -> list[str]:
        """Labels that `model` (the encoder and its head, as saved) predicts for the encoded texts."""

        def forward(batch: Batch) -> np.ndarray:
            inputs = {k: v.to(self.device) for k, v in batch.items()}
            with autocast(self.device, self.bf16):
                logits: np.ndarray = (
                    model(inputs["input_ids"], inputs["attention_mask"]).float().cpu().numpy()
                )
                return logits

        logits = map_sorted(encoded, self.pad_id, 64, len(self.labels), forward)
        return [self.labels[i] for i in logits.argmax(axis=1)]

    @torch.inference_mode()
    def logits(self, encoded: Encoded, head: nn.Linear) -> np.ndarray:
        """(n, n_labels) float32 logits of `head` on the encoder's embeddings."""
        features = torch.from_numpy(self.features(encoded)).to(self.device)
        return head(features).float().cpu().numpy()  # type: ignore[no-any-return]

    def evaluate(self) -> dict[str, float]:
        """Fit the head on the training embeddings; accuracy, macro-F1 and loss on validation."""
        head = self.fit_head()
        logits = self.logits(self.val_ids, head)
        predicted = [self.labels[i] for i in logits.argmax(axis=1)]
        report = classification_report(self.validation.labels, predicted, self.labels)
        index = {label: i for i, label in enumerate(self.labels)}
        truth = torch.tensor([index[x] for x in self.validation.labels])
        loss = float(F.cross_entropy(torch.from_numpy(logits), truth))
        return {"accuracy": report.accuracy, "macro_f1": report.macro_f1, "loss": loss}


def few_shot_split(
    data: LabelledTexts, validation: LabelledTexts | None, labels: list[str], config: TrainConfig
) -> tuple[LabelledTexts, LabelledTexts]:
    """(train, validation) for the few-shot task, refusing a class that would be left with one example.

    Without separate validation data, a stratified `validation_fraction` of each class (at least one row) is
    carved off, so every class then needs at least 3 examples: 2 to pair, 1 to validate.
    """
    if validation is None:
        train, held_out = stratified_split(data, config.validation_fraction, config.seed)
        need = (
            "3 examples of every class (2 to pair, 1 carved off for validation) or separate validation data"
        )
    else:
        unknown = sorted(set(validation.labels) - set(labels))
        if unknown:
            raise InvalidInput(
                f"validation labels {some_of(unknown)} do not occur in the training data; "
                f"known: {some_of(labels)}"
            )
        train, held_out = data, validation
        need = "2 examples of every class to pair"
    counts = train.label_counts()
    short = [label for label in labels if counts.get(label, 0) < MIN_PER_CLASS]
    if short:
        found = ", ".join(f"{data.label_counts()[label]} of {label!r}" for label in short[:5])
        raise InvalidInput(f"training data (task setfit): expected at least {need}; found {found}")
    return train, held_out
