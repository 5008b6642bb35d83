"""A running consumer swaps to a newly promoted classifier without a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shared.test_training import keyword_data, tiny_config
from textcore.classifier import Classifier
from textcore.data import LabelledTexts
from textcore.errors import ModelNotReady
from textcore.registry import ActiveModelWatcher, ModelRegistry, ModelVersion
from textcore.training import train_classifier


def load(version: ModelVersion) -> Classifier:
    return Classifier.load(version.path)


def test_promoting_a_new_version_reaches_a_running_watcher(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = keyword_data(40)
    renamed = LabelledTexts(data.texts, [{"positive": "up", "negative": "down"}[y] for y in data.labels])
    config = tiny_config(tiny_model_dir, epochs=1)
    first = train_classifier(data, config, tmp_path / "first", progress=False)
    second = train_classifier(renamed, config, tmp_path / "second", progress=False)

    registry = ModelRegistry(tmp_path / "registry")
    watcher = ActiveModelWatcher(registry, "sentiment", load)
    registry.register("sentiment", first.output)
    with pytest.raises(ModelNotReady):
        watcher.current()  # registered but not promoted: nothing to serve yet

    registry.promote("sentiment", 1)
    assert watcher.current().labels == ["negative", "positive"]
    assert watcher.refresh() is False  # nothing changed

    registry.register("sentiment", second.output, promote=True)
    assert watcher.refresh() is True
    assert watcher.version == 2
    assert watcher.current().labels == ["down", "up"]
    assert watcher.current().predict(["profit rose"])[0].label in {"down", "up"}
    assert registry.active("sentiment").metadata["task"] == "classification"
