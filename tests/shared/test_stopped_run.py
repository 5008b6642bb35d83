"""A training run replacing an earlier model in --output, stopped (Ctrl-C, SIGTERM) after its first
checkpoint: the earlier model is back in --output, the partial run kept beside it as `.NAME.interrupted`;
`--resume` continues that run (setting the earlier model aside again until it succeeds), a run without it
discards it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.shared.test_checkpoint import LONG_RUN, ROWS, training_steps
from tests.shared.test_cli import TEXTCORE, _train_args, invoke_cli, ok, snapshot, write_csv
from tests.shared.test_killed_run import asides

# Starts a command with Ctrl-C at its default, as in a terminal: a shell's background job (a CI runner's,
# `cmd &`) ignores SIGINT, which its children inherit, and Python then never turns it into KeyboardInterrupt.
CTRL_C_AS_IN_A_TERMINAL = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]


# How a run each stop ends, as its parent sees it: Ctrl-C with exit code 130; SIGTERM by the signal itself
# (-15 here, exit code 143 to a shell or Kubernetes, a clean stop to systemd), as it ended an unstopped run
ENDS = {signal.SIGINT: 130, signal.SIGTERM: -signal.SIGTERM}


def stopped_run(data: Path, model: Path, output: Path, stop: signal.Signals) -> str:
    """Start `textcore train` on `data` into `output`, send it `stop` once it has written its first
    checkpoint, and return its stderr once it has ended as that stop ends a run."""
    args = [*_train_args(data, model, output), *LONG_RUN]
    state = output / "training" / "checkpoint" / "state.json"
    process = subprocess.Popen(
        [*CTRL_C_AS_IN_A_TERMINAL, str(TEXTCORE), *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline and not state.is_file():
            time.sleep(0.01)
        assert state.is_file(), "expected the run to write a checkpoint before it was stopped"
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == ENDS[stop], stderr
    assert "Traceback" not in stderr, stderr
    return stderr


def stopped_over_a_model(
    tmp_path: Path, model: Path, stop: signal.Signals
) -> tuple[Path, Path, dict[str, str], str]:
    """A model trained into `out`, then a second run into `out` stopped mid-training: the folder, the
    data, the first model's files and the stopped run's stderr."""
    data = write_csv(tmp_path / "a.csv", ROWS * 4)
    output = tmp_path / "out"
    ok(invoke_cli(*_train_args(data, model, output)))
    before = snapshot(output)
    stderr = stopped_run(data, model, output, stop)
    return output, data, before, stderr


def test_a_stopped_run_keeps_its_partial_run_for_resume(tmp_path: Path, tiny_model_dir: Path) -> None:
    # The earlier model came back and the partial run, its checkpoint with it, was deleted: --resume could
    # not continue a long run that was replacing a model.
    output, data, before, stderr = stopped_over_a_model(tmp_path, tiny_model_dir, signal.SIGINT)
    kept = output.with_name(".out.interrupted")
    assert f"the partial run kept as {kept.name}; the same command with --resume continues it" in stderr
    assert snapshot(output) == before
    assert (kept / "training" / "checkpoint" / "state.json").is_file()
    assert asides(output) == []

    resumed = ok(invoke_cli(*_train_args(data, tiny_model_dir, output), *LONG_RUN, "--resume"))
    assert f"continuing the partial run kept as {kept.name} in {output}" in resumed.stderr
    assert (output / "metadata.json").is_file() and snapshot(output) != before
    steps = training_steps(output)
    assert steps == list(range(1, len(steps) + 1)), steps
    assert not kept.exists() and asides(output) == []


def test_a_run_without_resume_discards_the_partial_run_of_a_stopped_one(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # SIGTERM (`kill`, a service manager) ended the run at once, its partial run left in --output in place
    # of the earlier model until the next run into it; then it ended with Ctrl-C's exit code (130), not by
    # SIGTERM (143).
    output, data, before, _ = stopped_over_a_model(tmp_path, tiny_model_dir, signal.SIGTERM)
    kept = output.with_name(".out.interrupted")
    assert snapshot(output) == before and kept.is_dir()

    again = ok(invoke_cli(*_train_args(data, tiny_model_dir, output)))
    assert f"discarded {kept.name}, the partial run a stopped run kept" in again.stderr
    assert not kept.exists() and asides(output) == []
    assert (output / "metadata.json").is_file()


def test_patience_sets_how_long_a_run_waits_for_a_better_score(tmp_path: Path, tiny_model_dir: Path) -> None:
    # The tiny model's validation score never improves: the default patience (4) stops it early
    data = write_csv(tmp_path / "a.csv", ROWS * 4)
    for patience, steps in (("100", 12), ("2", 3)):
        output = tmp_path / f"p{patience}"
        ok(invoke_cli(*_train_args(data, tiny_model_dir, output), "--epochs", "12", "--patience", patience))
        metadata = json.loads((output / "metadata.json").read_text(encoding="utf-8"))
        assert metadata["hyperparameters"]["patience"] == int(patience)
        assert training_steps(output)[-1] == steps
    refused = invoke_cli(*_train_args(data, tiny_model_dir, tmp_path / "p0"), "--patience", "0")
    assert refused.returncode == 2 and refused.stderr.splitlines() == [
        "error: patience: expected an integer >= 1; found 0"
    ]
