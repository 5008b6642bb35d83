"""Helpers shared by the benchmarks: the data and its split, machine facts, peak memory, result files.

Not a benchmark itself; every benchmark imports it (as `common` when run as scripts).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is imported: never reach for the network

import argparse
import json
import platform
import resource
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import transformers
from rich.console import Console
from rich.table import Table

from textcore.console import quiet_libraries
from textcore.data import LabelledTexts, read_labelled, stratified_split
from textcore.devices import cpu_supports_bf16
from textcore.training import TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_TEXT = "../shared/data/financial_phrasebank/train.csv"  # relative to the repository root
DEFAULT_DATA = REPO_ROOT / DEFAULT_DATA_TEXT
RESULTS_DIR = REPO_ROOT / "bench" / "results"
TEXT_COLUMN = "sentence"
LABEL_COLUMN = "label"
VALIDATION_FRACTION = 0.1
DEFAULT_SEED = 42


def resolve_data(path: Path | None) -> Path:
    """The `--data` value, or the default file relative to the repository root (not the working directory)."""
    return (path if path is not None else DEFAULT_DATA).expanduser().resolve()


def data_or_skip(path: Path, name: str) -> bool:
    """True when the data file exists; otherwise say why the benchmark is skipped (the caller exits 0)."""
    if path.is_file():
        return True
    print(
        f"{name}: skipped: no data file at {path}. Financial PhraseBank is expected at "
        f"<repo>/{DEFAULT_DATA_TEXT} (columns {TEXT_COLUMN!r}, {LABEL_COLUMN!r}); pass --data FILE to use "
        "another copy. The data is never copied into the repository."
    )
    return False


def load_split(path: Path, seed: int) -> tuple[LabelledTexts, LabelledTexts, LabelledTexts]:
    """Read PhraseBank and carve the stratified validation split every benchmark uses.

    Returns:
        (all rows, train rows, validation rows) as `textcore.data.LabelledTexts`; train and validation come in
        the split's seeded order.
    """
    data = read_labelled(path, TEXT_COLUMN, LABEL_COLUMN)
    train, validation = stratified_split(data, VALIDATION_FRACTION, seed)
    return data, train, validation


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """`--data`, `--text-column`, `--label-column`, `--recipe` and `--epochs`: the labelled file to train on,
    and the recipe (see `recipe_config`)."""
    parser.add_argument("--data", type=Path, default=None, help=f"default: {DEFAULT_DATA_TEXT}")
    parser.add_argument("--text-column", default=TEXT_COLUMN)
    parser.add_argument("--label-column", default=LABEL_COLUMN)
    parser.add_argument(
        "--recipe",
        choices=("default", "intents"),
        default="default",
        help="TrainConfig's defaults, or `customer-service train-intents`' recipe (default: %(default)s)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")


def recipe_config(recipe: str, epochs: int | None) -> TrainConfig:
    """TrainConfig's defaults (`default`) or the bot's intent recipe measured on BANKING77 (`intents`)."""
    from customer_service.training_recipes import RECIPES  # noqa: PLC0415 - only training benchmarks need it

    values: dict[str, Any] = dict(RECIPES["classification"]) if recipe == "intents" else {}
    if epochs is not None:
        values["epochs"] = epochs
    return TrainConfig(**values)


def limit_rows(data: LabelledTexts, limit: int | None) -> LabelledTexts:
    """The first `limit` rows (the split's order is already a seeded shuffle); all when `limit` is None."""
    if limit is None or limit >= len(data):
        return data
    return data.subset(range(limit))


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What the figures depend on: CPU, threads, accelerator, library versions, load when the run started."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16_units": cpu_supports_bf16(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1m_at_start"] = round(os.getloadavg()[0], 2)
    return info


def warn_if_busy() -> None:
    """Timings are only meaningful on an idle machine: warn when other processes already load the CPUs."""
    if not hasattr(os, "getloadavg"):
        return
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.5 * cores:
        print(
            f"warning: 1-minute load average is {load:.2f} on {cores} CPU(s); other work is running, so the "
            "timings below are not representative",
            file=sys.stderr,
        )


def utc_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def quiet_transformers() -> None:
    """No load reports or weight-loading progress bars from transformers and the hub."""
    quiet_libraries()


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for a table cell ('-' when missing)."""
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown_header(title: str, payload: dict[str, Any], settings: str) -> str:
    """Title, command, settings and machine: the lines above a results table."""
    m = payload["machine"]
    return (
        f"# {title}\n\n`{payload['command']}` ({payload['created_at']})\n\n{settings}.\n\n"
        f"Machine: {m['cpu']}, {m['cpu_count']} CPUs, {m['torch_threads']} torch threads, "
        f"CUDA: {m['cuda'] or 'none'}; torch {m['torch']}, transformers {m['transformers']}; "
        f"1-minute load average at start: {m.get('load_average_1m_at_start', '-')}.\n\n"
    )


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a table with rich (numbers right-aligned)."""
    table = Table(title=title)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:  # a log file: do not squeeze the columns into 80 characters
        console = Console(width=160)
    console.print(table)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(name: str, payload: dict[str, Any], markdown: str, out_dir: Path) -> tuple[Path, Path]:
    """Write `<out_dir>/<name>.json` and `<out_dir>/<name>.md`; return both paths."""
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    _write_atomic(json_path, json.dumps(payload, indent=2, default=str) + "\n")
    _write_atomic(md_path, markdown)
    return json_path, md_path


def command_line() -> str:
    """How this benchmark was invoked, relative to the repository root when possible."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(REPO_ROOT))
    except ValueError:
        shown = str(script)
    return " ".join(["python", shown, *sys.argv[1:]])
