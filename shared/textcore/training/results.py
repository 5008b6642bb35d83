"""What every run shares: the result it returns, seeding, and the figures recorded in its metadata."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textcore.artifacts import write_json_atomic, write_metadata
from textcore.labelled import LabelledTexts
from textcore.table_files import file_sha256
from textcore.training.checkpoint import remove_checkpoint
from textcore.training.config import TrainConfig
from textcore.training.loop import LoopResult
from textcore.training.plots import plot_curves
from textcore.training.tracking import read_metrics


@dataclass(frozen=True)
class TrainResult:
    """A finished run: where the model is, its validation figures and the loop's summary.

    On a worker rank of a distributed run (`torchrun`) `metrics` and `metadata` are empty: only the main
    process evaluates and writes the model folder.
    """

    output: Path
    metrics: dict[str, Any]
    loop: LoopResult
    metadata: dict[str, Any]


def worker_result(output: Path, loop: LoopResult) -> TrainResult:
    """What a worker rank returns once training is over; the main process saves the model."""
    return TrainResult(output=output, metrics={}, loop=loop, metadata={})


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a run is reproducible on the same hardware."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def data_info(path: str | os.PathLike[str] | None, data: LabelledTexts) -> dict[str, Any]:
    info: dict[str, Any] = {"rows": len(data), "label_counts": data.label_counts()}
    if data.weights is not None:
        weights = data.weights
        info["weights"] = {
            "min": min(weights),
            "max": max(weights),
            "mean": sum(weights) / len(weights),
            "left_out": sum(w == 0 for w in weights),  # rows of weight 0: training leaves them out
        }
    if path is not None:
        info.update(path=str(Path(path).resolve()), sha256=file_sha256(path))
    return info


def training_summary(loop: LoopResult, device: torch.device, bf16: bool) -> dict[str, Any]:
    return {
        "steps": loop.steps,
        "best_step": loop.best_step,
        "stopped_early": loop.stopped_early,
        "skipped_steps": loop.skipped_steps,
        "seconds": round(loop.train_seconds, 2),
        "samples_per_second": round(loop.samples_per_second, 2),
        "device": str(device),
        "bf16": bf16,
        "world_size": loop.world_size,
        "distributed_backend": loop.distributed_backend,
        "trainable_parameters": loop.trainable_parameters,
        "total_parameters": loop.total_parameters,
    }


def file_info(path: str | os.PathLike[str], **counts: int) -> dict[str, Any]:
    """Where a data file is, its SHA-256 and the counts given (rows, texts, sentences...)."""
    return {"path": str(Path(path).resolve()), "sha256": file_sha256(path), **counts}


def close_run(run_dir: Path, report: dict[str, Any], metric: str) -> None:
    """End a run's records: write `report.json`, plot the curves, remove the resumable checkpoint."""
    write_json_atomic(run_dir / "report.json", report)
    plot_curves(read_metrics(run_dir / "metrics.jsonl"), run_dir / "curves.png", metric)
    remove_checkpoint(run_dir)


def record_run(
    output: Path,
    config: TrainConfig,
    loop: LoopResult,
    task: Any,
    *,
    data: dict[str, Any],
    sources: dict[str, Any] | None,
    validation_metrics: dict[str, Any],
    metrics: dict[str, Any],
    **extra: Any,
) -> TrainResult:
    """Write the model folder's metadata and return the run's result.

    Every task records its name, base model, hyperparameters, data (`data` plus where it came from),
    validation figures and the loop's summary; `extra` adds the task's own fields (labels, figures before
    training...). `task` is the run's task object (its `device` and `bf16` are recorded).
    """
    metadata = write_metadata(
        output,
        {
            "task": config.task,
            "base_model": config.base_model,
            "hyperparameters": config.to_dict(),
            "data": {**data, **(sources or {})},
            "validation_metrics": validation_metrics,
            **extra,
            "training": training_summary(loop, task.device, task.bf16),
        },
    )
    return TrainResult(output=output, metrics=metrics, loop=loop, metadata=metadata)
