"""Two training runs into one --output folder: the second is refused at once, in one line naming the folder
and the process of the run already training into it, and touches nothing of that run's; a run killed hard
(SIGKILL) leaves no lock behind that blocks the next one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.shared.test_checkpoint import LONG_RUN, ROWS
from tests.shared.test_cli import TEXTCORE, _train_args, assert_clean_failure, invoke_cli, ok, write_csv


def start_run(data: Path, model: Path, output: Path) -> subprocess.Popen[str]:
    """`textcore train` into `output` in a child process, long enough to be running while it is checked."""
    args = [*_train_args(data, model, output), *LONG_RUN]
    return subprocess.Popen(
        [str(TEXTCORE), *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def stop(process: subprocess.Popen[str]) -> None:
    """SIGKILL, as the OOM killer ends a run."""
    process.kill()
    process.wait()
    if process.stderr is not None:
        process.stderr.close()


def wait_for_checkpoint(process: subprocess.Popen[str], output: Path) -> None:
    state = output / "training" / "checkpoint" / "state.json"
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline and not state.is_file():
        time.sleep(0.01)
    assert process.poll() is None and state.is_file(), "expected the first run to be training"


def test_a_second_run_into_a_folder_a_run_trains_into_is_refused(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # Into a new folder both ran: the second set the first one's partial run aside as "the earlier model"
    # and trained into the folder the first was writing. Nested: the run makes the folders above it.
    data = write_csv(tmp_path / "a.csv", ROWS * 4)
    output = tmp_path / "runs" / "nightly" / "out"
    first = start_run(data, tiny_model_dir, output)
    try:
        wait_for_checkpoint(first, output)
        for more in ((), ("--resume",)):
            second = invoke_cli(*_train_args(data, tiny_model_dir, output), *LONG_RUN, *more)
            assert_clean_failure(
                second, f"--output {output}: another run (process {first.pid}) is training into it"
            )
        assert first.poll() is None, "expected the first run to go on"
        assert sorted(p.name for p in output.parent.iterdir()) == [".out.lock", "out"]
    finally:
        stop(first)  # hard: the lock goes with the process, its file stays
    assert (output.parent / ".out.lock").is_file()
    ok(invoke_cli(*_train_args(data, tiny_model_dir, output)))
    assert (output / "metadata.json").is_file()
    assert sorted(p.name for p in output.parent.iterdir()) == ["out"]


def test_of_two_runs_started_together_into_an_empty_folder_one_trains(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    data = write_csv(tmp_path / "a.csv", ROWS * 4)
    output = tmp_path / "out"
    output.mkdir()
    runs = [start_run(data, tiny_model_dir, output) for _ in range(2)]
    try:
        deadline = time.monotonic() + 120
        while all(run.poll() is None for run in runs) and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = [run for run in runs if run.poll() is not None]
        assert len(refused) == 1, "expected one of the two runs to be refused while the other trains"
        (loser,) = refused
        (winner,) = [run for run in runs if run is not loser]
        _, stderr = loser.communicate()
        assert loser.returncode == 2, stderr
        assert stderr.splitlines() == [
            f"error: --output {output}: another run (process {winner.pid}) is training into it; wait for it "
            "to end or choose another folder"
        ]
        wait_for_checkpoint(winner, output)  # the refused run left the folder to it
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [".out.lock"]
    finally:
        for run in runs:
            stop(run)


@contextmanager
def not_writable(folder: Path) -> Iterator[None]:
    """`folder` as a run finds a mounted volume's parent: nothing can be made in it (root writes through a
    mode of 0555: an immutable folder then, where the file system has the attribute)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    made = chattr and subprocess.run([chattr, "+i", str(folder)], check=False, capture_output=True)
    if not chattr or not made or made.returncode != 0:
        pytest.skip("root writes to any folder here: chattr +i is not available")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


def test_a_run_that_may_not_write_beside_its_folder_locks_the_folder_itself(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # As a mounted volume given as --output: no lock file can be made beside it, and both ran.
    data = write_csv(tmp_path / "a.csv", ROWS * 4)
    output = tmp_path / "volume" / "out"
    output.mkdir(parents=True)
    with not_writable(output.parent):
        first = start_run(data, tiny_model_dir, output)
        try:
            wait_for_checkpoint(first, output)
            second = invoke_cli(*_train_args(data, tiny_model_dir, output))
            assert_clean_failure(second, f"--output {output}: another run is training into it; wait for it")
            assert first.poll() is None, "expected the first run to go on"
        finally:
            stop(first)
