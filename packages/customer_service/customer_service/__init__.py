"""customer_service service."""

from customer_service.app import create_app

__all__ = ["create_app"]
