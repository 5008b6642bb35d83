"""The `recommender` command line's shared options and helpers (settings from options, the JSON report).

Heavy imports (torch, the model, the database) happen inside the helpers, so that importing a command module
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
    from recommender.settings import RecommenderSettings

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
MinRating = Annotated[
    float | None,
    typer.Option(
        "--min-rating",
        help="keep ratings >= this as positives; a user's latest rating of an item below it drops their rows "
        "of the item",
    ),
]
ModelMinRating = Annotated[
    float | None,
    typer.Option(
        "--min-rating",
        help="keep ratings >= this as positives, as --min-rating of train does; default: the threshold the "
        "model was trained with",
    ),
]
IdCol = Annotated[str, typer.Option("--id-column", help="items: the id column")]
TitleCol = Annotated[str, typer.Option("--title-column", help="items: the title column")]
TextCols = Annotated[
    list[str] | None, typer.Option("--text-column", help="items: a text column (repeatable)")
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")]
PrecisionOpt = Annotated[str, typer.Option(help="auto, bf16 or fp32")]


def settings_from(**overrides: Any) -> RecommenderSettings:
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


def print_report(report: dict[str, Any]) -> None:
    print(json.dumps(report, default=lambda value: value.item() if hasattr(value, "item") else str(value)))
