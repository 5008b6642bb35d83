"""`recommender`: ingest a catalog and behaviour, train and evaluate the model, serve, convert datasets.

Every expected failure (bad file, column, id, model) ends with one line on stderr and exit code 2. The
commands that report something print one JSON object as their last stdout line. Heavy imports (torch, the
model, the database) happen inside the commands so that ``recommender --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from textcore import InvalidInput
from textcore import cli as core_cli

if TYPE_CHECKING:
    from recommender.data import Catalog, Interactions
    from recommender.settings import RecommenderSettings

app = typer.Typer(
    help="Recommender: text-interest recommendations learned from behaviour.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
FileArg = Annotated[Path, typer.Argument(help="CSV, TSV or JSONL file")]
DatabaseOpt = Annotated[
    str | None, typer.Option("--database-url", help="SQLAlchemy URL (else REC_DATABASE_URL)")
]
ModelOpt = Annotated[
    Path | None, typer.Option("--model-path", help="trained model folder (else REC_MODEL_PATH)")
]
IndexOpt = Annotated[Path | None, typer.Option("--index-path", help="item index file (else REC_INDEX_PATH)")]
InteractionsOpt = Annotated[Path, typer.Option("--interactions", help="interactions CSV, TSV or JSONL")]
ItemsOpt = Annotated[Path, typer.Option("--items", help="items CSV, TSV or JSONL")]
UserCol = Annotated[str, typer.Option("--user-column")]
ItemCol = Annotated[str, typer.Option("--item-column")]
TimeCol = Annotated[str, typer.Option("--time-column", help="Unix seconds or ISO 8601 times")]
RatingCol = Annotated[str, typer.Option("--rating-column", help="optional in the file")]
MinRating = Annotated[float | None, typer.Option("--min-rating", help="keep ratings >= this as positives")]
IdCol = Annotated[str, typer.Option("--id-column", help="items: the id column")]
TitleCol = Annotated[str, typer.Option("--title-column", help="items: the title column")]
TextCols = Annotated[
    list[str] | None, typer.Option("--text-column", help="items: a text column (repeatable)")
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")]
PrecisionOpt = Annotated[str, typer.Option(help="auto, bf16 or fp32")]


def _settings(**overrides: Any) -> RecommenderSettings:
    """The service settings: ``REC_*`` environment variables, then the options given (None: not given).

    Raises:
        InvalidInput: Naming every bad setting and its environment variable.
    """
    # Imported here: the settings pull in torch (through textcore.settings), which --help does not need.
    from pydantic import ValidationError  # noqa: PLC0415

    from recommender.settings import RecommenderSettings  # noqa: PLC0415

    try:
        return RecommenderSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise InvalidInput(f"settings: {core_cli.settings_errors(exc, 'REC_')}") from None


def _require_output_folder(output: Path) -> None:
    """Refuse an --output that is a file, or lies inside one, before any work is done."""
    existing = next((path for path in (output, *output.parents) if path.exists()), None)
    if existing is not None and not existing.is_dir():
        raise InvalidInput(f"--output {output}: expected a folder for the model; {existing} is a file")


def _require_model_folder(folder: Path) -> None:
    """Refuse a model path without a model before the service starts loading it."""
    from recommender.model import MODEL_FILE  # noqa: PLC0415 - imports torch

    if not (folder / MODEL_FILE).is_file():
        raise InvalidInput(
            f"model path {folder}: expected a folder written by `recommender train`; found no {MODEL_FILE}"
        )


def _print_json(report: dict[str, Any]) -> None:
    print(json.dumps(report, default=lambda value: value.item() if hasattr(value, "item") else str(value)))


@contextmanager
def _progress(description: str) -> Iterator[Any]:
    """A rich progress bar on stderr (only on a terminal); yields a `(done, total)` callback."""
    from rich.progress import Progress  # noqa: PLC0415

    with Progress(console=core_cli.err, disable=not sys.stderr.isatty(), transient=True) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _read_data(
    interactions: Path,
    items: Path,
    event_columns: tuple[str, str, str, str, float | None],
    item_columns: tuple[str, str, list[str] | None],
) -> tuple[Interactions, Catalog]:
    """Interactions (user, item, time, rating columns and the rating threshold) and the item catalog."""
    from recommender.data import read_catalog, read_interactions  # noqa: PLC0415 - imports numpy

    user, item, time, rating, min_rating = event_columns
    data = read_interactions(
        interactions,
        user_column=user,
        item_column=item,
        time_column=time,
        rating_column=rating,
        min_rating=min_rating,
    )
    id_column, title, texts = item_columns
    catalog = read_catalog(
        items, id_column=id_column, title_column=title, text_columns=tuple(texts or ["text"])
    )
    return data, catalog


def _sources(interactions: Path, items: Path, min_rating: float | None) -> dict[str, Any]:
    """Where training data came from, for a model's metadata: the paths and their files' SHA-256."""
    from textcore.data import file_sha256  # noqa: PLC0415 - imports numpy

    return {
        "interactions": str(interactions),
        "interactions_file_sha256": file_sha256(interactions),
        "items": str(items),
        "items_file_sha256": file_sha256(items),
        "min_rating": min_rating,
    }


@app.command("ingest-items")
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
    """Create or replace catalog items from a file and embed them; other columns are kept as metadata."""
    from recommender.database import Database  # noqa: PLC0415 - heavy imports
    from recommender.ingest import ItemColumns, read_items  # noqa: PLC0415
    from recommender.startup import load_model, open_catalog  # noqa: PLC0415

    def action() -> dict[str, Any]:
        texts = tuple(text_column or ["text"])
        records = read_items(file, ItemColumns(id_column, title_column, texts, categories_column))
        settings = _settings(database_url=database_url, model_path=model_path, index_path=index_path)
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

    _print_json(core_cli.run_or_exit(action))


@app.command("delete-items")
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
    from recommender import catalog  # noqa: PLC0415 - heavy imports
    from recommender.database import Database  # noqa: PLC0415
    from recommender.ingest import clean_id, read_item_ids  # noqa: PLC0415

    def action() -> int:
        wanted = [clean_id(raw, f"item id {raw!r}") for raw in ids or []]
        wanted += read_item_ids(file, id_column) if file is not None else []
        if not wanted:
            raise InvalidInput("expected item ids as arguments or --file FILE; found neither")
        db = Database(_settings(database_url=database_url).database_url)
        try:
            db.migrate()
            catalog.delete_items(db, wanted)
        finally:
            db.dispose()
        return len(set(wanted))

    _print_json({"deleted": core_cli.run_or_exit(action)})


@app.command("ingest-events")
def ingest_events(
    file: FileArg,
    user_column: UserCol = "user_id",
    item_column: ItemCol = "item_id",
    time_column: TimeCol = "timestamp",
    rating_column: RatingCol = "rating",
    type_column: Annotated[
        str, typer.Option(help="click, rating or purchase; optional in the file")
    ] = "type",
    database_url: DatabaseOpt = None,
) -> None:
    """Store interactions from a file, all or nothing (every item must be in the catalog already)."""
    from recommender import events  # noqa: PLC0415 - heavy imports
    from recommender.database import Database  # noqa: PLC0415
    from recommender.ingest import EventColumns, read_events  # noqa: PLC0415

    def action() -> int:
        columns = EventColumns(user_column, item_column, time_column, rating_column, type_column)
        records = read_events(file, columns)
        db = Database(_settings(database_url=database_url).database_url)
        try:
            db.migrate()
            return events.ingest_events(db, records)
        finally:
            db.dispose()

    _print_json({"stored": core_cli.run_or_exit(action)})


@app.command("erase-user")
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

    def action() -> dict[str, Any]:
        wanted = clean_id(user_id, f"user id {user_id!r:.80}")
        db = Database(_settings(database_url=database_url).database_url)
        try:
            db.migrate()
            return {"user_id": wanted, "deleted": events.erase_user(db, wanted)}
        finally:
            db.dispose()

    _print_json(core_cli.run_or_exit(action))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    database_url: DatabaseOpt = None,
    model_path: ModelOpt = None,
    index_path: IndexOpt = None,
    log_format: Annotated[str, typer.Option(help=core_cli.LOG_FORMAT_HELP, envvar="REC_LOG_FORMAT")] = "text",
    log_level: Annotated[str, typer.Option(help=core_cli.LOG_LEVEL_HELP, envvar="REC_LOG_LEVEL")] = "info",
) -> None:
    """Serve the HTTP API."""
    import uvicorn  # noqa: PLC0415

    from recommender.app import create_app  # noqa: PLC0415
    from recommender.database import Database  # noqa: PLC0415

    def checked() -> RecommenderSettings:
        settings = _settings(database_url=database_url, model_path=model_path, index_path=index_path)
        if settings.model_path is not None:
            _require_model_folder(settings.model_path)
        Database(settings.database_url).check()  # one error line, not a traceback from the app's start-up
        return settings

    log_config = core_cli.log_config(log_format, log_level)
    settings = core_cli.run_or_exit(checked)
    uvicorn.run(create_app(settings), host=host, port=port, log_config=log_config)


@app.command()
def train(
    interactions: InteractionsOpt,
    items: ItemsOpt,
    output: Annotated[Path, typer.Option("--output", help="model folder to write")],
    user_column: UserCol = "user_id",
    item_column: ItemCol = "item_id",
    time_column: TimeCol = "timestamp",
    rating_column: RatingCol = "rating",
    min_rating: MinRating = None,
    id_column: IdCol = "item_id",
    title_column: TitleCol = "title",
    text_column: TextCols = None,
    base_model: Annotated[str, typer.Option(help="alias, local folder or trained model")] = "minilm",
    epochs: Annotated[int, typer.Option(help="passes over the behaviour pairs (0: no fine-tuning)")] = 1,
    max_pairs: Annotated[int, typer.Option(help="behaviour pairs to fine-tune on")] = 20_000,
    batch_size: Annotated[int, typer.Option()] = 32,
    learning_rate: Annotated[float, typer.Option()] = 5e-5,
    max_length: Annotated[int, typer.Option(help="tokens per text")] = 96,
    hold_out_last: Annotated[
        bool, typer.Option(help="leave each user's last interaction out (--no-hold-out-last: serve-only)")
    ] = True,
    max_validation_users: Annotated[
        int, typer.Option(help="users the blend is fitted on (memory grows with users x items)")
    ] = 6000,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    seed: Annotated[int, typer.Option()] = 42,
) -> None:
    """Fine-tune the text-interest model on behaviour, fit its blend on validation users, and save it."""

    def action() -> dict[str, Any]:
        from recommender.training import RecTrainConfig, train_model  # noqa: PLC0415 - heavy imports

        _require_output_folder(output)
        data, catalog = _read_data(
            interactions,
            items,
            (user_column, item_column, time_column, rating_column, min_rating),
            (id_column, title_column, text_column),
        )
        config = RecTrainConfig(
            base_model=base_model,
            epochs=epochs,
            max_pairs=max_pairs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_length=max_length,
            seed=seed,
            hold_out_last=hold_out_last,
            max_validation_users=max_validation_users,
            device=device,
            precision=precision,
        )
        sources = _sources(interactions, items, min_rating)
        _, report = train_model(data, catalog, output, config, progress=sys.stderr.isatty(), sources=sources)
        return report

    report = core_cli.run_or_exit(action)
    print(f"saved {output}")
    _print_json({"output": str(output), **report})


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="trained model folder")],
    interactions: InteractionsOpt,
    items: ItemsOpt,
    protocol: Annotated[str, typer.Option(help="leave-last-out (the only one)")] = "leave-last-out",
    user_column: UserCol = "user_id",
    item_column: ItemCol = "item_id",
    time_column: TimeCol = "timestamp",
    rating_column: RatingCol = "rating",
    min_rating: MinRating = None,
    id_column: IdCol = "item_id",
    title_column: TitleCol = "title",
    text_column: TextCols = None,
    rescorer: Annotated[
        bool, typer.Option(help="re-score with the model's rescorer when it has an active one")
    ] = True,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """Leave-last-out: rank each user's last item among all they have not seen, for the model and baselines.

    The last stdout line is one JSON object: {"model": {"hr@10", "ndcg@10", "mrr"}, "popularity": {...},
    "item_knn": {...}, "n_users": N}. When the model's rescorer re-scores, "model" is the re-scored ranking,
    "blend" the model without it, and "rescorer" its settings.
    """

    def action() -> dict[str, Any]:
        if protocol != "leave-last-out":
            raise InvalidInput(f"--protocol: expected leave-last-out; found {protocol!r}")
        from recommender.baselines import ItemKNN, Popularity  # noqa: PLC0415 - heavy imports
        from recommender.model import TextInterestModel  # noqa: PLC0415
        from recommender.protocol import Scorer, evaluate, leave_last_out  # noqa: PLC0415
        from recommender.provenance import leaked_test_users  # noqa: PLC0415
        from recommender.rescoring import Rescorer  # noqa: PLC0415

        data, catalog = _read_data(
            interactions,
            items,
            (user_column, item_column, time_column, rating_column, min_rating),
            (id_column, title_column, text_column),
        )
        loaded = TextInterestModel.load(model, device=device, precision=precision)
        found = Rescorer.load(model, device=device, precision=precision) if rescorer else None
        active = found if found is not None and found.active else None
        split = leave_last_out(data.sequences())
        records = [loaded.meta] + ([active.meta] if active is not None else [])
        leaked = max(leaked_test_users(meta, data) for meta in records)
        if leaked:
            core_cli.err.print(
                f"warning: the model saw the test interactions of {leaked} of {len(split.test)} tested users "
                "(it was trained on them: train with --hold-out-last on these interactions); the model's "
                "figures below overstate how it does on unseen behaviour",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        blend = loaded.scorer(catalog, split.train)
        scorers: dict[str, Scorer] = {
            "model": active.scorer(blend, catalog) if active is not None else blend,
            "popularity": Popularity(split.train, catalog),
            "item_knn": ItemKNN(split.train, catalog),
        }
        if active is not None:
            scorers["blend"] = blend
        results = {name: evaluate(scorer, split, catalog) for name, scorer in scorers.items()}
        n_users = int(results["model"]["n_users"])
        extra = {"rescorer": dataclasses.asdict(active.rescoring)} if active is not None else {}
        return {
            **{
                name: {k: v for k, v in figures.items() if k != "n_users"}
                for name, figures in results.items()
            },
            **extra,
            "n_users": n_users,
        }

    _print_json(core_cli.run_or_exit(action))


@app.command("train-rescorer")
def train_rescorer(
    model: Annotated[Path, typer.Option("--model", help="model folder from `recommender train`")],
    interactions: InteractionsOpt,
    items: ItemsOpt,
    user_column: UserCol = "user_id",
    item_column: ItemCol = "item_id",
    time_column: TimeCol = "timestamp",
    rating_column: RatingCol = "rating",
    min_rating: MinRating = None,
    id_column: IdCol = "item_id",
    title_column: TitleCol = "title",
    text_column: TextCols = None,
    base_model: Annotated[
        str, typer.Option(help="cross-encoder start (default: the model's own fine-tuned encoder)")
    ] = "",
    max_queries: Annotated[int, typer.Option(help="(history, next item) queries to train on")] = 2000,
    negatives: Annotated[int, typer.Option(help="hard negatives per query")] = 3,
    candidates: Annotated[int, typer.Option(help="the model's top items negatives are drawn from")] = 30,
    epochs: Annotated[int, typer.Option()] = 1,
    batch_size: Annotated[int, typer.Option()] = 16,
    learning_rate: Annotated[float, typer.Option()] = 5e-5,
    max_length: Annotated[int, typer.Option(help="tokens of a (history, item) pair")] = 192,
    max_validation_users: Annotated[
        int, typer.Option(help="users the re-scored count and weight are fitted on")
    ] = 1000,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    seed: Annotated[int, typer.Option()] = 42,
) -> None:
    """Train the optional cross-encoder that re-scores the model's top candidates; saved in MODEL/rescorer.

    Its weight beside the blend is fitted on the model's validation users; 0 (saved, but never used) when
    re-scoring does not improve their NDCG@10.
    """

    def action() -> dict[str, Any]:
        from recommender.rescorer_training import (  # noqa: PLC0415 - heavy imports
            RescorerTrainConfig,
        )
        from recommender.rescorer_training import train_rescorer as train  # noqa: PLC0415

        data, catalog = _read_data(
            interactions,
            items,
            (user_column, item_column, time_column, rating_column, min_rating),
            (id_column, title_column, text_column),
        )
        config = RescorerTrainConfig(
            base_model=base_model,
            max_queries=max_queries,
            negatives=negatives,
            candidates=candidates,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_length=max_length,
            max_validation_users=max_validation_users,
            seed=seed,
            device=device,
            precision=precision,
        )
        sources = _sources(interactions, items, min_rating)
        rescoring, report = train(model, data, catalog, config, progress=sys.stderr.isatty(), sources=sources)
        return {"output": str(model / "rescorer"), "rescoring": dataclasses.asdict(rescoring), **report}

    _print_json(core_cli.run_or_exit(action))


@app.command()
def convert(
    dataset: Annotated[str, typer.Argument(help="amazon or movielens")],
    folder: Annotated[Path, typer.Argument(help="the dataset's folder")],
    output: Annotated[Path, typer.Option("--output", help="folder for interactions.csv and items.csv")],
) -> None:
    """Convert a public dataset into interactions.csv and items.csv for train, evaluate and ingest."""

    def action() -> dict[str, str]:
        from recommender.data import convert_amazon, convert_movielens  # noqa: PLC0415

        converters = {"amazon": convert_amazon, "movielens": convert_movielens}
        if dataset not in converters:
            raise InvalidInput(f"expected dataset amazon or movielens; found {dataset!r}")
        interactions_path, items_path = converters[dataset](folder, output)
        return {"interactions": str(interactions_path), "items": str(items_path)}

    _print_json(core_cli.run_or_exit(action))


def main() -> None:
    """Console entry point."""
    app()
