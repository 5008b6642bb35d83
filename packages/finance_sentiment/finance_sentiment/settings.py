"""Configuration of the finance_sentiment service, read from ``FIN_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from textcore.settings import EncoderSettings


class FinanceSentimentSettings(BaseSettings):
    """Settings of the finance_sentiment service.

    Every field can be set from the environment as ``FIN_<FIELD>`` (nested fields with ``__``), for
    example ``FIN_MAX_WORKERS=4``.
    """

    model_config = SettingsConfigDict(env_prefix="FIN_", env_nested_delimiter="__", extra="ignore")

    encoder: EncoderSettings = Field(
        default_factory=EncoderSettings, description="The model and how it runs."
    )
    max_workers: int = Field(2, ge=1, description="Blocking model calls allowed to run at once.")
    max_queue: int = Field(8, ge=0, description="Further calls allowed to wait before answering 429.")
    max_body_bytes: int = Field(1_000_000, ge=1, description="Largest accepted request body, in bytes.")
