"""Configuration of the customer_service service, read from ``CS_*`` environment variables."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from textcore.settings import ServiceSettings


class CustomerServiceSettings(ServiceSettings):
    """Settings of the customer_service service.

    Every field can be set from the environment as ``CS_<FIELD>`` (nested fields with ``__``), for
    example ``CS_MAX_WORKERS=4`` or ``CS_ENCODER__PRECISION=fp32``.
    """

    model_config = SettingsConfigDict(env_prefix="CS_")
