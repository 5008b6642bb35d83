"""customer_service: the customer-service chat API (`create_app`; the `customer-service` CLI)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from customer_service.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Lazy, so that the CLI's --help does not import the app, torch and the database drivers.
    if name == "create_app":
        from customer_service.app import create_app  # noqa: PLC0415

        return create_app
    raise AttributeError(f"module 'customer_service' has no attribute {name!r}")
