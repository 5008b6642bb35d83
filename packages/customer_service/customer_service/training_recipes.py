"""Training defaults per task (`RECIPES`) and the `TrainConfig` a training command builds from them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textcore import TrainConfig

# Defaults per task, measured on the project's development data (see bench/ and the README).
RECIPES: dict[str, dict[str, Any]] = {
    # BANKING77 validation: 8 epochs at 1.5e-4 0.935, 5 epochs at 2e-4 0.929 (both keep the best epoch).
    # The frozen view (textcore.frozen_view) added 0.5 / 1.4 / 0.1 points on a BANKING77 holdout (3 seeds);
    # the service feeds it the message's retrieval embedding, so it costs no second encoder pass there
    # (bench/README.md). Not with --refit, which it cannot follow.
    "classification": {"epochs": 8, "batch_size": 32, "learning_rate": 1.5e-4, "head_learning_rate": 2e-3,
                       "max_length": 64, "label_smoothing": 0.1, "evals_per_epoch": 1, "patience": 3,
                       "blend_frozen": True},
    "embedding": {"epochs": 3, "batch_size": 32, "learning_rate": 5e-5, "max_length": 256},
    "cross-encoder": {"epochs": 2, "batch_size": 16, "learning_rate": 5e-5, "max_length": 256},
}  # fmt: skip


def train_config(
    task: str, base_model: str, device: str, precision: str, seed: int, **given: Any
) -> TrainConfig:
    """A `TrainConfig` for `task`: its recipe, overridden by the values given (not None)."""
    from textcore import TrainConfig  # noqa: PLC0415

    recipe = {**RECIPES[task], **{k: v for k, v in given.items() if v is not None}}
    return TrainConfig(
        task=task, base_model=base_model, device=device, precision=precision, seed=seed, **recipe
    )
