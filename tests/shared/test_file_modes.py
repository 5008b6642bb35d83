"""Files written atomically (a temp file renamed into place) get a plain file's mode, not mkstemp's 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from textcore.artifacts import write_json_atomic
from textcore.index import VectorIndex


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def small_index() -> VectorIndex:
    index = VectorIndex(4)
    index.add(["a", "b"], np.eye(4, dtype=np.float32)[:2])
    return index


@pytest.mark.usefixtures("umask_022")
def test_index_save_writes_a_file_other_users_can_read(tmp_path: Path) -> None:
    path = tmp_path / "kb.npz"
    small_index().save(path)
    assert mode(path) == 0o644
    assert VectorIndex.load(path).ids() == ["a", "b"]


@pytest.mark.usefixtures("umask_022")
def test_index_save_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path) -> None:
    path = tmp_path / "kb.npz"
    small_index().save(path)
    path.chmod(0o640)
    small_index().save(path)
    assert mode(path) == 0o640


@pytest.mark.usefixtures("umask_022")
def test_artifacts_write_json_atomic_writes_a_file_other_users_can_read(tmp_path: Path) -> None:
    path = tmp_path / "model" / "metadata.json"
    write_json_atomic(path, {"task": "classification"})
    assert mode(path) == 0o644
    path.chmod(0o600)
    write_json_atomic(path, {"task": "embedding"})
    assert mode(path) == 0o600  # a mode chosen for the file is kept
