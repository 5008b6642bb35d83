"""A registry's folder of one model name, given to `predict` or `evaluate` as --model, says which to give."""

from __future__ import annotations

import json
from pathlib import Path

from tests.shared.test_cli import assert_clean_failure, invoke_cli, ok, write_labelled_csv
from tests.shared.test_training import keyword_data, tiny_config
from textcore.registry import ModelRegistry
from textcore.training import train_classifier


def test_a_model_name_folder_points_at_its_active_version(tiny_model_dir: Path, tmp_path: Path) -> None:
    train_classifier(keyword_data(12), tiny_config(tiny_model_dir, epochs=1), tmp_path / "m", progress=False)
    registry = ModelRegistry(tmp_path / "reg")
    registry.register("sentiment", tmp_path / "m")
    name = tmp_path / "reg" / "sentiment"
    # Nothing active yet: the error names a version to give instead of only "not a classifier folder".
    unpromoted = invoke_cli("predict", "--model", name, stdin="profit rose\n")
    assert_clean_failure(unpromoted, f"registry model name with no active version: give one of its versions, "
                                     f"e.g. {name / 'v0001'}")  # fmt: skip
    registry.register("sentiment", tmp_path / "m", promote=True)
    data = write_labelled_csv(tmp_path / "eval.csv", keyword_data(6))
    for command in (["predict"], ["evaluate", "--data", data]):
        failed = invoke_cli(*command, "--model", name, stdin="profit rose\n")
        assert_clean_failure(failed, f"it is a registry model name, whose active version is {name / 'v0002'}")
    answered = ok(invoke_cli("predict", "--model", name / "v0002", stdin="profit rose\n"))
    assert json.loads(answered.stdout.splitlines()[-1])["text"] == "profit rose"
