"""Continual learning: retrain the active version on old plus new labels, and a promotion gate.

`retrain` starts from the registry's active classifier (its encoder, and its head for the labels it knows),
trains on the old training data plus the new labels (a new label for a known text is a correction and wins),
registers the result as a new, inactive version and hands it to `gate`. The gate scores the active version and
the candidate on one fixed evaluation set and promotes the candidate only when it is not worse
(`candidate >= active + min_delta`); every decision lands in the registry history with both figures::

    {"event": "gate", "decision": "rejected", "candidate": 3, "active": 2, "metric": "accuracy",
     "candidate_figures": {"accuracy": 0.81, ...}, "active_figures": {"accuracy": 0.84, ...},
     "eval_data": {"path": ..., "sha256": ..., "rows": 400}, "reason": "accuracy 0.8100 < 0.8400 + 0.0"}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from textcore.artifacts import (
    HEAD_FILE,
    read_labels,
    recorded_training_data,
    write_json_atomic,
)
from textcore.classifier import saved_head_kind
from textcore.data import read_labelled
from textcore.duplicates import text_key
from textcore.errors import Conflict, InvalidInput
from textcore.evaluation import evaluate_classifier, holds_label_sets, load_predictor
from textcore.labelled import LabelledTexts, split_labels
from textcore.registry import ModelRegistry, ModelVersion
from textcore.registry_files import require_active, staging_folder
from textcore.table_files import file_sha256
from textcore.training.config import TrainConfig

GATE_TASKS = ("classification", "setfit")  # folders with the classifier layout (encoder + head + labels)
GATE_METRICS = ("accuracy", "macro_f1")
DATA_FILE = "training/data.jsonl"  # the merged training data, kept inside each retrained version

Source = str | os.PathLike[str] | LabelledTexts


@dataclass(frozen=True, slots=True)
class GateDecision:
    """The outcome of one promotion-gate run (also recorded in the registry history as event `gate`).

    Attributes:
        name: The model name.
        decision: `promoted` or `rejected`.
        candidate: The candidate version.
        active: The version it was compared against (None when nothing was active).
        metric: The deciding metric (`accuracy` or `macro_f1`).
        candidate_figures: The candidate's accuracy, macro-F1 and row count on the evaluation set.
        active_figures: The same for the active version (None when nothing was active).
        min_delta: How much better than the active version the candidate had to be.
        reason: One line explaining the decision.
        eval_data: Path (None for in-memory data), SHA-256 and row count of the evaluation set.
    """

    name: str
    decision: str
    candidate: int
    active: int | None
    metric: str
    candidate_figures: Mapping[str, float]
    active_figures: Mapping[str, float] | None
    min_delta: float
    reason: str
    eval_data: Mapping[str, object]

    @property
    def promoted(self) -> bool:
        """True when the candidate became the active version."""
        return self.decision == "promoted"

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (the registry event, without `event` and `ts`)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class RetrainResult:
    """A retrained candidate, the rows it learnt from and the gate's decision about it."""

    version: ModelVersion
    rows: Mapping[str, int]
    decision: GateDecision


def _data_identity(
    data: Source, text_column: str, label_column: str, multi_label: bool
) -> tuple[LabelledTexts, dict[str, Any]]:
    if isinstance(data, LabelledTexts):
        digest = hashlib.sha256(json.dumps([data.texts, data.labels]).encode()).hexdigest()
        return data, {"path": None, "sha256": digest, "rows": len(data)}
    rows = read_labelled(data, text_column, label_column, multi_label=multi_label)
    return rows, {"path": str(Path(data).resolve()), "sha256": file_sha256(data), "rows": len(rows)}


def _figures(version: ModelVersion, data: LabelledTexts, device: str, precision: str) -> dict[str, float]:
    task = version.metadata.get("task", "classification")
    if task not in GATE_TASKS:
        raise InvalidInput(
            f"{version.name} v{version.version}: the gate compares classifiers ({', '.join(GATE_TASKS)}); "
            f"found task {task!r}"
        )
    predictor = load_predictor(version.path, device=device, precision=precision)
    report = evaluate_classifier(predictor, data, unknown_labels_count_as_errors=True)
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "n": report["n"]}


def _active_or_none(registry: ModelRegistry, name: str, doing: str) -> ModelVersion | None:
    """The active version, or None when none was promoted (call after checking that `name` exists).

    An alias that names no version (a folder, a torn or hand-edited file) is refused here, before minutes of
    evaluation, rather than at the promotion that would refuse it anyway (`registry_files.require_active`).
    """
    version = require_active(registry.root / name, doing)
    return registry.get(name, version) if version is not None else None


def gate(
    registry: ModelRegistry,
    name: str,
    candidate_version: int,
    eval_data: Source,
    metric: str = "accuracy",
    min_delta: float = 0.0,
    *,
    text_column: str = "text",
    label_column: str = "label",
    device: str = "auto",
    precision: str = "auto",
) -> GateDecision:
    """Promote `candidate_version` only if it scores at least the active version's figure (+ `min_delta`).

    Both are scored on the same fixed evaluation set; rows whose label a model does not know count as its
    mistakes. With nothing active, the candidate is promoted. Either way one `gate` event with the decision,
    both figures and the evaluation set's SHA-256 is appended to the history.

    Args:
        registry: The registry holding the model.
        name: The model name.
        candidate_version: The version to judge.
        eval_data: The fixed evaluation set: a CSV/JSONL file or labelled texts.
        metric: `accuracy` or `macro_f1`.
        min_delta: Required improvement; 0 promotes a candidate that is not worse.
        text_column: Text column of `eval_data` when it is a file.
        label_column: Label column of `eval_data` when it is a file.
        device: auto, cpu, cuda or cuda:N.
        precision: auto, bf16 or fp32.

    Raises:
        InvalidInput: Unknown metric, a non-classifier version, bad evaluation data, the candidate is the
            active version already, or the active alias names no version (checked before evaluating).
        NotFound: Unknown name or version, or the active alias names a version that does not exist.
    """
    if metric not in GATE_METRICS:
        raise InvalidInput(f"metric: expected one of {', '.join(GATE_METRICS)}; found {metric!r}")
    candidate = registry.get(name, candidate_version)
    active = _active_or_none(registry, name, f"gate version {candidate_version} of {name}")
    if active is not None and active.version == candidate.version:
        raise InvalidInput(
            f"candidate: expected a version other than the active one; v{active.version} is active"
        )
    data, identity = _data_identity(eval_data, text_column, label_column, holds_label_sets(candidate.path))
    new = _figures(candidate, data, device, precision)
    old = _figures(active, data, device, precision) if active is not None else None
    if old is None:
        decision, reason = "promoted", "no active version yet"
    else:
        passed = new[metric] >= old[metric] + min_delta
        sign = ">=" if passed else "<"
        decision = "promoted" if passed else "rejected"
        reason = f"{metric} {new[metric]:.4f} {sign} {old[metric]:.4f} + {min_delta}"
    compared = active.version if active is not None else None
    if decision == "promoted":
        try:
            registry.promote(name, candidate.version, note=f"gate: {reason}", if_active=compared)
        except Conflict as exc:
            decision, reason = "rejected", f"{exc.message}; run the gate again"
    result = GateDecision(
        name, decision, candidate.version, compared, metric, new, old, min_delta, reason, identity
    )
    registry.record(name, {"event": "gate", **result.to_dict()})
    return result


def recorded_config(version: ModelVersion) -> TrainConfig:
    """The training recipe recorded in a version's metadata (fields unknown to this library are dropped).

    Distillation teachers are not carried over: the version starts from the student, which holds what they
    taught, and their folders may be gone or know fewer labels than the new data.
    """
    recorded = version.metadata.get("hyperparameters")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in recorded.items() if k in known} if isinstance(recorded, dict) else {}
    return TrainConfig(**{**values, "tensorboard": "", "teachers": ()})


def merge_labelled(old: LabelledTexts, new: LabelledTexts) -> tuple[LabelledTexts, dict[str, int]]:
    """Old rows then new rows, one row per text (`text_key`: case and spacing aside, as in the validation
    split): the first spelling of a text with the latest label, so new labels correct old ones.

    Returns:
        The merged rows and counts: `old`, `new`, `corrected` (old texts whose label the new data changed),
        `duplicates` (rows folded into another) and `total`.
    """
    merged: dict[str, tuple[str, str]] = {}
    for text, label in zip(old.texts, old.labels, strict=True):
        merged[text_key(text)] = (text, label)
    before = dict(merged)
    for text, label in zip(new.texts, new.labels, strict=True):
        key = text_key(text)
        merged[key] = (merged.get(key, (text, ""))[0], label)
    corrected = sum(merged[key][1] != label for key, (_, label) in before.items())
    rows = list(merged.values())
    counts = {
        "old": len(old),
        "new": len(new),
        "corrected": corrected,
        "duplicates": len(old) + len(new) - len(rows),
        "total": len(rows),
    }
    return LabelledTexts([t for t, _ in rows], [lab for _, lab in rows]), counts


def _label_set(data: LabelledTexts, multi_label: bool) -> list[str]:
    if multi_label:  # the same order `train_classifier` gives its head rows
        return sorted({x for value in data.labels for x in split_labels(value)})
    return sorted(set(data.labels))


def warm_head(folder: Path, labels: list[str], head: str) -> tuple[dict[str, torch.Tensor] | None, int]:
    """Head rows for `labels` from a trained classifier folder: known labels keep their rows, new ones start
    at zero (logit 0, so they learn from the data alone).

    Args:
        folder: the classifier folder to start from.
        labels: the new head's labels, in its row order.
        head: the kind of head the new run trains (`linear` or `cosine`); from a folder with another kind
            nothing is carried over.

    Returns:
        The per-label tensors (`weight` (n_labels, hidden), and `bias` (n_labels,) for a linear head), or
        None when the kinds differ; and how many rows were copied.
    """
    old_labels, _ = read_labels(folder)
    state = load_file(str(folder / HEAD_FILE))
    if saved_head_kind(state) != head:
        return None, 0
    index = {label: i for i, label in enumerate(old_labels)}
    rows: dict[str, torch.Tensor] = {}
    for key, saved in state.items():
        if saved.dim() == 0:  # a setting of the head (the cosine head's scale): the new recipe sets it
            continue
        tensor = torch.zeros((len(labels), *saved.shape[1:]), dtype=torch.float32)
        for row, label in enumerate(labels):
            if label in index:
                tensor[row] = saved[index[label]]
        rows[key] = tensor
    return rows, sum(label in index for label in labels)


def _old_rows(
    active: ModelVersion, old_data: Source | None, columns: tuple[str, str], multi_label: bool
) -> LabelledTexts:
    if isinstance(old_data, LabelledTexts):
        return old_data
    if old_data is not None:
        return read_labelled(old_data, *columns, multi_label=multi_label)
    hint = "pass the old training data (--old-data)"
    return recorded_training_data(active.path, hint=hint).read(multi_label)


def _write_rows(path: Path, data: LabelledTexts) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for text, label in zip(data.texts, data.labels, strict=True):
            handle.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")


@contextmanager
def _removed_after(folder: Path) -> Iterator[None]:
    try:
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def retrain(
    registry: ModelRegistry,
    name: str,
    new_data: Source,
    config: TrainConfig | None = None,
    *,
    old_data: Source | None = None,
    eval_data: Source,
    text_column: str = "text",
    label_column: str = "label",
    metric: str = "accuracy",
    min_delta: float = 0.0,
    note: str = "",
    progress: bool = False,
) -> RetrainResult:
    """Retrain the active version of `name` on old plus new labelled data, register it, then gate it.

    Args:
        registry: The registry holding the model.
        name: The model name; its active version must be a classifier.
        new_data: The new labels (feedback, corrections, fresh behaviour): a file or labelled texts.
        config: The recipe; default: the one recorded in the active version. Its `base_model` and
            `multi_label` are replaced by the active version's.
        old_data: The earlier training data; default: the file recorded in the active version's metadata,
            if it still exists unchanged.
        eval_data: The fixed evaluation set of the gate (keep it out of the training data).
        text_column: Text column of the files given here.
        label_column: Label column of the files given here.
        metric: The gate's metric, `accuracy` or `macro_f1`.
        min_delta: How much better the candidate must be; 0: not worse.
        note: Kept in the history with the new version.
        progress: Show a training progress bar.

    Raises:
        NotFound: Unknown name, or no active version.
        InvalidInput: The active version is not a classifier, old data cannot be found, or bad data.
    """
    from textcore.training.classifier_runner import train_classifier  # noqa: PLC0415 - heavy import

    active = registry.active(name)
    task = active.metadata.get("task", "classification")
    if task not in GATE_TASKS:
        raise InvalidInput(f"{name} v{active.version}: retrain expects a classifier; found task {task!r}")
    _, multi_label = read_labels(active.path)
    old = _old_rows(active, old_data, (text_column, label_column), multi_label)
    new, new_info = _data_identity(new_data, text_column, label_column, multi_label)
    data, rows = merge_labelled(old, new)
    recipe = (config or recorded_config(active)).replace(
        task="classification", base_model=str(active.path), multi_label=multi_label
    )
    head, copied = warm_head(active.path, _label_set(data, multi_label), recipe.head)
    # a staging folder, as a register's: locked while this runs, removed by a later writer once a killed
    # retrain has left it an hour
    with staging_folder(registry.root) as work, _removed_after(work):
        output = work / "model"
        _write_rows(output / DATA_FILE, data)
        file = {"path": DATA_FILE, "sha256": file_sha256(output / DATA_FILE), "rows": len(data)}
        sources = {"file": file, "text_column": "text", "label_column": "label", "new_data": new_info}
        result = train_classifier(data, recipe, output, sources=sources, progress=progress, head_init=head)
        untuned = active.metadata.get("untuned_base_model", active.metadata.get("base_model"))
        parent = {"name": name, "version": active.version, "path": str(active.path)}
        continual = {"parent": parent, "rows": rows, "head_rows_copied": copied}
        metadata = {**result.metadata, "untuned_base_model": untuned, "continual": continual}
        write_json_atomic(output / "metadata.json", metadata)
        version = registry.register(name, output, note=note or f"retrained from v{active.version}")
    decision = gate(
        registry,
        name,
        version.version,
        eval_data,
        metric,
        min_delta,
        text_column=text_column,
        label_column=label_column,
        device=recipe.device,
        precision=recipe.precision,
    )
    return RetrainResult(version, rows, decision)
