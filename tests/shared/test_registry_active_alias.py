"""textcore.registry: an ``active`` alias that cannot be read (a folder, no JSON, no version, a name that is
a file) serves nothing new, and the ModelNotReady message and the log say which path and what is wrong."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from tests.shared.test_registry import make_model, tag_loader
from textcore.errors import InvalidInput, ModelNotReady, NotFound
from textcore.registry import ActiveModelWatcher, ModelRegistry


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def break_alias(alias: Path, how: str) -> str:
    """Makes the alias unusable; returns what the message should say of it."""
    if alias.exists():
        alias.unlink()
    if how == "folder":
        alias.mkdir()
        return f"{alias}: expected a file; found a folder"
    alias.write_text('{"promoted_at": "2024-01-01T00:00:00Z"}' if how == "no version" else "{", "utf-8")
    return f"{alias}: expected a JSON object with an integer version; found "


@pytest.mark.parametrize("how", ["folder", "no json", "no version"])
def test_an_unusable_active_alias_is_not_ready_naming_the_path_and_the_problem(
    registry: ModelRegistry, tmp_path: Path, how: str
) -> None:
    registry.register("clf", make_model(tmp_path, "a"))
    said = break_alias(registry.root / "clf" / "active", how)
    watcher: ActiveModelWatcher[str] = ActiveModelWatcher(registry, "clf", tag_loader)
    for ask in (watcher.current, watcher.latest):
        with pytest.raises(ModelNotReady) as raised:
            ask()
        assert f"no active version of 'clf': {said}" in raised.value.message
    with pytest.raises(NotFound) as missing:
        registry.active("clf")
    assert said in missing.value.message
    # what to do about it: repair the alias (a promote would be refused while it is broken), not "promote one"
    assert missing.value.message.endswith("repair or remove the alias"), missing.value.message


def test_a_name_that_is_a_file_is_not_ready_naming_it(registry: ModelRegistry) -> None:
    (registry.root / "clf").write_text("not a folder", encoding="utf-8")
    watcher: ActiveModelWatcher[str] = ActiveModelWatcher(registry, "clf", tag_loader)
    with pytest.raises(ModelNotReady) as raised:
        watcher.current()
    alias = registry.root / "clf" / "active"
    assert f"no active version of 'clf': {alias}: could not be read: Not a directory" in raised.value.message


def test_a_loaded_version_keeps_serving_when_the_alias_breaks_and_the_log_says_why(
    registry: ModelRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry.register("clf", make_model(tmp_path, "a"), promote=True)
    watcher: ActiveModelWatcher[str] = ActiveModelWatcher(registry, "clf", tag_loader)
    assert watcher.latest() == "a@1"
    alias = registry.root / "clf" / "active"
    said = break_alias(alias, "folder")
    with caplog.at_level(logging.WARNING, logger="textcore.registry"):
        assert [watcher.latest(), watcher.latest()] == ["a@1", "a@1"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and said in warnings[0] and "still serving version 1" in warnings[0]

    shutil.rmtree(alias)
    registry.register("clf", make_model(tmp_path, "b"), promote=True)  # a new alias is taken in at once
    assert watcher.latest() == "b@2"


@pytest.mark.parametrize("how", ["folder", "no json", "no version", "link loop", "unreadable"])
def test_promote_and_delete_refuse_while_the_alias_names_no_version(
    registry: ModelRegistry, tmp_path: Path, how: str
) -> None:
    # the alias may still mean a version (a torn or hand-edited file, one we may not read): neither guess that
    # nothing is active (and delete the version it meant) nor write over it; name the path and what is wrong
    if how == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads a file of mode 0000")
    registry.register("clf", make_model(tmp_path, "a"), promote=True)
    registry.register("clf", make_model(tmp_path, "b"))
    alias = registry.root / "clf" / "active"
    if how == "link loop":
        alias.unlink()
        alias.symlink_to(alias)
        said = f"{alias}: could not be read: Too many levels of symbolic links"
    elif how == "unreadable":
        alias.chmod(0)
        said = f"{alias}: could not be read: Permission denied"
    else:
        said = break_alias(alias, how)
    history = registry.history("clf")
    where = f"in the registry {registry.root}: {said}"
    try:
        for version in (1, 2):
            with pytest.raises(InvalidInput) as refused:
                registry.delete("clf", version)
            assert refused.value.message.startswith(f"could not delete version {version} of clf {where}")
        with pytest.raises(InvalidInput) as refused:
            registry.promote("clf", 2)
        assert refused.value.message.startswith(f"could not promote version 2 of clf {where}")
        with pytest.raises(InvalidInput) as refused:
            registry.register("clf", make_model(tmp_path, "c"), promote=True)
        assert refused.value.message.startswith(f"could not register and promote a version of clf {where}")
    finally:
        if how == "unreadable":
            alias.chmod(0o644)
    assert [v.version for v in registry.versions("clf")] == [1, 2]
    assert alias.is_symlink() if how == "link loop" else alias.is_dir() == (how == "folder")
    assert registry.history("clf") == history
