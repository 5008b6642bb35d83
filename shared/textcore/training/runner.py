"""From data in memory to a saved model folder, one function per task: split, seed, train, evaluate, plot,
write metadata. (`textcore.training.files` reads the data from files.)
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from textcore.adapters import is_adapter, save_encoder
from textcore.artifacts import RUN_DIR
from textcore.bio import TaggedSentences, require_entities, tag_labels
from textcore.data import (
    LabelledTexts,
    Pairs,
    ScoredPairs,
    require_classes,
    require_relevance_mix,
    stratified_split,
)
from textcore.errors import InvalidInput
from textcore.frozen_view import replace_frozen_view
from textcore.metrics import ClassificationReport, classification_report, multilabel_report, tagging_report
from textcore.models import load_backbone, model_max_length
from textcore.training.blending import blend_frozen_view
from textcore.training.checkpoint import run_identity
from textcore.training.classification import ClassificationTask
from textcore.training.config import TrainConfig
from textcore.training.cross_encoder import RELEVANT, CrossEncoderTask
from textcore.training.distill import teacher_probabilities
from textcore.training.distributed import is_main_process, process_group
from textcore.training.embedding import EmbeddingTask
from textcore.training.loop import LoopResult, train
from textcore.training.mlm import MaskedLMTask, split_texts
from textcore.training.plots import plot_confusion
from textcore.training.results import (
    TrainResult,
    close_run,
    data_info,
    record_run,
    seed_everything,
    worker_result,
)
from textcore.training.setfit import HEAD_C, SetFitTask, few_shot_split
from textcore.training.token_classification import TokenClassificationTask

REFIT_DIR = "refit"  # inside the run's records: the refit's own metrics and curves


def _fitted(config: TrainConfig) -> TrainConfig:
    """`config` with `max_length` lowered to what the base model takes (so its metadata records the length
    trained with); a longer input would overrun the position embeddings."""
    fitted = model_max_length(config.base_model, config.max_length)
    return config if fitted == config.max_length else config.replace(max_length=fitted)


def _validation_for(
    train_data: LabelledTexts, validation: LabelledTexts | None, config: TrainConfig, labels: list[str]
) -> tuple[LabelledTexts, LabelledTexts]:
    if validation is None:
        train_part, validation_part = stratified_split(train_data, config.validation_fraction, config.seed)
        if not validation_part.texts or not train_part.texts:
            raise InvalidInput(
                f"expected enough rows to carve a validation split ({config.validation_fraction:.0%}) and "
                f"keep training rows; found {len(train_data.texts)} rows: give more, or --validation FILE"
            )
        return train_part, validation_part
    known = set(labels)
    if config.multi_label:  # "a|b" names two labels; a single-label "a|b" is one label of its own
        given = {x.strip() for value in validation.labels for x in value.split("|")}
    else:
        given = set(validation.labels)
    unknown = sorted(given - known)
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
    head_init: dict[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Fine-tune a classifier and save it as a self-contained model folder in `output`.

    Args:
        data: labelled training texts (a validation split is carved from it when `validation` is None); with
            `weights`, each row's loss on its label is scaled by its weight (validation figures stay
            unweighted; a refit also trains on the validation rows, with their weights).
        config: hyperparameters; `config.task` must be `classification`.
        output: the model folder to write; `output/training` gets metrics, curves and the confusion matrix.
        validation: optional separate validation data.
        sources: where the data came from (recorded in metadata).
        resume: continue from the checkpoint of an interrupted run in `output/training`.
        progress: show a progress bar.
        head_init: starting rows of the head (`weight` (n_labels, hidden), and `bias` (n_labels,) for a
            linear head; rows in sorted label order), e.g. to warm-start from an earlier version
            (`textcore.continual`).
    """
    if config.task != "classification":
        raise InvalidInput(f"expected task classification; found {config.task!r}")
    config = _fitted(config)
    split_labels = (
        [x.strip() for value in data.labels for x in value.split("|")] if config.multi_label else None
    )
    labels = sorted(set(split_labels)) if split_labels else require_classes(data, "training data")
    if len(labels) < 2:
        raise InvalidInput(f"training data: expected at least two distinct labels; found only {labels!r}")
    train_data, val_data = _validation_for(data, validation, config, labels)
    run_dir = output / RUN_DIR
    task = _classification_task(train_data, val_data, labels, config, head_init)
    final = task
    refit: dict[str, Any] = {}
    # one process group for both runs of a refit under torchrun (a second group on the same rendezvous
    # store could read the first one's stale addresses)
    with process_group(task.device):
        identity = run_identity(config, labels, train_data, val_data)
        loop = train(task, config, run_dir, resume=resume, progress=progress, identity=identity)
        if config.refit:  # every rank takes part
            final, refit = _refit(
                train_data, val_data, labels, config, head_init, loop, run_dir, resume, progress
            )
    if not is_main_process():
        return worker_result(output, loop)
    blend = blend_frozen_view(task, train_data, val_data, config) if config.blend_frozen else None
    predicted = blend.predicted if blend else task.predicted_labels(task.val_ids)
    scorer = multilabel_report if config.multi_label else classification_report
    report = scorer(val_data.labels, predicted, labels)
    metrics = report.to_dict()
    final.model.save(output, task.tokenizer, labels, config.multi_label)
    replace_frozen_view(output, blend.view if blend else None)
    if not config.multi_label:
        plot_confusion(report.confusion, labels, run_dir / "confusion.png")  # type: ignore[arg-type]
    close_run(run_dir, metrics, config.selection_metric)
    return record_run(
        output,
        config,
        loop,
        task,
        sources=sources,
        metrics=metrics,
        labels=labels,
        **_classifier_record(train_data, val_data, report),
        **({"refit": refit} if refit else {}),
        **({"frozen_view": blend.record} if blend else {}),
    )


def _classification_task(
    train_data: LabelledTexts,
    val_data: LabelledTexts,
    labels: list[str],
    config: TrainConfig,
    head_init: dict[str, torch.Tensor] | None,
) -> ClassificationTask:
    """A freshly seeded task on the base model (with the teachers' soft labels when distilling)."""
    seed_everything(config.seed)
    soft_targets = (
        teacher_probabilities(
            config.teachers,
            train_data.texts,
            labels,
            temperature=config.distill_temperature,
            device=config.device,
            precision=config.precision,
            max_length=config.max_length,
        )
        if config.teachers
        else None
    )
    task = ClassificationTask(
        load_backbone(config.base_model), train_data, val_data, labels, config, soft_targets
    )
    if head_init is not None:
        _load_head(task, head_init)
    return task


def _refit(
    train_data: LabelledTexts,
    val_data: LabelledTexts,
    labels: list[str],
    config: TrainConfig,
    head_init: dict[str, torch.Tensor] | None,
    selection: LoopResult,
    run_dir: Path,
    resume: bool,
    progress: bool,
) -> tuple[ClassificationTask, dict[str, Any]]:
    """Train again from the start on the training and validation rows together, over the share of the
    schedule at which the selection run was best, and keep the final weights."""
    every = train_data.concat(val_data)
    task = _classification_task(every, val_data, labels, config, head_init)
    share = selection.best_step / max(1, selection.scheduled_steps)
    refit_dir = run_dir / REFIT_DIR
    identity = run_identity(config, labels, every, val_data)
    loop = train(
        task, config, refit_dir, resume=resume, progress=progress, stop_fraction=share, identity=identity
    )
    if is_main_process():
        close_run(refit_dir, {"fit_on_validation_rows": loop.best_eval}, config.selection_metric)
    record = {
        "train_rows": len(every),
        "steps": loop.steps,
        "scheduled_steps": loop.scheduled_steps,
        "seconds": round(loop.train_seconds, 2),
        "selection_best_step": selection.best_step,
        "selection_scheduled_steps": selection.scheduled_steps,
        # the refit model trained on these rows: a figure of fit, not of generalisation
        "fit_on_validation_rows": {k: v for k, v in loop.best_eval.items() if k != "step"},
    }
    return task, record


def _classifier_record(
    train_data: LabelledTexts, val_data: LabelledTexts, report: ClassificationReport
) -> dict[str, Any]:
    """The data and validation figures every classifier folder's metadata records."""
    return {
        "data": {"train": data_info(None, train_data), "validation": data_info(None, val_data)},
        "validation_metrics": {"accuracy": report.accuracy, "macro_f1": report.macro_f1, "n": report.n},
    }


def _load_head(task: ClassificationTask, rows: dict[str, torch.Tensor]) -> None:
    """Start the head from `rows`, its per-label tensors; its settings (a cosine head's scale) stay the
    recipe's."""
    fresh = task.model.head.state_dict()
    expected = {k: tuple(v.shape) for k, v in fresh.items() if v.dim() > 0}
    found = {k: tuple(v.shape) for k, v in rows.items()}
    if found != expected:
        raise InvalidInput(f"head_init: expected tensors {expected} for labels {task.labels}; found {found}")
    task.model.head.load_state_dict({**fresh, **rows})


def train_few_shot(
    data: LabelledTexts,
    config: TrainConfig,
    output: Path,
    *,
    validation: LabelledTexts | None = None,
    sources: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Few-shot (SetFit-style) training: contrastive tuning on pairs, then a logistic-regression head.

    Meant for 8 to 64 examples per class (`textcore.data.sample_per_class` draws such a set). The folder has
    the classifier layout (metadata task `setfit`), so `Classifier`, `textcore predict` and `textcore
    evaluate` serve it unchanged. `config.epochs` plays SetFit's `num_iterations`: each epoch pairs every
    example with one fresh same-class partner (see `textcore.training.setfit`).

    Args:
        data: single-label training texts, at least 2 per class (3 when no `validation` is given, as one per
            class is carved off for validation).
        config: hyperparameters; `config.task` must be `setfit`.
        output: the model folder to write; `output/training` gets metrics, curves and the confusion matrix.
        validation: optional separate validation data (recommended with very few examples per class).
        sources: where the data came from (recorded in metadata).
        resume: continue from the checkpoint of an interrupted run in `output/training`.
        progress: show a progress bar.
    """
    if config.task != "setfit":
        raise InvalidInput(f"expected task setfit; found {config.task!r}")
    config = _fitted(config)
    if data.weights is not None or (validation is not None and validation.weights is not None):
        raise InvalidInput("task setfit: row weights apply to classification only; found weighted data")
    labels = require_classes(data, "training data")
    train_data, val_data = few_shot_split(data, validation, labels, config)
    seed_everything(config.seed)
    task = SetFitTask(load_backbone(config.base_model), train_data, val_data, labels, config)
    run_dir = output / RUN_DIR
    task.model.eval()
    before = task.evaluate()  # the untuned encoder with the same head: what the contrastive phase adds
    identity = run_identity(config, labels, train_data, val_data)
    loop = train(task, config, run_dir, resume=resume, progress=progress, identity=identity)
    if not is_main_process():
        return worker_result(output, loop)
    model = task.classifier_with_head()
    report = classification_report(val_data.labels, task.predicted_labels(model, task.val_ids), labels)
    metrics = report.to_dict()
    model.save(output, task.tokenizer, labels, multi_label=False)
    plot_confusion(report.confusion, labels, run_dir / "confusion.png")  # type: ignore[arg-type]
    close_run(run_dir, {**metrics, "before_contrastive": before}, config.selection_metric)
    return record_run(
        output,
        config,
        loop,
        task,
        sources=sources,
        metrics=metrics,
        labels=labels,
        **_classifier_record(train_data, val_data, report),
        validation_metrics_before={k: before[k] for k in ("accuracy", "macro_f1")},
        head={"kind": "logistic-regression", "C": HEAD_C, "features": "mean-pooled, standardised"},
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
    config = _fitted(config)
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
    config = _fitted(config)
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
    config = _fitted(config)
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
    config = _fitted(config)
    types = require_entities(data, "training data")
    unknown = sorted(set(validation.entity_counts()) - set(types)) if validation is not None else []
    if unknown:
        raise InvalidInput(
            f"validation entity types {unknown} do not occur in the training data; known: {types}"
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
