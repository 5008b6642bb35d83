"""Fine-tuning: configuration, tasks, the shared loop and the file-to-model runners."""

from textcore.mining import mine_hard_negatives
from textcore.pairs import Pairs, ScoredPairs, read_pairs, read_scored_pairs
from textcore.training.classifier_runner import train_classifier, train_few_shot
from textcore.training.config import TrainConfig
from textcore.training.distributed import is_main_process
from textcore.training.files import train_classifier_from_files, train_from_files
from textcore.training.loop import LoopResult
from textcore.training.results import TrainResult
from textcore.training.runner import train_embedder, train_mlm, train_reranker, train_tagger

__all__ = [
    "LoopResult",
    "Pairs",
    "ScoredPairs",
    "TrainConfig",
    "TrainResult",
    "is_main_process",
    "mine_hard_negatives",
    "read_pairs",
    "read_scored_pairs",
    "train_classifier",
    "train_classifier_from_files",
    "train_embedder",
    "train_few_shot",
    "train_from_files",
    "train_mlm",
    "train_reranker",
    "train_tagger",
]
