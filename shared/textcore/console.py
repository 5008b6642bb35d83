"""How every command line talks to its user: one stderr console, a CoreError or a usage error (`run_app`) as
one line and exit code 2, quiet libraries, refused settings and the logging of long-running commands.

Shared by `textcore` and the services' command lines.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from textcore.errors import CoreError

if TYPE_CHECKING:
    from pydantic import ValidationError
    from typer._click.exceptions import ClickException
else:
    # The click that typer runs on: its own copy in recent typer, the click package in older ones. typer
    # re-exports that click's BadParameter, a ClickException, either way.
    ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

err = Console(stderr=True)
T = TypeVar("T")


def say(message: str) -> None:
    """One line to the user on stderr, as sent: no markup, no highlighting, no wrapping."""
    err.print(message, markup=False, highlight=False, soft_wrap=True)


def quiet_libraries() -> None:
    """Keep stderr for our own messages: no hub/transformers progress bars or load reports.

    Before transformers and the hub client are imported, their environment settings do it, so that a command
    refusing its input at once (a missing file, a misspelt column) does not first spend seconds importing
    them; once imported, their own switches do.
    """
    if "transformers" not in sys.modules and "huggingface_hub" not in sys.modules:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"
        return
    import transformers.utils.logging  # noqa: PLC0415
    from huggingface_hub.utils import disable_progress_bars  # type: ignore[attr-defined]  # noqa: PLC0415

    disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]


def settings_errors(exc: ValidationError, prefix: str) -> str:
    """A service's refused settings in one line, each by its environment variable, e.g.
    ``FIN_RETENTION_DAYS: Input should be a valid integer``; never the value (it may be a key or a
    password)."""
    return "; ".join(
        f"{prefix}{'__'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    )


LOG_FORMAT_HELP = "text (readable lines) or json (one object per line, for a log pipeline)"
LOG_LEVEL_HELP = "debug, info, warning or error"


def log_config(log_format: str, level: str) -> dict[str, Any]:
    """The `logging.config.dictConfig` of a long-running command (uvicorn applies it as its ``log_config``):
    every record to stderr in `log_format` at `level`. A bad format or level ends in one line and exit 2."""
    from textcore.logs import logging_config  # noqa: PLC0415

    return run_or_exit(lambda: logging_config(log_format, level))


class _ConsoleWarnings(logging.Handler):
    """Warnings the library logs, on the command's stderr as its own: ``warning: max_length 1024 is ...``."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        say(f"{record.levelname.lower()}: {record.getMessage()}")


def console_warnings() -> None:
    """Show logged warnings as the command's own lines, unless logging is already set up (a long-running
    command's `log_config` replaces this handler with its own; a test runner's capture keeps its)."""
    if not logging.getLogger().handlers:
        logging.getLogger().addHandler(_ConsoleWarnings())


def run_or_exit(action: Callable[[], T]) -> T:
    """Run `action`, turning a CoreError into one stderr line and exit code 2."""
    quiet_libraries()
    console_warnings()
    try:
        return action()
    except CoreError as exc:
        say(f"error: {exc.message}")
        raise typer.Exit(2) from None


def run_app(app: typer.Typer, args: Sequence[str] | None = None) -> NoReturn:
    """Run a command line as its console script, `args` or else ``sys.argv[1:]``.

    click's usage errors (a value that is not an integer, a missing or unknown option, a bad choice, a path
    that does not exist) end, like a CoreError, with one stderr line, e.g. ``error: invalid value for
    '--epochs': ...`` (click's message on one line), and their exit code (2) instead of typer's boxed
    usage text. ``--help``, a command's own exit code, Ctrl-C and a bug's traceback are as typer gives them.
    """
    try:
        result = app(args=args, standalone_mode=False)
    except ClickException as exc:
        if type(exc).__name__ != "NoArgsIsHelpError":  # no arguments: its help is already on stdout
            say(f"error: {usage_line(exc.format_message())}")
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        err.print("Aborted!", markup=False, highlight=False)
        raise SystemExit(1) from None
    # without standalone mode click returns the exit code of a typer.Exit, else the command's return value
    raise SystemExit(result if isinstance(result, int) else 0)


def usage_line(message: str) -> str:
    """click's message as one line in the style of our own (``Invalid value`` -> ``invalid value``)."""
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    return line[:1].lower() + line[1:] if line[:2].istitle() else line
