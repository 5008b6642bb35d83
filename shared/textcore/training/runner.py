"""From data files to a saved model folder: split, seed, train, evaluate, plot, write metadata."""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textcore.artifacts import write_json_atomic, write_metadata
from textcore.data import (
    LabelledTexts,
    Pairs,
    ScoredPairs,
    file_sha256,
    read_labelled,
    read_pairs,
    read_scored_pairs,
    require_classes,
    require_relevance_mix,
    stratified_split,
)
from textcore.errors import InvalidInput
from textcore.metrics import classification_report, multilabel_report
from textcore.models import load_backbone
from textcore.training.checkpoint import remove_checkpoint
from textcore.training.classification import ClassificationTask
from textcore.training.config import TrainConfig
from textcore.training.cross_encoder import RELEVANT, CrossEncoderTask
from textcore.training.embedding import EmbeddingTask
from textcore.training.loop import LoopResult, train
from textcore.training.plots import plot_confusion, plot_curves
from textcore.training.tracking import read_metrics

RUN_DIR = "training"


@dataclass(frozen=True)
class TrainResult:
    """A finished run: where the model is, its validation figures and the loop's summary."""

    output: Path
    metrics: dict[str, Any]
    loop: LoopResult
    metadata: dict[str, Any]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a run is reproducible on the same hardware."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def _data_info(path: str | os.PathLike[str] | None, data: LabelledTexts) -> dict[str, Any]:
    info: dict[str, Any] = {"rows": len(data), "label_counts": data.label_counts()}
    if path is not None:
        info.update(path=str(Path(path).resolve()), sha256=file_sha256(path))
    return info


def _validation_for(
    train_data: LabelledTexts, validation: LabelledTexts | None, config: TrainConfig, labels: list[str]
) -> tuple[LabelledTexts, LabelledTexts]:
    if validation is None:
        return stratified_split(train_data, config.validation_fraction, config.seed)
    known = set(labels)
    unknown = sorted({x for value in validation.labels for x in value.split("|")} - known)
    if unknown:
        raise InvalidInput(f"validation labels {unknown} do not occur in the training data; known: {labels}")
    return train_data, validation


def train_classifier(
    data: LabelledTexts,
    config: TrainConfig,
    output: Path,
    *,
    validation: LabelledTexts | None = None,
    sources: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune a classifier and save it as a self-contained model folder in `output`.

    Args:
        data: labelled training texts (a validation split is carved from it when `validation` is None).
        config: hyperparameters; `config.task` must be `classification`.
        output: the model folder to write; `output/training` gets metrics, curves and the confusion matrix.
        validation: optional separate validation data.
        sources: where the data came from (recorded in metadata).
        resume: continue from the checkpoint of an interrupted run in `output/training`.
        progress: show a progress bar.
    """
    if config.task != "classification":
        raise InvalidInput(f"expected task classification; found {config.task!r}")
    split_labels = (
        [x.strip() for value in data.labels for x in value.split("|")] if config.multi_label else None
    )
    labels = sorted(set(split_labels)) if split_labels else require_classes(data, "training data")
    if len(labels) < 2:
        raise InvalidInput(f"training data: expected at least two distinct labels; found only {labels!r}")
    train_data, val_data = _validation_for(data, validation, config, labels)
    seed_everything(config.seed)
    task = ClassificationTask(load_backbone(config.base_model), train_data, val_data, labels, config)
    run_dir = output / RUN_DIR
    loop = train(task, config, run_dir, resume=resume, progress=progress)
    predicted = task.predicted_labels(task.val_ids)
    scorer = multilabel_report if config.multi_label else classification_report
    report = scorer(val_data.labels, predicted, labels)
    metrics = report.to_dict()
    task.model.save(output, task.tokenizer, labels, config.multi_label)
    write_json_atomic(run_dir / "report.json", metrics)
    plot_curves(read_metrics(run_dir / "metrics.jsonl"), run_dir / "curves.png", config.selection_metric)
    if not config.multi_label:
        plot_confusion(report.confusion, labels, run_dir / "confusion.png")  # type: ignore[arg-type]
    remove_checkpoint(run_dir)
    metadata = write_metadata(
        output,
        {
            "task": "classification",
            "base_model": config.base_model,
            "labels": labels,
            "hyperparameters": config.to_dict(),
            "data": {
                "train": _data_info(None, train_data),
                "validation": _data_info(None, val_data),
                **(sources or {}),
            },
            "validation_metrics": {"accuracy": report.accuracy, "macro_f1": report.macro_f1, "n": report.n},
            "training": _training_summary(loop, task.device, task.bf16),
        },
    )
    return TrainResult(output=output, metrics=metrics, loop=loop, metadata=metadata)


def train_classifier_from_files(
    data_path: str | os.PathLike[str],
    text_column: str,
    label_column: str,
    config: TrainConfig,
    output: Path,
    *,
    validation_path: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """`train_classifier` on CSV/JSONL files, recording their paths and hashes in the metadata."""
    data = read_labelled(data_path, text_column, label_column)
    if not config.multi_label:
        require_classes(data, str(data_path))
    validation = read_labelled(validation_path, text_column, label_column) if validation_path else None
    sources: dict[str, Any] = {
        "file": _data_info(data_path, data),
        "text_column": text_column,
        "label_column": label_column,
    }
    if validation_path is not None and validation is not None:
        sources["validation_file"] = _data_info(validation_path, validation)
    return train_classifier(
        data, config, output, validation=validation, sources=sources, resume=resume, progress=progress
    )


def _copy_sentence_transformers_files(base: Path, output: Path) -> None:
    """Keep the base model's sentence-transformers description so that library can load the result too."""
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"):
        if (base / name).is_file():
            shutil.copy2(base / name, output / name)
    if (base / "1_Pooling").is_dir():
        shutil.copytree(base / "1_Pooling", output / "1_Pooling", dirs_exist_ok=True)


def train_embedder(
    pairs: Pairs,
    config: TrainConfig,
    output: Path,
    *,
    validation: Pairs | None = None,
    sources: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune an encoder on (anchor, positive[, negative]) pairs and save it in `output`."""
    if config.task != "embedding":
        raise InvalidInput(f"expected task embedding; found {config.task!r}")
    train_pairs, val_pairs = (
        (pairs, validation) if validation else pairs.split(config.validation_fraction, config.seed)
    )
    seed_everything(config.seed)
    backbone = load_backbone(config.base_model)
    task = EmbeddingTask(backbone, train_pairs, val_pairs, config)
    run_dir = output / RUN_DIR
    baseline = task.evaluate()
    loop = train(task, config, run_dir, resume=resume, progress=progress)
    task.model.eval()
    metrics = task.evaluate()
    output.mkdir(parents=True, exist_ok=True)
    backbone.model.save_pretrained(str(output), safe_serialization=True)
    backbone.tokenizer.save_pretrained(str(output))
    _copy_sentence_transformers_files(backbone.path, output)
    write_json_atomic(run_dir / "report.json", {"before": baseline, "after": metrics})
    plot_curves(read_metrics(run_dir / "metrics.jsonl"), run_dir / "curves.png", config.selection_metric)
    remove_checkpoint(run_dir)
    metadata = write_metadata(
        output,
        {
            "task": "embedding",
            "base_model": config.base_model,
            "hyperparameters": config.to_dict(),
            "data": {
                "train": {"rows": len(train_pairs)},
                "validation": {"rows": len(val_pairs)},
                **(sources or {}),
            },
            "validation_metrics": metrics,
            "validation_metrics_before": baseline,
            "training": _training_summary(loop, task.device, task.bf16),
        },
    )
    return TrainResult(output=output, metrics=metrics, loop=loop, metadata=metadata)


def _pairs_info(pairs: ScoredPairs) -> dict[str, Any]:
    return {
        "rows": len(pairs),
        "queries": len(set(pairs.queries)),
        "relevant": sum(x >= 0.5 for x in pairs.labels),
    }


def train_reranker(
    pairs: ScoredPairs,
    config: TrainConfig,
    output: Path,
    *,
    validation: ScoredPairs | None = None,
    sources: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune a cross-encoder re-ranker on (query, passage, relevance) rows and save it in `output`.

    The folder has the classifier layout with the single label `relevant` and metadata task `cross-encoder`;
    serve it with `textcore.Reranker`.

    Args:
        pairs: training rows (a validation split of whole queries is carved from them when `validation` is
            None).
        config: hyperparameters; `config.task` must be `cross-encoder`.
        output: the model folder to write; `output/training` gets metrics, curves and the report.
        validation: optional separate validation rows.
        sources: where the data came from (recorded in metadata).
        resume: continue from the checkpoint of an interrupted run in `output/training`.
        progress: show a progress bar.
    """
    if config.task != "cross-encoder":
        raise InvalidInput(f"expected task cross-encoder; found {config.task!r}")
    require_relevance_mix(pairs, "training pairs")
    train_pairs, val_pairs = (
        (pairs, validation)
        if validation is not None
        else pairs.split(config.validation_fraction, config.seed)
    )
    if not len(val_pairs):
        raise InvalidInput("validation pairs: expected at least one row; found none")
    seed_everything(config.seed)
    task = CrossEncoderTask(load_backbone(config.base_model), train_pairs, val_pairs, config)
    run_dir = output / RUN_DIR
    loop = train(task, config, run_dir, resume=resume, progress=progress)
    metrics = task.evaluate()  # the restored best weights, dropout off
    task.model.save(output, task.tokenizer, [RELEVANT], multi_label=False)
    write_json_atomic(run_dir / "report.json", metrics)
    plot_curves(read_metrics(run_dir / "metrics.jsonl"), run_dir / "curves.png", config.selection_metric)
    remove_checkpoint(run_dir)
    metadata = write_metadata(
        output,
        {
            "task": "cross-encoder",
            "base_model": config.base_model,
            "labels": [RELEVANT],
            "hyperparameters": config.to_dict(),
            "data": {
                "train": _pairs_info(train_pairs),
                "validation": _pairs_info(val_pairs),
                **(sources or {}),
            },
            "validation_metrics": {
                "mrr@10": metrics["mrr@10"],
                "accuracy": metrics["accuracy"],
                "n": len(val_pairs),
            },
            "training": _training_summary(loop, task.device, task.bf16),
        },
    )
    return TrainResult(output=output, metrics=metrics, loop=loop, metadata=metadata)


def _training_summary(loop: LoopResult, device: torch.device, bf16: bool) -> dict[str, Any]:
    return {
        "steps": loop.steps,
        "best_step": loop.best_step,
        "stopped_early": loop.stopped_early,
        "seconds": round(loop.train_seconds, 2),
        "samples_per_second": round(loop.samples_per_second, 2),
        "device": str(device),
        "bf16": bf16,
    }


def train_from_files(
    config: TrainConfig,
    data_path: str | os.PathLike[str],
    text_column: str,
    label_column: str,
    output: Path,
    *,
    validation_path: str | os.PathLike[str] | None = None,
    negative_column: str | None = None,
    passage_column: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train the task named by `config.task` from CSV/JSONL files.

    For classification the columns are text and label; for embedding they are anchor and positive (and an
    optional hard negative); for cross-encoder they are query (`text_column`), passage (`passage_column`) and
    relevance (`label_column`).
    """
    if config.task == "cross-encoder":
        return _train_reranker_from_files(
            config,
            data_path,
            (text_column, passage_column, label_column),
            output,
            validation_path=validation_path,
            resume=resume,
            progress=progress,
        )
    if config.task == "classification":
        return train_classifier_from_files(
            data_path,
            text_column,
            label_column,
            config,
            output,
            validation_path=validation_path,
            resume=resume,
            progress=progress,
        )
    pairs = read_pairs(data_path, text_column, label_column, negative_column)
    validation = (
        read_pairs(validation_path, text_column, label_column, negative_column) if validation_path else None
    )
    sources = {
        "file": {
            "path": str(Path(data_path).resolve()),
            "sha256": file_sha256(data_path),
            "rows": len(pairs),
        },
        "anchor_column": text_column,
        "positive_column": label_column,
    }
    return train_embedder(
        pairs, config, output, validation=validation, sources=sources, resume=resume, progress=progress
    )


def _train_reranker_from_files(
    config: TrainConfig,
    data_path: str | os.PathLike[str],
    columns: tuple[str, str | None, str],
    output: Path,
    *,
    validation_path: str | os.PathLike[str] | None,
    resume: bool,
    progress: bool,
) -> TrainResult:
    query, passage, label = columns
    if not passage:
        raise InvalidInput("task cross-encoder: expected a passage column (--passage-column); found none")
    pairs = read_scored_pairs(data_path, query, passage, label)
    validation = read_scored_pairs(validation_path, query, passage, label) if validation_path else None
    sources: dict[str, Any] = {
        "file": {
            "path": str(Path(data_path).resolve()),
            "sha256": file_sha256(data_path),
            "rows": len(pairs),
        },
        "query_column": query,
        "passage_column": passage,
        "label_column": label,
    }
    if validation_path is not None and validation is not None:
        sources["validation_file"] = {
            "path": str(Path(validation_path).resolve()),
            "sha256": file_sha256(validation_path),
            "rows": len(validation),
        }
    return train_reranker(
        pairs, config, output, validation=validation, sources=sources, resume=resume, progress=progress
    )
