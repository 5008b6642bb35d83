"""`customer-service` commands for retrieval over an FAQ file: train-retriever, train-reranker,
evaluate-retrieval."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from customer_service.command_options import (
    BaseModel,
    BatchSize,
    Device,
    Epochs,
    KbOpt,
    LearningRate,
    MaxLength,
    OutputOpt,
    Precision,
    RetrieverOpt,
    Seed,
    print_report,
)
from customer_service.training_recipes import train_config
from textcore import InvalidInput
from textcore import cli as core_cli
from textcore.model_names import resolve_model


def _faqs(kb: Path) -> list[Any]:
    from customer_service.retrieval_eval import read_faqs  # noqa: PLC0415

    return read_faqs(kb)


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
        # the FAQ file and the base model's name are checked before torch is imported, so that a bad one
        # fails in about a second
        faqs = _faqs(kb)
        resolve_model(base_model)
        from customer_service.reranking import train_retriever_from_faqs  # noqa: PLC0415 - heavy import
        from textcore import Encoder  # noqa: PLC0415

        # an earlier model in --output is kept until the run succeeds
        with core_cli.replacing_output(output, inputs=(kb, base_model)):
            config = train_config(
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
            result = train_retriever_from_faqs(
                faqs,
                output,
                config,
                encoder=encoder,
                sources={"kb": str(kb)},
                progress=sys.stderr.isatty(),
            )
            return {"output": str(output), "validation": result.metrics}

    print_report(core_cli.run_or_exit(action))


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
        # the FAQ file and the models' names are checked before torch is imported (the retriever mining
        # the negatives is loaded first)
        faqs = _faqs(kb)
        if retriever:
            resolve_model(retriever)
        resolve_model(base_model)
        from customer_service.reranking import train_reranker_from_faqs  # noqa: PLC0415 - heavy import
        from textcore import Encoder  # noqa: PLC0415

        # an earlier model in --output is kept until the run succeeds
        with core_cli.replacing_output(output, inputs=(kb, base_model, retriever)):
            config = train_config(
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
            result = train_reranker_from_faqs(
                faqs,
                output,
                config,
                encoder=encoder,
                per_query=negatives,
                sources={"kb": str(kb)},
                progress=sys.stderr.isatty(),
            )
            return {"output": str(output), "validation": result.metrics}

    print_report(core_cli.run_or_exit(action))


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

    print_report(core_cli.run_or_exit(action))


def _evaluate_retrieval(
    kb_file: Path, queries_file: Path, query_column: str, expected_column: str, retriever_path: Path | None,
    reranker_path: Path | None, mode: str | None, index_questions: bool, device: str, precision: str,
) -> dict[str, Any]:  # fmt: skip
    from textcore import read_table  # noqa: PLC0415
    from textcore.artifacts import trained_head  # noqa: PLC0415

    # the files and the models' folders are checked before torch is imported, so that a bad one fails in
    # about a second
    rows = read_table(queries_file)
    missing = [c for c in (query_column, expected_column) if rows and c not in rows[0]]
    if not rows or missing:
        raise InvalidInput(f"{queries_file}: expected rows with columns {missing or [query_column]}; "
                           f"found {sorted(rows[0]) if rows else 'no rows'}")  # fmt: skip
    faqs = _faqs(kb_file)
    _check_expected(queries_file, [r[expected_column] for r in rows], expected_column, {f.id for f in faqs})
    resolve_model(retriever_path or "minilm")
    if reranker_path:
        trained_head(reranker_path, "cross-encoder", "cross-encoder")  # as Reranker.load refuses another
    from customer_service.database import Database  # noqa: PLC0415 - heavy imports
    from customer_service.knowledge import KnowledgeBase  # noqa: PLC0415
    from customer_service.retrieval import Retriever  # noqa: PLC0415
    from customer_service.retrieval_eval import evaluate_retrieval as evaluate  # noqa: PLC0415
    from textcore import Encoder, Reranker  # noqa: PLC0415

    encoder = Encoder.from_pretrained(retriever_path or "minilm", device=device, precision=precision)
    ranker = Reranker.load(reranker_path, device=device, precision=precision) if reranker_path else None
    with tempfile.TemporaryDirectory(prefix="cs-eval-") as tmp:
        db = Database(f"sqlite:///{tmp}/kb.db")
        db.migrate()
        try:
            kb = KnowledgeBase(db, encoder, Path(tmp) / "index", index_questions=index_questions)
            kb.upsert_faqs(faqs)
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


def _check_expected(queries_file: Path, expected: list[str], column: str, ids: set[str]) -> None:
    """Refuse rows whose expected id is no FAQ of the knowledge-base file: such a query cannot be found, and
    was scored as a miss without a word (a typo, or ids of another version of the file, lowered every
    figure).

    Raises:
        InvalidInput: Naming the file, the column, how many rows and the first of them.
    """
    unknown = [(number, value) for number, value in enumerate(expected, start=1) if value not in ids]
    if unknown:
        named = ", ".join(f"row {number}: {value!r:.60}" for number, value in unknown[:5])
        raise InvalidInput(
            f"{queries_file}: expected the id of an FAQ of --kb in column {column!r} of every row; "
            f"{len(unknown)} of {len(expected)} rows name none ({named}{', ...' if len(unknown) > 5 else ''})"
        )
