"""recommender: text-interest recommendations learned from behaviour (`create_app`; the `recommender` CLI)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recommender.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Lazy, so that the CLI's --help does not import the app, torch and the database drivers.
    if name == "create_app":
        from recommender.app import create_app  # noqa: PLC0415

        return create_app
    raise AttributeError(f"module 'recommender' has no attribute {name!r}")
