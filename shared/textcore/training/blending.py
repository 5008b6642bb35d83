"""`TrainConfig.blend_frozen` at the end of a classifier run: fit the frozen view, choose its blend weight."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from textcore.batching import map_sorted
from textcore.frozen_view import FrozenView, choose_blend_weight, fit_frozen_view, frozen_base
from textcore.labelled import LabelledTexts
from textcore.training.classification import ClassificationTask
from textcore.training.config import TrainConfig


@dataclass(frozen=True)
class Blend:
    """The view to save (None when the chosen weight is 0), the saved model's validation predictions, and
    what the metadata records."""

    view: FrozenView | None
    predicted: list[str]
    record: dict[str, Any]


def blend_frozen_view(
    task: ClassificationTask, train_data: LabelledTexts, val_data: LabelledTexts, config: TrainConfig
) -> Blend:
    """Fit a frozen view on `train_data` and choose its weight on `val_data` for the task's trained model.

    The weight is chosen on the same validation rows as the checkpoint, so the blended validation figures
    carry the same (small) optimism; the record keeps every candidate weight's accuracy.
    """
    labels = task.labels
    view = fit_frozen_view(
        config.base_model,
        train_data.texts,
        train_data.labels,
        labels,
        task.tokenizer,
        max_length=config.max_length,
        weights=train_data.weights,
        device=config.device,
        precision=config.precision,
    )
    fine_tuned = torch.softmax(torch.from_numpy(task.logits(task.val_ids)), dim=-1).numpy()
    frozen = map_sorted(
        task.val_ids, task.pad_id, 64, len(labels), lambda batch: view.probabilities(batch).numpy()
    )
    index = {label: i for i, label in enumerate(labels)}
    truth = np.array([index[label] for label in val_data.labels])
    weight, accuracy = choose_blend_weight(fine_tuned, frozen, truth)
    view.blend_weight = weight
    blended = (1.0 - weight) * fine_tuned + weight * frozen
    record = {
        "blend_weight": weight,
        "base_model": frozen_base(config.base_model),
        "train_rows": len(train_data),
        "validation_accuracy_by_weight": accuracy,
    }
    return Blend(view if weight > 0 else None, [labels[i] for i in blended.argmax(axis=1)], record)
