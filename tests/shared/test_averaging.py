"""Weight averaging (`TrainConfig.ema`): the arithmetic, the loop's use of the average, resume, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.shared.test_cli import assert_clean_failure, invoke_cli, ok, write_labelled_csv
from tests.shared.test_refit import LABELS, new_task
from tests.shared.test_training import keyword_data, tiny_config
from textcore.errors import InvalidInput
from textcore.models import load_backbone
from textcore.training import TrainConfig
from textcore.training.averaging import WeightAverage
from textcore.training.classification import ClassificationTask
from textcore.training.loop import train


class RecordingTask(ClassificationTask):
    """Keeps a copy of the head's weights after every optimizer step."""

    seen: list[torch.Tensor]

    def after_step(self, step: int) -> None:
        super().after_step(step)
        self.seen.append(self.model.head.weight.detach().clone())


def test_the_average_follows_the_ema_formula_and_stands_in_only_inside_its_block() -> None:
    layer = nn.Linear(2, 1, bias=False)
    average = WeightAverage(layer, decay=0.5)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[4.0, 0.0]]))
    average.update()  # the first update copies: avg = 4, 0
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, 2.0]]))
    average.update()  # avg = 0.5 * avg + 0.5 * w = 2, 1
    with average.applied():
        assert layer.weight.tolist() == [[2.0, 1.0]]
    assert layer.weight.tolist() == [[0.0, 2.0]]
    with pytest.raises(RuntimeError, match="boom"), average.applied():
        raise RuntimeError("boom")
    assert layer.weight.tolist() == [[0.0, 2.0]]  # restored after an error too


def test_the_loop_evaluates_and_keeps_the_average_of_the_weights_after_each_step(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    decay = 0.6
    config = tiny_config(tiny_model_dir, epochs=2, ema=decay)
    data = keyword_data(40)
    torch.manual_seed(config.seed)
    task = RecordingTask(load_backbone(tiny_model_dir), data.subset(range(32)), data.subset(range(32, 40)),
                         LABELS, config)  # fmt: skip
    seen: list[torch.Tensor] = []
    task.seen = seen
    # A fixed share of the schedule evaluates once, at the end, and keeps what it evaluated.
    result = train(task, config, tmp_path / "run", progress=False, stop_fraction=1.0)
    head = task.model.head.weight
    assert result.steps == len(seen) == 8
    expected = seen[0]
    for weights in seen[1:]:
        expected = decay * expected + (1 - decay) * weights
    assert torch.allclose(head, expected, atol=1e-6)
    assert not torch.allclose(head, seen[-1], atol=1e-4)  # the average, not the last step's weights


def test_averaging_changes_the_saved_weights_of_a_normal_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(tiny_model_dir, epochs=2)
    plain = new_task(tiny_model_dir, config)
    train(plain, config, tmp_path / "plain", progress=False)
    averaged = new_task(tiny_model_dir, config.replace(ema=0.9))
    result = train(averaged, config.replace(ema=0.9), tmp_path / "ema", progress=False)
    assert result.best_eval  # the kept step was evaluated
    assert not torch.equal(plain.model.head.weight, averaged.model.head.weight)


def test_ema_is_validated() -> None:
    for bad in (-0.1, 1.0):
        with pytest.raises(InvalidInput, match=r"ema: expected a number in \[0, 1\)"):
            TrainConfig(ema=bad)


def test_cli_records_the_decay_and_refuses_a_bad_one(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = keyword_data(40, seed=5)
    train_csv = write_labelled_csv(tmp_path / "train.csv", data)
    common = ["train", "--data", train_csv, "--base-model", tiny_model_dir, "--epochs", "1"]
    ok(invoke_cli(*common, "--ema", "0.9", "--output", tmp_path / "m"))
    metadata = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert metadata["hyperparameters"]["ema"] == 0.9
    failed = invoke_cli(*common, "--ema", "1.5", "--output", tmp_path / "bad")
    assert_clean_failure(failed, "ema: expected a number in [0, 1)")
