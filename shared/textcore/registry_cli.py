"""`textcore registry ...`: keep trained model folders as numbered versions with an `active` alias.

Only `register` creates a missing registry root; every other command needs the registry to exist, so a
mistyped ``--root`` is one error line (exit 2), not a new empty folder. A registry the operating system will
not let us read or write (permission denied, a file where a folder belongs or the reverse, a full disk) is
one error line and exit 2 too, naming the path and the problem.
"""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from textcore.registry import ModelRegistry, ModelVersion
from textcore.registry_files import ALIAS_TEMP_PREFIX, STAGING_PREFIX, TRASH_PREFIX

if TYPE_CHECKING:
    from textcore.continual import GateDecision, RetrainResult

T = TypeVar("T")
registry_app = typer.Typer(
    help="Versioned model folders with an atomically promoted `active` version.", no_args_is_help=True
)
RootOpt = Annotated[Path, typer.Option("--root", help="registry folder")]
NameOpt = Annotated[str, typer.Option("--name", help="model name, e.g. finance-sentiment")]


# what the OS error means at the path it names, in the words of the other error lines
_PROBLEMS = {
    errno.EISDIR: "expected a file; found a folder",
    errno.EEXIST: "expected a folder; found a file",
    errno.ENOTDIR: "expected a folder; found a file at some part of that path",
}

_TEMP_NAMES = (STAGING_PREFIX, ALIAS_TEMP_PREFIX, TRASH_PREFIX)  # the registry's temp files and folders


def _run(root: Path, doing: str, action: Callable[[], T]) -> T:
    """`run_or_exit`, also turning an OSError into one line naming the path and exit code 2."""
    from textcore.cli import run_or_exit, say  # noqa: PLC0415 - cli imports this module

    try:
        return run_or_exit(action)
    except OSError as exc:
        # a rename onto a folder names the folder second: that is the path worth naming
        path = exc.filename2 if exc.errno == errno.EISDIR and exc.filename2 else exc.filename
        if isinstance(path, str) and Path(path).name.startswith(_TEMP_NAMES):  # a temp name: name its folder
            path = str(Path(path).parent)
        problem = _PROBLEMS.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
        where = f"{path}: " if path is not None else ""
        message = f"error: could not {doing} in the registry {root}: {where}{problem}"
        say(message)
        raise typer.Exit(2) from None


def _summary(version: ModelVersion) -> dict[str, object]:
    return {
        "name": version.name,
        "version": version.version,
        "path": str(version.path),
        "created_at": version.created_at,
        "validation_metrics": version.metadata.get("validation_metrics", {}),
    }


@registry_app.command("register")
def register(
    root: RootOpt,
    name: NameOpt,
    model: Annotated[Path, typer.Option("--model", help="trained model folder to copy in")],
    promote: Annotated[bool, typer.Option(help="make it the active version")] = False,
    note: Annotated[str, typer.Option(help="free text kept in the history")] = "",
) -> None:
    """Copy a trained model folder in as the next version; prints it as JSON."""
    version = _run(
        root,
        f"register {name}",
        lambda: ModelRegistry(root).register(name, model, promote=promote, note=note),
    )
    print(json.dumps({**_summary(version), "active": promote}))


@registry_app.command("promote")
def promote(
    root: RootOpt,
    name: NameOpt,
    version: Annotated[int, typer.Option("--version", help="version number to make active")],
    note: Annotated[str, typer.Option(help="free text kept in the history")] = "",
) -> None:
    """Make a version the active one (atomic; running apps pick it up on their next refresh)."""
    chosen = _run(
        root,
        f"promote version {version} of {name}",
        lambda: ModelRegistry(root, create=False).promote(name, version, note=note),
    )
    print(json.dumps({**_summary(chosen), "active": True}))


@registry_app.command("delete")
def delete(
    root: RootOpt,
    name: NameOpt,
    version: Annotated[int, typer.Option("--version", help="version number to delete (not the active one)")],
) -> None:
    """Delete one version that is not active; prints it as JSON."""
    doomed = _run(
        root,
        f"delete version {version} of {name}",
        lambda: ModelRegistry(root, create=False).delete(name, version),
    )
    print(json.dumps({"deleted": [_summary(doomed)]}))


@registry_app.command("prune")
def prune(
    root: RootOpt,
    name: NameOpt,
    keep: Annotated[
        int, typer.Option("--keep", min=0, help="how many versions to keep besides the active one")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only print what would be deleted")] = False,
) -> None:
    """Delete every version but the active one and the --keep newest others; prints them as JSON."""
    doomed = _run(
        root,
        f"prune {name}",
        lambda: ModelRegistry(root, create=False).prune(name, keep, dry_run=dry_run),
    )
    print(json.dumps({"deleted": [_summary(v) for v in doomed], "dry_run": dry_run}))


@registry_app.command("list")
def list_versions(root: RootOpt, name: NameOpt) -> None:
    """Show every version of a model and which one is active."""

    def action() -> tuple[list[ModelVersion], int | None]:
        registry = ModelRegistry(root, create=False)
        versions = registry.versions(name)
        return versions, registry.active(name).version if _has_active(registry, name) else None

    versions, active = _run(root, f"list {name}", action)
    table = Table(title=f"{name} in {root}")
    for column in ("version", "active", "created", "validation"):
        table.add_column(column)
    for v in versions:
        metrics = v.metadata.get("validation_metrics")
        items = metrics.items() if isinstance(metrics, dict) else []
        figures = ", ".join(f"{k} {val:.4f}" for k, val in items if isinstance(val, float))
        table.add_row(str(v.version), "yes" if v.version == active else "", v.created_at, figures)
    Console().print(table)


def _has_active(registry: ModelRegistry, name: str) -> bool:
    from textcore.errors import NotFound  # noqa: PLC0415

    try:
        registry.active(name)
    except NotFound:
        return False
    return True


EvalDataOpt = Annotated[
    Path, typer.Option("--eval-data", help="fixed evaluation set (CSV/JSONL) both versions are scored on")
]
TextColumnOpt = Annotated[str, typer.Option("--text-column", help="column with the text")]
LabelColumnOpt = Annotated[str, typer.Option("--label-column", help="column with the label")]
MetricOpt = Annotated[str, typer.Option("--metric", help="the gate's metric: accuracy or macro_f1")]
MinDeltaOpt = Annotated[
    float, typer.Option("--min-delta", help="how much better than the active version; 0: not worse")
]


def _print_decision(decision: GateDecision, **extra: object) -> None:
    metric, old = decision.metric, decision.active_figures
    against = f"v{decision.active} {old[metric]:.4f}" if old is not None else "nothing active"
    new = decision.candidate_figures[metric]
    print(f"{decision.decision}: v{decision.candidate} {new:.4f} against {against} ({metric})")
    print(f"reason: {decision.reason}")
    print(json.dumps({**decision.to_dict(), **extra}))


@registry_app.command("gate")
def gate_command(
    root: RootOpt,
    name: NameOpt,
    version: Annotated[int, typer.Option("--version", help="candidate version to judge")],
    eval_data: EvalDataOpt,
    text_column: TextColumnOpt = "text",
    label_column: LabelColumnOpt = "label",
    metric: MetricOpt = "accuracy",
    min_delta: MinDeltaOpt = 0.0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
) -> None:
    """Promote a version only if it scores at least the active one on a fixed evaluation set."""
    from textcore.continual import gate  # noqa: PLC0415 - loads torch

    decision = _run(
        root,
        f"gate version {version} of {name}",
        lambda: gate(
            ModelRegistry(root, create=False),
            name,
            version,
            eval_data,
            metric,
            min_delta,
            text_column=text_column,
            label_column=label_column,
            device=device,
        ),
    )
    _print_decision(decision)


@registry_app.command("retrain")
def retrain_command(
    root: RootOpt,
    name: NameOpt,
    data: Annotated[Path, typer.Option("--data", help="new labels: feedback, corrections, fresh rows")],
    eval_data: EvalDataOpt,
    old_data: Annotated[
        Path | None, typer.Option("--old-data", help="earlier training data (default: the recorded file)")
    ] = None,
    text_column: TextColumnOpt = "text",
    label_column: LabelColumnOpt = "label",
    metric: MetricOpt = "accuracy",
    min_delta: MinDeltaOpt = 0.0,
    epochs: Annotated[int | None, typer.Option(help="passes over the data (default: as recorded)")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="default: as recorded")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N")] = None,
    note: Annotated[str, typer.Option(help="free text kept in the history")] = "",
) -> None:
    """Retrain the active version on old + new labels, register it and run the promotion gate."""
    from textcore.continual import recorded_config, retrain  # noqa: PLC0415 - loads torch

    overrides = {"epochs": epochs, "learning_rate": learning_rate, "device": device}

    def action() -> RetrainResult:
        registry = ModelRegistry(root, create=False)
        config = recorded_config(registry.active(name)).replace(
            **{k: v for k, v in overrides.items() if v is not None}
        )
        result = retrain(
            registry,
            name,
            data,
            config,
            old_data=old_data,
            eval_data=eval_data,
            text_column=text_column,
            label_column=label_column,
            metric=metric,
            min_delta=min_delta,
            note=note,
            progress=sys.stderr.isatty(),
        )
        rows = ", ".join(f"{k} {v}" for k, v in result.rows.items())
        print(f"registered v{result.version.version} ({rows} rows)")
        return result

    result = _run(root, f"retrain {name}", action)
    _print_decision(result.decision, rows=dict(result.rows), path=str(result.version.path))
