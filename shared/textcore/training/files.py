"""From data files to a run: read each task's files, record their paths and hashes, and dispatch.

`train_from_files` is what `textcore train` calls; each task's reader checks its columns and values before
any model is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from textcore.bio import read_tagged
from textcore.data import read_corpus, read_labelled
from textcore.errors import InvalidInput
from textcore.labelled import require_classes
from textcore.pairs import read_pairs, read_scored_pairs
from textcore.training.classifier_runner import train_classifier, train_few_shot
from textcore.training.config import TrainConfig
from textcore.training.results import TrainResult, data_info, file_info
from textcore.training.runner import train_embedder, train_mlm, train_reranker, train_tagger


def _require_weights_fit(config: TrainConfig, weight_column: str | None) -> None:
    """Row weights (a weight column) are a classification option; any other task refuses one."""
    if weight_column and config.task != "classification":
        raise InvalidInput(f"task {config.task}: row weights (a weight column) apply to classification only")


def train_classifier_from_files(
    data_path: str | os.PathLike[str],
    text_column: str,
    label_column: str,
    config: TrainConfig,
    output: Path,
    *,
    validation_path: str | os.PathLike[str] | None = None,
    weight_column: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """`train_classifier` (`train_few_shot` for task setfit) on CSV/JSONL files, recording their paths and
    hashes in the metadata. `weight_column` names per-row loss weights (classification only), read from the
    validation file too, whose rows a refit trains on."""
    _require_weights_fit(config, weight_column)
    multi = config.multi_label
    data = read_labelled(data_path, text_column, label_column, weight_column, multi_label=multi)
    if not multi:
        require_classes(data, str(data_path))
    validation = (
        read_labelled(validation_path, text_column, label_column, weight_column, multi_label=multi)
        if validation_path
        else None
    )
    sources: dict[str, Any] = {
        "file": data_info(data_path, data),
        "text_column": text_column,
        "label_column": label_column,
    }
    if weight_column:
        sources["weight_column"] = weight_column
    if validation_path is not None and validation is not None:
        sources["validation_file"] = data_info(validation_path, validation)
    trainer = train_few_shot if config.task == "setfit" else train_classifier
    return trainer(
        data, config, output, validation=validation, sources=sources, resume=resume, progress=progress
    )


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
    weight_column: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train the task named by `config.task` from CSV/JSONL files.

    For classification and setfit the columns are text and label; for embedding they are anchor and positive
    (and an optional hard negative); for cross-encoder they are query (`text_column`), passage
    (`passage_column`) and relevance (`label_column`); for token-classification they are tokens and tags (a
    CoNLL file has neither); for mlm only the text column counts (a `.txt` file has one text per line).
    Classification also takes per-row loss weights from `weight_column`; other tasks refuse one.
    """
    _require_weights_fit(config, weight_column)
    if config.task == "mlm":
        return _train_mlm_from_files(
            config, data_path, text_column, output, validation_path, resume, progress
        )
    if config.task == "token-classification":
        return _train_tagger_from_files(
            config, data_path, (text_column, label_column), output, validation_path, resume, progress
        )
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
    if config.task in ("classification", "setfit"):
        return train_classifier_from_files(
            data_path,
            text_column,
            label_column,
            config,
            output,
            validation_path=validation_path,
            weight_column=weight_column,
            resume=resume,
            progress=progress,
        )
    pairs = read_pairs(data_path, text_column, label_column, negative_column)
    validation = (
        read_pairs(validation_path, text_column, label_column, negative_column) if validation_path else None
    )
    sources = {
        "file": file_info(data_path, rows=len(pairs)),
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
        "file": file_info(data_path, rows=len(pairs)),
        "query_column": query,
        "passage_column": passage,
        "label_column": label,
    }
    if validation_path is not None and validation is not None:
        sources["validation_file"] = file_info(validation_path, rows=len(validation))
    return train_reranker(
        pairs, config, output, validation=validation, sources=sources, resume=resume, progress=progress
    )


def _train_tagger_from_files(
    config: TrainConfig,
    data_path: str | os.PathLike[str],
    columns: tuple[str, str],
    output: Path,
    validation_path: str | os.PathLike[str] | None,
    resume: bool,
    progress: bool,
) -> TrainResult:
    data = read_tagged(data_path, *columns)
    validation = read_tagged(validation_path, *columns) if validation_path else None
    sources: dict[str, Any] = {"file": file_info(data_path, sentences=len(data))}
    if validation_path is not None and validation is not None:
        sources["validation_file"] = file_info(validation_path, sentences=len(validation))
    return train_tagger(
        data, config, output, validation=validation, sources=sources, resume=resume, progress=progress
    )


def _train_mlm_from_files(
    config: TrainConfig,
    data_path: str | os.PathLike[str],
    text_column: str,
    output: Path,
    validation_path: str | os.PathLike[str] | None,
    resume: bool,
    progress: bool,
) -> TrainResult:
    texts = read_corpus(data_path, text_column)
    validation = read_corpus(validation_path, text_column) if validation_path else None
    sources: dict[str, Any] = {
        "file": file_info(data_path, texts=len(texts)),
        "text_column": text_column,
    }
    if validation_path is not None and validation is not None:
        sources["validation_file"] = file_info(validation_path, texts=len(validation))
    return train_mlm(
        texts, config, output, validation=validation, sources=sources, resume=resume, progress=progress
    )
