"""Training hyperparameters: one frozen dataclass that validates itself."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from textcore.classifier import HEADS
from textcore.devices import PRECISIONS
from textcore.errors import InvalidInput

TASKS = ("classification", "embedding", "cross-encoder", "token-classification", "mlm", "setfit")
CLASS_WEIGHTED_TASKS = ("classification", "cross-encoder", "token-classification")  # single-label losses
METRICS = {
    "classification": ("accuracy", "macro_f1"),
    "embedding": ("mrr@10", "recall@1"),
    # mrr@10 ranks each validation query's own candidate passages; accuracy is sigmoid > 0.5 vs label >= 0.5
    "cross-encoder": ("mrr@10", "accuracy"),
    # f1: entity-level (exact span and type, as seqeval); accuracy: per token
    "token-classification": ("f1", "accuracy"),
    # accuracy: of the masked tokens of the validation texts
    "mlm": ("accuracy",),
    # few-shot classification: contrastive pairs, then a head
    "setfit": ("accuracy", "macro_f1"),
}
ADVERSARIAL = ("none", "fgm", "pgd")
ADAPTERS = ("none", "lora", "adalora")


def _check(condition: bool, field: str, expected: str, found: object) -> None:
    if not condition:
        raise InvalidInput(f"{field}: expected {expected}; found {found!r}")


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Everything that decides a training run; recorded in the model's metadata.

    The defaults are the recipe measured in `bench/` for a small encoder on a few thousand labelled sentences.
    """

    task: str = "classification"
    base_model: str = "minilm"
    epochs: int = 6
    batch_size: int = 16
    learning_rate: float = 1e-4
    head_learning_rate: float = 1e-3
    layer_lr_decay: float = 0.9
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    grad_accum_steps: int = 1
    max_length: int = 128
    dropout: float = 0.1
    freeze_embeddings: bool = True
    label_smoothing: float = 0.0
    # R-Drop (single-label classification): each batch passes the encoder twice under different dropout, and
    # the loss adds this weight times the symmetric KL divergence of the two predictions (0 turns it off)
    rdrop: float = 0.0
    class_weights: bool = False
    multi_label: bool = False
    # classification: `linear`, or `cosine` (logits = scale x cosine of the text and each label's weights;
    # textcore.classifier.CosineHead)
    head: str = "linear"
    # the logit scale of the contrastive losses (embedding, setfit) and of the cosine head
    scale: float = 20.0
    validation_fraction: float = 0.1
    # classification: once the run has chosen its best step on the validation rows, train again from the start
    # on the training and validation rows together for the same share of the schedule, and save that model
    # (its recorded validation figures are the first run's: the refit has seen those rows)
    refit: bool = False
    # single-label classification: blend in a logistic regression on the frozen base encoder's embeddings of
    # the training rows, with a weight chosen on the validation rows (0 keeps the plain model; see
    # textcore.frozen_view)
    blend_frozen: bool = False
    # weight averaging (every task): evaluate, select and save an exponential moving average of the weights
    # with this decay per optimizer step instead of the weights themselves (0 turns it off; 0.99 averages
    # over about the last 100 steps; see textcore.training.averaging)
    ema: float = 0.0
    evals_per_epoch: int = 2
    patience: int = 4
    metric: str = ""
    precision: str = "auto"
    device: str = "auto"
    seed: int = 42
    # adversarial training on the word embeddings (FGM: one step; PGD: `adversarial_steps` projected steps),
    # within an L2 ball of radius `adversarial_epsilon` per text (see textcore.training.adversarial); on the
    # PhraseBank split FGM at 1.0 lost 9.8 points of accuracy against plain training, at 0.1 only 0.5
    adversarial: str = "none"
    adversarial_epsilon: float = 0.1
    adversarial_steps: int = 3
    # parameter-efficient tuning through peft: only low-rank adapters (and the head) train
    adapter: str = "none"
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    # mlm: share of tokens masked
    mlm_probability: float = 0.15
    # TensorBoard event files are written to `<tensorboard>/<model folder name>` when set (the run is also in
    # metrics.jsonl either way)
    tensorboard: str = ""
    # knowledge distillation (classification): trained classifier folders whose averaged softened
    # probabilities the student also learns from (`textcore.training.distill`)
    teachers: tuple[str, ...] = ()
    distill_weight: float = 0.5
    distill_temperature: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "teachers", tuple(self.teachers))  # a list when read back from metadata
        _check(self.task in TASKS, "task", f"one of {', '.join(TASKS)}", self.task)
        _check(self.epochs >= 1, "epochs", "an integer >= 1", self.epochs)
        _check(0 <= self.seed < 2**32, "seed", "an integer in [0, 2**32)", self.seed)
        _check(
            not self.class_weights or (self.task in CLASS_WEIGHTED_TASKS and not self.multi_label),
            "class_weights",
            "false for multi-label, embedding, mlm and setfit training (their losses do not weight classes)",
            f"true with task {self.task!r}" + (" and multi_label" if self.multi_label else ""),
        )
        _check(self.batch_size >= 2, "batch_size", "an integer >= 2", self.batch_size)
        _check(0 < self.learning_rate < 1, "learning_rate", "a number in (0, 1)", self.learning_rate)
        _check(
            0 < self.head_learning_rate < 1,
            "head_learning_rate",
            "a number in (0, 1)",
            self.head_learning_rate,
        )
        _check(0 < self.layer_lr_decay <= 1, "layer_lr_decay", "a number in (0, 1]", self.layer_lr_decay)
        _check(0 <= self.weight_decay < 1, "weight_decay", "a number in [0, 1)", self.weight_decay)
        _check(0 <= self.warmup_ratio < 1, "warmup_ratio", "a number in [0, 1)", self.warmup_ratio)
        _check(self.max_grad_norm > 0, "max_grad_norm", "a positive number", self.max_grad_norm)
        _check(self.grad_accum_steps >= 1, "grad_accum_steps", "an integer >= 1", self.grad_accum_steps)
        _check(8 <= self.max_length <= 8192, "max_length", "an integer in [8, 8192]", self.max_length)
        _check(0 <= self.dropout < 1, "dropout", "a number in [0, 1)", self.dropout)
        _check(0 <= self.label_smoothing < 1, "label_smoothing", "a number in [0, 1)", self.label_smoothing)
        _check(self.rdrop >= 0, "rdrop", "a number >= 0", self.rdrop)
        _check(
            self.rdrop == 0 or (self.task == "classification" and not self.multi_label),
            "rdrop",
            "0 unless task is single-label classification",
            self.rdrop,
        )
        _check(
            not self.refit or self.task == "classification",
            "refit",
            "false unless task is classification",
            self.refit,
        )
        _check(
            not self.blend_frozen or (self.task == "classification" and not self.multi_label),
            "blend_frozen",
            "false unless task is single-label classification",
            self.blend_frozen,
        )
        _check(
            not (self.blend_frozen and self.refit),
            "blend_frozen",
            "false with refit (the blend weight is chosen on the validation rows a refit trains on)",
            self.blend_frozen,
        )
        _check(0 <= self.ema < 1, "ema", "a number in [0, 1)", self.ema)
        _check(self.scale > 0, "scale", "a positive number", self.scale)
        _check(
            self.head == "linear" or (self.head in HEADS and self.task == "classification"),
            "head",
            f"one of {', '.join(HEADS)} for classification; linear for {self.task}",
            self.head,
        )
        _check(
            0 < self.validation_fraction < 1,
            "validation_fraction",
            "a number in (0, 1)",
            self.validation_fraction,
        )
        _check(self.evals_per_epoch >= 1, "evals_per_epoch", "an integer >= 1", self.evals_per_epoch)
        _check(self.patience >= 1, "patience", "an integer >= 1", self.patience)
        _check(
            self.adversarial in ADVERSARIAL,
            "adversarial",
            f"one of {', '.join(ADVERSARIAL)}",
            self.adversarial,
        )
        _check(
            self.adversarial_epsilon > 0, "adversarial_epsilon", "a positive number", self.adversarial_epsilon
        )
        _check(self.adversarial_steps >= 1, "adversarial_steps", "an integer >= 1", self.adversarial_steps)
        _check(self.adapter in ADAPTERS, "adapter", f"one of {', '.join(ADAPTERS)}", self.adapter)
        _check(self.lora_rank >= 1, "lora_rank", "an integer >= 1", self.lora_rank)
        _check(self.lora_alpha >= 1, "lora_alpha", "an integer >= 1", self.lora_alpha)
        _check(0 <= self.lora_dropout < 1, "lora_dropout", "a number in [0, 1)", self.lora_dropout)
        _check(0 < self.mlm_probability < 1, "mlm_probability", "a number in (0, 1)", self.mlm_probability)
        _check(0 <= self.distill_weight <= 1, "distill_weight", "a number in [0, 1]", self.distill_weight)
        _check(
            self.distill_temperature > 0, "distill_temperature", "a positive number", self.distill_temperature
        )
        _check(
            not self.teachers or (self.task == "classification" and not self.multi_label),
            "teachers",
            "none unless task is single-label classification",
            list(self.teachers),
        )
        _check(self.precision in PRECISIONS, "precision", f"one of {', '.join(PRECISIONS)}", self.precision)
        allowed = METRICS[self.task]
        _check(
            self.metric in ("", *allowed),
            "metric",
            f"one of {', '.join(allowed)} for {self.task}",
            self.metric,
        )
        _check(
            not (self.multi_label and self.task != "classification"),
            "multi_label",
            "false unless task is classification",
            self.multi_label,
        )

    @property
    def selection_metric(self) -> str:
        """The validation metric that early stopping and checkpoint selection maximise."""
        return self.metric or METRICS[self.task][0]

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for metadata and logs."""
        return dataclasses.asdict(self)
