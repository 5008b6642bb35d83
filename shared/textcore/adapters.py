"""Parameter-efficient fine-tuning through peft: LoRA and AdaLoRA adapters on a transformer encoder.

Training wraps the encoder (`wrap_encoder`): low-rank adapters on the linear maps of every transformer block
train, everything else in the encoder is frozen; a task's head lives outside the wrapper and trains fully.

Which maps: query, key, value and attention output, and both feed-forward layers (intermediate and output
dense) of each block, i.e. peft's `all-linear` less the pooler (mean pooling never reads it, so its adapter
would get no gradient). The LoRA paper adapted only query and value; adapting every linear map is what
later work (QLoRA, Dettmers et al. 2023) found necessary to match full fine-tuning, and the feed-forward
layers hold two thirds of a block's weights. The adapters still come to about 1 % of MiniLM's parameters.

AdaLoRA starts each adapted map at rank 1.5 x `lora_rank` and prunes the least important singular triplets
until the average rank is `lora_rank`: it holds the initial ranks over the warm-up steps, then re-allocates
after every optimizer step (`after_optimizer_step`) and keeps the final ranks for the last fifth of training.

A trained folder holds only the adapter (`adapter_config.json` naming the base model, and
`adapter_model.safetensors`: about a megabyte for MiniLM instead of 90) beside the task's head, labels,
tokenizer and metadata, and no `config.json`. `textcore.models.load_backbone` recognises such a folder,
loads the base model, applies the adapter and merges it into the base weights (`load_merged`), so a merged
model serves (and exports to ONNX) exactly like a fully fine-tuned one.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import torch
from peft import AdaLoraConfig, AdaLoraModel, LoraConfig, PeftConfig, PeftModel, get_peft_model
from torch import nn
from transformers import PreTrainedModel

from textcore.errors import InvalidInput, NotFound
from textcore.models import ADAPTER_CONFIG, ALIASES, load_backbone, resolve_model

if TYPE_CHECKING:  # the training package imports this module
    from textcore.training.config import TrainConfig

ADAPTER_FILES = (ADAPTER_CONFIG, "adapter_model.safetensors")
FULL_MODEL_FILES = ("config.json", "model.safetensors")
MODEL_CARD = "README.md"  # peft writes a generic one; metadata.json is the folder's description
FINAL_PHASE = 0.2  # AdaLoRA: share of the steps, at the end, that train with the final ranks
ALLOCATOR_STATISTICS = ("ipt", "exp_avg_ipt", "exp_avg_unc")  # AdaLoRA's importance estimates, per weight


def wrap_encoder(
    encoder: PreTrainedModel, config: TrainConfig, *, total_steps: int = 0
) -> PreTrainedModel | PeftModel:
    """Add trainable low-rank adapters to `encoder` and freeze the rest of it (unchanged for adapter none).

    Args:
        encoder: a pretrained transformer encoder (it is modified in place: peft injects its layers).
        config: `adapter`, `lora_rank`, `lora_alpha`, `lora_dropout`, and `base_model`, which the saved
            adapter names as its base; AdaLoRA's warm-up is `warmup_ratio` of the steps.
        total_steps: optimizer steps the run will take (AdaLoRA's rank schedule needs it).

    Returns:
        `encoder` itself for adapter none, else a peft model that calls it with the same arguments.

    Raises:
        InvalidInput: an unknown adapter, or AdaLoRA without `total_steps`.
    """
    if config.adapter == "none":
        return encoder
    pooler = [
        name
        for name, module in encoder.named_modules()
        if isinstance(module, nn.Linear) and "pooler" in name.split(".")
    ]
    exclude = pooler or None
    peft_config: PeftConfig
    if config.adapter == "lora":
        peft_config = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules="all-linear",
            exclude_modules=exclude,
        )
    elif config.adapter == "adalora":
        if total_steps < 1:
            raise InvalidInput(f"adapter adalora: expected total_steps >= 1; found {total_steps}")
        final = int(FINAL_PHASE * total_steps)
        warmup = min(int(config.warmup_ratio * total_steps), total_steps - final - 1)
        peft_config = AdaLoraConfig(
            init_r=math.ceil(1.5 * config.lora_rank),
            target_r=config.lora_rank,
            total_step=total_steps,
            tinit=warmup,
            tfinal=final,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules="all-linear",
            exclude_modules=exclude,
        )
    else:
        raise InvalidInput(f"adapter: expected one of none, lora, adalora; found {config.adapter!r}")
    with _known_peft_warnings_silenced():
        model = get_peft_model(encoder, peft_config)
    # get_peft_model records the folder the encoder came from; the alias or path the user named is sturdier
    peft_config.base_model_name_or_path = base_reference(config.base_model)
    return model


def planned_steps(batches_per_epoch: int, config: TrainConfig) -> int:
    """Optimizer steps of a full run, counted as the training loop counts them (AdaLoRA's `total_steps`).

    Under `torchrun` a step takes one batch from each process; the process group starts only in the loop,
    so the world size is read from the environment `torchrun` sets.
    """
    from textcore.training.distributed import launched_by_torchrun  # noqa: PLC0415 - that package imports this

    world = int(os.environ["WORLD_SIZE"]) if launched_by_torchrun() else 1
    return math.ceil(batches_per_epoch / (config.grad_accum_steps * world)) * config.epochs


def base_reference(base_model: str) -> str:
    """How an adapter names its base: an alias or hub id as given, a local folder as an absolute path."""
    path = Path(base_model).expanduser()
    if base_model.lower() in ALIASES or not path.exists():
        return base_model
    return str(path.resolve())


def is_adapter(model: nn.Module) -> TypeGuard[PeftModel]:
    """Whether `model` is an encoder wrapped by `wrap_encoder` with an adapter."""
    return isinstance(model, PeftModel)


def after_optimizer_step(encoder: nn.Module, step: int) -> None:
    """AdaLoRA's rank re-allocation, due after each optimizer step while the gradients are still there.

    Args:
        encoder: the (possibly wrapped) encoder of a task.
        step: optimizer steps taken so far, this one included.
    """
    base = encoder.base_model if isinstance(encoder, PeftModel) else None
    if isinstance(base, AdaLoraModel):
        base.update_and_allocate(step)  # type: ignore[no-untyped-call]


def _adalora_in(model: nn.Module) -> tuple[AdaLoraModel, AdaLoraConfig] | None:
    adalora = next((m for m in model.modules() if isinstance(m, AdaLoraModel)), None)
    if adalora is None:
        return None
    config = adalora.peft_config[adalora.trainable_adapter_name]
    assert isinstance(config, AdaLoraConfig)  # an AdaLoraModel holds only AdaLoRA configs
    return adalora, config


def allocator_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """AdaLoRA's running state, for a checkpoint: None for a model without AdaLoRA.

    The rank allocator keeps exponential averages of each adapter weight's importance across steps, and
    the rank pattern it last chose; neither is a model weight, so a resumed run needs them from here to
    prune exactly as an uninterrupted run would.

    Returns:
        (tensors keyed `statistic:parameter name`, JSON-ready extras: the rank pattern).
    """
    found = _adalora_in(model)
    if found is None:
        return None
    allocator = found[0].rankallocator
    tensors = {
        f"{kind}:{name}": value.detach().to("cpu", copy=True).contiguous()
        for kind in ALLOCATOR_STATISTICS
        for name, value in getattr(allocator, kind).items()
    }
    return tensors, {"rank_pattern": found[1].rank_pattern}


def load_allocator_state(model: nn.Module, tensors: dict[str, torch.Tensor], extras: dict[str, Any]) -> None:
    """Put the state of `allocator_state` back into `model`'s AdaLoRA rank allocator."""
    found = _adalora_in(model)
    if found is None:
        raise InvalidInput(
            "checkpoint: expected a model with an AdaLoRA adapter for its allocator state; found none"
        )
    allocator = found[0].rankallocator
    device = next(model.parameters()).device
    for kind in ALLOCATOR_STATISTICS:
        setattr(allocator, kind, {})
    for key, value in tensors.items():
        kind, name = key.split(":", 1)
        getattr(allocator, kind)[name] = value.to(device)
    found[1].rank_pattern = extras["rank_pattern"]


def adapter_penalty(encoder: nn.Module) -> torch.Tensor | float:
    """AdaLoRA's regulariser, to add to a task's loss: it keeps the singular vectors near orthogonal.

    peft adds it only to a loss that the model itself returns; our tasks compute theirs outside the encoder.
    It is `orth_reg_weight` times the mean, over the adapted maps' P (`lora_A`, r x in) and Q (`lora_B`,
    out x r), of the Frobenius norm of P P^T - I and Q^T Q - I, as in peft's `AdaLoraModel.forward`.

    Returns:
        The penalty (a scalar tensor with gradients), or 0.0 for an encoder without AdaLoRA.
    """
    config = encoder.peft_config["default"] if isinstance(encoder, PeftModel) else None
    if not isinstance(config, AdaLoraConfig) or config.orth_reg_weight == 0:
        return 0.0
    norms = []
    for name, weight in encoder.named_parameters():
        if weight.requires_grad and (".lora_A." in name or ".lora_B." in name):
            gram = weight @ weight.T if ".lora_A." in name else weight.T @ weight  # (r, r)
            norms.append(torch.linalg.matrix_norm(gram - torch.eye(len(gram), device=gram.device)))
    return config.orth_reg_weight * torch.stack(norms).mean() if norms else 0.0


def save_encoder(encoder: nn.Module, folder: Path) -> None:
    """Write an encoder into a model folder: only its adapter when it has one, else the full weights.

    The files of the other kind are removed first, so a folder written twice never holds both (loaders take
    a folder with `adapter_config.json` for an adapter).

    Raises:
        InvalidInput: an adapter would be written into the folder of its own base model.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(encoder, PreTrainedModel):
        _remove(folder, ADAPTER_FILES)
        encoder.save_pretrained(str(folder), safe_serialization=True)
        return
    if not isinstance(encoder, PeftModel):
        raise TypeError(f"expected a transformers or peft model; found {type(encoder).__name__}")
    config = encoder.peft_config["default"]
    base = str(config.base_model_name_or_path)
    if Path(base).is_dir() and Path(base).resolve() == folder.resolve():
        raise InvalidInput(
            f"output {folder}: expected a folder other than the adapter's base model; found the same"
        )
    had_card = (folder / MODEL_CARD).exists()
    _remove(folder, FULL_MODEL_FILES)
    # AdaLoRA: save every singular triplet. The pruned ones hold zeros, so the merged weights are exact, and
    # the recorded rank pattern may be newer than the best weights the loop restored.
    pattern = config.rank_pattern if isinstance(config, AdaLoraConfig) else None
    if isinstance(config, AdaLoraConfig):
        config.rank_pattern = None
    try:
        # the embeddings are never adapted; "auto" would look the base up on the hub to find out
        encoder.save_pretrained(str(folder), safe_serialization=True, save_embedding_layers=False)
    finally:
        if isinstance(config, AdaLoraConfig):
            config.rank_pattern = pattern
    if not had_card:
        (folder / MODEL_CARD).unlink(missing_ok=True)


def _remove(folder: Path, names: tuple[str, ...]) -> None:
    for name in names:
        (folder / name).unlink(missing_ok=True)


def load_merged(folder: str | os.PathLike[str]) -> PreTrainedModel:
    """Load the base model an adapter folder names, apply the adapter and merge it into the weights.

    Args:
        folder: a folder holding `adapter_config.json` and `adapter_model.safetensors`.

    Returns:
        The base encoder with merged weights: no peft layers left, the cost of the plain base model.

    Raises:
        InvalidInput: the adapter config is broken, names no base or itself, or does not fit its base.
        NotFound: the base model cannot be found.
    """
    path = Path(folder)
    try:
        config = PeftConfig.from_pretrained(str(path))
    except (ValueError, TypeError, OSError) as exc:
        raise InvalidInput(f"{path / ADAPTER_CONFIG}: expected a peft adapter config; {exc}") from exc
    reference = config.base_model_name_or_path
    if not reference:
        raise InvalidInput(f"{path / ADAPTER_CONFIG}: expected base_model_name_or_path naming the base model")
    try:
        if resolve_model(reference) == path.resolve():
            raise InvalidInput(f"{path / ADAPTER_CONFIG}: the adapter names its own folder as its base model")
        base = load_backbone(reference)
    except NotFound as exc:
        raise NotFound(f"base model of the adapter in {path}: {exc.message}") from exc
    try:
        with _known_peft_warnings_silenced():
            merged: PreTrainedModel = PeftModel.from_pretrained(base.model, str(path)).merge_and_unload()
    except (ValueError, RuntimeError, KeyError, OSError) as exc:
        raise InvalidInput(
            f"cannot apply the adapter in {path} to its base model {reference!r}: {exc}"
        ) from exc
    return merged


@contextmanager
def _known_peft_warnings_silenced() -> Iterator[None]:
    """peft 0.21 still reads a transformers attribute that warns of its own deprecation."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        yield
