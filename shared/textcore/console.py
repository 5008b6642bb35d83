"""How every command line talks to its user: one stderr console, a CoreError as one line and exit code 2,
quiet libraries, refused settings and the logging of long-running commands.

Shared by `textcore` and the services' command lines.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from textcore.errors import CoreError

if TYPE_CHECKING:
    from pydantic import ValidationError

err = Console(stderr=True)
T = TypeVar("T")


def quiet_libraries() -> None:
    """Keep stderr for our own messages: no hub/transformers progress bars or load reports.

    Called inside the commands (which import transformers anyway) so that `--help` stays fast.
    """
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


def run_or_exit(action: Callable[[], T]) -> T:
    """Run `action`, turning a CoreError into one stderr line and exit code 2."""
    quiet_libraries()
    try:
        return action()
    except CoreError as exc:
        err.print(f"error: {exc.message}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
