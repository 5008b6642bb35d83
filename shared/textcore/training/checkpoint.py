"""Resumable checkpoints: model weights (safetensors) plus optimizer, RNG (CPU and GPU) and loop state (and
the weight average of a run that keeps one, and the rank allocator's state of an AdaLoRA run).

A checkpoint is written to a temp folder and renamed over the previous one, so an interrupted write never
leaves a broken checkpoint behind.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from textcore.adapters import allocator_state, load_allocator_state

if TYPE_CHECKING:
    from textcore.training.loop import LoopState

CHECKPOINT_DIR = "checkpoint"
AVERAGE_FILE = "average.safetensors"
ALLOCATOR_FILES = ("allocator.safetensors", "allocator.json")  # AdaLoRA's importance estimates, rank pattern


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
) -> None:
    """Write the resumable state of a run (latest and best weights, the average) to `run_dir/checkpoint`."""
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
    old = run_dir / f".{CHECKPOINT_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> Restored | None:
    """Restore a run from `run_dir/checkpoint` into `model` and `optimizer`; None when there is none."""
    from textcore.training.loop import LoopState  # noqa: PLC0415 - loop imports this module

    folder = run_dir / CHECKPOINT_DIR
    if not (folder / "state.json").is_file():
        return None
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
