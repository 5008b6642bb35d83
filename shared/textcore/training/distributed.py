"""Data-parallel training across processes started by `torchrun`, with plain `torch.distributed`.

Every process (rank) reads the same data and holds a full copy of the model; the training loop deals each
step's batches out among the ranks (see `textcore.training.loop`). After the backward passes the gradients
are averaged over the ranks, so every rank takes the same optimizer step and the copies stay identical. One
step of W ranks therefore equals one step of a single process that accumulates gradients over W times as
many batches. The gradients are averaged by hand (one all-reduce of the flattened gradients) rather than
through `DistributedDataParallel`, so that a task keeps calling its own `model`.

Backends: NCCL when the model runs on CUDA (each rank on `cuda:LOCAL_RANK`), gloo on the CPU. Outside
`torchrun` every helper here is a no-op for a single process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    """True when the environment names this process's place in a group, as `torchrun` does."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def is_distributed() -> bool:
    """True while a process group is set up."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """The number of processes training together (1 outside `torchrun`)."""
    if is_distributed():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1")) if launched_by_torchrun() else 1


def rank() -> int:
    """This process's index among them (0 outside `torchrun`)."""
    if is_distributed():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0


def is_main_process() -> bool:
    """True for the one process that writes logs, checkpoints and the model folder."""
    return rank() == 0


def backend() -> str | None:
    """The backend of the process group (`nccl` or `gloo`); None in a single process."""
    return str(dist.get_backend()) if is_distributed() else None


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Set up the process group of a `torchrun` launch for the duration of a run.

    Does nothing outside `torchrun` or when the caller has set up a group already; a group set up here is
    destroyed on the way out.

    Args:
        device: where this rank's model runs; CUDA selects NCCL (and makes `device` the current CUDA device),
            the CPU gloo.
    """
    if is_distributed() or not launched_by_torchrun():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield
        barrier()  # all ranks have finished before the group goes away (not on an error: it would hang)
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here; a no-op in a single process."""
    if is_distributed():
        dist.barrier()


def broadcast_object(value: T) -> T:
    """The main process's `value` (any picklable object) on every rank; `value` itself in one process."""
    if not is_distributed():
        return value
    box: list[object] = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def broadcast_parameters(model: nn.Module) -> None:
    """Copy the main process's weights and buffers into every rank's `model`, as `DistributedDataParallel`
    does at construction, so that all ranks start from the same point."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_contiguous():
                dist.broadcast(tensor, src=0)
            else:  # collectives need contiguous memory
                copy = tensor.contiguous()
                dist.broadcast(copy, src=0)
                tensor.copy_(copy)


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """The element-wise sum of `values` over all ranks; `values` themselves in a single process."""
    if not is_distributed():
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return [float(x) for x in tensor.cpu()]


def average_gradients(model: nn.Module) -> None:
    """Replace the gradients of `model` by their mean over all ranks; a no-op in a single process.

    Call it after the backward passes of a step and before clipping. A trainable parameter that got no
    gradient on some rank (unused by its batches) counts as zero there, as it would in gradient accumulation;
    one unused on every rank keeps no gradient, so the optimizer skips it as it would in a single process.
    """
    if not is_distributed():
        return
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=params[0].device)
    dist.all_reduce(present)
    for param, count in zip(params, present.tolist(), strict=True):
        if count and param.grad is None:
            param.grad = torch.zeros_like(param)
    grads = [p.grad for p in params if p.grad is not None]
    by_kind: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for grad in grads:
        by_kind.setdefault((grad.dtype, grad.device), []).append(grad)
    scale = 1.0 / dist.get_world_size()
    for group in by_kind.values():
        flat = torch.cat([g.reshape(-1) for g in group])  # one collective instead of one per tensor
        dist.all_reduce(flat)
        flat.mul_(scale)
        offset = 0
        for grad in group:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()
