"""Refit: once a run has chosen when to stop, train again on every row for that share of the schedule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.shared.test_cli import assert_clean_failure, invoke_cli, ok, write_labelled_csv
from tests.shared.test_training import keyword_data, tiny_config
from textcore.errors import InvalidInput
from textcore.models import load_backbone
from textcore.training import TrainConfig, train_classifier
from textcore.training.classification import ClassificationTask
from textcore.training.loop import train

LABELS = ["negative", "positive"]


def lines(path: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def new_task(model: Path, config: TrainConfig) -> ClassificationTask:
    data = keyword_data(40)
    torch.manual_seed(config.seed)
    return ClassificationTask(
        load_backbone(model), data.subset(range(32)), data.subset(range(32, 40)), LABELS, config
    )


def test_a_fixed_share_of_the_schedule_keeps_its_learning_rates_and_evaluates_once(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = tiny_config(tiny_model_dir, epochs=4)  # 4 steps per epoch: 16 scheduled
    full = train(new_task(tiny_model_dir, config), config, tmp_path / "full", progress=False)
    part = train(
        new_task(tiny_model_dir, config), config, tmp_path / "part", progress=False, stop_fraction=0.3
    )
    assert full.scheduled_steps == part.scheduled_steps == 16
    assert part.steps == part.best_step == math.ceil(0.3 * 16)
    logged = lines(tmp_path / "part" / "metrics.jsonl")
    steps = [r for r in logged if "lr" in r]
    evaluations = [r for r in logged if "val_accuracy" in r]
    assert [r["step"] for r in evaluations] == [5]  # once, at the end (a full run evaluates every epoch)
    full_lrs = {r["step"]: r["lr"] for r in lines(tmp_path / "full" / "metrics.jsonl") if "lr" in r}
    assert [r["lr"] for r in steps] == [full_lrs[r["step"]] for r in steps]  # the same schedule, cut short


def test_refit_trains_every_row_for_the_selected_share_and_keeps_the_first_runs_figures(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = keyword_data(60)
    config = tiny_config(tiny_model_dir, epochs=3, validation_fraction=0.2)
    plain = train_classifier(data, config, tmp_path / "plain", progress=False)
    refit = train_classifier(data, config.replace(refit=True), tmp_path / "refit", progress=False)
    # The selection run is the plain run: same figures, recorded as the model's validation figures.
    assert refit.metadata["validation_metrics"] == plain.metadata["validation_metrics"]
    assert refit.metadata["training"]["best_step"] == plain.metadata["training"]["best_step"]
    record = refit.metadata["refit"]
    rows = plain.metadata["data"]["train"]["rows"] + plain.metadata["data"]["validation"]["rows"]
    assert record["train_rows"] == len(data) == rows
    share = record["selection_best_step"] / record["selection_scheduled_steps"]
    assert record["steps"] == math.ceil(share * record["scheduled_steps"])
    assert record["scheduled_steps"] > record["selection_scheduled_steps"]  # more rows, more steps per epoch
    assert set(record["fit_on_validation_rows"]) >= {"accuracy", "macro_f1"}
    assert (tmp_path / "refit" / "training" / "refit" / "metrics.jsonl").is_file()
    assert not (tmp_path / "refit" / "training" / "refit" / "checkpoint").exists()
    # The saved weights are the refit's, not the selection run's.
    first = load_file(str(tmp_path / "plain" / "head.safetensors"))
    second = load_file(str(tmp_path / "refit" / "head.safetensors"))
    assert not all(torch.equal(first[k], second[k]) for k in first)


def test_a_resumed_run_that_had_stopped_early_does_not_train_on(tiny_model_dir: Path, tmp_path: Path) -> None:
    # A learning rate this small leaves the validation accuracy as it is: the run stops after 2 evaluations.
    config = tiny_config(tiny_model_dir, epochs=20, learning_rate=1e-12, head_learning_rate=1e-12, patience=2)
    first = train(new_task(tiny_model_dir, config), config, tmp_path / "run", progress=False)
    assert first.stopped_early
    again = train(new_task(tiny_model_dir, config), config, tmp_path / "run", resume=True, progress=False)
    assert (again.steps, again.best_step, again.stopped_early) == (first.steps, first.best_step, True)


def test_refit_is_refused_outside_classification() -> None:
    with pytest.raises(InvalidInput, match="refit: expected false unless task is classification"):
        TrainConfig(task="embedding", refit=True)


def test_cli_refits_on_request_and_refuses_it_for_other_tasks(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = keyword_data(40, seed=3)
    train_csv = write_labelled_csv(tmp_path / "train.csv", data)
    common = ["train", "--data", train_csv, "--base-model", tiny_model_dir, "--epochs", "1", "--refit"]
    report = json.loads(ok(invoke_cli(*common, "--output", tmp_path / "m")).stdout.strip().splitlines()[-1])
    metadata = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert metadata["hyperparameters"]["refit"] is True
    assert metadata["refit"]["train_rows"] == 40
    assert report["output"] == str(tmp_path / "m")
    failed = invoke_cli(*common, "--task", "embedding", "--output", tmp_path / "e")
    assert_clean_failure(failed, "refit: expected false unless task is classification")
