"""`textcore train --output` named as `.` or through a symbolic link, into an earlier model's folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.shared.test_checkpoint import ROWS
from tests.shared.test_cli import _train_args, invoke_cli, ok, write_csv
from textcore.artifacts import read_metadata


def test_a_run_into_the_current_folder_replaces_the_earlier_model(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `--output .` from inside an earlier model's folder was a traceback ("PosixPath('.') has an empty
    # name") when the run came to set the earlier model aside.
    data = write_csv(tmp_path / "a.csv", ROWS * 4)
    folder = tmp_path / "model"
    ok(invoke_cli(*_train_args(data, tiny_model_dir, folder)))
    first = read_metadata(folder)["created_at"]
    monkeypatch.chdir(folder)
    again = ok(invoke_cli(*_train_args(data, tiny_model_dir, Path())))  # Path() is "."
    assert "replacing the earlier model in ." in again.stderr
    monkeypatch.chdir(tmp_path)
    assert read_metadata(folder)["task"] == "classification"
    assert (folder / "head.safetensors").is_file()
    assert read_metadata(folder)["created_at"] >= first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_run_through_a_link_writes_where_the_link_points(tmp_path: Path, tiny_model_dir: Path) -> None:
    # The link itself was set aside and a new folder made in its place: the model left the disk the link
    # pointed to, and the link stayed behind as a hidden folder that could not be removed.
    data = write_csv(tmp_path / "a.csv", ROWS * 4)
    target = tmp_path / "disk" / "model"
    target.parent.mkdir()
    ok(invoke_cli(*_train_args(data, tiny_model_dir, target)))
    link = tmp_path / "model"
    link.symlink_to(target, target_is_directory=True)
    (target / "training" / "old-run-marker").write_text("the earlier run's")
    ok(invoke_cli(*_train_args(data, tiny_model_dir, link)))
    assert link.is_symlink()
    assert (target / "metadata.json").is_file() and not (target / "training" / "old-run-marker").exists()
    hidden = [p.name for folder in (tmp_path, target.parent) for p in folder.iterdir() if p.name[0] == "."]
    assert hidden == []
    shutil.rmtree(target.parent)
