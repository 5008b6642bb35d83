"""`recommender` commands that change what the service stores: catalog items and behaviour events.

A running service on the same database takes the changes in without a restart (`recommender.serving`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from recommender.command_options import (
    DatabaseOpt,
    FileArg,
    IdCol,
    IndexOpt,
    ItemCol,
    ModelOpt,
    RatingCol,
    TextCols,
    TimeCol,
    TitleCol,
    UserCol,
    print_report,
    settings_from,
)
from textcore import InvalidInput
from textcore import cli as core_cli


@contextmanager
def _progress(description: str) -> Iterator[Any]:
    """A rich progress bar on stderr (only on a terminal); yields a `(done, total)` callback."""
    from rich.progress import Progress  # noqa: PLC0415

    with Progress(console=core_cli.err, disable=not sys.stderr.isatty(), transient=True) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def ingest_items(
    file: FileArg,
    id_column: IdCol = "item_id",
    title_column: TitleCol = "title",
    text_column: TextCols = None,
    categories_column: Annotated[str, typer.Option(help="JSON list or |-separated")] = "categories",
    database_url: DatabaseOpt = None,
    model_path: ModelOpt = None,
    index_path: IndexOpt = None,
) -> None:
    """Create or replace catalog items from a file and embed them; other columns are kept as metadata.

    Without --model-path (or REC_MODEL_PATH) the items are embedded with the model whose vectors the index
    file holds, as its sidecar records it (the base encoder when there is no index yet).
    """
    from recommender.database import Database  # noqa: PLC0415 - heavy imports
    from recommender.ingest import ItemColumns, read_items  # noqa: PLC0415
    from recommender.startup import load_model, model_of_index, open_catalog  # noqa: PLC0415

    def action() -> dict[str, Any]:
        texts = tuple(text_column or ["text"])
        records = read_items(file, ItemColumns(id_column, title_column, texts, categories_column))
        given = settings_from(database_url=database_url, model_path=model_path, index_path=index_path)
        settings = model_of_index(given)  # without a model: the one whose vectors the index holds
        if settings.model_path != given.model_path:
            core_cli.say(f"embedding with {settings.model_path}, the model the index was built with")
        db = Database(settings.database_url)
        try:
            db.migrate()
            with _progress("embedding items") as progress:
                catalog = open_catalog(settings, db, load_model(settings), progress)
                report = catalog.upsert(records, progress)
        finally:
            db.dispose()
        return {
            "items": len(records),
            "created": report.created,
            "updated": report.updated,
            "embedded": report.embedded,
        }

    print_report(core_cli.run_or_exit(action))


def delete_items(
    ids: Annotated[list[str] | None, typer.Argument(help="item ids", show_default=False)] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="CSV, TSV or JSONL file with the ids (e.g. a catalog file)")
    ] = None,
    id_column: IdCol = "item_id",
    database_url: DatabaseOpt = None,
) -> None:
    """Delete catalog items, all or nothing (their events stay); a running service stops serving them.

    Item vectors in an index file are dropped by the next `ingest-items` or service start.
    """
    from recommender import item_deletion  # noqa: PLC0415 - heavy imports
    from recommender.database import Database  # noqa: PLC0415
    from recommender.ingest import clean_id, read_item_ids  # noqa: PLC0415
    from textcore.sql import require_existing_sqlite  # noqa: PLC0415

    def action() -> int:
        wanted = [clean_id(raw, f"item id {raw!r}", new=False) for raw in ids or []]
        wanted += read_item_ids(file, id_column) if file is not None else []
        if not wanted:
            raise InvalidInput("expected item ids as arguments or --file FILE; found neither")
        url = settings_from(database_url=database_url).database_url
        require_existing_sqlite(url, "delete items from")
        db = Database(url)
        try:
            db.migrate()
            item_deletion.delete_items(db, wanted)
        finally:
            db.dispose()
        return len(set(wanted))

    print_report({"deleted": core_cli.run_or_exit(action)})


def ingest_events(
    file: FileArg,
    user_column: UserCol = "user_id",
    item_column: ItemCol = "item_id",
    time_column: TimeCol = "timestamp",
    rating_column: RatingCol = "rating",
    type_column: Annotated[
        str, typer.Option(help="click, rating or purchase; optional in the file")
    ] = "type",
    event_id_column: Annotated[
        str, typer.Option(help="your id of each event, stored once; optional in the file")
    ] = "event_id",
    database_url: DatabaseOpt = None,
) -> None:
    """Store interactions from a file, all or nothing (every item must be in the catalog already)."""
    from recommender import events  # noqa: PLC0415 - heavy imports
    from recommender.database import Database  # noqa: PLC0415
    from recommender.ingest import EventColumns, read_events  # noqa: PLC0415

    def action() -> int:
        columns = EventColumns(
            user_column, item_column, time_column, rating_column, type_column, event_id_column
        )
        settings = settings_from(database_url=database_url)
        tolerance = timedelta(seconds=settings.event_future_tolerance_s)
        records = read_events(file, columns, future_tolerance=tolerance)
        db = Database(settings.database_url)
        try:
            db.migrate()
            return events.ingest_events(db, records, future_tolerance=tolerance)
        finally:
            db.dispose()

    print_report({"stored": core_cli.run_or_exit(action)})


def erase_user(
    user_id: Annotated[str, typer.Argument(help="the user's id", show_default=False)],
    database_url: DatabaseOpt = None,
) -> None:
    """Delete every stored event of a user (an erasure request); a running service stops counting them.

    Prints {"user_id": ID, "deleted": N}. A user with no stored events (never had, or already erased) is an
    error. A trained model keeps what it learned from the user until it is trained again without them.
    """
    from recommender import events  # noqa: PLC0415 - heavy imports
    from recommender.database import Database  # noqa: PLC0415
    from recommender.ingest import clean_id  # noqa: PLC0415
    from textcore.sql import require_existing_sqlite  # noqa: PLC0415

    def action() -> dict[str, Any]:
        wanted = clean_id(user_id, f"user id {user_id!r:.80}", new=False)
        url = settings_from(database_url=database_url).database_url
        require_existing_sqlite(url, "erase a user from")
        db = Database(url)
        try:
            db.migrate()
            return {"user_id": wanted, "deleted": events.erase_user(db, wanted)}
        finally:
            db.dispose()

    print_report(core_cli.run_or_exit(action))
