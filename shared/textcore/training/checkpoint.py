"""Resumable checkpoints: model weights (safetensors) plus optimizer, RNG and loop state.

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

if TYPE_CHECKING:
    from textcore.training.loop import LoopState

CHECKPOINT_DIR = "checkpoint"


def save_checkpoint(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: LoopState,
    best_weights: dict[str, torch.Tensor],
) -> None:
    """Write the resumable state of a run (latest and best weights) to `run_dir/checkpoint`."""
    final = run_dir / CHECKPOINT_DIR
    tmp = run_dir / f".{CHECKPOINT_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # copies: safetensors refuses tensors that share memory, as tied weights do (MLM decoder, embeddings)
    weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / "model.safetensors"))
    save_file({k: v.cpu().contiguous() for k, v in best_weights.items()}, str(tmp / "best.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "rng": torch.get_rng_state()}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(dataclasses.asdict(state)), encoding="utf-8")
    old = run_dir / f".{CHECKPOINT_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(
    run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[LoopState, dict[str, torch.Tensor]] | None:
    """Restore a run from `run_dir/checkpoint`: its state and best weights; None when there is none."""
    from textcore.training.loop import LoopState  # noqa: PLC0415 - loop imports this module

    folder = run_dir / CHECKPOINT_DIR
    if not (folder / "state.json").is_file():
        return None
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    extra = torch.load(folder / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(extra["optimizer"])
    torch.set_rng_state(extra["rng"])
    state = LoopState(**json.loads((folder / "state.json").read_text(encoding="utf-8")))
    return state, load_file(str(folder / "best.safetensors"))


def remove_checkpoint(run_dir: Path) -> None:
    """Delete the resumable state once a run has finished."""
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
