"""Resumable checkpoints: model weights (safetensors) plus optimizer, RNG (CPU and GPU) and loop state (and
the weight average of a run that keeps one, and the rank allocator's state of an AdaLoRA run).

A checkpoint is written to a temp folder and renamed in place of the previous one (moved aside first, and
read from there if a crash comes between the two renames), so an interrupted write never leaves a broken
checkpoint behind, nor none. It also records what the run was made from (`run_identity`: a digest of the
data, the labels, the settings), and a resume from a checkpoint of another run is refused before any weight is
loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from textcore.adapters import allocator_state, load_allocator_state
from textcore.errors import InvalidInput

if TYPE_CHECKING:
    from textcore.training.config import TrainConfig
    from textcore.training.loop import LoopState

CHECKPOINT_DIR = "checkpoint"
OLD_CHECKPOINT_DIR = f".{CHECKPOINT_DIR}.old"  # the previous checkpoint while a new one is renamed in
AVERAGE_FILE = "average.safetensors"
ALLOCATOR_FILES = ("allocator.safetensors", "allocator.json")  # AdaLoRA's importance estimates, rank pattern
IDENTITY_FILE = "run.json"  # what the run was made from: data digest, labels, settings
# settings a resumed run may change: where and how fast it runs, not what it learns
RESUMABLE_ANYWHERE = ("device", "precision", "tensorboard")


def run_identity(config: TrainConfig, labels: list[str], *data: object) -> dict[str, Any]:
    """What a run is made from, as a checkpoint records it: the SHA-256 of its rows (`data`: the training and
    validation sets, dataclasses or lists), its labels and its settings (but `RESUMABLE_ANYWHERE`)."""
    rows = [dataclasses.asdict(part) if dataclasses.is_dataclass(part) else part for part in data]  # type: ignore[arg-type]
    digest = hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode("utf-8")).hexdigest()
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in RESUMABLE_ANYWHERE}
    identity = {"data_sha256": digest, "labels": list(labels), "config": settings}
    return dict(json.loads(json.dumps(identity)))  # as read back from JSON (tuples become lists)


@dataclasses.dataclass(frozen=True)
class Restored:
    """What a checkpoint gives back: the loop state, the best weights so far and the weight average."""

    state: LoopState
    best_weights: dict[str, torch.Tensor]
    averaged: dict[str, torch.Tensor] | None


def save_checkpoint(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: LoopState,
    best_weights: dict[str, torch.Tensor],
    averaged: dict[str, torch.Tensor] | None = None,
    identity: dict[str, Any] | None = None,
) -> None:
    """Write the resumable state of a run (latest and best weights, the average, and `identity`, what the
    run is made from) to `run_dir/checkpoint`."""
    final = run_dir / CHECKPOINT_DIR
    tmp = run_dir / f".{CHECKPOINT_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # copies: safetensors refuses tensors that share memory, as tied weights do (MLM decoder, embeddings)
    weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / "model.safetensors"))
    save_file({k: v.cpu().contiguous() for k, v in best_weights.items()}, str(tmp / "best.safetensors"))
    if averaged is not None:
        save_file(averaged, str(tmp / AVERAGE_FILE))
    allocator = allocator_state(model)
    if allocator is not None:
        save_file(allocator[0], str(tmp / ALLOCATOR_FILES[0]))
        (tmp / ALLOCATOR_FILES[1]).write_text(json.dumps(allocator[1]), encoding="utf-8")
    torch.save({"optimizer": optimizer.state_dict(), **_rng_states(model)}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(dataclasses.asdict(state)), encoding="utf-8")
    if identity is not None:
        (tmp / IDENTITY_FILE).write_text(json.dumps(identity), encoding="utf-8")
    # the previous checkpoint is moved aside, not deleted, until the new one is in place: a crash between the
    # two renames leaves it whole under its `.old` name, and `load_checkpoint` reads it from there
    old = run_dir / OLD_CHECKPOINT_DIR
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    identity: dict[str, Any] | None = None,
) -> Restored | None:
    """Restore a run from `run_dir/checkpoint` into `model` and `optimizer`; None when there is none.

    With `identity` (`run_identity` of the run resuming), a checkpoint that recorded another one raises
    InvalidInput before anything is loaded; one that recorded none (written before identities were kept, or
    by a caller that gave none) is trusted.
    """
    from textcore.training.loop import LoopState  # noqa: PLC0415 - loop imports this module

    folder = run_dir / CHECKPOINT_DIR
    if not (folder / "state.json").is_file():
        folder = run_dir / OLD_CHECKPOINT_DIR  # a save stopped between its renames: the previous checkpoint
        if not (folder / "state.json").is_file():
            return None
    _require_same_run(folder, identity)
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    # on the CPU first: the optimizer moves its state to its parameters, so a GPU run can resume anywhere
    extra = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(extra["optimizer"])
    _restore_rng_states(model, extra)
    state = LoopState(**json.loads((folder / "state.json").read_text(encoding="utf-8")))
    tensors, extras = (folder / name for name in ALLOCATOR_FILES)
    if tensors.is_file():
        load_allocator_state(model, load_file(str(tensors)), json.loads(extras.read_text(encoding="utf-8")))
    average = folder / AVERAGE_FILE
    averaged = load_file(str(average)) if average.is_file() else None
    return Restored(state, load_file(str(folder / "best.safetensors")), averaged)


def _require_same_run(folder: Path, identity: dict[str, Any] | None) -> None:
    """Refuse to resume from a checkpoint made from other data, labels or settings than `identity`."""
    saved_file = folder / IDENTITY_FILE
    if identity is None or not saved_file.is_file():
        return
    saved = json.loads(saved_file.read_text(encoding="utf-8"))
    made, found = _differences(saved, identity)
    if made:
        raise InvalidInput(
            f"the checkpoint in {folder} was made with {'; '.join(made)}; found {'; '.join(found)}: resume "
            "with the same data and settings, or train into a new --output"
        )


def _differences(saved: dict[str, Any], given: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The entries of two identities that differ, as `name value` phrases of the saved and the given one."""
    made, found = [], []
    for key, name in (("data_sha256", "training data sha256"), ("labels", "labels")):
        if saved.get(key) != given.get(key):
            made.append(f"{name} {saved.get(key)!r}")
            found.append(f"{name} {given.get(key)!r}")
    old, new = saved.get("config", {}), given.get("config", {})
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            made.append(f"{key} {old.get(key)!r}")
            found.append(f"{key} {new.get(key)!r}")
    return made, found


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _rng_states(model: nn.Module) -> dict[str, torch.Tensor]:
    """The generators that draw the run's randomness: the CPU's, and the model's GPU's (dropout on CUDA)."""
    states = {"rng": torch.get_rng_state()}
    device = _model_device(model)
    if device.type == "cuda":
        states["cuda_rng"] = torch.cuda.get_rng_state(device)
    return states


def _restore_rng_states(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """Put the generators back as `_rng_states` found them (a GPU's state only when resuming on a GPU)."""
    torch.set_rng_state(saved["rng"])
    device = _model_device(model)
    if device.type == "cuda" and "cuda_rng" in saved:
        torch.cuda.set_rng_state(saved["cuda_rng"], device)


def remove_checkpoint(run_dir: Path) -> None:
    """Delete the resumable state once a run has finished."""
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
    shutil.rmtree(run_dir / OLD_CHECKPOINT_DIR, ignore_errors=True)
