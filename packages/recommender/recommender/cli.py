"""`recommender`: ingest a catalog and behaviour, train and evaluate the model, serve, convert datasets.

Every expected failure (bad file, column, id, model) ends with one line on stderr and exit code 2. The
commands that report something print one JSON object as their last stdout line. Heavy imports (torch, the
model, the database) happen inside the commands so that ``recommender --help`` stays fast. The commands that
change what is stored live in `recommender.store_commands`, those that train and evaluate models in
`recommender.model_commands`; the options they share in `recommender.command_options`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recommender import model_commands, store_commands
from recommender.command_options import DatabaseOpt, IndexOpt, ModelOpt, print_report, settings_from
from textcore import InvalidInput
from textcore import cli as core_cli

if TYPE_CHECKING:
    from recommender.settings import RecommenderSettings

app = typer.Typer(
    help="Recommender: text-interest recommendations learned from behaviour.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.command("ingest-items")(store_commands.ingest_items)
app.command("delete-items")(store_commands.delete_items)
app.command("ingest-events")(store_commands.ingest_events)
app.command("erase-user")(store_commands.erase_user)


def _require_model_folder(folder: Path) -> None:
    """Refuse a model path without a model before the service starts loading it."""
    from recommender.model_folders import MODEL_FILE  # noqa: PLC0415

    if not (folder / MODEL_FILE).is_file():
        raise InvalidInput(
            f"model path {folder}: expected a folder written by `recommender train`; found no {MODEL_FILE}"
        )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port", min=0, max=65535)] = 8000,
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
        settings = settings_from(database_url=database_url, model_path=model_path, index_path=index_path)
        if settings.model_path is not None:
            _require_model_folder(settings.model_path)
        Database(settings.database_url).check()  # one error line, not a traceback from the app's start-up
        return settings

    log_config = core_cli.log_config(log_format, log_level)
    settings = core_cli.run_or_exit(checked)
    uvicorn.run(create_app(settings), host=host, port=port, log_config=log_config)


app.command()(model_commands.train)
app.command()(model_commands.evaluate)
app.command("train-rescorer")(model_commands.train_rescorer)


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

    print_report(core_cli.run_or_exit(action))


def main() -> None:
    """Console entry point: usage errors as one line and exit code 2 (`textcore.console.run_app`)."""
    core_cli.run_app(app)
