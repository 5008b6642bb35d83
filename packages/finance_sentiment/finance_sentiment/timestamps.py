"""Publication times as sources write them (ISO 8601 strings, epoch seconds or milliseconds), read as UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 string or epoch seconds as an aware UTC datetime; None when absent or unreadable.

    Naive times are taken as UTC. Numbers too large to be seconds (after year 5138) are read as milliseconds,
    which many APIs send.
    """
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = value / 1000 if abs(value) >= 1e11 else value
            return datetime.fromtimestamp(seconds, tz=UTC)
        if isinstance(value, str) and value.strip():
            parsed = datetime.fromisoformat(value.strip())
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        pass
    return None
