"""`customer-service`: fill the knowledge base, train and evaluate the models, serve the chat API.

Every expected failure (bad file, column, model) ends with one line on stderr and exit code 2. Commands that
report something print one JSON object as their last stdout line. Heavy imports (torch, the models, the
database) happen inside the commands so that ``customer-service --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from textcore import InvalidInput
from textcore import cli as core_cli

if TYPE_CHECKING:
    from customer_service.settings import CustomerServiceSettings
    from textcore import TrainConfig

app = typer.Typer(
    help="Customer service: intents, knowledge-base retrieval, grounded answers and hand-off.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
DatabaseOpt = Annotated[
    str | None, typer.Option("--database-url", help="SQLAlchemy URL (else CS_DATABASE_URL)")
]
IndexOpt = Annotated[Path | None, typer.Option("--index-dir", help="index folder (else CS_INDEX_DIR)")]
RetrieverOpt = Annotated[Path | None, typer.Option("--retriever", help="encoder folder from train-retriever")]
OutputOpt = Annotated[Path, typer.Option("--output", help="model folder to write")]
KbOpt = Annotated[Path, typer.Option("--kb", help="FAQ CSV/TSV/JSONL: question, answer[, id, category]")]
Epochs = Annotated[int | None, typer.Option(help="passes over the data")]
BatchSize = Annotated[int | None, typer.Option("--batch-size")]
LearningRate = Annotated[float | None, typer.Option("--learning-rate")]
MaxLength = Annotated[int | None, typer.Option("--max-length", help="tokens per text")]
BaseModel = Annotated[str, typer.Option("--base-model", help="alias, local folder or trained model")]
MaxInScopeDrop = Annotated[
    float, typer.Option("--max-in-scope-drop", help="bounded: in-scope accuracy the threshold may cost")
]
InScopeRejection = Annotated[
    float,
    typer.Option(
        "--in-scope-rejection",
        help="without oos validation rows: share of in-scope rows a threshold may reject (0: no threshold)",
    ),
]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")]
LogFormatOpt = Annotated[str, typer.Option(help=core_cli.LOG_FORMAT_HELP, envvar="CS_LOG_FORMAT")]
LogLevelOpt = Annotated[str, typer.Option(help=core_cli.LOG_LEVEL_HELP, envvar="CS_LOG_LEVEL")]
Precision = Annotated[str, typer.Option(help="auto, bf16 or fp32")]
Seed = Annotated[int, typer.Option()]
Teachers = Annotated[
    list[str] | None,
    typer.Option("--teacher", help="a trained intent model to distil from (repeat for an ensemble)"),
]
DistillWeight = Annotated[
    float | None, typer.Option("--distill-weight", help="share of the loss on the teachers' soft labels")
]


def _settings(**overrides: Any) -> CustomerServiceSettings:
    from customer_service.settings import CustomerServiceSettings  # noqa: PLC0415 - pulls in torch

    return CustomerServiceSettings(**{k: v for k, v in overrides.items() if v is not None})


def _config(task: str, base_model: str, device: str, precision: str, seed: int, **given: Any) -> TrainConfig:
    from textcore import TrainConfig  # noqa: PLC0415

    recipe = {**RECIPES[task], **{k: v for k, v in given.items() if v is not None}}
    return TrainConfig(
        task=task, base_model=base_model, device=device, precision=precision, seed=seed, **recipe
    )


# Defaults per task, measured on the project's development data (see bench/ and the README).
RECIPES: dict[str, dict[str, Any]] = {
    # BANKING77 validation: 8 epochs at 1.5e-4 0.935, 5 epochs at 2e-4 0.929 (both keep the best epoch).
    # The frozen view (textcore.frozen_view) added 0.5 / 1.4 / 0.1 points on a BANKING77 holdout (3 seeds);
    # the service feeds it the message's retrieval embedding, so it costs no second encoder pass there
    # (bench/README.md). Not with --refit, which it cannot follow.
    "classification": {"epochs": 8, "batch_size": 32, "learning_rate": 1.5e-4, "head_learning_rate": 2e-3,
                       "max_length": 64, "label_smoothing": 0.1, "evals_per_epoch": 1, "patience": 3,
                       "blend_frozen": True},
    "embedding": {"epochs": 3, "batch_size": 32, "learning_rate": 5e-5, "max_length": 256},
    "cross-encoder": {"epochs": 2, "batch_size": 16, "learning_rate": 5e-5, "max_length": 256},
}  # fmt: skip


def _print(report: dict[str, Any]) -> None:
    print(json.dumps(report, ensure_ascii=False))


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="FAQ table, document, or a folder of them")],
    category: Annotated[str, typer.Option(help="category of the documents")] = "",
    document_id: Annotated[
        str | None,
        typer.Option(
            "--id", help="id of the document when PATH is one document file (default: its file name)"
        ),
    ] = None,
    id_prefix: Annotated[
        str, typer.Option("--id-prefix", help="put before each document id, e.g. 'branch-a/'")
    ] = "",
    database_url: DatabaseOpt = None,
    index_dir: IndexOpt = None,
    retriever: RetrieverOpt = None,
) -> None:
    """Add FAQs (CSV/TSV/JSONL) and documents (Markdown, HTML, text) to the knowledge base.

    A document's id is its path relative to PATH when PATH is a folder, else its file name (or --id); a
    document stored under the same id is replaced. The summary counts documents added and replaced; a
    replacement from another source file, or a file stored again under a new id, is also a warning on stderr.
    Text with a control character other than tab, newline and carriage return is refused, naming the file
    and its row or line, and nothing is stored.
    """

    def action() -> dict[str, Any]:
        from customer_service.ingest import ingest_path  # noqa: PLC0415
        from customer_service.service import open_database, open_knowledge  # noqa: PLC0415

        settings = _settings(database_url=database_url, index_dir=index_dir, retriever_path=retriever)
        db = open_database(settings)
        try:
            kb = open_knowledge(settings, db)
            report = ingest_path(kb, path, category=category, document_id=document_id, id_prefix=id_prefix)
            for warning in report.warnings:
                core_cli.err.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
            return {**report.__dict__, "entries": kb.count(), "version": kb.version}
        finally:
            db.dispose()

    _print(core_cli.run_or_exit(action))


@app.command()
def delete(
    ids: Annotated[list[str], typer.Argument(help="FAQ, chunk or document ids")],
    database_url: DatabaseOpt = None,
    index_dir: IndexOpt = None,
    retriever: RetrieverOpt = None,
) -> None:
    """Remove FAQs, chunks or whole documents from the knowledge base."""

    def action() -> dict[str, Any]:
        from customer_service.service import open_database, open_knowledge  # noqa: PLC0415

        settings = _settings(database_url=database_url, index_dir=index_dir, retriever_path=retriever)
        db = open_database(settings)
        try:
            kb = open_knowledge(settings, db)
            return {"removed": kb.delete(ids), "entries": kb.count(), "version": kb.version}
        finally:
            db.dispose()

    _print(core_cli.run_or_exit(action))


@app.command()
def export(
    output: Annotated[
        Path, typer.Argument(help="file to write: .csv (FAQs) or .jsonl (FAQs and document chunks)")
    ],
    kind: Annotated[str, typer.Option(help="faq, document or all")] = "all",
    category: Annotated[str | None, typer.Option(help="only the entries of this category")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace OUTPUT if it exists")] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Write the knowledge base to a file that `ingest` reads back: a backup, a review, a move, a diff.

    FAQs go to CSV or JSON Lines with the columns ingest reads (id, question, answer, category). Documents go
    to JSON Lines only, one row per stored chunk (their original text is not stored, only their chunks):
    ingest stores such rows as they are, with the same ids and text. The file is written under a temporary
    name and renamed when complete; an existing file is refused unless --force. A one-line summary goes to
    stderr, the counts as JSON to stdout.
    """

    def action() -> dict[str, Any]:
        from customer_service.export import check_output, export_knowledge  # noqa: PLC0415
        from customer_service.service import open_database  # noqa: PLC0415

        check_output(output, kind, force)  # before the database is opened (and migrated)
        settings = _settings(database_url=database_url)
        _require_sqlite_file(settings.database_url)
        db = open_database(settings)
        try:
            report = export_knowledge(db, output, kind=kind, category=category, force=force)
        finally:
            db.dispose()
        for warning in report.warnings:
            core_cli.err.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
        core_cli.err.print(report.summary(), markup=False, highlight=False, soft_wrap=True)
        return {**asdict(report), "warnings": list(report.warnings)}

    _print(core_cli.run_or_exit(action))


@app.command("train-intents")
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
        from customer_service.intents import train_intents as train  # noqa: PLC0415
        from textcore import read_labelled  # noqa: PLC0415

        core_cli.prepare_output(output)
        config = _config(
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
        rows = read_labelled(data, text_column, label_column)
        held_out = read_labelled(validation, text_column, label_column) if validation else None
        sources = {"file": str(data), "validation_file": str(validation) if validation else None}
        result = train(rows, output, config, validation=held_out, oos_label=oos_label, rule=threshold_rule,
                       max_in_scope_drop=max_in_scope_drop, in_scope_rejection=in_scope_rejection,
                       sources=sources,
                       progress=sys.stderr.isatty())  # fmt: skip
        return {"output": str(output), "threshold": result.threshold, "oos_label": result.oos_label,
                "selection": result.selection, "validation": result.validation}  # fmt: skip

    _print(core_cli.run_or_exit(action))


@app.command("calibrate-intents")
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
        from customer_service.intents import IntentModel, calibrate  # noqa: PLC0415
        from textcore import read_labelled  # noqa: PLC0415

        rows = read_labelled(validation, text_column, label_column)
        loaded = IntentModel.load(model, device=device, precision=precision)
        threshold, selection, figures = calibrate(
            loaded, model, rows, oos_label=oos_label, rule=threshold_rule,
            max_in_scope_drop=max_in_scope_drop, in_scope_rejection=in_scope_rejection,
        )  # fmt: skip
        return {"model": str(model), "threshold": threshold, "selection": selection, "validation": figures}

    _print(core_cli.run_or_exit(action))


@app.command("evaluate-intents")
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
        from customer_service.intents import IntentModel  # noqa: PLC0415
        from customer_service.intents import evaluate_intents as evaluate  # noqa: PLC0415
        from textcore import read_labelled  # noqa: PLC0415

        rows = read_labelled(data, text_column, label_column)
        loaded = IntentModel.load(model, device=device, precision=precision)
        return {**evaluate(loaded, rows, oos_label), "threshold": loaded.threshold}

    _print(core_cli.run_or_exit(action))


def _require_sqlite_file(url: str) -> None:
    """Refuse a SQLite URL naming no file, which opening would create empty (a mistyped path)."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    try:
        parsed = make_url(url)
    except Exception:  # sqlalchemy raises several kinds; opening the database words a bad URL
        return
    name = parsed.database
    if parsed.get_backend_name() == "sqlite" and name and name != ":memory:" and not Path(name).is_file():
        raise InvalidInput(f"expected an existing SQLite database to export; found no file {name}")


def _faqs(kb: Path) -> list[Any]:
    from customer_service.retrieval_eval import read_faqs  # noqa: PLC0415

    return read_faqs(kb)


@app.command("train-retriever")
def train_retriever(
    kb: KbOpt,
    output: OutputOpt,
    hard_negatives: Annotated[bool, typer.Option(help="mine one hard negative per question")] = True,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    learning_rate: LearningRate = None,
    max_length: MaxLength = None,
    base_model: BaseModel = "minilm",
    device: Device = "auto",
    precision: Precision = "auto",
    seed: Seed = 42,
) -> None:
    """Fine-tune the retrieval encoder on the FAQ's question -> answer pairs (contrastive)."""

    def action() -> dict[str, Any]:
        from customer_service.reranking import train_retriever_from_faqs  # noqa: PLC0415
        from textcore import Encoder  # noqa: PLC0415

        core_cli.prepare_output(output)
        config = _config(
            "embedding",
            base_model,
            device,
            precision,
            seed,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_length=max_length,
        )
        encoder = (
            Encoder.from_pretrained(base_model, device=device, precision=precision)
            if hard_negatives
            else None
        )
        result = train_retriever_from_faqs(_faqs(kb), output, config, encoder=encoder,
                                           sources={"kb": str(kb)}, progress=sys.stderr.isatty())  # fmt: skip
        return {"output": str(output), "validation": result.metrics}

    _print(core_cli.run_or_exit(action))


@app.command("train-reranker")
def train_reranker(
    kb: KbOpt,
    output: OutputOpt,
    retriever: RetrieverOpt = None,
    negatives: Annotated[int, typer.Option(help="hard negatives per question")] = 3,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    learning_rate: LearningRate = None,
    max_length: MaxLength = None,
    base_model: BaseModel = "minilm",
    device: Device = "auto",
    precision: Precision = "auto",
    seed: Seed = 42,
) -> None:
    """Train the re-ranker (cross-encoder) on the FAQ's own pairs, hard negatives mined by the retriever."""

    def action() -> dict[str, Any]:
        from customer_service.reranking import train_reranker_from_faqs  # noqa: PLC0415
        from textcore import Encoder  # noqa: PLC0415

        core_cli.prepare_output(output)
        config = _config(
            "cross-encoder",
            base_model,
            device,
            precision,
            seed,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_length=max_length,
        )
        encoder = Encoder.from_pretrained(retriever or base_model, device=device, precision=precision)
        result = train_reranker_from_faqs(_faqs(kb), output, config, encoder=encoder, per_query=negatives,
                                          sources={"kb": str(kb)}, progress=sys.stderr.isatty())  # fmt: skip
        return {"output": str(output), "validation": result.metrics}

    _print(core_cli.run_or_exit(action))


@app.command("evaluate-retrieval")
def evaluate_retrieval(
    kb: KbOpt,
    queries: Annotated[Path, typer.Option("--queries", help="CSV/TSV/JSONL: a query and its expected id")],
    query_column: Annotated[str, typer.Option("--query-column")] = "query",
    expected_column: Annotated[str, typer.Option("--expected-column", help="the expected entry id")] = "id",
    retriever: RetrieverOpt = None,
    reranker: Annotated[Path | None, typer.Option("--reranker", help="folder from train-reranker")] = None,
    mode: Annotated[
        str | None, typer.Option(help="dense, keyword, hybrid or rerank (default: the best)")
    ] = None,
    index_questions: Annotated[
        bool,
        typer.Option(
            help="index each FAQ's question with its answer, as the app does (the default); "
            "--no-index-questions indexes the answers alone, as the project's reference figure "
            "(bench/retrieval.py) does. The JSON's index_questions says which was used",
        ),
    ] = True,
    device: Device = "auto",
    precision: Precision = "auto",
) -> None:
    """recall@1, recall@5 and mrr@10 of retrieval over a KB file (last line: JSON, every mode too).

    By default the FAQs' questions are indexed with their answers: queries worded like a stored question
    then find it word for word, and the figures are not comparable with ones measured on answers alone
    (--no-index-questions). The JSON states the choice ("index_questions").
    """

    def action() -> dict[str, Any]:
        return _evaluate_retrieval(kb, queries, query_column, expected_column, retriever, reranker, mode,
                                   index_questions, device, precision)  # fmt: skip

    _print(core_cli.run_or_exit(action))


def _evaluate_retrieval(
    kb_file: Path, queries_file: Path, query_column: str, expected_column: str, retriever_path: Path | None,
    reranker_path: Path | None, mode: str | None, index_questions: bool, device: str, precision: str,
) -> dict[str, Any]:  # fmt: skip
    from customer_service.database import Database  # noqa: PLC0415
    from customer_service.knowledge import KnowledgeBase  # noqa: PLC0415
    from customer_service.retrieval import Retriever  # noqa: PLC0415
    from customer_service.retrieval_eval import evaluate_retrieval as evaluate  # noqa: PLC0415
    from textcore import Encoder, Reranker, read_table  # noqa: PLC0415

    rows = read_table(queries_file)
    missing = [c for c in (query_column, expected_column) if rows and c not in rows[0]]
    if not rows or missing:
        raise InvalidInput(f"{queries_file}: expected rows with columns {missing or [query_column]}; "
                           f"found {sorted(rows[0]) if rows else 'no rows'}")  # fmt: skip
    encoder = Encoder.from_pretrained(retriever_path or "minilm", device=device, precision=precision)
    ranker = Reranker.load(reranker_path, device=device, precision=precision) if reranker_path else None
    with tempfile.TemporaryDirectory(prefix="cs-eval-") as tmp:
        db = Database(f"sqlite:///{tmp}/kb.db")
        db.migrate()
        try:
            kb = KnowledgeBase(db, encoder, Path(tmp) / "index", index_questions=index_questions)
            kb.upsert_faqs(_faqs(kb_file))
            search = Retriever(kb, ranker)
            modes = list(search.modes)
            chosen = mode or search.default_mode
            if chosen not in modes:
                raise InvalidInput(f"mode: expected one of {', '.join(modes)}; found {chosen!r}")
            texts, expected = [r[query_column] for r in rows], [r[expected_column] for r in rows]
            figures = evaluate(search, texts, expected, modes)
        finally:
            db.dispose()
    report = {**figures[chosen], "mode": chosen, "n": len(rows), "index_questions": index_questions}
    return {**report, "modes": figures}


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    database_url: DatabaseOpt = None,
    index_dir: IndexOpt = None,
    knowledge: Annotated[
        Path | None, typer.Option(help="FAQ file or folder ingested into an empty KB")
    ] = None,
    log_format: LogFormatOpt = "text",
    log_level: LogLevelOpt = "info",
) -> None:
    """Serve the chat API (settings from CS_* environment variables, these options first)."""
    import uvicorn  # noqa: PLC0415

    from customer_service.app import create_app  # noqa: PLC0415
    from customer_service.database import Database  # noqa: PLC0415

    def checked() -> CustomerServiceSettings:
        settings = _settings(database_url=database_url, index_dir=index_dir, knowledge_file=knowledge)
        Database(settings.database_url).check()  # one error line, not a traceback from the app's start-up
        return settings

    log_config = core_cli.log_config(log_format, log_level)
    settings = core_cli.run_or_exit(checked)
    uvicorn.run(create_app(settings), host=host, port=port, log_config=log_config)


def main() -> None:
    """Console entry point."""
    app()
