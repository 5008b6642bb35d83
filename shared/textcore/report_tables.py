"""Readable tables of evaluation reports, printed by the command lines beside their JSON line."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_comparison(report: dict[str, Any]) -> None:
    """Before and after fine-tuning: the untuned base model beside the fine-tuned one."""
    base, delta = report["base"], report["delta"]
    table = Table(title=f"before and after fine-tuning ({report['n']} rows)")
    for column in ("model", "accuracy", "macro-F1"):
        table.add_column(column, justify="left" if column == "model" else "right")
    table.add_row(f"base: frozen {base['model']} + logistic regression", *_pair(base))
    table.add_row("fine-tuned", *_pair(report))
    table.add_row("difference", f"{delta['accuracy']:+.4f}", f"{delta['macro_f1']:+.4f}")
    Console().print(table)


def _pair(figures: dict[str, Any]) -> tuple[str, str]:
    return f"{figures['accuracy']:.4f}", f"{figures['macro_f1']:.4f}"


def print_tagging_report(report: dict[str, Any]) -> None:
    """A readable table of per-type entity scores and the headline figures of a tagger."""
    table = Table(
        title=f"{report['n']} sentences, {report['entities']} entities: precision {report['precision']:.4f}, "
        f"recall {report['recall']:.4f}, F1 {report['f1']:.4f}, token accuracy {report['accuracy']:.4f}"
    )
    for column in ("type", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "type" else "right")
    for kind, s in report["per_type"].items():
        table.add_row(
            kind, f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}", str(s["support"])
        )
    Console().print(table)


def print_report(report: dict[str, Any]) -> None:
    """A readable table of per-label scores and the headline figures."""
    out = Console()
    table = Table(
        title=f"{report['n']} rows: accuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}"
    )
    for column in ("label", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, s in report["per_label"].items():
        table.add_row(
            label, f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}", str(s["support"])
        )
    out.print(table)
