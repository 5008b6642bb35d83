"""The `customer-service` command line's shared options and helpers (settings from options, the JSON report).

Heavy imports (torch, the models, the database) happen inside the helpers, so that importing a command module
stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from textcore import InvalidInput
from textcore import cli as core_cli

if TYPE_CHECKING:
    from customer_service.settings import CustomerServiceSettings

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


def settings_from(**overrides: Any) -> CustomerServiceSettings:
    """The service settings (CS_* environment variables), the options given (not None) first.

    Raises:
        InvalidInput: Naming every bad setting and its environment variable (one error line, exit 2,
            as the other services' commands), never the value.
    """
    from pydantic import ValidationError  # noqa: PLC0415

    from customer_service.settings import CustomerServiceSettings  # noqa: PLC0415 - pulls in torch

    try:
        return CustomerServiceSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise InvalidInput(f"settings: {core_cli.settings_errors(exc, 'CS_')}") from None


def print_report(report: dict[str, Any]) -> None:
    """Print a command's report as one JSON line on stdout."""
    print(json.dumps(report, ensure_ascii=False))
