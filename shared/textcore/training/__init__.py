"""Fine-tuning: configuration, tasks, the shared loop and the file-to-model runners."""

from textcore.data import Pairs, ScoredPairs, read_pairs, read_scored_pairs
from textcore.mining import mine_hard_negatives
from textcore.training.config import TrainConfig
from textcore.training.loop import LoopResult
from textcore.training.runner import (
    TrainResult,
    train_classifier,
    train_classifier_from_files,
    train_embedder,
    train_from_files,
    train_reranker,
)

__all__ = [
    "LoopResult",
    "Pairs",
    "ScoredPairs",
    "TrainConfig",
    "TrainResult",
    "mine_hard_negatives",
    "read_pairs",
    "read_scored_pairs",
    "train_classifier",
    "train_classifier_from_files",
    "train_embedder",
    "train_from_files",
    "train_reranker",
]
