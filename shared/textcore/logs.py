"""Log output of the services: readable lines for a terminal, or one JSON object per line for a log pipeline.

`logging_config` returns a `logging.config.dictConfig` dictionary for the whole process, uvicorn's loggers
included (the `serve` commands pass it to uvicorn as its ``log_config``): every record goes to stderr through
one handler, at one level. In JSON, each line holds ``time`` (UTC, ISO 8601), ``level``, ``logger``,
``message``, the ``request_id`` of the HTTP request being served when there is one (`request_id`, set by
`textcore.web.request_id`), and ``exception`` with the traceback when the record has one. uvicorn's access
lines name the path without its query string (`QueryHidden`) unless the level is DEBUG.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from textcore.errors import InvalidInput

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

REQUEST_ID_HEADER = "X-Request-ID"
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
"""The id of the HTTP request the current task or thread serves (None outside a request)."""


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object on one line (newlines in the message or traceback are escaped)."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (current := request_id.get()) is not None:
            entry["request_id"] = current
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class StderrHandler(logging.StreamHandler[TextIO]):
    """Write each record to `sys.stderr` as it is when the record comes (a test runner swaps it meanwhile)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Write `record` to the current stderr."""
        self.stream = sys.stderr  # under the handler's lock, like the write
        super().emit(record)


class QueryHidden(logging.Filter):
    """Cut the query string from uvicorn's access lines: a query may carry personal data (a knowledge
    search's ``q``, a recommendation's ``interests``), which a log at INFO must not hold. The path stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep `record`, its path without its query (``/v1/knowledge/search?...``)."""
        args = record.args
        # uvicorn's access record: client address, method, path with query, HTTP version, status
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].partition("?")[0] + "?...", *args[3:])
        return True


def logging_config(log_format: str = "text", level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` dictionary: every logger, uvicorn's too, to stderr in `log_format`.

    Args:
        log_format: "text" (time, level, logger, message) or "json" (`JsonFormatter`).
        level: DEBUG, INFO, WARNING or ERROR (any case).

    Raises:
        InvalidInput: For another format or level.
    """
    log_format, given, level = log_format.lower(), level, level.upper()
    if log_format not in LOG_FORMATS:
        raise InvalidInput(f"expected a log format of {' or '.join(LOG_FORMATS)}; found {log_format!r}")
    if level not in LOG_LEVELS:
        raise InvalidInput(f"expected a log level of {', '.join(LOG_LEVELS)}; found {given!r}")
    formatter = {"()": JsonFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    # uvicorn's loggers get no handler of their own: their records reach the root's, like every other one.
    uvicorn = {"handlers": [], "level": level, "propagate": True}
    # Access lines keep their query string at DEBUG only (`QueryHidden`).
    access = {**uvicorn, "filters": [] if level == "DEBUG" else ["query_hidden"]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"query_hidden": {"()": QueryHidden}},
        "handlers": {"default": {"class": "textcore.logs.StderrHandler", "formatter": "default"}},
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            **{name: dict(uvicorn) for name in ("uvicorn", "uvicorn.error")},
            "uvicorn.access": access,
            # alembic tells of every migration context at INFO (the services migrate at each start)
            "alembic": {"level": "DEBUG" if level == "DEBUG" else "WARNING"},
        },
    }
