"""`textcore registry ...`: keep trained model folders as numbered versions with an `active` alias."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from textcore.registry import ModelRegistry, ModelVersion

registry_app = typer.Typer(
    help="Versioned model folders with an atomically promoted `active` version.", no_args_is_help=True
)
RootOpt = Annotated[Path, typer.Option("--root", help="registry folder")]
NameOpt = Annotated[str, typer.Option("--name", help="model name, e.g. finance-sentiment")]


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
    from textcore.cli import run_or_exit  # noqa: PLC0415 - cli imports this module

    version = run_or_exit(lambda: ModelRegistry(root).register(name, model, promote=promote, note=note))
    print(json.dumps({**_summary(version), "active": promote}))


@registry_app.command("promote")
def promote(
    root: RootOpt,
    name: NameOpt,
    version: Annotated[int, typer.Option("--version", help="version number to make active")],
    note: Annotated[str, typer.Option(help="free text kept in the history")] = "",
) -> None:
    """Make a version the active one (atomic; running apps pick it up on their next refresh)."""
    from textcore.cli import run_or_exit  # noqa: PLC0415

    chosen = run_or_exit(lambda: ModelRegistry(root).promote(name, version, note=note))
    print(json.dumps({**_summary(chosen), "active": True}))


@registry_app.command("list")
def list_versions(root: RootOpt, name: NameOpt) -> None:
    """Show every version of a model and which one is active."""
    from textcore.cli import run_or_exit  # noqa: PLC0415

    registry = ModelRegistry(root)
    versions = run_or_exit(lambda: registry.versions(name))
    active = registry.active(name).version if _has_active(registry, name) else None
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
