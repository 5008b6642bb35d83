"""Resumable checkpoints belong to one run: `--resume` refuses a checkpoint made from other data or labels."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.shared.test_cli import (
    TEXTCORE,
    _train_args,
    assert_clean_failure,
    invoke_cli,
    ok,
    snapshot,
    write_csv,
)
from textcore.training.tracking import drop_records_after, read_metrics

# Long enough that a stop lands mid-training however busy the machine: no early stop (the tiny model's
# validation score never improves: the default patience ends a run 4 evaluations after its first checkpoint)
LONG_RUN = ("--epochs", "20", "--patience", "1000")
ROWS = [("great service", "pos"), ("awful service", "neg"), ("lovely staff", "pos"), ("rude staff", "neg")]


def interrupted_run(data: Path, model: Path, output: Path, *, past_checkpoint: bool = False) -> Path:
    """Start `textcore train` on `data` and kill it once it has written its first checkpoint (with
    `past_checkpoint`, once it has also logged a step after its latest one), as a crash or Ctrl-C would;
    return the checkpoint folder."""
    args = [*_train_args(data, model, output), *LONG_RUN]
    state = output / "training" / "checkpoint" / "state.json"
    process = subprocess.Popen(
        [str(TEXTCORE), *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            if state.is_file() and (not past_checkpoint or logged_past_checkpoint(output)):
                break
            time.sleep(0.01)
    finally:
        process.kill()
        process.wait()
    assert state.is_file(), "expected the run to write a checkpoint before it was stopped"
    return state.parent


def training_steps(output: Path) -> list[int]:
    """The steps of the training records (not the evaluations) in the run's metrics.jsonl."""
    return [int(r["step"]) for r in read_metrics(output / "training" / "metrics.jsonl") if "loss" in r]


def logged_past_checkpoint(output: Path) -> bool:
    """Whether metrics.jsonl holds a training step after the checkpoint's step."""
    try:
        saved = json.loads((output / "training" / "checkpoint" / "state.json").read_text(encoding="utf-8"))
        return max(training_steps(output), default=0) > int(saved["step"])
    except (OSError, ValueError):  # a file being replaced, a line being written
        return False


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
    result = invoke_cli(*_train_args(other, tiny_model_dir, output), *LONG_RUN, "--resume")
    assert_clean_failure(result, f"the checkpoint in {output / 'training' / 'checkpoint'} was made with")
    assert "labels ['neg', 'pos']" in result.stderr
    assert "found" in result.stderr and "labels ['mixed', 'neg', 'pos']" in result.stderr
    assert not (output / "metadata.json").exists()


def test_resume_refuses_a_checkpoint_made_from_another_data_file(
    checkpointed: tuple[Path, Path], tmp_path: Path, tiny_model_dir: Path
) -> None:
    output, _ = checkpointed
    other = write_csv(tmp_path / "b.csv", [(f"{text} again", label) for text, label in ROWS] * 4)
    result = invoke_cli(*_train_args(other, tiny_model_dir, output), *LONG_RUN, "--resume")
    assert_clean_failure(result, "was made with training data sha256")
    assert not (output / "metadata.json").exists()
    assert (output / "training" / "checkpoint" / "state.json").is_file(), "the checkpoint must be kept"


def test_resume_refuses_a_checkpoint_made_with_other_settings(
    checkpointed: tuple[Path, Path], tiny_model_dir: Path
) -> None:
    output, data = checkpointed
    args = [*_train_args(data, tiny_model_dir, output), *LONG_RUN, "--resume", "--max-length", 64]
    result = invoke_cli(*args)
    assert_clean_failure(result, "was made with max_length 128; found max_length 64")


def test_resume_after_a_checkpoint_logs_each_step_once(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The steps a killed run logged after its last checkpoint are not kept twice in metrics.jsonl."""
    data = write_csv(tmp_path / "a.csv", ROWS * 12)
    output = tmp_path / "out"
    interrupted_run(data, tiny_model_dir, output, past_checkpoint=True)
    assert logged_past_checkpoint(output), "expected the killed run to have logged past its checkpoint"
    ok(invoke_cli(*_train_args(data, tiny_model_dir, output), *LONG_RUN, "--resume"))
    steps = training_steps(output)
    assert steps == list(range(1, len(steps) + 1)), steps
    evaluated = [r["step"] for r in read_metrics(output / "training" / "metrics.jsonl") if "loss" not in r]
    assert evaluated == sorted(set(evaluated)), evaluated


def test_resume_into_a_finished_model_is_refused_and_leaves_it_as_it_was(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # A finished run removes its checkpoint, so `--resume` there used to train again from the first step
    # and write over the model, saying nothing of it (exit 0).
    data = write_csv(tmp_path / "a.csv", ROWS * 4)
    output = tmp_path / "out"
    ok(invoke_cli(*_train_args(data, tiny_model_dir, output)))
    before = snapshot(output)
    result = invoke_cli(*_train_args(data, tiny_model_dir, output), "--resume")
    assert_clean_failure(
        result, f"--resume: {output} holds a finished model and no checkpoint to resume; drop --resume"
    )
    assert result.stdout == ""
    assert snapshot(output) == before
    # without --resume the same command trains again, replacing the model as before
    again = ok(invoke_cli(*_train_args(data, tiny_model_dir, output)))
    assert f"replacing the earlier model in {output}" in again.stderr


def test_records_past_the_checkpoint_and_a_line_cut_short_are_dropped(tmp_path: Path) -> None:
    # A crash can cut the last line of metrics.jsonl short: the resume drops it instead of failing on it.
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": step, "loss": 1.0 / step}) + "\n" for step in (1, 2, 3, 4)]
    path.write_text("".join(lines) + '{"step": 5, "lo', encoding="utf-8")
    drop_records_after(path, 3)
    assert [record["step"] for record in read_metrics(path)] == [1, 2, 3]
    drop_records_after(path, 3)  # nothing past the step: the file is left as it is
    assert path.read_text(encoding="utf-8") == "".join(lines[:3])
