"""recommender service."""

from recommender.app import create_app

__all__ = ["create_app"]
