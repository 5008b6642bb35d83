"""The embedding task when positives share a text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

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


def test_a_copy_of_an_anchors_own_positive_is_no_negative_in_its_loss(tiny_model_dir: Path) -> None:
    # Two anchors with one answer in a batch (and that answer as a third row's hard negative): each of the two
    # rows' cross-entropy counted the other's copy of its own answer as a negative, scored exactly as high as
    # its positive, so the loss could not go below ln 2; the third row's hard negative stays a negative.
    pairs = Pairs(
        ["How do I reset my password?", "I forgot my password", "Where is my card?"],
        [SHARED, SHARED, "Track the card in the app."],
        ["Cards arrive in five days.", "Call us to block a card.", SHARED],
    )
    embedding = task(tiny_model_dir, pairs)
    embedding.encoder.model.eval()  # no dropout: the loss and the check below see the same vectors
    (batch,) = embedding.epoch_batches(np.random.default_rng(0))
    with torch.no_grad():
        loss = float(embedding.loss(batch))
        vectors = [
            embedding.encoder.embed_batch({"input_ids": batch[ids], "attention_mask": batch[mask]})
            for ids, mask in (
                ("input_ids", "attention_mask"),
                ("pos_ids", "pos_mask"),
                ("neg_ids", "neg_mask"),
            )
        ]
    anchors, positives, negatives = vectors
    candidates = torch.cat([positives, negatives])
    scores = anchors @ candidates.T * embedding.config.scale
    expected = []
    for row in range(3):
        same = torch.isclose(candidates, positives[row], atol=1e-6).all(dim=1)  # the row's own answer text
        same[row] = False
        kept = scores[row][~same]
        expected.append(float(torch.logsumexp(kept, 0) - scores[row, row]))
    dropped = sum(
        int(torch.isclose(candidates, positives[r], atol=1e-6).all(dim=1).sum()) - 1 for r in range(3)
    )
    assert dropped == 4  # rows 0 and 1: the other's positive and row 2's hard negative
    assert loss == pytest.approx(sum(expected) / 3, rel=1e-5)
