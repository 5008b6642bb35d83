"""finance_sentiment: the finance opinion monitor service (`create_app`, and the `finance-sentiment` CLI)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from finance_sentiment.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Lazy, so that the CLI's --help does not import the app, torch and the database drivers.
    if name == "create_app":
        from finance_sentiment.app import create_app  # noqa: PLC0415

        return create_app
    raise AttributeError(f"module 'finance_sentiment' has no attribute {name!r}")
