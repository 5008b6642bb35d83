"""Pictures of a run: loss and validation curves, and the confusion matrix, saved as PNG."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt


def plot_curves(records: list[dict[str, Any]], path: Path, metric: str) -> None:
    """Training loss per step and the validation metric at each evaluation, side by side."""
    steps = [r["step"] for r in records if "loss" in r]
    losses = [r["loss"] for r in records if "loss" in r]
    evals = [(r["step"], r[f"val_{metric}"]) for r in records if f"val_{metric}" in r]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    left.plot(steps, losses, linewidth=0.8)
    left.set(title="training loss", xlabel="step", ylabel="loss")
    if evals:
        right.plot([s for s, _ in evals], [v for _, v in evals], marker="o")
    right.set(title=f"validation {metric}", xlabel="step", ylabel=metric)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(confusion: list[list[int]], labels: list[str], path: Path) -> None:
    """Confusion matrix heat map (rows: true label, columns: predicted label), counts written in the cells."""
    size = max(4.0, 0.35 * len(labels) + 2.0)
    fig, ax = plt.subplots(figsize=(size, size), constrained_layout=True)
    ax.imshow(confusion, cmap="Blues")
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=90 if len(labels) > 6 else 0)
    ax.set_yticks(ticks, labels)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    if len(labels) <= 20:
        peak = max(max(row) for row in confusion) or 1
        for i, row in enumerate(confusion):
            for j, count in enumerate(row):
                ax.text(
                    j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black"
                )
    with warnings.catch_warnings():
        # very long label names can leave no room for the axes; the picture is still written, just cramped
        warnings.filterwarnings("ignore", message="constrained_layout not applied")
        fig.savefig(path, dpi=100)
    plt.close(fig)
