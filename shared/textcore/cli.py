"""`textcore`: train, evaluate and run models from the command line.

Every expected failure (bad file, column, label, model) ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from textcore.errors import CoreError, InvalidInput

if TYPE_CHECKING:
    from pydantic import ValidationError

app = typer.Typer(
    help="Fine-tune small pretrained encoders on your own labelled text.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)
T = TypeVar("T")
TAGGER = "token-classification"  # the metadata task of a tagger folder

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


def quiet_libraries() -> None:
    """Keep stderr for our own messages: no hub/transformers progress bars or load reports.

    Called inside the commands (which import transformers anyway) so that `--help` stays fast.
    """
    import transformers.utils.logging  # noqa: PLC0415
    from huggingface_hub.utils import disable_progress_bars  # type: ignore[attr-defined]  # noqa: PLC0415

    disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]


def settings_errors(exc: ValidationError, prefix: str) -> str:
    """A service's refused settings in one line, each by its environment variable, e.g.
    ``FIN_RETENTION_DAYS: Input should be a valid integer``; never the value (it may be a key or a
    password)."""
    return "; ".join(
        f"{prefix}{'__'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    )


LOG_FORMAT_HELP = "text (readable lines) or json (one object per line, for a log pipeline)"
LOG_LEVEL_HELP = "debug, info, warning or error"


def log_config(log_format: str, level: str) -> dict[str, Any]:
    """The `logging.config.dictConfig` of a long-running command (uvicorn applies it as its ``log_config``):
    every record to stderr in `log_format` at `level`. A bad format or level ends in one line and exit 2."""
    from textcore.logs import logging_config  # noqa: PLC0415

    return run_or_exit(lambda: logging_config(log_format, level))


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
        # Check the data before importing torch, so that a bad file fails in a fraction of a second.
        prepare_output(output, resume)
        if negative_column and task != "embedding":
            raise InvalidInput(f"--negative-column: hard negatives apply to --task embedding; found {task}")
        if passage_column and task != "cross-encoder":
            raise InvalidInput(f"--passage-column applies to --task cross-encoder; found {task}")
        columns = (text_column, label_column, negative_column, passage_column)
        _check_training_data(task, data, columns, multi_label, weight_column)
        for extra in filter(None, [validation]):
            _check_training_data(task, extra, columns, True, weight_column)
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


def prepare_output(output: Path, resume: bool = False) -> None:
    """Make `output` ready for a training run: a new folder, an empty one, or the folder of an earlier run of
    this project (a model, or a run cut short), whose contents the new run replaces whole, so that nothing of
    the earlier model (a classifier's head and labels beside a new encoder, its curves) mixes with the new
    one. `resume` keeps them, to continue an interrupted run there.

    Only the main process looks into the folder: under `torchrun` the other ranks may start after it has
    begun writing.

    Raises:
        InvalidInput: If `output` is a file, or a folder holding files no run of this project wrote.
    """
    if output.exists() and not output.is_dir():
        raise InvalidInput(f"--output {output}: expected a folder to write the model to; found a file")
    if resume or os.environ.get("RANK", "0") != "0" or not output.is_dir():
        return
    entries = sorted(output.iterdir())
    if not entries:
        return
    from textcore.artifacts import METADATA_FILE, RUN_DIR  # noqa: PLC0415  (numpy: not for --help)

    if not ((output / METADATA_FILE).is_file() or (output / RUN_DIR).is_dir()):
        names = [entry.name for entry in entries]
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise InvalidInput(
            f"--output {output}: expected a new or empty folder, or an earlier model's; it holds {shown}, "
            "which no training run wrote. Choose another folder"
        )
    err.print(f"replacing the earlier model in {output}", markup=False, highlight=False, soft_wrap=True)
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _check_training_data(
    task: str,
    path: Path,
    columns: tuple[str, str, str | None, str | None],
    multi_label: bool,
    weight_column: str | None = None,
) -> None:
    """Read the data file as the task will; `multi_label` also stands for "skip the class checks"."""
    if weight_column and task != "classification":
        raise InvalidInput(f"--weight-column: row weights apply to --task classification only; found {task}")
    from textcore.data import (  # noqa: PLC0415
        read_corpus,
        read_labelled,
        read_pairs,
        read_scored_pairs,
        require_classes,
        require_relevance_mix,
    )

    text_column, label_column, negative, passage = columns
    if task == "mlm":  # unlabelled: only the text column (or a .txt file, one text per line)
        read_corpus(path, text_column)
        return
    if task == "token-classification":
        from textcore.bio import read_tagged, require_entities  # noqa: PLC0415

        sentences = read_tagged(path, text_column, label_column)
        if not multi_label:
            require_entities(sentences, str(path))
        return
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
    data = read_labelled(path, text_column, label_column, weight_column)
    if not multi_label:
        require_classes(data, str(path))
    if task == "setfit" and not multi_label:
        single = [label for label, n in data.label_counts().items() if n < 2]
        if single:
            raise InvalidInput(
                f"{path}: task setfit expects at least 2 examples of every class; found 1 of {single[:5]}"
            )


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
    compare_base: Annotated[
        bool, typer.Option(help="also score the untuned base model (frozen embeddings + linear head)")
    ] = False,
    base_train_data: Annotated[
        Path | None,
        typer.Option(help="--compare-base: rows to fit the base model's head on (default: recorded file)"),
    ] = None,
) -> None:
    """Score a classifier, a tagger (entity F1) or a cross-encoder (mrr@10 and accuracy); the last stdout
    line is one JSON object."""
    from textcore.artifacts import read_metadata  # noqa: PLC0415
    from textcore.evaluation import evaluate_classifier_file  # noqa: PLC0415

    if compare_base:
        from textcore.baseline import require_classifier_folder  # noqa: PLC0415

        run_or_exit(lambda: require_classifier_folder(model))
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
    printed before the next is read: a pipe that stays open gets each line's answer as it comes.
    """
    from textcore.artifacts import read_metadata  # noqa: PLC0415
    from textcore.data import read_texts  # noqa: PLC0415
    from textcore.line_input import line_batches, stdin_lines  # noqa: PLC0415

    def action() -> None:
        if data is None and text_column is not None:
            raise InvalidInput(
                "expected --text-column only with --data (without --data, each stdin line is one text)"
            )
        if data is not None:
            texts = read_texts(data, text_column or "text")
            if not texts:
                raise InvalidInput("expected at least one text to label; found none")
        label = _entity_rows if read_metadata(model).get("task") == TAGGER else _label_rows
        rows = label(model, device, precision, batch_size, backend)
        batches = [texts] if data is not None else line_batches(stdin_lines(), batch_size)
        labelled = 0
        for batch in batches:
            for row in rows(batch):
                print(json.dumps(row, ensure_ascii=False))
            sys.stdout.flush()  # a reader at the other end of a pipe sees the batch now
            labelled += len(batch)
        if not labelled:
            raise InvalidInput("expected at least one text to label; found none")

    run_or_exit(action)


Rows = Callable[[list[str]], list[dict[str, Any]]]


def _label_rows(model: Path, device: str, precision: str, batch_size: int, backend: str) -> Rows:
    """What `predict` prints of a classifier's predictions of some texts, one row per text."""
    from textcore.evaluation import load_predictor  # noqa: PLC0415

    classifier = load_predictor(
        model, backend=backend, device=device, precision=precision, batch_size=batch_size
    )

    def rows(texts: list[str]) -> list[dict[str, Any]]:
        out = []
        for text, p in zip(texts, classifier.predict(texts), strict=True):
            row = {"text": text, "label": p.label, "confidence": p.confidence, "probabilities": p.scores}
            if classifier.multi_label:
                row["labels"] = list(p.labels)
            out.append(row)
        return out

    return rows


def _entity_rows(model: Path, device: str, precision: str, batch_size: int, backend: str) -> Rows:
    """What `predict` prints of a tagger's entities in some texts, one row per text."""
    if backend != "torch":
        raise InvalidInput(f"expected backend torch for a tagger; found {backend!r}")
    from textcore.tagger import Tagger  # noqa: PLC0415

    tagger = Tagger.load(model, device=device, precision=precision, batch_size=batch_size)

    def rows(texts: list[str]) -> list[dict[str, Any]]:
        return [
            {"text": text, "entities": [entity.to_dict() for entity in entities]}
            for text, entities in zip(texts, tagger.tag(texts), strict=True)
        ]

    return rows


def full_app() -> typer.Typer:
    """The whole command, `registry` group included (imported here so that `--help` stays fast)."""
    from textcore.registry_cli import registry_app  # noqa: PLC0415

    if registry_app not in [group.typer_instance for group in app.registered_groups]:
        app.add_typer(registry_app, name="registry")
    return app


def main() -> None:
    """Console entry point."""
    full_app()()


if __name__ == "__main__":
    main()
