"""`customer-service` commands for the intent classifier: train-intents, calibrate-intents,
evaluate-intents."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from customer_service.command_options import (
    BaseModel,
    BatchSize,
    Device,
    DistillWeight,
    Epochs,
    InScopeRejection,
    LearningRate,
    MaxInScopeDrop,
    MaxLength,
    OutputOpt,
    Precision,
    Seed,
    Teachers,
    print_report,
)
from customer_service.training_recipes import train_config
from textcore import cli as core_cli
from textcore.model_names import resolve_model
from textcore.preflight import require_distinct_columns


def train_intents(
    data: Annotated[Path, typer.Option("--data", help="CSV/TSV/JSONL of labelled messages")],
    output: OutputOpt,
    validation: Annotated[
        Path | None, typer.Option("--validation", help="validation file (with oos rows)")
    ] = None,
    text_column: Annotated[str, typer.Option("--text-column")] = "text",
    label_column: Annotated[str, typer.Option("--label-column")] = "intent",
    oos_label: Annotated[str, typer.Option("--oos-label", help="label of out-of-scope rows")] = "oos",
    threshold_rule: Annotated[
        str, typer.Option("--threshold-rule", help="bounded (default) or balanced")
    ] = "bounded",
    max_in_scope_drop: MaxInScopeDrop = 0.01,
    in_scope_rejection: InScopeRejection = 0.0,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    learning_rate: LearningRate = None,
    max_length: MaxLength = None,
    base_model: BaseModel = "minilm",
    device: Device = "auto",
    precision: Precision = "auto",
    seed: Seed = 42,
    teacher: Teachers = None,
    distill_weight: DistillWeight = None,
    refit: Annotated[
        bool | None,
        typer.Option(
            "--refit/--no-refit",
            help="once the validation rows have chosen when to stop, train again on every row (then no "
            "out-of-scope threshold)",
        ),
    ] = None,
    blend_frozen: Annotated[
        bool | None,
        typer.Option(
            "--blend-frozen/--no-blend-frozen",
            help="blend in a logistic regression on the frozen base model's embeddings, weighted as the "
            "validation rows choose: more accurate; the service feeds it the retrieval embedding of each "
            "message when its retrieval encoder is that base model (on, except with --refit)",
        ),
    ] = None,
    head: Annotated[
        str | None,
        typer.Option("--head", help="linear, or cosine (scaled cosine of the message and each intent)"),
    ] = None,
    scale: Annotated[
        float | None, typer.Option("--scale", help="logit scale of the cosine head (default 20)")
    ] = None,
) -> None:
    """Train the intent classifier; the out-of-scope threshold is chosen on validation data and saved.

    With `--teacher` (repeatable), the model also learns from the averaged soft labels of earlier intent
    models trained on the same intents (knowledge distillation: one model with most of an ensemble's gain).
    """

    def action() -> dict[str, Any]:
        from textcore import read_labelled  # noqa: PLC0415

        # the data and the base model's name are checked before torch is imported, so that a bad one fails
        # in about a second
        require_distinct_columns(text_column, label_column)
        rows = read_labelled(data, text_column, label_column)
        held_out = read_labelled(validation, text_column, label_column) if validation else None
        resolve_model(base_model)
        from customer_service.intents import train_intents as train  # noqa: PLC0415 - heavy import

        # an earlier model in --output is kept until the run succeeds
        with core_cli.replacing_output(output, inputs=(data, validation, base_model, *(teacher or ()))):
            config = train_config(
                "classification",
                base_model,
                device,
                precision,
                seed,
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                max_length=max_length,
                teachers=tuple(teacher) if teacher else None,
                distill_weight=distill_weight,
                refit=refit,
                blend_frozen=False if blend_frozen is None and refit else blend_frozen,
                head=head,
                scale=scale,
            )
            sources = {"file": str(data), "validation_file": str(validation) if validation else None}
            result = train(
                rows,
                output,
                config,
                validation=held_out,
                oos_label=oos_label,
                rule=threshold_rule,
                max_in_scope_drop=max_in_scope_drop,
                in_scope_rejection=in_scope_rejection,
                sources=sources,
                progress=sys.stderr.isatty(),
            )
            return {"output": str(output), "threshold": result.threshold, "oos_label": result.oos_label,
                    "selection": result.selection, "validation": result.validation}  # fmt: skip

    print_report(core_cli.run_or_exit(action))


def calibrate_intents(
    model: Annotated[Path, typer.Option("--model", help="folder from train-intents")],
    validation: Annotated[Path, typer.Option("--validation", help="labelled messages with oos rows")],
    text_column: Annotated[str, typer.Option("--text-column")] = "text",
    label_column: Annotated[str, typer.Option("--label-column")] = "intent",
    oos_label: Annotated[str, typer.Option("--oos-label", help="label of out-of-scope rows")] = "oos",
    threshold_rule: Annotated[
        str, typer.Option("--threshold-rule", help="bounded (default) or balanced")
    ] = "bounded",
    max_in_scope_drop: MaxInScopeDrop = 0.01,
    in_scope_rejection: InScopeRejection = 0.0,
    device: Device = "auto",
    precision: Precision = "auto",
) -> None:
    """Choose a trained intent model's out-of-scope threshold again, on new validation data (no training)."""

    def action() -> dict[str, Any]:
        from textcore import read_labelled  # noqa: PLC0415

        require_distinct_columns(text_column, label_column)
        rows = read_labelled(validation, text_column, label_column)
        _require_classifier_folder(model)
        from customer_service.intents import IntentModel, calibrate  # noqa: PLC0415 - heavy import

        loaded = IntentModel.load(model, device=device, precision=precision)
        threshold, selection, figures = calibrate(
            loaded, model, rows, oos_label=oos_label, rule=threshold_rule,
            max_in_scope_drop=max_in_scope_drop, in_scope_rejection=in_scope_rejection,
        )  # fmt: skip
        return {"model": str(model), "threshold": threshold, "selection": selection, "validation": figures}

    print_report(core_cli.run_or_exit(action))


def evaluate_intents(
    model: Annotated[Path, typer.Option("--model", help="folder from train-intents")],
    data: Annotated[Path, typer.Option("--data", help="CSV/TSV/JSONL of labelled messages")],
    oos_label: Annotated[str | None, typer.Option("--oos-label", help="label of out-of-scope rows")] = None,
    text_column: Annotated[str, typer.Option("--text-column")] = "text",
    label_column: Annotated[str, typer.Option("--label-column")] = "intent",
    device: Device = "auto",
    precision: Precision = "auto",
) -> None:
    """Accuracy, macro-F1, in-scope accuracy and out-of-scope recall/precision (last line: JSON)."""

    def action() -> dict[str, Any]:
        from textcore import read_labelled  # noqa: PLC0415

        require_distinct_columns(text_column, label_column)
        rows = read_labelled(data, text_column, label_column)
        _require_classifier_folder(model)
        from customer_service.intents import IntentModel  # noqa: PLC0415 - heavy import
        from customer_service.intents import evaluate_intents as evaluate  # noqa: PLC0415

        loaded = IntentModel.load(model, device=device, precision=precision)
        return {**evaluate(loaded, rows, oos_label), "threshold": loaded.threshold}

    print_report(core_cli.run_or_exit(action))


def _require_classifier_folder(model: Path) -> None:
    """Refuse a --model that is no folder, or a folder holding no classifier's labels, before torch is
    imported, in the words loading it uses (`textcore.artifacts.read_labels`). The folder of a re-ranker or
    a tagger is left to the loader, which says what it holds."""
    from textcore.artifacts import read_labels, read_metadata  # noqa: PLC0415 - numpy: not for --help

    if read_metadata(model).get("task") not in ("cross-encoder", "token-classification"):
        read_labels(model)
