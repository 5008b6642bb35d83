"""`customer-service` commands that fill, prune and export the knowledge base: ingest, delete, export."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from customer_service.command_options import DatabaseOpt, IndexOpt, RetrieverOpt, print_report, settings_from
from textcore import cli as core_cli


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

        settings = settings_from(database_url=database_url, index_dir=index_dir, retriever_path=retriever)
        db = open_database(settings)
        try:
            kb = open_knowledge(settings, db)
            report = ingest_path(kb, path, category=category, document_id=document_id, id_prefix=id_prefix)
            for warning in report.warnings:
                core_cli.say(f"warning: {warning}")
            return {**report.__dict__, "entries": kb.count(), "version": kb.version}
        finally:
            db.dispose()

    print_report(core_cli.run_or_exit(action))


def delete(
    ids: Annotated[list[str], typer.Argument(help="FAQ, chunk or document ids")],
    database_url: DatabaseOpt = None,
    index_dir: IndexOpt = None,
    retriever: RetrieverOpt = None,
) -> None:
    """Remove FAQs, chunks or whole documents from the knowledge base.

    An id that names no FAQ, chunk or document is a warning on stderr and listed under `not_found`; the
    others are removed all the same, and the exit status is 0 (a delete run again finds nothing to remove).
    """

    def action() -> dict[str, Any]:
        from customer_service.service import open_database, open_knowledge  # noqa: PLC0415
        from textcore.sql import require_existing_sqlite  # noqa: PLC0415

        settings = settings_from(database_url=database_url, index_dir=index_dir, retriever_path=retriever)
        require_existing_sqlite(settings.database_url, "delete from")
        db = open_database(settings)
        try:
            kb = open_knowledge(settings, db)
            removed, unknown = kb.delete_reporting(ids)
            if unknown:
                listing = ", ".join(repr(i) for i in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
                core_cli.say(
                    f"warning: {len(unknown)} of {len(dict.fromkeys(ids))} ids named no FAQ, chunk or "
                    f"document, so nothing was removed for them: {listing}"
                )
            report = {"removed": len(removed), "not_found": unknown}
            return {**report, "entries": kb.count(), "version": kb.version}
        finally:
            db.dispose()

    print_report(core_cli.run_or_exit(action))


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
        from textcore.sql import require_existing_sqlite  # noqa: PLC0415

        check_output(output, kind, force)  # before the database is opened (and migrated)
        settings = settings_from(database_url=database_url)
        require_existing_sqlite(settings.database_url, "export")
        db = open_database(settings)
        try:
            report = export_knowledge(db, output, kind=kind, category=category, force=force)
        finally:
            db.dispose()
        for warning in report.warnings:
            core_cli.say(f"warning: {warning}")
        core_cli.say(report.summary())
        return {**asdict(report), "warnings": list(report.warnings)}

    print_report(core_cli.run_or_exit(action))
