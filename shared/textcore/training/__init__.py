"""Fine-tuning: configuration, tasks, the shared loop and the file-to-model runners."""

from textcore.data import Pairs, read_pairs
from textcore.training.config import TrainConfig
from textcore.training.loop import LoopResult
from textcore.training.runner import (
    TrainResult,
    train_classifier,
    train_classifier_from_files,
    train_embedder,
    train_from_files,
)

__all__ = [
    "LoopResult",
    "Pairs",
    "TrainConfig",
    "TrainResult",
    "read_pairs",
    "train_classifier",
    "train_classifier_from_files",
    "train_embedder",
    "train_from_files",
]
