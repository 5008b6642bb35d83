"""textcore.registry: an ``active`` alias that cannot be read (a folder, no JSON, no version, a name that is
a file) serves nothing new, and the ModelNotReady message and the log say which path and what is wrong."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from tests.shared.test_registry import make_model, tag_loader
from textcore.errors import ModelNotReady, NotFound
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
