"""A training run killed hard (SIGKILL, the OOM killer, a power cut) while it had set the earlier model in
its --output folder aside: the next run into that folder puts the earlier model back in place of the
partial run, or removes the aside once the folder holds a complete newer model; no hidden folder stays.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.shared.test_checkpoint import LONG_RUN, ROWS, interrupted_run
from tests.shared.test_cli import _train_args, assert_clean_failure, invoke_cli, ok, snapshot, write_csv


def asides(output: Path) -> list[str]:
    return sorted(p.name for p in output.parent.glob(f".{output.name}.earlier-*"))


def killed_over_a_model(tmp_path: Path, model: Path) -> tuple[Path, Path, dict[str, str]]:
    """A model trained into `out`, then a second run into `out` killed mid-training: the folder, the
    data and the first model's files."""
    data = write_csv(tmp_path / "a.csv", ROWS * 4)
    output = tmp_path / "out"
    ok(invoke_cli(*_train_args(data, model, output)))
    before = snapshot(output)
    interrupted_run(data, model, output)
    assert len(asides(output)) == 1, "expected the killed run to leave the earlier model set aside"
    assert not (output / "metadata.json").exists()
    return output, data, before


def test_a_run_after_a_killed_one_puts_the_earlier_model_back(tmp_path: Path, tiny_model_dir: Path) -> None:
    # The killed run left the earlier model in a hidden folder for ever and its partial run in --output;
    # the next run then set that partial run aside as "the earlier model", and put it back when it failed.
    output, data, before = killed_over_a_model(tmp_path, tiny_model_dir)
    unloadable = tmp_path / "unloadable"  # the run starts, then fails: it puts back what it set aside
    unloadable.mkdir()
    shutil.copy(tiny_model_dir / "config.json", unloadable / "config.json")
    failed = invoke_cli(*_train_args(data, unloadable, output))
    assert failed.returncode == 2, failed.stderr
    assert f"a run into {output} was killed before it finished: put back the earlier model" in failed.stderr
    assert snapshot(output) == before
    assert asides(output) == []


def test_a_resumed_run_removes_the_aside_once_it_has_finished(tmp_path: Path, tiny_model_dir: Path) -> None:
    output, data, _ = killed_over_a_model(tmp_path, tiny_model_dir)
    resumed = ok(invoke_cli(*_train_args(data, tiny_model_dir, output), *LONG_RUN, "--resume"))
    assert "holds a newer model than the one a killed run set aside" in resumed.stderr
    assert (output / "metadata.json").is_file()
    assert asides(output) == []


def test_a_stale_aside_beside_a_complete_model_is_removed(tmp_path: Path, tiny_model_dir: Path) -> None:
    # As a run killed while it removed the aside, after its model was complete, leaves it.
    data = write_csv(tmp_path / "a.csv", ROWS * 4)
    output = tmp_path / "out"
    ok(invoke_cli(*_train_args(data, tiny_model_dir, output)))
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = output.with_name(f".out.earlier-{gone.pid}")
    shutil.copytree(output, stale)
    again = ok(invoke_cli(*_train_args(data, tiny_model_dir, output)))
    assert f"removed {stale.name}: {output} holds a newer model" in again.stderr
    assert asides(output) == []


def test_a_run_into_a_folder_another_run_trains_into_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    # Both ran: the second set the first one's partial run aside as "the earlier model" and trained into
    # the folder the first was writing.
    data = write_csv(tmp_path / "a.csv", ROWS * 4)
    output = tmp_path / "out"
    ok(invoke_cli(*_train_args(data, tiny_model_dir, output)))
    before = snapshot(output)
    with subprocess.Popen(["sleep", "60"]) as running:  # stands for the run that set the earlier model aside
        try:
            aside = output.with_name(f".out.earlier-{running.pid}")
            shutil.copytree(output, aside)
            refused = invoke_cli(*_train_args(data, tiny_model_dir, output))
        finally:
            running.kill()
    assert_clean_failure(
        refused, f"--output {output}: another run (process {running.pid}) is training into it"
    )
    assert snapshot(output) == before and aside.is_dir()
