"""Load a model's weights (safetensors only) and fit lengths to it. Names resolve to folders through
`textcore.model_names` (an alias such as `minilm`, a local folder, a peft adapter's folder, a cached hub id),
whose `resolve_model` this module re-exports.

Loading an adapter folder loads the base model it names, applies the adapter and merges it into the weights.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from textcore.errors import InvalidInput, NotFound
from textcore.model_names import ADAPTER_CONFIG, ALIASES, DEFAULT_MODEL, resolve_model

__all__ = [
    "ADAPTER_CONFIG",
    "ALIASES",
    "DEFAULT_MODEL",
    "Backbone",
    "fit_max_length",
    "load_backbone",
    "load_tokenizer",
    "model_max_length",
    "position_limit",
    "resolve_model",
]

log = logging.getLogger(__name__)

# position ids a model type spends before a text's first token (RoBERTa's count from padding_idx + 1)
POSITION_OFFSETS = {"roberta": 2, "xlm-roberta": 2, "camembert": 2, "longformer": 2}
# a tokenizer without a length of its own reports a huge sentinel (int(1e30)); above this, it says nothing
SANE_TOKENIZER_LENGTH = 1_000_000


def position_limit(config: PretrainedConfig, tokenizer: PreTrainedTokenizerBase | None = None) -> int | None:
    """The most tokens a text may have for this model: its position embeddings (less the model type's
    offset) and the tokenizer's own `model_max_length` when it gives a sane one; None when neither says."""
    limits = []
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions - POSITION_OFFSETS.get(str(getattr(config, "model_type", "")), 0))
    stated = getattr(tokenizer, "model_max_length", None)
    if isinstance(stated, int) and 0 < stated <= SANE_TOKENIZER_LENGTH:
        limits.append(stated)
    return min(limits) if limits else None


def fit_max_length(
    max_length: int, config: PretrainedConfig, tokenizer: PreTrainedTokenizerBase | None = None
) -> int:
    """`max_length`, or the model's `position_limit` when that is lower (with a logged warning): a longer
    input would overrun the position embeddings."""
    limit = position_limit(config, tokenizer)
    if limit is None or max_length <= limit:
        return max_length
    log.warning("max_length %d is more than the model takes (%d tokens); using %d", max_length, limit, limit)
    return limit


def model_max_length(name: str | os.PathLike[str], max_length: int) -> int:
    """`fit_max_length` for the model `name` resolves to, read from its config and tokenizer files (no
    weights loaded); an adapter folder's config is its base model's. `max_length` unchanged when no config
    is found."""
    folder = resolve_model(name)
    try:
        config = AutoConfig.from_pretrained(str(_config_folder(folder)))
    except (OSError, ValueError, NotFound):
        return max_length
    return fit_max_length(max_length, config, load_tokenizer(folder))


def _config_folder(folder: Path) -> Path:
    """The folder whose `config.json` describes the encoder of `folder`: its own, or an adapter's base model's
    (named by `base_model_name_or_path` in its adapter config)."""
    if (folder / "config.json").is_file() or not (folder / ADAPTER_CONFIG).is_file():
        return folder
    adapter = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    reference = adapter.get("base_model_name_or_path") if isinstance(adapter, dict) else None
    return resolve_model(reference) if isinstance(reference, str) and reference else folder


@dataclass(frozen=True, slots=True)
class Backbone:
    """A loaded pretrained encoder with its tokenizer."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    path: Path

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    """Load the (fast) tokenizer stored in `folder`."""
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"expected a tokenizer in {folder}; loading failed: {exc}") from exc


def load_backbone(name: str | os.PathLike[str] = DEFAULT_MODEL) -> Backbone:
    """Resolve `name` and load its encoder (safetensors weights only) and tokenizer.

    An adapter folder yields its base model with the adapter merged in (`textcore.adapters.load_merged`).

    Raises:
        NotFound: the name (or an adapter's base model) does not resolve.
        InvalidInput: the folder has no safetensors weights or cannot be loaded.
    """
    folder = resolve_model(name)
    if (folder / ADAPTER_CONFIG).is_file():
        from textcore.adapters import load_merged  # noqa: PLC0415 - peft is only needed for adapters

        return Backbone(model=load_merged(folder), tokenizer=load_tokenizer(folder), path=folder)
    if not any(folder.glob("*.safetensors")):
        raise InvalidInput(
            f"expected safetensors weights in {folder}; found none (pickle weights are refused)"
        )
    try:
        model = AutoModel.from_pretrained(str(folder), use_safetensors=True, dtype=torch.float32)
    except (OSError, ValueError, SafetensorError) as exc:  # SafetensorError: a damaged weights file
        raise InvalidInput(f"cannot load an encoder from {folder}: {exc}") from exc
    return Backbone(model=model, tokenizer=load_tokenizer(folder), path=folder)
