"""`finance-sentiment`: train and evaluate the sentiment model, serve the API, run the scheduler or one pass.

`train` and `evaluate` take exactly the flags of `textcore train` / `textcore evaluate` and print the same
output (the last stdout line is one JSON object); `train` also checks that the labels are the finance
labels (negative, neutral, positive) the monitor scores with.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging.config
import signal
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError

from finance_sentiment.settings import FinanceSentimentSettings
from textcore import InvalidInput
from textcore import cli as core_cli
from textcore.preflight import require_distinct_columns

if TYPE_CHECKING:
    from finance_sentiment.monitor import Prepared

app = typer.Typer(
    help="Finance opinion monitor: scheduled scraping, sentiment, trends and spike alerts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
LogFormatOpt = Annotated[str, typer.Option(help=core_cli.LOG_FORMAT_HELP, envvar="FIN_LOG_FORMAT")]
LogLevelOpt = Annotated[str, typer.Option(help=core_cli.LOG_LEVEL_HELP, envvar="FIN_LOG_LEVEL")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML/JSON file of sources, topics, entities and rules")
]
DatabaseOpt = Annotated[
    str | None, typer.Option("--database-url", help="SQLAlchemy URL (else FIN_DATABASE_URL)")
]


@app.command(
    help=f"{core_cli.train.__doc__}\n\nFor classification the labels must be negative, neutral and positive "
    "(negative and positive present); map others first, or use `textcore train`."
)
@functools.wraps(core_cli.train)
def train(**options: Any) -> None:
    columns = (options["text_column"], options["label_column"])
    task = options.get("task", "classification")
    core_cli.run_or_exit(lambda: require_distinct_columns(*columns, task))
    if task == "classification":
        core_cli.run_or_exit(lambda: _require_finance_labels(options["data"], *columns))
    core_cli.train(**options)


EVALUATE_HELP = (
    "Score the sentiment model on labelled data. It prints precision, recall, F1 and support per label, "
    "with the accuracy and macro-F1; the last stdout line is one JSON object (n, accuracy, macro_f1, labels, "
    "per_label, and confusion: one row per true label, one column per predicted label, in the order of "
    "labels).\n\n"
    "--model is a `finance-sentiment train` output folder or a registry version folder "
    "(var/registry/finance-sentiment/v0003; the name's folder is refused, naming the version to give). The "
    "labels in --label-column are negative, neutral and positive; one the model was not trained on is "
    "refused.\n\n"
    "The flags and the output are those of `textcore evaluate`, which also scores taggers and "
    "cross-encoders (hence --passage-column and the notes on other model kinds below)."
)

app.command(help=EVALUATE_HELP)(core_cli.evaluate)


def _require_finance_labels(path: Path, text_column: str, label_column: str) -> None:
    from finance_sentiment.labels import FINANCE_LABELS  # noqa: PLC0415
    from textcore import read_labelled  # noqa: PLC0415

    # read as training will, so that a missing column or an empty file is named as such
    found = set(read_labelled(path, text_column, label_column).labels)
    unknown = sorted(found - set(FINANCE_LABELS))
    if unknown or not {"negative", "positive"} <= found:
        raise InvalidInput(
            f"expected {label_column!r} labels among {', '.join(FINANCE_LABELS)} (with negative and positive "
            f"present) in {path}; found {sorted(found)[:10]} (map them first, or use `textcore train`)"
        )


def _prepare(
    config: Path | None, database_url: str | None, **more: Any
) -> tuple[FinanceSentimentSettings, Prepared]:
    """The settings, and the start-up checks that would otherwise stop the service mid-start with a
    traceback (`monitor.prepare`: the config file and its URLs, the database and its migration), made here
    once; the service is handed what they found and does not repeat them."""
    from finance_sentiment.monitor import prepare  # noqa: PLC0415

    overrides = {"config_file": config, "database_url": database_url, **more}
    try:
        settings = FinanceSentimentSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise InvalidInput(core_cli.settings_errors(exc, "FIN_")) from None
    except SettingsError as exc:  # a value that is no JSON where a list or an object is expected
        raise InvalidInput(
            f"FIN_* settings: {exc}; a list takes a JSON array, e.g. "
            """FIN_FETCH__ALLOWED_NETWORKS='["127.0.0.0/8"]'"""
        ) from None
    return settings, asyncio.run(prepare(settings))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port", min=0, max=65535)] = 8000,
    scheduler: Annotated[
        bool, typer.Option(help="run the jobs here (--no-scheduler: API-only replica)")
    ] = True,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    log_format: LogFormatOpt = "text",
    log_level: LogLevelOpt = "info",
) -> None:
    """Serve the HTTP API (and, unless --no-scheduler, the scheduled jobs)."""
    import uvicorn  # noqa: PLC0415

    from finance_sentiment.app import create_app  # noqa: PLC0415

    log_config = core_cli.log_config(log_format, log_level)
    settings, prepared = core_cli.run_or_exit(lambda: _prepare(config, database_url, scheduler=scheduler))
    uvicorn.run(create_app(settings, prepared), host=host, port=port, log_config=log_config)


@app.command()
def worker(
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    log_format: LogFormatOpt = "text",
    log_level: LogLevelOpt = "info",
) -> None:
    """Only schedule: fetch sources, judge rules and deliver webhooks, for API replicas run --no-scheduler."""
    log_config = core_cli.log_config(log_format, log_level)
    settings, prepared = core_cli.run_or_exit(lambda: _prepare(config, database_url))
    logging.config.dictConfig(log_config)
    core_cli.run_or_exit(lambda: asyncio.run(_work(settings, prepared)))


async def _work(settings: FinanceSentimentSettings, prepared: Prepared) -> None:
    from finance_sentiment.monitor import open_monitor  # noqa: PLC0415
    from finance_sentiment.scheduling import MonitorScheduler  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with open_monitor(settings, prepared=prepared) as monitor:
        scheduler = MonitorScheduler(monitor)
        await scheduler.start()
        try:
            await stop.wait()
        finally:
            scheduler.shutdown()


@app.command("run-once")
def run_once(
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="exit 1 when any source failed, is held back after failing, or went gone in this run "
            "(answered 410 Gone and was disabled)",
        ),
    ] = False,
) -> None:
    """Fetch every enabled source once, judge the rules, deliver webhooks, delete the stories (and the
    finished notifications and resolved alerts) older than FIN_RETENTION_DAYS when it is set, and exit (for
    cron).

    The last stdout line is one JSON object: per-source reports and totals (``pruned``: stories deleted;
    ``notifications_pruned``, ``alerts_pruned``: finished notifications and resolved alerts deleted). The exit
    code is 1 when at least one source ran and every one that ran failed (with --strict: when any source
    failed, was held back after failing, or went gone: answered 410 Gone and was disabled in this run), with
    one stderr line saying how many and naming each gone source; 0 otherwise.
    """
    settings, prepared = core_cli.run_or_exit(lambda: _prepare(config, database_url))
    summary = core_cli.run_or_exit(lambda: asyncio.run(_once(settings, prepared)))
    print(json.dumps(summary))
    verdict = run_verdict(summary["reports"], strict=strict)
    if verdict is not None:
        failing, line = verdict
        core_cli.say(line)
        if failing:
            raise typer.Exit(1)


def run_verdict(reports: list[dict[str, Any]], *, strict: bool) -> tuple[bool, str] | None:
    """Whether a run-once pass with these source reports fails its cron job, and the stderr line saying why.

    A source held back (``backoff``: failing, not fetched this time) did not run, and one that went gone
    (answered 410 Gone, disabled for good) ran; each counts as a failure only with ``strict``, and each gone
    source is named with its report's error. None when no source failed, was held back or went gone.
    """
    statuses = [report["status"] for report in reports]
    failed = statuses.count("failed")
    held = statuses.count("backoff")
    gone = [f"source {r['source_id']}: {r.get('error') or 'gone'}" for r in reports if r["status"] == "gone"]
    ran = len(statuses) - held - statuses.count("disabled")
    if not failed and not held and not gone:
        return None
    counts = f"{failed} of {ran} sources run failed" + (
        f", {held} held back after failing (backoff)" if held else ""
    )
    if gone:
        counts += f", {len(gone)} gone and disabled ({'; '.join(gone)})"
    if ran and failed == ran:
        return True, f"error: {counts}: every source run failed (see the reports)"
    if strict:
        return True, f"error: {counts} (--strict)"
    return False, f"warning: {counts} (--strict exits 1 on any)"


async def _once(settings: FinanceSentimentSettings, prepared: Prepared) -> dict[str, Any]:
    from finance_sentiment.monitor import open_monitor  # noqa: PLC0415

    async with open_monitor(settings, prepared=prepared) as monitor:
        reports = await monitor.run_all()
        # Cron users have no scheduler: each pass keeps the retention (a quick query when nothing is due).
        pruned = await monitor.prune()
    return {
        "sources": len(reports),
        "stored": sum(r.stored for r in reports),
        "duplicates": sum(r.duplicates for r in reports),
        "skipped": sum(r.skipped for r in reports),
        "failed": sum(r.status == "failed" for r in reports),
        "pruned": pruned.pruned if pruned is not None else 0,
        "notifications_pruned": pruned.notifications_pruned if pruned is not None else 0,
        "alerts_pruned": pruned.alerts_pruned if pruned is not None else 0,
        "reports": [asdict(r) for r in reports],
    }


def main() -> None:
    """Console entry point: usage errors as one line and exit code 2 (`textcore.console.run_app`)."""
    core_cli.run_app(app)
