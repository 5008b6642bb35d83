"""The training loop shared by every task.

Reads top to bottom in the order of one optimisation step: learning-rate schedule, evaluation (with early
stopping and best-checkpoint tracking), forward/backward with gradient accumulation, clipping, optimizer step,
logging. A task supplies the model, the batches of an epoch, the loss of a batch and an evaluation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from textcore.devices import autocast
from textcore.errors import InvalidInput
from textcore.training.adversarial import adversary_for
from textcore.training.averaging import WeightAverage
from textcore.training.checkpoint import load_checkpoint, save_checkpoint
from textcore.training.config import TrainConfig
from textcore.training.distributed import (
    all_reduce_sum,
    average_gradients,
    backend,
    broadcast_object,
    broadcast_parameters,
    is_main_process,
    process_group,
    rank,
    world_size,
)
from textcore.training.tracking import MetricsLog, RunLog, drop_records_after, tensorboard_folder

Batch = dict[str, torch.Tensor]

# Optimizer steps in a row with an inf or NaN gradient after which a run is called diverged. A lone one (an
# overflow on one odd batch) is skipped, as a loss scaler would; a run of them means the weights are ruined.
NONFINITE_LIMIT = 10


class Task(Protocol):
    """What the loop needs from a task (classification, embedding, ...)."""

    @property
    def model(self) -> nn.Module: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def bf16(self) -> bool: ...

    def epoch_batches(self, rng: np.random.Generator) -> list[Batch]: ...

    def loss(self, batch: Batch) -> torch.Tensor: ...

    def evaluate(self) -> dict[str, float]: ...

    def param_groups(self) -> list[dict[str, Any]]: ...


@dataclass
class LoopState:
    """Progress of a run; saved in checkpoints so that a run can resume."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float = -math.inf
    best_loss: float = math.inf  # validation loss at the best step: breaks ties of the metric
    best_step: int = 0
    bad_evals: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    skipped_steps: int = 0  # steps whose gradient was not finite: no update was made
    nonfinite_in_a_row: int = 0


@dataclass(frozen=True)
class LoopResult:
    """What a finished run reports."""

    best_metric: float
    best_step: int
    steps: int
    stopped_early: bool
    train_seconds: float
    samples_per_second: float
    best_eval: dict[str, float]
    world_size: int = 1  # processes that trained together (torchrun)
    distributed_backend: str | None = None  # nccl or gloo when world_size > 1 or under torchrun
    trainable_parameters: int = 0  # of the task's model, after the run (an adapter's: a small share)
    total_parameters: int = 0
    scheduled_steps: int = 0  # the length of the learning-rate schedule (epochs x steps per epoch)
    skipped_steps: int = 0  # steps left without an update because their gradient was inf or NaN


def linear_schedule(warmup: int, total: int) -> Callable[[int], float]:
    """Multiplier of the peak learning rate: linear warmup to 1, then linear decay to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def make_optimizer(
    groups: list[dict[str, Any]], config: TrainConfig, device: torch.device
) -> torch.optim.AdamW:
    """AdamW; the fused kernel on CUDA."""
    return torch.optim.AdamW(
        groups, lr=config.learning_rate, weight_decay=config.weight_decay, fused=device.type == "cuda"
    )


def _steps_forever(task: Task, config: TrainConfig, state: LoopState, per_step: int) -> Iterator[list[Batch]]:
    """The batches of each optimizer step from the (possibly resumed) position on; each epoch's order derives
    from (seed, epoch).

    A step takes `per_step` batches, or the ones left at the end of an epoch: a step never reaches into the
    next epoch, so every row is trained on once per epoch and a run of N epochs is N epochs of data (the
    schedule counts ceil(batches / per_step) steps per epoch).
    """
    while True:
        batches = task.epoch_batches(np.random.default_rng([config.seed, state.epoch]))
        while state.batch_in_epoch < len(batches):
            start = state.batch_in_epoch
            state.batch_in_epoch = min(start + per_step, len(batches))
            yield batches[start : state.batch_in_epoch]
        state.epoch += 1
        state.batch_in_epoch = 0


def _dealt(steps: Iterator[list[Batch]], rank: int, world_size: int) -> Iterator[tuple[list[Batch], float]]:
    """This rank's share of each step's batches (the `rank`-th of each `world_size` in a row), with what to
    divide each batch's loss by so that the gradient averaged over the ranks is the mean over all the
    step's batches (`grad_accum_steps` for a full step; fewer in the short step at the end of an epoch).

    Every rank draws the whole stream (so `LoopState` advances alike everywhere), and one step of all ranks
    covers the same batches as one step of a single process accumulating over `world_size` times as many.
    A rank left without a batch in a short step adds a zero gradient (`average_gradients`).
    """
    for step in steps:
        yield step[rank::world_size], len(step) / world_size


def train(
    task: Task,
    config: TrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_fraction: float | None = None,
    identity: dict[str, Any] | None = None,
) -> LoopResult:
    """Optimise `task.model` and leave it holding the best evaluated weights.

    Args:
        task: the task to train.
        config: hyperparameters.
        run_dir: where metrics.jsonl and the resumable checkpoint are written.
        resume: continue from the checkpoint in `run_dir` if there is one.
        progress: show a progress bar on stderr.
        stop_fraction: train a fixed share of the schedule instead (the same warmup and decay, cut after
            that share of its steps), with no evaluation until the end and the final weights kept; for
            refitting on all the data once an earlier run has chosen when to stop.
        identity: what the run is made from (`textcore.training.checkpoint.run_identity`), kept with its
            checkpoints; resuming from a checkpoint that recorded another one raises InvalidInput.

    Under `torchrun` the ranks train data-parallel (see `textcore.training.distributed`): a step of W ranks
    is a step of one process with W times the gradient accumulation, and only the main process writes
    metrics and checkpoints.
    """
    with process_group(task.device):
        return _train(
            task,
            config,
            run_dir,
            resume=resume,
            progress=progress,
            stop_fraction=stop_fraction,
            identity=identity,
        )


def _train(
    task: Task,
    config: TrainConfig,
    run_dir: Path,
    *,
    resume: bool,
    progress: bool,
    stop_fraction: float | None,
    identity: dict[str, Any] | None,
) -> LoopResult:
    model = task.model
    world, main = world_size(), is_main_process()
    batches_per_step = config.grad_accum_steps * world
    steps_per_epoch = math.ceil(len(task.epoch_batches(np.random.default_rng(0))) / batches_per_step)
    total = steps_per_epoch * config.epochs
    eval_every = max(1, steps_per_epoch // config.evals_per_epoch)
    fixed, end = stop_fraction is not None, _last_step(total, stop_fraction)
    optimizer = make_optimizer(task.param_groups(), config, task.device)
    if hasattr(task, "after_step"):  # e.g. AdaLoRA's rank allocation: after each update, while grads exist
        optimizer.register_step_post_hook(lambda *_: task.after_step(state.step + 1))
    schedule = linear_schedule(int(config.warmup_ratio * total), total)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    state, best_weights, average = _start(model, optimizer, config, run_dir, resume, identity)
    if resume and main:  # the steps a crashed run logged after its checkpoint are about to be logged again
        drop_records_after(run_dir / "metrics.jsonl", state.step)
    samples, started = 0, time.perf_counter()
    steps = _dealt(_steps_forever(task, config, state, batches_per_step), rank(), world)
    model.train()
    with (
        RunLog(
            run_dir / "metrics.jsonl" if main else None,
            append=resume,
            tensorboard=tensorboard_folder(config.tensorboard, run_dir) if main else None,
            first_step=state.step,
        ) as log,
        tqdm(
            total=end, initial=state.step, disable=not (progress and main), desc="train", unit="step"
        ) as bar,
    ):
        while state.step < end and not state.stopped_early:  # a resumed run may have stopped
            # schedule
            for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = base * schedule(state.step)
            # forward/backward, clip, step
            loss, grad_norm, n = _optimisation_step(task, optimizer, steps, config)
            _count_nonfinite(state, grad_norm, loss)
            if average is not None:
                average.update()
            loss_sum, rows = all_reduce_sum([loss, n], task.device)  # over the ranks
            loss, n = loss_sum / world, int(rows)
            samples += n
            state.step += 1
            # log
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            lr = optimizer.param_groups[-1]["lr"]
            log.write(
                {"step": state.step, "epoch": state.epoch, "loss": loss, "grad_norm": grad_norm, "lr": lr}
            )
            # evaluate at the cadence and at the end (the weight average, when kept, stands in for the
            # weights), keep the best weights, stop early on a plateau; with a fixed share of the schedule:
            # checkpoint at the cadence (to resume), evaluate once at the end
            due, last = state.step % eval_every == 0, state.step == end
            evaluate = last if fixed else due or last
            if evaluate:
                with average.applied() if average is not None else nullcontext():
                    if _evaluate(task, config, state, log) or fixed:
                        best_weights, state.best_step = _cpu_copy(model), state.step
            state.stopped_early = not fixed and state.bad_evals >= config.patience
            if main and (due and not last if fixed else evaluate):
                averaged = average.state_dict() if average is not None else None
                save_checkpoint(run_dir, model, optimizer, state, best_weights, averaged, identity)
            if state.stopped_early:
                break
    elapsed = time.perf_counter() - started
    model.load_state_dict(best_weights)
    model.eval()  # the caller gets the best weights ready for inference (dropout off)
    best_eval = next((h for h in state.history if h["step"] == state.best_step), {})
    return LoopResult(
        best_metric=state.best_metric,
        best_step=state.best_step,
        steps=state.step,
        stopped_early=state.stopped_early,
        train_seconds=elapsed,
        samples_per_second=samples / max(elapsed, 1e-9),
        best_eval=best_eval,
        world_size=world,
        distributed_backend=backend(),
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total_parameters=sum(p.numel() for p in model.parameters()),
        scheduled_steps=total,
        skipped_steps=state.skipped_steps,
    )


def _start(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    run_dir: Path,
    resume: bool,
    identity: dict[str, Any] | None,
) -> tuple[LoopState, dict[str, torch.Tensor], WeightAverage | None]:
    """The loop state, best weights and weight average to start from: new, or a checkpoint's (of the run
    `identity` names).

    Every rank ends up with the main process's weights.
    """
    state, best_weights = LoopState(), _cpu_copy(model)
    restored = load_checkpoint(run_dir, model, optimizer, identity) if resume else None
    if restored is not None:
        state, best_weights = restored.state, restored.best_weights
    broadcast_parameters(model)
    average = WeightAverage(model, config.ema) if config.ema else None
    if average is not None and restored is not None and restored.averaged is not None:
        average.load_state_dict(restored.averaged)
    return state, best_weights, average


def _last_step(total: int, stop_fraction: float | None) -> int:
    """The step a run ends at: the schedule's end, or the first step past `stop_fraction` of it."""
    return total if stop_fraction is None else min(total, max(1, math.ceil(stop_fraction * total)))


def _optimisation_step(
    task: Task,
    optimizer: torch.optim.Optimizer,
    steps: Iterator[tuple[list[Batch], float]],
    config: TrainConfig,
) -> tuple[float, float, int]:
    """Accumulate gradients over this rank's batches of the next step, clip, step. Returns (loss, grad norm,
    rows).

    With `config.adversarial` set, each batch's adversarial loss (FGM/PGD on the word embeddings) is
    backpropagated after its clean loss, so their gradients add up; the loss reported stays the clean one.
    """
    adversary = adversary_for(task.model, config)
    loss_sum, rows = 0.0, 0
    batches, divisor = next(steps)
    for batch in batches:
        with adversary.recording() if adversary is not None else nullcontext():
            loss = _scaled_loss(task, batch, divisor)
        loss.backward()  # type: ignore[no-untyped-call]
        if adversary is not None:
            adversary.attack(partial(_scaled_loss, task, batch, divisor))
        loss_sum += float(loss.detach())
        rows += int(batch["input_ids"].shape[0])
    average_gradients(task.model)  # over the ranks of a distributed run, before clipping
    grad_norm = float(torch.nn.utils.clip_grad_norm_(task.model.parameters(), config.max_grad_norm))
    if math.isfinite(grad_norm):  # an inf or NaN gradient would ruin the weights and AdamW's moments
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum, grad_norm, rows


def _count_nonfinite(state: LoopState, grad_norm: float, loss: float) -> None:
    """Count a step left without an update for its non-finite gradient; stop a run that has diverged.

    Every rank sees the same (averaged) gradient norm, so all of them skip, or stop, together.
    """
    if math.isfinite(grad_norm):
        state.nonfinite_in_a_row = 0
        return
    state.skipped_steps += 1
    state.nonfinite_in_a_row += 1
    if state.nonfinite_in_a_row >= NONFINITE_LIMIT:
        raise InvalidInput(
            f"training diverged: expected finite gradients; found inf or NaN at {NONFINITE_LIMIT} steps in "
            f"a row, up to step {state.step + 1} (loss {loss}). Lower the learning rate, check the data "
            "(labels, row weights) or the starting weights, or train with --precision fp32"
        )


def _scaled_loss(task: Task, batch: Batch, divisor: float) -> torch.Tensor:
    """The batch's loss under the task's autocast, divided for gradient accumulation."""
    with autocast(task.device, task.bf16):
        return task.loss(batch) / divisor


def _cpu_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _evaluate(task: Task, config: TrainConfig, state: LoopState, log: MetricsLog) -> bool:
    """Run validation; return True when it is the best so far.

    In a distributed run the main process evaluates and shares its figures, so every rank decides alike.
    """
    task.model.eval()
    metrics = broadcast_object(task.evaluate() if is_main_process() else {})
    task.model.train()
    value = metrics[config.selection_metric]
    loss = metrics.get("loss", math.inf)
    # On small validation sets the metric ties often; a lower validation loss then counts as better.
    improved = value > state.best_metric or (value == state.best_metric and loss < state.best_loss)
    if improved:
        state.best_metric, state.best_loss, state.best_step, state.bad_evals = value, loss, state.step, 0
    else:
        state.bad_evals += 1
    record = {
        "step": float(state.step),
        "epoch": float(state.epoch),
        **{f"val_{k}": v for k, v in metrics.items()},
    }
    state.history.append({"step": float(state.step), **metrics})
    log.write(record)
    return improved
