"""`textcore`: train, evaluate and run models from the command line.

Every expected failure (bad file, column, label, model) ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from textcore.errors import CoreError, InvalidInput

app = typer.Typer(
    help="Fine-tune small pretrained encoders on your own labelled text.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)
T = TypeVar("T")

TaskOpt = Annotated[str, typer.Option("--task", help="classification, embedding or cross-encoder")]
DataOpt = Annotated[Path, typer.Option("--data", help="CSV, TSV or JSONL file")]
TextCol = Annotated[
    str,
    typer.Option(
        "--text-column", help="column with the text (embedding: the anchor; cross-encoder: the query)"
    ),
]
BackendOpt = Annotated[str, typer.Option(help="torch, or onnx (ONNX Runtime on the CPU, fp32)")]
LabelCol = Annotated[
    str,
    typer.Option(
        "--label-column",
        help="column with the label (embedding: the positive; cross-encoder: relevance in [0, 1])",
    ),
]
PassageCol = Annotated[
    str | None, typer.Option("--passage-column", help="cross-encoder: column with the passage")
]


def quiet_libraries() -> None:
    """Keep stderr for our own messages: no hub/transformers progress bars or load reports.

    Called inside the commands (which import transformers anyway) so that `--help` stays fast.
    """
    import transformers.utils.logging  # noqa: PLC0415
    from huggingface_hub.utils import disable_progress_bars  # type: ignore[attr-defined]  # noqa: PLC0415

    disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]


def run_or_exit(action: Callable[[], T]) -> T:
    """Run `action`, turning a CoreError into one stderr line and exit code 2."""
    quiet_libraries()
    try:
        return action()
    except CoreError as exc:
        err.print(f"error: {exc.message}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@app.command()
def train(
    data: DataOpt,
    output: Annotated[Path, typer.Option("--output", help="model folder to write")],
    task: TaskOpt = "classification",
    text_column: TextCol = "text",
    label_column: LabelCol = "label",
    validation: Annotated[Path | None, typer.Option("--validation", help="validation file")] = None,
    negative_column: Annotated[
        str | None, typer.Option(help="embedding: column with a hard negative")
    ] = None,
    passage_column: PassageCol = None,
    base_model: Annotated[str, typer.Option(help="alias, local folder or trained model")] = "minilm",
    epochs: Annotated[int | None, typer.Option(help="passes over the data")] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    learning_rate: Annotated[float | None, typer.Option()] = None,
    max_length: Annotated[int | None, typer.Option(help="tokens per text")] = None,
    class_weights: Annotated[bool, typer.Option(help="weight classes by inverse frequency")] = False,
    multi_label: Annotated[bool, typer.Option(help="labels separated by '|'; one sigmoid per label")] = False,
    precision: Annotated[str, typer.Option(help="auto, bf16 or fp32")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    seed: Annotated[int, typer.Option()] = 42,
    resume: Annotated[bool, typer.Option(help="continue an interrupted run in --output")] = False,
) -> None:
    """Fine-tune a model on labelled data and save it as a self-contained folder."""
    overrides: dict[str, Any] = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "max_length": max_length,
    }

    def action() -> None:
        # Check the data before importing torch, so that a bad file fails in a fraction of a second.
        columns = (text_column, label_column, negative_column, passage_column)
        _check_training_data(task, data, columns, multi_label)
        for extra in filter(None, [validation]):
            _check_training_data(task, extra, columns, multi_label=True)
        from textcore.training import TrainConfig, train_from_files  # noqa: PLC0415 - heavy import

        config = TrainConfig(
            task=task,
            base_model=base_model,
            class_weights=class_weights,
            multi_label=multi_label,
            precision=precision,
            device=device,
            seed=seed,
            **{k: v for k, v in overrides.items() if v is not None},
        )
        result = train_from_files(
            config,
            data,
            text_column,
            label_column,
            output,
            validation_path=validation,
            negative_column=negative_column,
            passage_column=passage_column,
            resume=resume,
            progress=sys.stderr.isatty(),
        )
        figures = dict(result.metadata["validation_metrics"])
        print(f"saved {result.output}")
        print(json.dumps({"output": str(result.output), "validation": figures}))

    run_or_exit(action)


def _check_training_data(
    task: str, path: Path, columns: tuple[str, str, str | None, str | None], multi_label: bool
) -> None:
    """Read the data file as the task will; `multi_label` also stands for "skip the class checks"."""
    from textcore.data import (  # noqa: PLC0415
        read_labelled,
        read_pairs,
        read_scored_pairs,
        require_classes,
        require_relevance_mix,
    )

    text_column, label_column, negative, passage = columns
    if task == "cross-encoder":
        if not passage:
            raise InvalidInput("--task cross-encoder: expected --passage-column naming the passage column")
        pairs = read_scored_pairs(path, text_column, passage, label_column)
        if not multi_label:
            require_relevance_mix(pairs, str(path))
        return
    if task == "embedding":
        read_pairs(path, text_column, label_column, negative)
        return
    data = read_labelled(path, text_column, label_column)
    if not multi_label:
        require_classes(data, str(path))


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="trained model folder")],
    data: DataOpt,
    text_column: TextCol = "text",
    label_column: LabelCol = "label",
    passage_column: PassageCol = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, bf16 or fp32")] = "auto",
    backend: BackendOpt = "torch",
) -> None:
    """Score a classifier (a cross-encoder: mrr@10 and accuracy); the last stdout line is one JSON object."""
    from textcore.artifacts import read_metadata  # noqa: PLC0415
    from textcore.evaluation import evaluate_classifier_file  # noqa: PLC0415

    if run_or_exit(lambda: read_metadata(model)).get("task") == "cross-encoder":
        columns = (text_column, passage_column, label_column)
        figures = run_or_exit(lambda: _evaluate_reranker(model, data, columns, device, precision, backend))
        print(json.dumps(figures))
        return
    report = run_or_exit(
        lambda: evaluate_classifier_file(
            model, data, text_column, label_column, device=device, precision=precision, backend=backend
        )
    )
    print_report(report)
    print(json.dumps(report))


def _evaluate_reranker(
    model: Path, data: Path, columns: tuple[str, str | None, str], device: str, precision: str, backend: str
) -> dict[str, Any]:
    from textcore.reranker import evaluate_reranker_file  # noqa: PLC0415

    query, passage, label = columns
    if not passage:
        raise InvalidInput(f"{model} is a cross-encoder: expected --passage-column naming the passage column")
    if backend != "torch":
        raise InvalidInput(f"expected backend torch for a cross-encoder; found {backend!r}")
    return evaluate_reranker_file(model, data, query, passage, label, device=device, precision=precision)


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


def _stdin_lines() -> Iterator[str]:
    for line in sys.stdin:
        text = line.rstrip("\n")
        if text.strip():
            yield text


@app.command()
def predict(
    model: Annotated[Path, typer.Option("--model", help="trained model folder")],
    data: Annotated[
        Path | None, typer.Option("--data", help="file to label (else one text per stdin line)")
    ] = None,
    text_column: TextCol = "text",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, bf16 or fp32")] = "auto",
    batch_size: Annotated[int, typer.Option(help="texts per forward pass")] = 64,
    backend: BackendOpt = "torch",
) -> None:
    """Label texts; prints one JSON object per text: label, confidence and every label's probability."""
    from textcore.data import read_texts  # noqa: PLC0415
    from textcore.evaluation import load_predictor  # noqa: PLC0415

    def action() -> None:
        texts = read_texts(data, text_column) if data is not None else list(_stdin_lines())
        if not texts:
            raise InvalidInput("expected at least one text to label; found none")
        classifier = load_predictor(
            model, backend=backend, device=device, precision=precision, batch_size=batch_size
        )
        for text, p in zip(texts, classifier.predict(texts), strict=True):
            row = {"text": text, "label": p.label, "confidence": p.confidence, "probabilities": p.scores}
            if classifier.multi_label:
                row["labels"] = list(p.labels)
            print(json.dumps(row, ensure_ascii=False))

    run_or_exit(action)


def main() -> None:
    """Console entry point."""
    from textcore.registry_cli import registry_app  # noqa: PLC0415

    app.add_typer(registry_app, name="registry")
    app()


if __name__ == "__main__":
    main()
