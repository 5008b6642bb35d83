"""textcore.registry after a crash: a copy a killed register left in its hidden staging folder is removed by a
later writer once it is an hour old, and never while a register may still be writing into it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.shared.test_registry import make_model
from textcore import registry_files
from textcore.registry import ModelRegistry


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def left_behind(root: Path, name: str, age_s: float) -> Path:
    """A staging folder as a register killed mid-copy leaves it: part of a model, last written `age_s` ago."""
    folder = root / name
    (folder / "tokenizer").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"half a copy")
    moment = time.time() - age_s
    for path in (folder / "tokenizer", folder):
        os.utime(path, (moment, moment))
    return folder


def staged(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".incoming-"))


def test_a_writer_removes_staging_folders_an_hour_old_and_keeps_fresh_ones(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    left_behind(registry.root, ".incoming-killed", age_s=2 * 3600)
    left_behind(registry.root, ".incoming-old", age_s=3600 + 60)  # an hour is old
    fresh = left_behind(registry.root, ".incoming-copying", age_s=60)
    registry.register("clf", make_model(tmp_path, "a"))
    assert staged(registry.root) == [".incoming-copying"]
    assert (fresh / "model.safetensors").read_bytes() == b"half a copy"
    assert registry.names() == ["clf"] and [v.version for v in registry.versions("clf")] == [1]

    left_behind(registry.root, ".incoming-killed-again", age_s=2 * 3600)
    registry.promote("clf", 1)  # any writer sweeps, not only a register
    assert staged(registry.root) == [".incoming-copying"]


def test_a_staging_folder_a_register_holds_is_kept_however_old(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    # a register copying a large model for over an hour: its folder's time says old, its lock says busy
    with registry_files.staging_folder(registry.root) as busy:
        (busy / "model.safetensors").write_bytes(b"still copying")
        moment = time.time() - 2 * 3600
        os.utime(busy, (moment, moment))
        registry.register("clf", make_model(tmp_path, "a"))
        assert (busy / "model.safetensors").read_bytes() == b"still copying"
    assert staged(registry.root) == [busy.name]  # the holder removes or renames it itself


def test_a_staging_name_that_is_not_a_folder_is_left_alone(registry: ModelRegistry, tmp_path: Path) -> None:
    stray = registry.root / ".incoming-file"
    stray.write_text("not ours", encoding="utf-8")
    link = registry.root / ".incoming-link"
    target = left_behind(tmp_path, "elsewhere", age_s=2 * 3600)
    link.symlink_to(target)
    moment = time.time() - 2 * 3600
    for path in (stray, link):
        os.utime(path, (moment, moment), follow_symlinks=False)
    registry.register("clf", make_model(tmp_path, "a"))
    assert stray.read_text(encoding="utf-8") == "not ours"
    assert (target / "model.safetensors").exists()


def crashed_promote_and_delete(model_dir: Path) -> tuple[Path, Path]:
    """What a promote killed before its rename and a delete killed before removing its trash leave behind."""
    alias_temp = model_dir / ".active-killed"
    alias_temp.write_text('{"version": 1', encoding="utf-8")
    trash = model_dir / ".deleting-killed"
    (trash / "v0002" / "tokenizer").mkdir(parents=True)
    (trash / "v0002" / "model.safetensors").write_bytes(b"a whole deleted version")
    return alias_temp, trash


@pytest.mark.parametrize("writer", ["register", "promote", "delete", "record"])
def test_the_next_writer_of_a_name_removes_what_a_crashed_promote_or_delete_left(
    registry: ModelRegistry, tmp_path: Path, writer: str
) -> None:
    registry.register("clf", make_model(tmp_path, "a"), promote=True)
    registry.register("clf", make_model(tmp_path, "b"))
    model_dir = registry.root / "clf"
    alias_temp, trash = crashed_promote_and_delete(model_dir)
    if writer == "register":
        registry.register("clf", make_model(tmp_path, "c"))
    elif writer == "promote":
        registry.promote("clf", 2)
    elif writer == "delete":
        registry.delete("clf", 2)
    else:
        registry.record("clf", {"event": "note"})
    assert not alias_temp.exists() and not trash.exists()
    assert sorted(p.name for p in model_dir.iterdir() if p.name.startswith(".")) == [".lock"]
    assert registry.active("clf").version in (1, 2)


def test_leftovers_of_another_name_and_links_are_left_alone(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.register("clf", make_model(tmp_path, "a"), promote=True)
    registry.register("other", make_model(tmp_path, "b"), promote=True)
    alias_temp, trash = crashed_promote_and_delete(registry.root / "other")
    target = tmp_path / "elsewhere"
    (target / "v0001").mkdir(parents=True)
    link = registry.root / "clf" / ".deleting-link"
    link.symlink_to(target)
    registry.promote("clf", 1)
    assert alias_temp.exists() and trash.exists()  # only the name being written is swept
    assert link.is_symlink() and (target / "v0001").is_dir()
