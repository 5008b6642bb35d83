"""Configuration of the recommender service, read from ``REC_*`` environment variables."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from textcore.settings import ServiceSettings


class RecommenderSettings(ServiceSettings):
    """Settings of the recommender service.

    Every field can be set from the environment as ``REC_<FIELD>`` (nested fields with ``__``), for
    example ``REC_MAX_WORKERS=4`` or ``REC_ENCODER__PRECISION=fp32``.
    """

    model_config = SettingsConfigDict(env_prefix="REC_")
