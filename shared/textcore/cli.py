"""`textcore`: train, evaluate and run models from the command line.

Every expected failure (bad file, column, label, model) ends with one line on stderr and exit code 2
(`textcore.console`). The checks before training live in `textcore.preflight`, the readable report tables in
`textcore.report_tables`, and what `predict` prints per text in `textcore.prediction_rows`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from textcore.console import (
    LOG_FORMAT_HELP,
    LOG_LEVEL_HELP,
    err,
    log_config,
    run_app,
    run_or_exit,
    say,
    settings_errors,
)
from textcore.errors import InvalidInput
from textcore.model_names import resolve_model
from textcore.preflight import (
    check_training_data,
    prepare_output,
    replacing_output,
    require_distinct_columns,
)
from textcore.report_tables import print_comparison, print_report, print_tagging_report

# the commands, and what the services' command lines reach through this module (`core_cli.run_or_exit`, ...)
__all__ = [
    "LOG_FORMAT_HELP",
    "LOG_LEVEL_HELP",
    "app",
    "err",
    "evaluate",
    "full_app",
    "log_config",
    "main",
    "predict",
    "prepare_output",
    "replacing_output",
    "run_app",
    "run_or_exit",
    "say",
    "settings_errors",
    "train",
]

app = typer.Typer(
    help="Fine-tune small pretrained encoders on your own labelled text.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
TAGGER = "token-classification"  # the metadata task of a tagger folder
# predict --data labels this many batches at a time: length-sorted together (little padding), printed as each
# run is done, so the first lines come at once and the labels held do not grow with the file
FILE_BATCHES_AT_ONCE = 16

TaskOpt = Annotated[
    str,
    typer.Option(
        "--task", help="classification, embedding, cross-encoder, token-classification, mlm or setfit"
    ),
]
DataOpt = Annotated[
    Path,
    typer.Option("--data", help="CSV, TSV or JSONL file (token-classification: or CoNLL .conll/.bio/.txt)"),
]
TextCol = Annotated[
    str,
    typer.Option(
        "--text-column",
        help="column with the text (embedding: the anchor; cross-encoder: the query; "
        "token-classification: the tokens, `tokens` when there is no `text`)",
    ),
]
BackendOpt = Annotated[str, typer.Option(help="torch, or onnx (ONNX Runtime on the CPU, fp32)")]
LabelCol = Annotated[
    str,
    typer.Option(
        "--label-column",
        help="column with the label (embedding: the positive; cross-encoder: relevance in [0, 1]; "
        "token-classification: the BIO tags, `tags` when there is no `label`)",
    ),
]
PassageCol = Annotated[
    str | None, typer.Option("--passage-column", help="cross-encoder: column with the passage")
]
# evaluate scores classifiers, taggers and cross-encoders (an embedding model has no labels to score)
EvalTextCol = Annotated[
    str,
    typer.Option(
        "--text-column",
        help="column with the text (cross-encoder: the query; token-classification: the tokens, `tokens` "
        "when there is no `text`)",
    ),
]
EvalLabelCol = Annotated[
    str,
    typer.Option(
        "--label-column",
        help="column with the label (cross-encoder: relevance in [0, 1]; token-classification: the BIO tags, "
        "`tags` when there is no `label`)",
    ),
]


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
    weight_column: Annotated[
        str | None,
        typer.Option(
            help="classification: column of per-row loss weights (numbers >= 0, e.g. annotator agreement; "
            "the validation file needs it too)"
        ),
    ] = None,
    base_model: Annotated[str, typer.Option(help="alias, local folder or trained model")] = "minilm",
    epochs: Annotated[int | None, typer.Option(help="passes over the data")] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    learning_rate: Annotated[float | None, typer.Option()] = None,
    max_length: Annotated[int | None, typer.Option(help="tokens per text")] = None,
    dropout: Annotated[float | None, typer.Option(help="dropout before the head")] = None,
    class_weights: Annotated[bool, typer.Option(help="weight classes by inverse frequency")] = False,
    rdrop: Annotated[
        float | None,
        typer.Option(help="classification: weight of the R-Drop term (KL between two dropout passes; 0 off)"),
    ] = None,
    refit: Annotated[
        bool,
        typer.Option(
            help="classification: once the validation rows have chosen when to stop, train again on all rows "
            "for that long and save that model (twice the training time)"
        ),
    ] = False,
    blend_frozen: Annotated[
        bool,
        typer.Option(
            help="classification: blend in a logistic regression on the frozen base model's embeddings, "
            "weighted as the validation rows choose (0: left out); a second encoder pass at prediction"
        ),
    ] = False,
    patience: Annotated[
        int | None,
        typer.Option(help="evaluations without a better validation score before the run stops early"),
    ] = None,
    ema: Annotated[
        float | None,
        typer.Option(
            help="evaluate and keep a moving average of the weights with this decay per step (0.99: about "
            "the last 100 steps; 0 off)"
        ),
    ] = None,
    multi_label: Annotated[bool, typer.Option(help="labels separated by '|'; one sigmoid per label")] = False,
    head: Annotated[
        str | None,
        typer.Option(help="classification: linear, or cosine (scaled cosine of the text and each label)"),
    ] = None,
    scale: Annotated[
        float | None,
        typer.Option(help="logit scale of the cosine head and of the contrastive losses (embedding, setfit)"),
    ] = None,
    precision: Annotated[str, typer.Option(help="auto, bf16 or fp32")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    seed: Annotated[int, typer.Option()] = 42,
    resume: Annotated[bool, typer.Option(help="continue an interrupted run in --output")] = False,
    adversarial: Annotated[
        str, typer.Option(help="none, fgm or pgd (perturbs the word embeddings)")
    ] = "none",
    adversarial_epsilon: Annotated[
        float | None, typer.Option(help="L2 size of the perturbation of each text's embeddings")
    ] = None,
    adversarial_steps: Annotated[int | None, typer.Option(help="pgd: projected gradient steps")] = None,
    adapter: Annotated[str, typer.Option(help="none, lora or adalora (peft; small adapters)")] = "none",
    lora_rank: Annotated[int | None, typer.Option(help="rank of the LoRA matrices")] = None,
    lora_alpha: Annotated[int | None, typer.Option(help="LoRA scaling numerator")] = None,
    mlm_probability: Annotated[float | None, typer.Option(help="mlm: share of tokens masked")] = None,
    tensorboard: Annotated[
        Path | None,
        typer.Option("--tensorboard", help="also write TensorBoard event files, in DIR/<name of --output>"),
    ] = None,
    teacher: Annotated[
        list[str] | None,
        typer.Option(
            "--teacher",
            help="classification: a trained classifier folder to distil from (repeat for an ensemble)",
        ),
    ] = None,
    distill_weight: Annotated[
        float | None, typer.Option(help="share of the loss on the teachers' soft labels")
    ] = None,
    distill_temperature: Annotated[
        float | None, typer.Option(help="softmax temperature of distillation")
    ] = None,
) -> None:
    """Fine-tune a model on labelled data and save it as a self-contained folder."""
    overrides: dict[str, Any] = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "max_length": max_length,
        "dropout": dropout,
        "rdrop": rdrop,
        "head": head,
        "scale": scale,
        "patience": patience,
        "ema": ema,
        "adversarial": adversarial,
        "adversarial_epsilon": adversarial_epsilon,
        "adversarial_steps": adversarial_steps,
        "adapter": adapter,
        "lora_rank": lora_rank,
        "lora_alpha": lora_alpha,
        "mlm_probability": mlm_probability,
        "tensorboard": str(tensorboard) if tensorboard is not None else None,
        "teachers": tuple(teacher) if teacher else None,
        "distill_weight": distill_weight,
        "distill_temperature": distill_temperature,
    }

    def action() -> None:
        # Check the data and the base model's name before importing torch, so that a bad file or a misspelt
        # model fails in a fraction of a second; then set an earlier model in --output aside (not removed)
        # until the run succeeds.
        require_distinct_columns(text_column, label_column, task)
        if negative_column and task != "embedding":
            raise InvalidInput(f"--negative-column: hard negatives apply to --task embedding; found {task}")
        if passage_column and task != "cross-encoder":
            raise InvalidInput(f"--passage-column applies to --task cross-encoder; found {task}")
        columns = (text_column, label_column, negative_column, passage_column)
        check_training_data(task, data, columns, multi_label, weight_column, label_sets=multi_label)
        for extra in filter(None, [validation]):
            check_training_data(task, extra, columns, True, weight_column, label_sets=multi_label)
        resolve_model(base_model)
        inputs = (data, validation, base_model, *(teacher or ()))
        with replacing_output(output, resume, inputs, resumable=True):
            train_and_report()

    def train_and_report() -> None:
        from textcore.training import TrainConfig, train_from_files  # noqa: PLC0415 - heavy import

        config = TrainConfig(
            task=task,
            base_model=base_model,
            class_weights=class_weights,
            multi_label=multi_label,
            refit=refit,
            blend_frozen=blend_frozen,
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
            weight_column=weight_column,
            resume=resume,
            progress=sys.stderr.isatty(),
        )
        if not result.metadata:  # a worker rank of a torchrun launch: the main process saved and reports
            return
        figures = dict(result.metadata["validation_metrics"])
        print(f"saved {result.output}")
        print(json.dumps({"output": str(result.output), "validation": figures}))

    run_or_exit(action)


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="trained model folder")],
    data: DataOpt,
    text_column: EvalTextCol = "text",
    label_column: EvalLabelCol = "label",
    passage_column: PassageCol = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, bf16 or fp32")] = "auto",
    backend: BackendOpt = "torch",
    compare_base: Annotated[
        bool, typer.Option(help="also score the untuned base model (frozen embeddings + linear head)")
    ] = False,
    base_train_data: Annotated[
        Path | None,
        typer.Option(
            help="--compare-base: rows to fit the base model's head on (default: the training file named in "
            "the model's metadata.json)"
        ),
    ] = None,
) -> None:
    """Score a classifier, a tagger (entity F1) or a cross-encoder (mrr@10 and accuracy); the last stdout
    line is one JSON object."""
    from textcore.artifacts import read_metadata  # noqa: PLC0415
    from textcore.evaluation import evaluate_classifier_file  # noqa: PLC0415

    if compare_base:
        from textcore.baseline import require_classifier_folder  # noqa: PLC0415

        run_or_exit(lambda: require_classifier_folder(model))
    task = run_or_exit(lambda: read_metadata(model)).get("task")
    run_or_exit(lambda: require_distinct_columns(text_column, label_column, task))
    if run_or_exit(lambda: read_metadata(model)).get("task") == TAGGER:
        figures = run_or_exit(
            lambda: _evaluate_tagger(model, data, (text_column, label_column), device, precision, backend)
        )
        print_tagging_report(figures)
        print(json.dumps(figures))
        return
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
    if compare_base:
        fit = (text_column, label_column)
        report = run_or_exit(lambda: _with_base(report, model, data, fit, base_train_data, device, precision))
        print_comparison(report)
    print(json.dumps(report))


def _with_base(
    report: dict[str, Any],
    model: Path,
    data: Path,
    columns: tuple[str, str],
    train_data: Path | None,
    device: str,
    precision: str,
) -> dict[str, Any]:
    """The report plus `base` (the untuned base model's figures) and `delta` (fine-tuned minus base)."""
    from textcore.baseline import evaluate_base_model  # noqa: PLC0415
    from textcore.data import read_labelled  # noqa: PLC0415

    rows = read_labelled(data, *columns)
    fit_rows = read_labelled(train_data, *columns) if train_data is not None else None
    base = evaluate_base_model(model, rows, train_data=fit_rows, device=device, precision=precision)
    delta = {k: report[k] - getattr(base, k) for k in ("accuracy", "macro_f1")}
    return {**report, "base": base.to_dict(), "delta": delta}


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


def _evaluate_tagger(
    model: Path, data: Path, columns: tuple[str, str], device: str, precision: str, backend: str
) -> dict[str, Any]:
    if backend != "torch":
        raise InvalidInput(f"expected backend torch for a tagger; found {backend!r}")
    from textcore.tagger import evaluate_tagger_file  # noqa: PLC0415

    return evaluate_tagger_file(model, data, *columns, device=device, precision=precision)


@app.command()
def predict(
    model: Annotated[Path, typer.Option("--model", help="trained model folder")],
    data: Annotated[
        Path | None, typer.Option("--data", help="file to label (else one text per stdin line)")
    ] = None,
    text_column: Annotated[
        str | None, typer.Option("--text-column", help="column with the text, with --data (default: text)")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, bf16 or fp32")] = "auto",
    batch_size: Annotated[int, typer.Option(help="texts per forward pass")] = 64,
    backend: BackendOpt = "torch",
) -> None:
    """Label texts; prints one JSON object per text: label, confidence and every label's probability.

    A tagger prints the text's entities instead: text, label, character offsets and score of each. Read from
    stdin, texts are labelled in batches of what has arrived (at most --batch-size lines), each batch's lines
    printed before the next is read: a pipe that stays open gets each line's answer as it comes. A --data
    file is read and checked whole first, then labelled and printed a few batches at a time, in its order.
    """
    from textcore.artifacts import read_metadata  # noqa: PLC0415
    from textcore.data import read_texts  # noqa: PLC0415
    from textcore.line_input import line_batches, stdin_lines  # noqa: PLC0415
    from textcore.prediction_rows import entity_rows, label_rows  # noqa: PLC0415

    def action() -> None:
        if data is None and text_column is not None:
            raise InvalidInput(
                "expected --text-column only with --data (without --data, each stdin line is one text)"
            )
        if data is not None:
            texts = read_texts(data, text_column or "text")
            if not texts:
                raise InvalidInput("expected at least one text to label; found none")
        label = entity_rows if read_metadata(model).get("task") == TAGGER else label_rows
        rows = label(model, device, precision, batch_size, backend)
        if data is not None:  # a run of batches at a time, length-sorted inside: printed as it is labelled
            step = batch_size * FILE_BATCHES_AT_ONCE
            batches: Iterable[list[str]] = (texts[i : i + step] for i in range(0, len(texts), step))
        else:
            batches = line_batches(stdin_lines(), batch_size)
        labelled = 0
        for batch in batches:
            for row in rows(batch):
                print(json.dumps(row, ensure_ascii=False))
            sys.stdout.flush()  # a reader at the other end of a pipe sees the batch now
            labelled += len(batch)
        if not labelled:
            raise InvalidInput("expected at least one text to label; found none")

    run_or_exit(action)


def full_app() -> typer.Typer:
    """The whole command, `registry` group included (imported here so that `--help` stays fast)."""
    from textcore.registry_cli import registry_app  # noqa: PLC0415

    if registry_app not in [group.typer_instance for group in app.registered_groups]:
        app.add_typer(registry_app, name="registry")
    return app


def main() -> None:
    """Console entry point: usage errors as one line and exit code 2 (`textcore.console.run_app`)."""
    run_app(full_app())


if __name__ == "__main__":
    main()
