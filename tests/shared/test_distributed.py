"""Data-parallel training: `textcore train` under `torchrun` with two CPU processes (gloo).

One step of two ranks covers the same batches as one step of a single process that accumulates gradients
over two, so both runs must end with the same model up to float rounding. Dropout is off (in the tiny
model's config and before the head), since the ranks cannot draw the same dropout masks as one process.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from tests.shared.test_training import keyword_data, tiny_config
from textcore.artifacts import read_metadata
from textcore.classifier import Classifier
from textcore.training import TrainConfig, train_classifier, train_classifier_from_files
from textcore.training.tracking import read_metrics

# max |logit difference| allowed between the two-process and the one-process model (fp32 on the CPU; the
# gradients are summed in a different order, nothing else differs)
LOGIT_TOLERANCE = 1e-4
SETTINGS = {"epochs": 2, "batch_size": 8, "learning_rate": 2e-3, "seed": 7, "precision": "fp32"}


def free_port() -> int:
    """A loopback port that was free a moment ago (for the one-process group's rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def no_dropout_model(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """The tiny BERT with its hidden and attention dropout set to zero."""
    folder = tmp_path / "tiny-no-dropout"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def write_keyword_csv(path: Path, rows: int) -> Path:
    data = keyword_data(rows)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(data.texts, data.labels, strict=True))
    return path


def torchrun_train(data: Path, model: Path, output: Path, *more: str) -> subprocess.CompletedProcess[str]:
    """`textcore train` on two local CPU processes; `--standalone` picks a free rendezvous port."""
    args = [
        *("--data", data, "--output", output, "--base-model", model, "--device", "cpu", "--dropout", "0"),
        *(x for key, value in SETTINGS.items() for x in (f"--{key.replace('_', '-')}", value)),
        *more,
    ]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    return subprocess.run(
        [*command, "-m", "textcore.cli", "train", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        check=False,
    )


def test_two_cpu_processes_train_like_one_with_gradient_accumulation(
    no_dropout_model: Path, tmp_path: Path
) -> None:
    # 36 training rows: 5 batches an epoch, so each epoch ends in a short step of 1 batch, in which one
    # rank has no batch of its own and adds a zero gradient
    data = write_keyword_csv(tmp_path / "train.csv", 40)
    run = torchrun_train(data, no_dropout_model, tmp_path / "ddp")
    assert run.returncode == 0, f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert run.stdout.count("saved ") == 1  # only the main process reports

    config = TrainConfig(base_model=str(no_dropout_model), device="cpu", dropout=0.0, grad_accum_steps=2)
    single = train_classifier_from_files(
        data, "text", "label", config.replace(**SETTINGS), tmp_path / "single", progress=False
    )

    ddp_meta = read_metadata(tmp_path / "ddp")
    assert ddp_meta["training"]["world_size"] == 2
    assert ddp_meta["training"]["distributed_backend"] == "gloo"
    assert single.metadata["training"]["world_size"] == 1
    assert ddp_meta["training"]["steps"] == single.loop.steps
    assert ddp_meta["training"]["best_step"] == single.loop.best_step
    # one writer: every step is logged once, and the finished run leaves no checkpoint behind
    steps = [r["step"] for r in read_metrics(tmp_path / "ddp" / "training" / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(1, single.loop.steps + 1))
    assert not (tmp_path / "ddp" / "training" / "checkpoint").exists()

    texts = keyword_data(24, seed=5).texts
    ddp_model = Classifier.load(tmp_path / "ddp", device="cpu", precision="fp32")
    single_model = Classifier.load(tmp_path / "single", device="cpu", precision="fp32")
    ddp_logits, single_logits = ddp_model.logits(texts), single_model.logits(texts)
    assert float(np.abs(ddp_logits - single_logits).max()) < LOGIT_TOLERANCE
    assert [p.label for p in ddp_model.predict(texts)] == [p.label for p in single_model.predict(texts)]


def test_a_refit_runs_on_every_rank_like_one_process(no_dropout_model: Path, tmp_path: Path) -> None:
    data = write_keyword_csv(tmp_path / "train.csv", 48)
    run = torchrun_train(data, no_dropout_model, tmp_path / "ddp", "--refit")
    assert run.returncode == 0, f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    config = TrainConfig(base_model=str(no_dropout_model), device="cpu", dropout=0.0, grad_accum_steps=2)
    single = train_classifier_from_files(
        data, "text", "label", config.replace(refit=True, **SETTINGS), tmp_path / "single", progress=False
    )
    ddp_refit = read_metadata(tmp_path / "ddp")["refit"]
    assert ddp_refit["train_rows"] == single.metadata["refit"]["train_rows"] == 48
    assert ddp_refit["steps"] == single.metadata["refit"]["steps"]
    assert not (tmp_path / "ddp" / "training" / "refit" / "checkpoint").exists()
    texts = keyword_data(24, seed=5).texts
    ddp_logits = Classifier.load(tmp_path / "ddp", device="cpu", precision="fp32").logits(texts)
    single_logits = Classifier.load(tmp_path / "single", device="cpu", precision="fp32").logits(texts)
    assert float(np.abs(ddp_logits - single_logits).max()) < LOGIT_TOLERANCE


def test_a_one_process_torchrun_launch_trains_exactly_like_a_plain_run(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny_config(tiny_model_dir, epochs=1, device="cpu", precision="fp32")
    plain = train_classifier(keyword_data(32), config, tmp_path / "plain", progress=False)
    # what `torchrun --nproc_per_node=1` puts in the environment
    launch = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    for name, value in {**launch, "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(name, value)
    launched = train_classifier(keyword_data(32), config, tmp_path / "launched", progress=False)

    assert launched.metadata["training"]["distributed_backend"] == "gloo"
    assert launched.metadata["training"]["world_size"] == 1
    assert not dist.is_initialized()  # the group set up for the run is gone
    for name in ("head.safetensors", "model.safetensors"):
        first, second = (load_file(str(tmp_path / run / name)) for run in ("plain", "launched"))
        assert all(torch.equal(first[k], second[k]) for k in first)
    assert plain.metadata["training"]["distributed_backend"] is None
