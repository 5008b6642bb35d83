"""The CUDA path: fine-tuning and prediction in bf16 on a GPU, embedding there, and `torchrun` over NCCL.

Every test here is marked `gpu` and skipped without a CUDA device (CI has none). On a GPU machine:

    pytest -m gpu

A model trained on the GPU must load and predict on the CPU too (a folder is portable), with the same
labels as on the GPU within the bf16 rounding of the logits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import shared_data
from tests.shared.test_cli import write_labelled_csv
from tests.shared.test_training import check_resume_matches_an_uninterrupted_run, keyword_data, tiny_config
from textcore.artifacts import read_metadata
from textcore.classifier import Classifier
from textcore.data import read_labelled, stratified_split
from textcore.embeddings import Encoder
from textcore.training import TrainConfig, train_classifier

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]

# bf16 logits on the GPU against fp32 logits on the CPU: probabilities may move this much, labels may not
PROBABILITY_TOLERANCE = 0.05
# the same bound as the CPU's bf16 test of the encoder (tests/shared/test_embeddings.py)
BF16_MIN_COSINE = 0.99


def test_training_on_the_gpu_in_bf16_learns_and_the_folder_predicts_alike_on_the_cpu(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = tiny_config(tiny_model_dir, epochs=6, device="cuda", precision="bf16")
    result = train_classifier(keyword_data(160), config, tmp_path / "m", progress=False)
    training = result.metadata["training"]
    assert training["device"].startswith("cuda")
    assert training["bf16"] is True
    assert result.metrics["accuracy"] >= 0.85

    held_out = keyword_data(40, seed=99)
    gpu = Classifier.load(tmp_path / "m", device="cuda", precision="bf16")
    cpu = Classifier.load(tmp_path / "m", device="cpu", precision="fp32")
    gpu_labels = [p.label for p in gpu.predict(held_out.texts)]
    assert gpu_labels == [p.label for p in cpu.predict(held_out.texts)]
    assert np.mean([y == t for y, t in zip(gpu_labels, held_out.labels, strict=True)]) >= 0.85
    difference = np.abs(gpu.predict_proba(held_out.texts) - cpu.predict_proba(held_out.texts))
    assert float(difference.max()) < PROBABILITY_TOLERANCE


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_run_resumed_on_the_gpu_matches_an_uninterrupted_one(
    tiny_model_dir: Path, tmp_path: Path, precision: str
) -> None:
    config = tiny_config(tiny_model_dir, epochs=3, validation_fraction=0.25, device="cuda")
    config = config.replace(precision=precision)
    check_resume_matches_an_uninterrupted_run(tiny_model_dir, config, tmp_path)


def test_the_auto_device_is_the_gpu() -> None:
    encoder = Encoder.from_pretrained("minilm")
    assert encoder.device.type == "cuda"
    assert encoder.bf16 is torch.cuda.is_bf16_supported()


def test_bf16_embeddings_on_the_gpu_agree_with_fp32_on_the_cpu() -> None:
    texts = ["Operating profit rose to EUR 13.1 mn.", "The bank cut its dividend.", "ok", "Shares fell " * 30]
    gpu = Encoder.from_pretrained("minilm", device="cuda", precision="bf16").encode(texts)
    cpu = Encoder.from_pretrained("minilm", device="cpu", precision="fp32").encode(texts)
    assert gpu.dtype == np.float32
    assert np.allclose(np.linalg.norm(gpu, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(gpu * cpu, axis=1)
    assert cosines.min() >= BF16_MIN_COSINE, cosines


def test_minilm_fine_tuned_on_the_gpu_beats_the_majority_class_on_phrasebank(tmp_path: Path) -> None:
    data = read_labelled(shared_data("financial_phrasebank/train.csv"), "sentence", "label")
    train, held_back = stratified_split(data, 0.2, seed=0)
    config = TrainConfig(epochs=2, device="cuda", precision="bf16", seed=0)
    train_classifier(train, config, tmp_path / "m", progress=False)
    predictions = Classifier.load(tmp_path / "m", device="cuda").predict(held_back.texts)
    accuracy = np.mean([p.label == y for p, y in zip(predictions, held_back.labels, strict=True)])
    majority = max(held_back.labels.count(label) for label in set(held_back.labels)) / len(held_back)
    assert accuracy > majority + 0.1, (accuracy, majority)


def test_a_torchrun_launch_on_the_gpu_trains_over_nccl(tiny_model_dir: Path, tmp_path: Path) -> None:
    path = write_labelled_csv(tmp_path / "train.csv", keyword_data(64))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    args = ["--data", path, "--output", tmp_path / "ddp", "--base-model", tiny_model_dir, "--device", "cuda"]
    run = subprocess.run(
        [*command, "-m", "textcore.cli", "train", *map(str, [*args, "--epochs", "2", "--seed", "7"])],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        check=False,
    )
    assert run.returncode == 0, f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    training = read_metadata(tmp_path / "ddp")["training"]
    assert training["distributed_backend"] == "nccl"
    assert training["world_size"] == 1
    assert training["device"] == "cuda:0"
