"""The on-disk format of a trained model: one self-contained folder.

<dir>/config.json, model.safetensors     the fine-tuned encoder (Hugging Face format; usable as a base)
<dir>/tokenizer.json, vocab.txt, ...     its tokenizer
<dir>/head.safetensors                   task head weights (classification)
<dir>/labels.json                        {"labels": [...], "multi_label": false}
<dir>/metadata.json                      base model, task, data hashes and counts, hyperparameters,
                                         validation metrics, library versions, created time
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from textcore.errors import InvalidInput, NotFound

METADATA_FILE = "metadata.json"
LABELS_FILE = "labels.json"
HEAD_FILE = "head.safetensors"
FORMAT_VERSION = 1
_LIBRARIES = ("textcore", "torch", "transformers", "sentence-transformers", "peft", "numpy", "faiss-cpu")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a model's behaviour."""
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def utc_now() -> str:
    """Current time as ISO 8601 UTC with seconds precision."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def write_json_atomic(path: Path, payload: object) -> None:
    """Write JSON to a temp file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True, default=str)
            handle.write("\n")
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_metadata(folder: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Complete and write `metadata.json` (adds format version, library versions and created time)."""
    full = {"format_version": FORMAT_VERSION, "created_at": utc_now(), "libraries": library_versions()}
    full.update(metadata)
    write_json_atomic(folder / METADATA_FILE, full)
    return full


def read_json(path: Path) -> Any:
    """Read a JSON file, with a clear error when it is missing or broken."""
    if not path.is_file():
        raise NotFound(f"expected {path.name} in {path.parent}; it does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: expected valid JSON; {exc}") from exc


def read_metadata(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a model folder's `metadata.json` ({} for a plain pretrained folder)."""
    path = Path(folder) / METADATA_FILE
    if not path.exists():
        return {}
    data = read_json(path)
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: expected a JSON object; found {type(data).__name__}")
    return data


def read_labels(folder: Path) -> tuple[list[str], bool]:
    """Read the label list and multi-label flag of a classifier folder."""
    data = read_json(folder / LABELS_FILE)
    labels = data.get("labels") if isinstance(data, dict) else None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) or len(labels) < 2:
        raise InvalidInput(f"{folder / LABELS_FILE}: expected a list of at least two label strings")
    return labels, bool(data.get("multi_label", False))


def write_labels(folder: Path, labels: list[str], multi_label: bool) -> None:
    """Write the label map of a classifier folder."""
    write_json_atomic(folder / LABELS_FILE, {"labels": labels, "multi_label": multi_label})
