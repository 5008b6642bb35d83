"""Configuration of the finance_sentiment service, read from ``FIN_*`` environment variables."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from textcore.settings import ServiceSettings


class FinanceSentimentSettings(ServiceSettings):
    """Settings of the finance_sentiment service.

    Every field can be set from the environment as ``FIN_<FIELD>`` (nested fields with ``__``), for
    example ``FIN_MAX_WORKERS=4`` or ``FIN_ENCODER__PRECISION=fp32``.
    """

    model_config = SettingsConfigDict(env_prefix="FIN_")
