"""What a recommender model folder must hold, checked without loading anything: the commands refuse a
folder `train` may not write, a base model that resolves to nothing and a `--model` that is no recommender
model before they import torch and transformers.
"""

from __future__ import annotations

from pathlib import Path

from textcore import InvalidInput, NotFound
from textcore.model_names import resolve_model

MODEL_FILE = "recommender.json"  # the blend, its settings and the model's sources, beside the encoder

# what a fine-tuning run writes into `training/` first: a folder holding one is a run cut short
_RUN_FILES = ("metrics.jsonl", "checkpoint", ".checkpoint.old", ".checkpoint.tmp", "report.json")


def require_model_file(folder: Path) -> Path:
    """The `recommender.json` of the model in `folder`.

    Raises:
        NotFound: The folder has no `recommender.json` (it is not a recommender model).
    """
    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise NotFound(f"expected a recommender model folder with {MODEL_FILE} in {folder}; it is not there")
    return path


def check_model_folder(output: Path) -> None:
    """Refuse an `output` that `train` may not write a model into: a file (or a folder inside one), or a
    folder that holds files no training run wrote. A new or empty folder, an earlier model's (with
    `metadata.json`) and a run cut short (a `training/` folder with its metrics or checkpoint, or empty) may
    be written; `prepare_model_folder` then empties them.

    Raises:
        InvalidInput: As above, naming a few of the folder's entries.
    """
    from textcore.artifacts import METADATA_FILE, RUN_DIR  # noqa: PLC0415 - numpy: not for --help

    existing = next((path for path in (output, *output.parents) if path.exists()), None)
    if existing is not None and not existing.is_dir():
        raise InvalidInput(f"--output {output}: expected a folder for the model; {existing} is a file")
    if not output.is_dir():
        return
    entries = sorted(entry.name for entry in output.iterdir())
    run = output / RUN_DIR
    cut_short = run.is_dir() and (not any(run.iterdir()) or any((run / name).exists() for name in _RUN_FILES))
    if not entries or (output / METADATA_FILE).is_file() or cut_short:
        return
    shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
    raise InvalidInput(
        f"--output {output}: expected a new or empty folder, or an earlier model's; it holds {shown}, "
        "which no training run wrote. Choose another folder"
    )


def check_base_model(base_model: str, output: Path) -> Path:
    """The base model's folder, refused when it is `output`: train empties `output` before it writes (the base
    would be removed, or copied onto itself)."""
    base = resolve_model(base_model)
    if base.resolve() == output.resolve():
        raise InvalidInput(
            f"--base-model {base_model}: expected a model folder other than --output {output}: "
            "train replaces what --output holds with the new model; give another --output"
        )
    return base
