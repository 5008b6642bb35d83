"""finance_sentiment service."""

from finance_sentiment.app import create_app

__all__ = ["create_app"]
