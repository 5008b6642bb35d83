"""The on-disk format of a trained model: one self-contained folder.

<dir>/config.json, model.safetensors     the fine-tuned encoder (Hugging Face format; usable as a base)
  or adapter_config.json,                or, for a run with --adapter lora|adalora, only the peft adapter;
     adapter_model.safetensors           its config names the base model, merged in at load time
<dir>/tokenizer.json, vocab.txt, ...     its tokenizer
<dir>/head.safetensors                   task head weights (classification)
<dir>/mlm_head.safetensors               masked-LM head (mlm; read only by a further mlm run)
<dir>/labels.json                        {"labels": [...], "multi_label": false}
<dir>/frozen/                            only with --blend-frozen (and a weight above 0): the base encoder,
                                         a linear model on its embeddings and the blend weight
                                         (textcore.frozen_view)
<dir>/metadata.json                      base model, task, data hashes and counts, hyperparameters,
                                         validation metrics, library versions, created time
"""

from __future__ import annotations

import json
import os
import platform
import stat
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from textcore.data import read_labelled
from textcore.errors import InvalidInput, NotFound
from textcore.labelled import LabelledTexts
from textcore.registry_files import read_active
from textcore.table_files import file_sha256

METADATA_FILE = "metadata.json"
RUN_DIR = "training"  # inside a model folder: metrics.jsonl, curves, report, the resumable checkpoint
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


def _umask() -> int:
    """The process's umask: from /proc where there is one (reading it by setting it is not thread-safe)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_plain_mode(fd: int, target: Path) -> None:
    """Give a temp file from `tempfile.mkstemp` (mode 0600) the mode of the file it will replace: that of
    `target` when it exists (a mode an operator chose is kept), else the one a plain `open()` would create
    (0666 less the umask), so that a service running as another user can read it."""
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    os.fchmod(fd, mode)


def write_text_atomic(path: Path, text: str) -> None:
    """Write text to a temp file beside `path`, flush it to disk, then rename it into place (with
    `give_plain_mode`'s mode): readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        give_plain_mode(fd, path)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, payload: object) -> None:
    """Write JSON (indented, sorted keys) atomically, as `write_text_atomic` does."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


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


def trained_max_length(folder: str | os.PathLike[str], default: int = 256) -> int:
    """The tokens per text a model folder was trained with (``hyperparameters.max_length`` in its metadata),
    so that serving cuts texts where training and validation did; ``default`` for a folder without one."""
    hyperparameters = read_metadata(folder).get("hyperparameters")
    value = hyperparameters.get("max_length") if isinstance(hyperparameters, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def trained_head(folder: str | os.PathLike[str], task: str, what: str) -> Path:
    """The head weights of a trained `task` folder, after checking its metadata names that task.

    Raises:
        InvalidInput: the metadata names another task (or none), or the head file is missing.
    """
    path = Path(folder)
    found = read_metadata(path).get("task")
    if found != task:
        raise InvalidInput(
            f"{path}: expected a {what} model folder (metadata task {task!r}); found task {found!r}"
        )
    head = path / HEAD_FILE
    if not head.is_file():
        raise InvalidInput(f"expected {HEAD_FILE} in {path}; it is not a trained {what}")
    return head


def read_labels(folder: Path) -> tuple[list[str], bool]:
    """Read the label list and multi-label flag of a classifier folder.

    Raises:
        NotFound: `folder` is not a folder, or holds no `labels.json` (it is not a trained classifier).
        InvalidInput: `labels.json` is broken.
    """
    if not folder.is_dir():
        found = "found a file" if folder.exists() else "it does not exist"
        raise NotFound(f"{folder}: expected a trained model folder; {found}")
    if not (folder / LABELS_FILE).is_file():
        raise NotFound(
            f"expected {LABELS_FILE} in {folder}; it is not a trained classifier folder"
            + _registry_hint(folder)
        )
    data = read_json(folder / LABELS_FILE)
    labels = data.get("labels") if isinstance(data, dict) else None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) or len(labels) < 2:
        raise InvalidInput(f"{folder / LABELS_FILE}: expected a list of at least two label strings")
    return labels, bool(data.get("multi_label", False))


def _registry_hint(folder: Path) -> str:
    """For a registry's folder of one model name given as a model folder: which folder to give instead."""
    version, _ = read_active(folder)
    if version is not None and (folder / f"v{version:04d}").is_dir():
        return f"; it is a registry model name, whose active version is {folder / f'v{version:04d}'}"
    versions = sorted(p.name for p in folder.glob("v[0-9][0-9][0-9][0-9]") if p.is_dir())
    if versions:
        latest = folder / versions[-1]
        return (
            f"; it is a registry model name with no active version: give one of its versions, e.g. {latest}"
        )
    return ""


def write_labels(folder: Path, labels: list[str], multi_label: bool) -> None:
    """Write the label map of a classifier folder."""
    write_json_atomic(folder / LABELS_FILE, {"labels": labels, "multi_label": multi_label})


@dataclass(frozen=True, slots=True)
class RecordedData:
    """The training file a model folder's metadata names (`data.file`), checked against its SHA-256."""

    path: Path
    text_column: str
    label_column: str

    def read(self, multi_label: bool = False) -> LabelledTexts:
        """The file's text and label columns (`multi_label`: sets of labels, an empty cell naming none)."""
        return read_labelled(self.path, self.text_column, self.label_column, multi_label=multi_label)


def recorded_training_data(folder: str | os.PathLike[str], *, hint: str) -> RecordedData:
    """Find the training file recorded in `folder/metadata.json`, unchanged since the model was trained.

    A relative `data.file.path` is read relative to the folder (continual learning keeps its merged data
    inside the version folder).

    Args:
        folder: a trained model folder.
        hint: what the user can do instead, appended to the error (e.g. "pass --old-data").

    Raises:
        InvalidInput: nothing recorded, the file is gone, or its SHA-256 differs from the recorded one.
    """
    data = read_metadata(folder).get("data")
    file = data.get("file") if isinstance(data, dict) else None
    recorded = file.get("path") if isinstance(file, dict) else None
    if not isinstance(data, dict) or not isinstance(file, dict) or not isinstance(recorded, str):
        raise InvalidInput(
            f"{folder}/metadata.json: expected data.file.path naming the training file; {hint}"
        )
    path = Path(folder) / recorded if not Path(recorded).is_absolute() else Path(recorded)
    if not path.is_file():
        raise InvalidInput(f"training file {path} recorded in {folder} no longer exists; {hint}")
    if file_sha256(path) != file.get("sha256"):
        raise InvalidInput(
            f"training file {path} changed since {folder} was trained (SHA-256 differs); {hint}"
        )
    columns = (data.get("text_column", "text"), data.get("label_column", "label"))
    if not all(isinstance(c, str) for c in columns):
        raise InvalidInput(f"{folder}/metadata.json: expected data.text_column and data.label_column strings")
    return RecordedData(path, str(columns[0]), str(columns[1]))
