"""The embedding task when positives share a text."""

from __future__ import annotations

from pathlib import Path

from textcore.data import Pairs
from textcore.models import load_backbone
from textcore.training import TrainConfig
from textcore.training.embedding import EmbeddingTask

SHARED = "Use the Forgot password link on the sign-in page."


def task(tiny_model_dir: Path, pairs: Pairs) -> EmbeddingTask:
    config = TrainConfig(
        task="embedding", base_model=str(tiny_model_dir), device="cpu", precision="fp32", batch_size=8
    )
    return EmbeddingTask(load_backbone(tiny_model_dir), pairs, pairs, config)


def test_a_positive_shared_by_two_anchors_is_the_right_answer_for_both(tiny_model_dir: Path) -> None:
    # One distinct positive text: whatever the model, each anchor's answer ranks first (it ranked second
    # behind its identical twin, recall@1 0.5).
    pairs = Pairs(["How do I reset my password?", "I forgot my password"], [SHARED, SHARED])
    metrics = task(tiny_model_dir, pairs).evaluate()
    assert metrics == {"recall@1": 1.0, "recall@10": 1.0, "mrr@10": 1.0}
