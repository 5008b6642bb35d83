"""`customer-service`: fill the knowledge base, train and evaluate the models, serve the chat API.

Every expected failure (bad file, column, model) ends with one line on stderr and exit code 2. Commands that
report something print one JSON object as their last stdout line. Heavy imports (torch, the models, the
database) happen inside the commands so that ``customer-service --help`` stays fast.

The commands live by what they work on: `knowledge_commands` (ingest, delete, export), `intent_commands`
(train-intents, calibrate-intents, evaluate-intents), `retrieval_commands` (train-retriever, train-reranker,
evaluate-retrieval); their shared options are in `command_options`. `serve` is here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from customer_service import intent_commands, knowledge_commands, retrieval_commands
from customer_service.command_options import (
    DatabaseOpt,
    IndexOpt,
    LogFormatOpt,
    LogLevelOpt,
    settings_from,
)
from textcore import cli as core_cli

if TYPE_CHECKING:
    from customer_service.settings import CustomerServiceSettings

app = typer.Typer(
    help="Customer service: intents, knowledge-base retrieval, grounded answers and hand-off.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(knowledge_commands.ingest)
app.command()(knowledge_commands.delete)
app.command()(knowledge_commands.export)
app.command("train-intents")(intent_commands.train_intents)
app.command("calibrate-intents")(intent_commands.calibrate_intents)
app.command("evaluate-intents")(intent_commands.evaluate_intents)
app.command("train-retriever")(retrieval_commands.train_retriever)
app.command("train-reranker")(retrieval_commands.train_reranker)
app.command("evaluate-retrieval")(retrieval_commands.evaluate_retrieval)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port", min=0, max=65535)] = 8000,
    database_url: DatabaseOpt = None,
    index_dir: IndexOpt = None,
    knowledge: Annotated[
        Path | None, typer.Option(help="FAQ file or folder ingested into a KB never written to")
    ] = None,
    log_format: LogFormatOpt = "text",
    log_level: LogLevelOpt = "info",
) -> None:
    """Serve the chat API (settings from CS_* environment variables, these options first)."""
    import uvicorn  # noqa: PLC0415

    from customer_service.app import create_app  # noqa: PLC0415
    from customer_service.database import Database  # noqa: PLC0415

    def checked() -> CustomerServiceSettings:
        settings = settings_from(database_url=database_url, index_dir=index_dir, knowledge_file=knowledge)
        Database(settings.database_url).check()  # one error line, not a traceback from the app's start-up
        return settings

    log_config = core_cli.log_config(log_format, log_level)
    settings = core_cli.run_or_exit(checked)
    uvicorn.run(create_app(settings), host=host, port=port, log_config=log_config)


def main() -> None:
    """Console entry point: usage errors as one line and exit code 2 (`textcore.console.run_app`)."""
    core_cli.run_app(app)
