"""From data in memory to a saved classifier folder: `train_classifier` (with its refit, distillation and
warm-started head) and the few-shot `train_few_shot`. The other tasks' runners are in
`textcore.training.runner`.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import Any

import torch

from textcore.artifacts import RUN_DIR
from textcore.duplicates import label_conflicts, texts_in_common
from textcore.errors import InvalidInput, some_of
from textcore.frozen_view import replace_frozen_view
from textcore.labelled import (
    LabelledTexts,
    look_alike_labels,
    require_classes,
    require_label_sets,
    split_labels,
)
from textcore.metrics import ClassificationReport, classification_report, multilabel_report
from textcore.models import load_backbone
from textcore.splits import stratified_split
from textcore.training.blending import blend_frozen_view
from textcore.training.checkpoint import run_identity
from textcore.training.classification import ClassificationTask
from textcore.training.config import TrainConfig
from textcore.training.distill import teacher_probabilities
from textcore.training.distributed import is_main_process, process_group
from textcore.training.loop import LoopResult, train
from textcore.training.plots import plot_confusion
from textcore.training.results import (
    TrainResult,
    close_run,
    data_info,
    record_run,
    seed_everything,
    worker_result,
)
from textcore.training.runner import fitted_to_base
from textcore.training.setfit import HEAD_C, SetFitTask, few_shot_split

REFIT_DIR = "refit"  # inside the run's records: the refit's own metrics and curves

log = logging.getLogger(__name__)


def _validation_for(
    train_data: LabelledTexts, validation: LabelledTexts | None, config: TrainConfig, labels: list[str]
) -> tuple[LabelledTexts, LabelledTexts]:
    if validation is None:
        train_part, validation_part = stratified_split(train_data, config.validation_fraction, config.seed)
        if not validation_part.texts or not train_part.texts:
            raise InvalidInput(
                f"expected enough rows to carve a validation split ({config.validation_fraction:.0%}) and "
                f"keep training rows (all rows of one text stay on one side); found {len(train_data.texts)} "
                "rows: give more, or --validation FILE"
            )
        return train_part, validation_part
    known = set(labels)
    if config.multi_label:  # "a|b" names two labels; a single-label "a|b" is one label of its own
        given = {x for value in validation.labels for x in split_labels(value)}
    else:
        given = set(validation.labels)
    unknown = sorted(given - known)
    if unknown:
        raise InvalidInput(
            f"validation labels {some_of(unknown)} do not occur in the training data; "
            f"known: {some_of(labels)}"
        )
    warn_of_shared_texts(train_data, validation)
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
    config = fitted_to_base(config)
    if config.multi_label:
        require_label_sets(data, "training data")
        if validation is not None:
            require_label_sets(validation, "validation data")
    if config.multi_label:  # a row may have none of the labels
        labels = sorted({x for value in data.labels for x in split_labels(value)})
    else:
        labels = require_classes(data, "training data")
    if len(labels) < 2:
        raise InvalidInput(f"training data: expected at least two distinct labels; found only {labels!r}")
    train_data, val_data = _validation_for(data, validation, config, labels)
    warn_of_label_conflicts(data, config.multi_label)
    warn_of_look_alike_labels(labels)
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
        **_classifier_record(train_data, val_data, report, config.multi_label),
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


def warn_of_shared_texts(train_data: LabelledTexts, validation: LabelledTexts) -> None:
    """Log a warning when given validation rows have texts the training rows also have (case and spacing
    aside): their figures are optimistic. A split carved here never has any."""
    shared = texts_in_common(train_data, validation)
    if shared:
        log.warning(
            "%d of %d validation rows have a text that is also in the training data (case and spacing "
            "aside); their figures are optimistic",
            shared,
            len(validation),
        )


def warn_of_look_alike_labels(labels: list[str]) -> None:
    """Log one warning naming the labels that differ only in case, spacing or number form
    (`look_alike_labels`): each is a class of its own; training goes on."""
    groups = look_alike_labels(labels)
    if groups:
        named = "; ".join(", ".join(repr(label) for label in group) for group in groups[:3])
        more = f" and {len(groups) - 3} more groups" if len(groups) > 3 else ""
        log.warning(
            "labels that differ only in case, spacing or number form are trained as separate classes: %s%s; "
            "write each class one way in the data if they are one",
            named,
            more,
        )


def warn_of_label_conflicts(data: LabelledTexts, multi_label: bool) -> None:
    """Log one warning when texts of the training data (case and spacing aside) carry more than one label
    (multi-label: more than one set of labels), naming the first; training goes on with every row as given."""
    conflicts = label_conflicts(data, multi_label)
    if conflicts:
        text, labels = conflicts[0]
        count = (
            f"{len(conflicts)} texts of the training data carry"
            if len(conflicts) > 1
            else "1 text of the training data carries"
        )
        log.warning(
            '%s more than one label (case and spacing aside), e.g. "%s" (%s); training learns from every row '
            "as given",
            count,
            textwrap.shorten(text, 60, placeholder="..."),
            ", ".join(labels),
        )


def _classifier_record(
    train_data: LabelledTexts, val_data: LabelledTexts, report: ClassificationReport, multi_label: bool
) -> dict[str, Any]:
    """The data and validation figures every classifier folder's metadata records (`texts_in_training`: the
    validation rows whose text is also a training text; `conflicting_texts`: the texts of each side that carry
    more than one label, see `label_conflicts`; a carved split keeps each text on one side, so the two add up
    to the training data's)."""
    validation = {**data_info(None, val_data), "texts_in_training": texts_in_common(train_data, val_data)}
    return {
        "data": {
            "train": {
                **data_info(None, train_data),
                "conflicting_texts": _conflicts(train_data, multi_label),
            },
            "validation": {**validation, "conflicting_texts": _conflicts(val_data, multi_label)},
        },
        "validation_metrics": {"accuracy": report.accuracy, "macro_f1": report.macro_f1, "n": report.n},
    }


def _conflicts(data: LabelledTexts, multi_label: bool) -> int:
    return len(label_conflicts(data, multi_label))


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
    config = fitted_to_base(config)
    if data.weights is not None or (validation is not None and validation.weights is not None):
        raise InvalidInput("task setfit: row weights apply to classification only; found weighted data")
    labels = require_classes(data, "training data")
    train_data, val_data = few_shot_split(data, validation, labels, config)
    if validation is not None:
        warn_of_shared_texts(train_data, val_data)
    warn_of_label_conflicts(data, multi_label=False)
    warn_of_look_alike_labels(labels)
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
        **_classifier_record(train_data, val_data, report, multi_label=False),
        validation_metrics_before={k: before[k] for k in ("accuracy", "macro_f1")},
        head={"kind": "logistic-regression", "C": HEAD_C, "features": "mean-pooled, standardised"},
    )
