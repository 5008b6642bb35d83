"""Settings shared by every service, nested into each service's own settings class.

A service reads them from its environment prefix with `__` as the nesting delimiter, e.g.
`CS_ENCODER__PRECISION=fp32` or `FIN_ENCODER__DEVICE=cuda:0`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from textcore.devices import PRECISIONS


class EncoderSettings(BaseModel):
    """Which model a service loads and how it runs it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field("minilm", description="Alias, local Hugging Face folder or trained model folder.")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda or cuda:N.")
    precision: str = Field("auto", description="auto (bf16 where the hardware is fast at it), bf16 or fp32.")
    max_length: int = Field(256, ge=8, le=8192, description="Tokens per text; longer texts are truncated.")
    batch_size: int = Field(64, ge=1, le=4096, description="Texts per forward pass.")

    @field_validator("precision")
    @classmethod
    def _known_precision(cls, value: str) -> str:
        if value not in PRECISIONS:
            raise ValueError(f"expected one of {', '.join(PRECISIONS)}; found {value!r}")
        return value


class ServiceSettings(BaseSettings):
    """Settings every service has; each service subclasses it with its own `env_prefix`."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore")

    encoder: EncoderSettings = Field(
        default_factory=EncoderSettings, description="The model and how it runs."
    )
    max_workers: int = Field(2, ge=1, description="Blocking model calls allowed to run at once.")
    max_queue: int = Field(8, ge=0, description="Further calls allowed to wait before answering 429.")
    max_body_bytes: int = Field(1_000_000, ge=1, description="Largest accepted request body, in bytes.")
