"""Run metrics as JSON lines, one object per training step or evaluation; optionally as TensorBoard too."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from textcore.artifacts import write_text_atomic

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


class MetricsLog:
    """Appends one JSON object per line to `metrics.jsonl`, flushed at once so a crash loses nothing.

    A number that is not finite (the gradient norm of a skipped step) is written as `null`: `NaN` and
    `Infinity` are not JSON, and strict readers (jq, JavaScript, Go) refuse a file holding them.
    With `path` None it discards every record (the worker ranks of a distributed run keep no log).
    """

    def __init__(self, path: Path | None, *, append: bool = False) -> None:
        self.path = path
        self._handle: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = path.open("a" if append else "w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if self._handle is not None:
            strict = {
                k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()
            }
            self._handle.write(json.dumps(strict, sort_keys=True, allow_nan=False) + "\n")
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RunLog(MetricsLog):
    """metrics.jsonl, and TensorBoard event files too when given a folder.

    In TensorBoard the numbers of a training-step record become `train/<name>` (loss, lr, grad_norm, ...) and
    the `val_<metric>` of an evaluation record become `val/<metric>`, at the record's `step`. With `path` and
    `tensorboard` None (the worker ranks of a distributed run) it writes nothing.
    """

    def __init__(
        self, path: Path | None, *, append: bool = False, tensorboard: Path | None = None, first_step: int = 0
    ) -> None:
        super().__init__(path, append=append)
        self._writer: SummaryWriter | None = None
        if tensorboard is not None:
            from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 - only when asked for

            # on resume, hide the events a crashed run wrote after its last checkpoint (step `first_step`)
            self._writer = SummaryWriter(str(tensorboard), purge_step=first_step + 1 if append else None)

    def write(self, record: dict[str, Any]) -> None:
        super().write(record)
        if self._writer is None:
            return
        step = int(record["step"])
        for key, value in record.items():
            if key in ("step", "epoch") or not isinstance(value, int | float):
                continue
            tag = f"val/{key.removeprefix('val_')}" if key.startswith("val_") else f"train/{key}"
            self._writer.add_scalar(tag, value, step)

    def close(self) -> None:
        super().close()
        if self._writer is not None:
            self._writer.close()


def tensorboard_folder(root: str, run_dir: Path) -> Path | None:
    """Where a run's TensorBoard events go: `<root>/<name of the folder holding run_dir>`; None when off.

    The runner's `run_dir` is `<model folder>/training`, so each model folder is one run in TensorBoard.
    """
    if not root:
        return None
    return Path(root) / run_dir.resolve().parent.name


def drop_records_after(path: Path, step: int) -> None:
    """Remove the records of `path` past `step`: those a crashed run logged after its last checkpoint, which
    the resumed run logs again from that step on; also a last line the crash cut short. Written atomically."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if (logged := _step_of(line)) is not None and logged <= step]
    if len(kept) == len(lines):
        return
    write_text_atomic(path, "".join(kept))


def _step_of(line: str) -> int | None:
    """The step of one metrics.jsonl line; None for a blank or broken one (a write the crash cut short)."""
    try:
        record = json.loads(line)
        return int(record.get("step", 0))
    except (ValueError, TypeError, AttributeError):
        return None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Read back every record of a metrics.jsonl file."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
