"""Resumable checkpoints belong to one run: `--resume` refuses a checkpoint made from other data or labels."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.shared.test_cli import TEXTCORE, _train_args, assert_clean_failure, invoke_cli, write_csv

ROWS = [("great service", "pos"), ("awful service", "neg"), ("lovely staff", "pos"), ("rude staff", "neg")]


def interrupted_run(data: Path, model: Path, output: Path) -> Path:
    """Start `textcore train` on `data` and kill it once it has written its first checkpoint, as a crash
    or Ctrl-C would; return the checkpoint folder."""
    args = [*_train_args(data, model, output), "--epochs", 200]
    state = output / "training" / "checkpoint" / "state.json"
    process = subprocess.Popen(
        [str(TEXTCORE), *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while not state.is_file() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait()
    assert state.is_file(), "expected the run to write a checkpoint before it was stopped"
    return state.parent


@pytest.fixture
def checkpointed(tmp_path: Path, tiny_model_dir: Path) -> tuple[Path, Path]:
    """A model folder holding the checkpoint of an interrupted run on `ROWS`, and that data file."""
    data = write_csv(tmp_path / "a.csv", ROWS * 4)
    interrupted_run(data, tiny_model_dir, tmp_path / "out")
    return tmp_path / "out", data


def test_resume_refuses_a_checkpoint_made_with_other_labels(
    checkpointed: tuple[Path, Path], tmp_path: Path, tiny_model_dir: Path
) -> None:
    output, _ = checkpointed
    other = write_csv(tmp_path / "b.csv", [*ROWS, ("fine service", "mixed"), ("so-so staff", "mixed")] * 4)
    result = invoke_cli(*_train_args(other, tiny_model_dir, output), "--epochs", 200, "--resume")
    assert_clean_failure(result, f"the checkpoint in {output / 'training' / 'checkpoint'} was made with")
    assert "labels ['neg', 'pos']" in result.stderr
    assert "found" in result.stderr and "labels ['mixed', 'neg', 'pos']" in result.stderr
    assert not (output / "metadata.json").exists()


def test_resume_refuses_a_checkpoint_made_from_another_data_file(
    checkpointed: tuple[Path, Path], tmp_path: Path, tiny_model_dir: Path
) -> None:
    output, _ = checkpointed
    other = write_csv(tmp_path / "b.csv", [(f"{text} again", label) for text, label in ROWS] * 4)
    result = invoke_cli(*_train_args(other, tiny_model_dir, output), "--epochs", 200, "--resume")
    assert_clean_failure(result, "was made with training data sha256")
    assert not (output / "metadata.json").exists()
    assert (output / "training" / "checkpoint" / "state.json").is_file(), "the checkpoint must be kept"


def test_resume_refuses_a_checkpoint_made_with_other_settings(
    checkpointed: tuple[Path, Path], tiny_model_dir: Path
) -> None:
    output, data = checkpointed
    args = [*_train_args(data, tiny_model_dir, output), "--epochs", 200, "--resume", "--max-length", 64]
    result = invoke_cli(*args)
    assert_clean_failure(result, "was made with max_length 128; found max_length 64")
