"""Settings shared by every service, nested into each service's own settings class.

A service reads them from its environment prefix with `__` as the nesting delimiter, e.g.
`CS_ENCODER__PRECISION=fp32` or `FIN_ENCODER__DEVICE=cuda:0`.
"""

from __future__ import annotations

import json
import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_API_KEY_LENGTH = 16
HOST = re.compile(r"(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\]")  # a name, *.name or [IPv6]
ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")  # a web origin: scheme, host, port


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
        # Imported here: textcore.devices imports torch, and a command's --help reads no setting.
        from textcore.devices import PRECISIONS  # noqa: PLC0415

        if value not in PRECISIONS:
            raise ValueError(f"expected one of {', '.join(PRECISIONS)}; found {value!r}")
        return value


class ServiceSettings(BaseSettings):
    """Settings every service has; each service subclasses it with its own `env_prefix`."""

    # Errors name the setting and the problem, never echo the value: it may be a key or a password in a URL.
    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore", hide_input_in_errors=True)

    encoder: EncoderSettings = Field(
        default_factory=EncoderSettings, description="The model and how it runs."
    )
    max_workers: int = Field(2, ge=1, description="Blocking model calls allowed to run at once.")
    max_queue: int = Field(8, ge=0, description="Further calls allowed to wait before answering 429.")
    max_body_bytes: int = Field(1_000_000, ge=1, description="Largest accepted request body, in bytes.")
    body_timeout: float = Field(
        30.0,
        gt=0,
        le=3600,
        description=(
            "Seconds a client may take to send a whole request body once its headers are in; one still "
            "incomplete then gets 408 and its connection is closed. The response is not bounded by it."
        ),
    )
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (),
        description=(
            "Keys a request must carry as 'Authorization: Bearer KEY' or 'X-API-Key: KEY', each at least "
            f"{MIN_API_KEY_LENGTH} characters; comma-separated or a JSON list in the environment (several, "
            "so that keys can be rotated). None (the default): the API is open, for a service behind a "
            "gateway that authenticates."
        ),
    )

    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        max_length=100,
        description=(
            "Web origins whose pages may call the API from a browser (a chat widget on the bank's site), "
            "e.g. 'https://www.example.com'; '*' for any; comma-separated or a JSON list. None (the "
            "default): no cross-origin browser calls."
        ),
    )

    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        max_length=100,
        description=(
            "Host names the service answers for (the requests' Host header), e.g. 'api.example.com', or "
            "'*.example.com' for any below it; comma-separated or a JSON list. Another host is refused with "
            "400, but the health probes answer any. None (the default): any host."
        ),
    )

    @field_validator("api_keys", "cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        return split_list(value)

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        for origin in origins:
            if origin != "*" and not ORIGIN.fullmatch(origin):
                expected = "expected origins as scheme://host[:port] (no path) or '*'"
                raise ValueError(f"{expected}; found {origin!r}")
        return origins

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        for host in hosts:
            if not HOST.fullmatch(host):
                expected = "expected host names such as api.example.com or *.example.com (no scheme, no port)"
                raise ValueError(f"{expected}; found {host!r}")
        return hosts

    @field_validator("api_keys")
    @classmethod
    def _long_keys(cls, keys: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        return long_keys(keys)


def split_list(value: object) -> object:
    """A list setting as given in the environment: a JSON list or comma-separated values, as a tuple.

    Raises:
        ValueError: it is set but empty (a secret that came out blank), or a malformed JSON list.
    """
    if isinstance(value, str) and value.lstrip().startswith("["):  # a JSON list, as other list settings
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError("expected a JSON list or comma-separated values") from None
        if value == []:  # set to an empty list: refused as a blank value is, not a silently open API
            raise ValueError("expected at least one value; found none (unset it to leave it off)")
    if isinstance(value, str):
        parts = tuple(part.strip() for part in value.split(",") if part.strip())
        # Set but empty (a secret that came out blank): refused, rather than a silently open API.
        if not parts:
            raise ValueError("expected at least one value; found none (unset it to leave it off)")
        return parts
    return value


def long_keys(keys: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
    """`keys`, each checked to be at least `MIN_API_KEY_LENGTH` characters (named by position, never shown).

    Raises:
        ValueError: a key is shorter.
    """
    for position, key in enumerate(keys, start=1):
        length = len(key.get_secret_value())
        if length < MIN_API_KEY_LENGTH:
            expected = f"expected API keys of at least {MIN_API_KEY_LENGTH} characters"
            raise ValueError(f"{expected}; key {position} has {length}")
    return keys
