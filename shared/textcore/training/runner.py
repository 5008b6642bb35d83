"""From data in memory to a saved model folder, one function per task: split, seed, train, evaluate, plot,
write metadata. Here the embedder, masked-LM, cross-encoder and tagger runs; the classifier runs are in
`textcore.training.classifier_runner`. (`textcore.training.files` reads the data from files.)
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from textcore.adapters import is_adapter, save_encoder
from textcore.artifacts import RUN_DIR
from textcore.bio import TaggedSentences, require_entities, tag_labels
from textcore.errors import InvalidInput, some_of
from textcore.metrics import tagging_report
from textcore.models import load_backbone, model_max_length
from textcore.pairs import Pairs, ScoredPairs, require_relevance_mix
from textcore.training.checkpoint import run_identity
from textcore.training.config import TrainConfig
from textcore.training.cross_encoder import RELEVANT, CrossEncoderTask
from textcore.training.distributed import is_main_process
from textcore.training.embedding import EmbeddingTask
from textcore.training.loop import train
from textcore.training.mlm import MaskedLMTask, split_texts
from textcore.training.results import TrainResult, close_run, record_run, seed_everything, worker_result
from textcore.training.token_classification import TokenClassificationTask


def fitted_to_base(config: TrainConfig) -> TrainConfig:
    """`config` with `max_length` lowered to what the base model takes (so its metadata records the length
    trained with); a longer input would overrun the position embeddings."""
    fitted = model_max_length(config.base_model, config.max_length)
    return config if fitted == config.max_length else config.replace(max_length=fitted)


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
    config = fitted_to_base(config)
    train_pairs, val_pairs = (
        (pairs, validation) if validation else pairs.split(config.validation_fraction, config.seed)
    )
    seed_everything(config.seed)
    backbone = load_backbone(config.base_model)
    task = EmbeddingTask(backbone, train_pairs, val_pairs, config)
    run_dir = output / RUN_DIR
    baseline = task.evaluate()
    identity = run_identity(config, [], train_pairs, val_pairs)
    loop = train(task, config, run_dir, resume=resume, progress=progress, identity=identity)
    if not is_main_process():
        return worker_result(output, loop)
    task.model.eval()
    metrics = task.evaluate()
    save_encoder(task.model, output)
    backbone.tokenizer.save_pretrained(str(output))
    if not is_adapter(task.model):  # sentence-transformers could not find an adapter's base by our alias
        _copy_sentence_transformers_files(backbone.path, output)
    close_run(run_dir, {"before": baseline, "after": metrics}, config.selection_metric)
    return record_run(
        output,
        config,
        loop,
        task,
        data={"train": {"rows": len(train_pairs)}, "validation": {"rows": len(val_pairs)}},
        sources=sources,
        validation_metrics=metrics,
        metrics=metrics,
        validation_metrics_before=baseline,
    )


def train_mlm(
    texts: Sequence[str],
    config: TrainConfig,
    output: Path,
    *,
    validation: Sequence[str] | None = None,
    sources: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Continue pretraining an encoder by masked-language modelling on unlabelled texts (domain adaptation).

    The folder holds a plain encoder with its tokenizer and the base's sentence-transformers files, so any
    task can start from it (`base_model=str(output)`, `--base-model DIR`); the masked-LM head is kept beside
    it in `mlm_head.safetensors` for a later round of pretraining. Metadata task `mlm`; the validation
    figures (masked-token accuracy, loss, perplexity on fixed masks) are recorded before and after.

    Args:
        texts: unlabelled training texts (a validation split is carved from them when `validation` is None).
        config: hyperparameters; `config.task` must be `mlm`.
        output: the model folder to write; `output/training` gets metrics, curves and the report.
        validation: optional separate validation texts.
        sources: where the texts came from (recorded in metadata).
        resume: continue from the checkpoint of an interrupted run in `output/training`.
        progress: show a progress bar.
    """
    if config.task != "mlm":
        raise InvalidInput(f"expected task mlm; found {config.task!r}")
    config = fitted_to_base(config)
    if validation is not None and not validation:
        raise InvalidInput("validation texts: expected at least one text; found none")
    train_texts, val_texts = (
        (list(texts), list(validation))
        if validation is not None
        else split_texts(texts, config.validation_fraction, config.seed)
    )
    seed_everything(config.seed)
    task = MaskedLMTask(config.base_model, train_texts, val_texts, config)
    run_dir = output / RUN_DIR
    task.model.eval()
    before = task.evaluate()
    identity = run_identity(config, [], train_texts, val_texts)
    loop = train(task, config, run_dir, resume=resume, progress=progress, identity=identity)
    if not is_main_process():
        return worker_result(output, loop)
    metrics = task.evaluate()  # the restored best weights, dropout off
    task.save(output)
    _copy_sentence_transformers_files(task.folder, output)
    close_run(run_dir, {"before": before, "after": metrics}, config.selection_metric)
    train_info = {"texts": len(train_texts), "chunks": len(task.train_ids)}
    val_info = {"texts": len(val_texts), "chunks": len(task.val_ids), "masked_tokens": task.val_masked}
    return record_run(
        output,
        config,
        loop,
        task,
        data={"train": train_info, "validation": val_info},
        sources=sources,
        validation_metrics=metrics,
        metrics=metrics,
        mlm_head="initialised" if task.fresh_head else "loaded",
        validation_metrics_before=before,
    )


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
    config = fitted_to_base(config)
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
    identity = run_identity(config, [RELEVANT], train_pairs, val_pairs)
    loop = train(task, config, run_dir, resume=resume, progress=progress, identity=identity)
    if not is_main_process():
        return worker_result(output, loop)
    metrics = task.evaluate()  # the restored best weights, dropout off
    task.model.save(output, task.tokenizer, [RELEVANT], multi_label=False)
    close_run(run_dir, metrics, config.selection_metric)
    return record_run(
        output,
        config,
        loop,
        task,
        data={"train": _pairs_info(train_pairs), "validation": _pairs_info(val_pairs)},
        sources=sources,
        validation_metrics={
            "mrr@10": metrics["mrr@10"],
            "accuracy": metrics["accuracy"],
            "n": len(val_pairs),
        },
        metrics=metrics,
        labels=[RELEVANT],
    )


def train_tagger(
    data: TaggedSentences,
    config: TrainConfig,
    output: Path,
    *,
    validation: TaggedSentences | None = None,
    sources: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune a tagger on BIO-tagged sentences and save it in `output`.

    The folder has the classifier layout with the tags (`O`, `B-T`, `I-T` per entity type T) as labels and
    metadata task `token-classification`; serve it with `textcore.Tagger`.

    Args:
        data: training sentences (a validation split of whole sentences is carved from them when
            `validation` is None).
        config: hyperparameters; `config.task` must be `token-classification`.
        output: the model folder to write; `output/training` gets metrics, curves and the report.
        validation: optional separate validation sentences.
        sources: where the data came from (recorded in metadata).
        resume: continue from the checkpoint of an interrupted run in `output/training`.
        progress: show a progress bar.
    """
    if config.task != "token-classification":
        raise InvalidInput(f"expected task token-classification; found {config.task!r}")
    config = fitted_to_base(config)
    types = require_entities(data, "training data")
    unknown = sorted(set(validation.entity_counts()) - set(types)) if validation is not None else []
    if unknown:
        raise InvalidInput(
            f"validation entity types {some_of(unknown)} do not occur in the training data; "
            f"known: {some_of(types)}"
        )
    labels = tag_labels(types)
    train_data, val_data = (
        (data, validation) if validation is not None else data.split(config.validation_fraction, config.seed)
    )
    seed_everything(config.seed)
    task = TokenClassificationTask(load_backbone(config.base_model), train_data, val_data, labels, config)
    run_dir = output / RUN_DIR
    identity = run_identity(config, labels, train_data, val_data)
    loop = train(task, config, run_dir, resume=resume, progress=progress, identity=identity)
    if not is_main_process():
        return worker_result(output, loop)
    report = tagging_report(val_data.tags, task.predicted_tags(task.probabilities()))  # best weights
    metrics = report.to_dict()
    task.model.save(output, task.tokenizer, labels)
    close_run(run_dir, metrics, config.selection_metric)
    return record_run(
        output,
        config,
        loop,
        task,
        data={"train": train_data.summary(), "validation": val_data.summary()},
        sources=sources,
        validation_metrics={
            k: metrics[k] for k in ("precision", "recall", "f1", "accuracy", "n", "entities")
        },
        metrics=metrics,
        labels=labels,
    )
