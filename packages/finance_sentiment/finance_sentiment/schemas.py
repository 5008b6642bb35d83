"""Request and response bodies of the monitor's API (pydantic v2); the config file reuses the input models.

Inputs forbid unknown fields and bound every string and list, so a request cannot smuggle in a typo or a
megabyte of tags. No string that is stored may hold a control character but tab, newline and carriage return
(`textcore.printable`), so such a request is refused alike on SQLite and on PostgreSQL, which cannot store
NUL. Cross-field rules of a source (one schedule; a link pattern only for HTML pages; JSON field paths only
for JSON APIs) live in `SourceIn`; a `SourcePatch` is re-checked against the stored row when it is applied
(`finance_sentiment.sources.update_source`).
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import regex
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from finance_sentiment.credentials import redact, refuse_mask
from finance_sentiment.crontab import never_fires
from textcore.printable import Printable

DEFAULT_INTERVAL_SECONDS = 900
MAX_INTERVAL_SECONDS = 7 * 24 * 3600  # a week


# Characters no URL may hold as written, which the HTTP client percent-encodes when it sends the request.
_UNSAFE_IN_URL = str.maketrans({char: f"%{ord(char):02X}" for char in ' "<>`{}'})


def escape_url(url: str) -> str:
    """`url` with the characters no URL holds as written (a space, ``"<>`{}``) percent-encoded, as the request
    sends them: ``https://news.example.com/my feed.xml`` is kept as ``.../my%20feed.xml``."""
    return url.translate(_UNSAFE_IN_URL)


def _http_url(value: str) -> str:
    value = escape_url(value)
    parts = urlsplit(value)
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, found {redact(value)!r}")
    try:
        port = parts.port
    except ValueError:
        port = 0  # not a number, or out of range
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"expected a URL with a port from 1 to 65535, found {redact(value)!r}")
    return value


def _crontab(value: str) -> str:
    try:
        never = never_fires(value)
    except ValueError as exc:
        raise ValueError(
            "expected a 5-field crontab expression 'minute hour day month day_of_week' "
            f"such as '*/15 * * * *', found {value!r} ({exc})"
        ) from None
    # A day that no month has ('0 0 31 2 *', '0 0 31 4,6 *'): the scheduler would never fetch the source
    # and nothing would say so.
    if never:
        raise ValueError(
            f"expected a crontab expression naming a date that exists, found {value!r}, which never "
            "fires (no month it names has that day)"
        )
    return value


def _visible(value: str) -> str:
    """`value` unless it holds nothing but whitespace and control or format characters (a BEL, an escape, a
    zero-width space): nothing to classify."""
    if all(char.isspace() or unicodedata.category(char) in ("Cc", "Cf") for char in value):
        raise ValueError(
            "expected a text with at least one visible character, found only whitespace and control or "
            f"format characters ({value[:20]!r})"
        )
    return value


def _regex(value: str) -> str:
    # Compiled by the engine that applies it to list pages' links (`articles.scan_links`), re's syntax.
    try:
        regex.compile(value)
    except regex.error as exc:
        raise ValueError(f"expected a Python regular expression, found {value!r} ({exc})") from None
    return value


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), Printable]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), Printable]
HttpUrl = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=2048), Printable, AfterValidator(_http_url)
]
# A source's or a webhook's URL may hold credentials, but not the listings' mask of one
# (`finance_sentiment.credentials`)
SourceUrl = Annotated[HttpUrl, AfterValidator(refuse_mask)]
WebhookUrl = SourceUrl
Cron = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=120), Printable, AfterValidator(_crontab)
]
Pattern = Annotated[str, StringConstraints(min_length=1, max_length=500), Printable, AfterValidator(_regex)]
DottedPath = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^.\s]+(\.[^.\s]+)*$"), Printable]
SourceKind = Literal["rss", "html", "json"]
# Strict: lax mode read `true` as 1 (a fetch every second) and `false` as 0.
IntervalSeconds = Annotated[int, Field(ge=1, le=MAX_INTERVAL_SECONDS, strict=True)]
Tags = Annotated[list[Tag], Field(max_length=50)]
# Strict: lax mode read "yes", "true", 1 (and "off", 0) as booleans, enabling or disabling without a word.
Flag = Annotated[bool, Field(strict=True)]
_INPUT = ConfigDict(extra="forbid")


def describe_errors(exc: ValidationError, root: str = "input") -> str:
    """A one-line summary of a pydantic error, e.g. ``sources[1].url: Value error, expected ...; ...``,
    with the password of any URL it quotes masked.

    Args:
        exc: The error.
        root: What to call the validated object itself, for errors that concern no single field.
    """
    parts = []
    for error in exc.errors(include_url=False):
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
        parts.append(f"{where.lstrip('.') or root}: {error['msg']}")
    return redact("; ".join(parts))


class JsonFieldsIn(BaseModel):
    """Where items and their fields sit in a JSON API response, as dotted paths (``data.articles``)."""

    model_config = _INPUT

    items: Annotated[
        str, StringConstraints(max_length=200, pattern=r"^([^.\s]+(\.[^.\s]+)*)?$"), Printable
    ] = Field("", description='Path to the list of items; "" when the response itself is the list.')
    title: DottedPath = Field("title", description="Path to the headline inside an item.")
    text: DottedPath = Field("text", description="Path to the body inside an item (falls back to the title).")
    url: DottedPath = Field("url", description="Path to the item's absolute or relative link.")
    time: DottedPath = Field(
        "published_at", description="Path to the publication time (ISO 8601 or epoch seconds)."
    )


SOURCE_DOCS = {
    "name": "Unique name of the source (1-200 characters).",
    "url": "The feed, page or API to fetch (http or https); its credentials (a password, a user name alone, "
    "a token, key or signature query parameter) are listed masked as '****', and this masked URL sent back "
    "keeps the stored ones.",
    "kind": "rss: an RSS/Atom feed; html: a page whose links lead to articles; json: a JSON API.",
    "interval_seconds": f"Fetch every this many seconds (1..{MAX_INTERVAL_SECONDS}); excludes cron. "
    f"Without either, {DEFAULT_INTERVAL_SECONDS}.",
    "cron": "Fetch on this UTC crontab schedule, e.g. '*/15 * * * *'; excludes interval_seconds.",
    "topics": "Topics every document of this source is tagged with (at most 50).",
    "entities": "Entities every document of this source is tagged with (at most 50).",
    "link_pattern": "kind html only: a regular expression that article links must match.",
    "json_fields": "kind json only: where the items and their fields sit in the response.",
    "enabled": "Whether the source is fetched (a JSON boolean).",
}


class SourceIn(BaseModel):
    """A source to create (or to upsert from the config file)."""

    model_config = _INPUT

    name: Name = Field(description=SOURCE_DOCS["name"])
    url: SourceUrl = Field(description=SOURCE_DOCS["url"])
    kind: SourceKind = Field(description=SOURCE_DOCS["kind"])
    interval_seconds: IntervalSeconds | None = Field(None, description=SOURCE_DOCS["interval_seconds"])
    cron: Cron | None = Field(None, description=SOURCE_DOCS["cron"])
    topics: Tags = Field(default_factory=list, description=SOURCE_DOCS["topics"])
    entities: Tags = Field(default_factory=list, description=SOURCE_DOCS["entities"])
    link_pattern: Pattern | None = Field(None, description=SOURCE_DOCS["link_pattern"])
    json_fields: JsonFieldsIn | None = Field(None, description=SOURCE_DOCS["json_fields"])
    enabled: Flag = Field(True, description=SOURCE_DOCS["enabled"])

    @model_validator(mode="after")
    def _cross_field_rules(self) -> SourceIn:
        if self.interval_seconds is not None and self.cron is not None:
            raise ValueError(
                "expected at most one of interval_seconds and cron, found both "
                f"({self.interval_seconds} and {self.cron!r})"
            )
        if self.interval_seconds is None and self.cron is None:
            self.interval_seconds = DEFAULT_INTERVAL_SECONDS
        if self.link_pattern is not None and self.kind != "html":
            raise ValueError(f"expected link_pattern only with kind 'html', found kind {self.kind!r}")
        if self.json_fields is not None and self.kind != "json":
            raise ValueError(f"expected json_fields only with kind 'json', found kind {self.kind!r}")
        return self


class SourcePatch(BaseModel):
    """Changes to a source: only the fields sent change; null clears an optional field.

    Setting `cron` clears `interval_seconds` and the other way round, unless both are sent (an error).
    The result is checked with `SourceIn`'s rules when it is applied to the stored source.
    """

    model_config = _INPUT

    name: Name | None = Field(None, description=SOURCE_DOCS["name"])
    url: HttpUrl | None = Field(None, description=SOURCE_DOCS["url"])
    kind: SourceKind | None = Field(None, description=SOURCE_DOCS["kind"])
    interval_seconds: IntervalSeconds | None = Field(None, description=SOURCE_DOCS["interval_seconds"])
    cron: Cron | None = Field(None, description=SOURCE_DOCS["cron"])
    topics: Tags | None = Field(None, description=SOURCE_DOCS["topics"])
    entities: Tags | None = Field(None, description=SOURCE_DOCS["entities"])
    link_pattern: Pattern | None = Field(None, description=SOURCE_DOCS["link_pattern"])
    json_fields: JsonFieldsIn | None = Field(None, description=SOURCE_DOCS["json_fields"])
    enabled: Flag | None = Field(None, description=SOURCE_DOCS["enabled"])

    @model_validator(mode="after")
    def _field_rules(self) -> SourcePatch:
        _refuse_nulls(self, ("name", "url", "kind", "topics", "entities", "enabled"))
        if self.interval_seconds is not None and self.cron is not None:
            raise ValueError(
                "expected at most one of interval_seconds and cron, found both "
                f"({self.interval_seconds} and {self.cron!r})"
            )
        return self


def _refuse_nulls(model: BaseModel, fields: tuple[str, ...]) -> None:
    for field in fields:
        if field in model.model_fields_set and getattr(model, field) is None:
            raise ValueError(
                f"expected a value for {field}, found null (only optional fields can be cleared)"
            )


ManagedBy = Literal["config", "api"]
MANAGED_BY_DOC = (
    "Read-only. config: the config file declares it, and at each start the file's settings replace any "
    "change made through the API (removed from the file, it is disabled at the next start); api: created "
    "through the API (or released by the config file), never touched by the config file unless it comes "
    "to declare this name."
)
CONFIG_FILE_DOC = (
    "Read-only. The config file that provisions it, by its absolute path as the process that applied it "
    "was given it (symbolic links not followed); null when managed_by is api, or for a row provisioned "
    "before the path was recorded, until the next start of a file declaring it."
)


class SourceOut(BaseModel):
    """A source with its fetch state."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    url: str
    kind: SourceKind
    interval_seconds: int | None
    cron: str | None
    topics: list[str]
    entities: list[str]
    link_pattern: str | None
    json_fields: JsonFieldsIn | None
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why the monitor disabled the source, if it did (the site answered 410 Gone, or the "
        "config file that provisioned it no longer declares it)."
    )
    managed_by: ManagedBy = Field(description=MANAGED_BY_DOC)
    config_file: str | None = Field(description=CONFIG_FILE_DOC)
    last_run_at: datetime | None
    last_status: str | None
    last_error: str | None
    consecutive_failures: int
    created_at: datetime
    updated_at: datetime
    warnings: list[str] = Field(
        default_factory=list,
        description="One line for a setting stored before it was refused that keeps the source from working "
        "as meant: a cron naming a date that never exists (no fetch at all), taken before such a cron was "
        "refused.",
    )

    @field_validator("url", "last_error", "disabled_reason")
    @classmethod
    def _mask_passwords(cls, value: str | None) -> str | None:
        return None if value is None else redact(value)


RULE_DOCS = {
    "name": "Unique name of the rule (1-200 characters).",
    "group_by": "Watch each entity, each topic, or all documents together.",
    "match": "Entity or topic names to watch (at most 100); empty watches every one. An alias, a ticker "
    "($TSLA or TSLA) or another case of a configured entity or topic is stored as its canonical name.",
    "window_seconds": "Length of the window whose negative share is tested, in seconds.",
    "baseline_windows": "How many earlier windows form the baseline.",
    "min_count": "Documents a window needs before it can fire.",
    "min_negative_share": "Share of negative documents (0..1) a window needs before it can fire.",
    "z_threshold": "How many baseline deviations above the baseline a window must be (0 < z <= 100).",
    "min_sentiment_drop": (
        "How far (0..2) the window's mean sentiment score must fall below the baseline's mean before it can"
        " fire; null leaves the mean score out."
    ),
    "resolve_fraction": (
        "Hysteresis (0.01 <= f <= 1): a firing alert resolves only when its window falls below this"
        " fraction of min_count, of min_negative_share, of z_threshold or of min_sentiment_drop, so a volume"
        " or a share hovering at a threshold does not resolve the alert and fire it again; 1 resolves as"
        " soon as one threshold is missed."
    ),
    "method": "Baseline: ewma (exponentially weighted mean and variance) or robust_z (median and MAD).",
    "repeat_interval_seconds": "Notify again about a still-firing alert after this many seconds.",
    "webhook_url": "Where notifications are POSTed (http or https); its credentials (a password, a user "
    "name alone, a token, key or signature query parameter) are listed masked as '****', and this masked "
    "URL sent back keeps the stored ones.",
    "receiver": "Receiver name put in the webhook payload.",
    "secret": "Key signing each notification (HMAC); write-only, never returned.",
    "enabled": "Whether the rule is evaluated (a JSON boolean).",
}
GroupBy = Literal["entity", "topic", "all"]
Method = Literal["ewma", "robust_z"]
Match = Annotated[list[Tag], Field(max_length=100)]
# Numbers of a rule are JSON numbers (strict): lax mode read `true` as 1 (a repeat every second, a share of 1)
Window = Annotated[int, Field(ge=1, le=MAX_INTERVAL_SECONDS, strict=True)]
BaselineWindows = Annotated[int, Field(ge=1, le=1000, strict=True)]
MinCount = Annotated[int, Field(ge=1, le=1_000_000, strict=True)]
# Finite: a JSON NaN (Python's reader takes it) or a TOML nan was refused as "less than or equal to 100",
# naming a bound it does not break.
Share = Annotated[float, Field(ge=0.0, le=1.0, strict=True, allow_inf_nan=False)]
ZThreshold = Annotated[float, Field(gt=0.0, le=100.0, strict=True, allow_inf_nan=False)]
SentimentDrop = Annotated[float, Field(ge=0.0, le=2.0, strict=True, allow_inf_nan=False)]
# A hysteresis near 0 (1e-300 was taken) means an alert that in effect never resolves: at least 1 %.
MIN_RESOLVE_FRACTION = 0.01
ResolveFraction = Annotated[float, Field(ge=MIN_RESOLVE_FRACTION, le=1.0, strict=True, allow_inf_nan=False)]
NULLABLE_RULE_FIELDS = ("secret", "min_sentiment_drop")  # a patch may clear these with null
RepeatSeconds = Annotated[int, Field(ge=1, le=30 * 24 * 3600, strict=True)]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=500), Printable]


def check_rule(group_by: str, match: list[str]) -> None:
    """Refuse a name list on a rule that watches all documents together: it would be ignored."""
    if group_by == "all" and match:
        raise ValueError(f"expected an empty match list when group_by is 'all', found {match!r}")


class AlertRuleIn(BaseModel):
    """An alert rule to create (or to upsert from the config file)."""

    model_config = _INPUT

    name: Name = Field(description=RULE_DOCS["name"])
    group_by: GroupBy = Field("entity", description=RULE_DOCS["group_by"])
    match: Match = Field(default_factory=list, description=RULE_DOCS["match"])
    window_seconds: Window = Field(3600, description=RULE_DOCS["window_seconds"])
    baseline_windows: BaselineWindows = Field(24, description=RULE_DOCS["baseline_windows"])
    min_count: MinCount = Field(5, description=RULE_DOCS["min_count"])
    min_negative_share: Share = Field(0.5, description=RULE_DOCS["min_negative_share"])
    z_threshold: ZThreshold = Field(3.0, description=RULE_DOCS["z_threshold"])
    min_sentiment_drop: SentimentDrop | None = Field(None, description=RULE_DOCS["min_sentiment_drop"])
    resolve_fraction: ResolveFraction = Field(0.5, description=RULE_DOCS["resolve_fraction"])
    method: Method = Field("ewma", description=RULE_DOCS["method"])
    repeat_interval_seconds: RepeatSeconds = Field(14400, description=RULE_DOCS["repeat_interval_seconds"])
    webhook_url: WebhookUrl = Field(description=RULE_DOCS["webhook_url"])
    receiver: Name = Field("finance-sentiment", description=RULE_DOCS["receiver"])
    secret: Secret | None = Field(None, description=RULE_DOCS["secret"])
    enabled: Flag = Field(True, description=RULE_DOCS["enabled"])

    @model_validator(mode="after")
    def _cross_field_rules(self) -> AlertRuleIn:
        check_rule(self.group_by, self.match)
        return self


class AlertRulePatch(BaseModel):
    """Changes to a rule: only the fields sent change; `"secret": null` removes the secret and
    `"min_sentiment_drop": null` the mean-score test."""

    model_config = _INPUT

    name: Name | None = Field(None, description=RULE_DOCS["name"])
    group_by: GroupBy | None = Field(None, description=RULE_DOCS["group_by"])
    match: Match | None = Field(None, description=RULE_DOCS["match"])
    window_seconds: Window | None = Field(None, description=RULE_DOCS["window_seconds"])
    baseline_windows: BaselineWindows | None = Field(None, description=RULE_DOCS["baseline_windows"])
    min_count: MinCount | None = Field(None, description=RULE_DOCS["min_count"])
    min_negative_share: Share | None = Field(None, description=RULE_DOCS["min_negative_share"])
    z_threshold: ZThreshold | None = Field(None, description=RULE_DOCS["z_threshold"])
    min_sentiment_drop: SentimentDrop | None = Field(None, description=RULE_DOCS["min_sentiment_drop"])
    resolve_fraction: ResolveFraction | None = Field(None, description=RULE_DOCS["resolve_fraction"])
    method: Method | None = Field(None, description=RULE_DOCS["method"])
    repeat_interval_seconds: RepeatSeconds | None = Field(
        None, description=RULE_DOCS["repeat_interval_seconds"]
    )
    webhook_url: HttpUrl | None = Field(None, description=RULE_DOCS["webhook_url"])
    receiver: Name | None = Field(None, description=RULE_DOCS["receiver"])
    secret: Secret | None = Field(None, description=RULE_DOCS["secret"])
    enabled: Flag | None = Field(None, description=RULE_DOCS["enabled"])

    @model_validator(mode="after")
    def _field_rules(self) -> AlertRulePatch:
        _refuse_nulls(self, tuple(name for name in RULE_DOCS if name not in NULLABLE_RULE_FIELDS))
        return self


_DERIVED = ("has_secret", "warnings")  # fields of AlertRuleOut that are not columns of the row


class AlertRuleOut(BaseModel):
    """A rule as stored, with `has_secret` in place of the secret."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    group_by: GroupBy
    match: list[str]
    window_seconds: int
    baseline_windows: int
    min_count: int
    min_negative_share: float
    z_threshold: float
    min_sentiment_drop: float | None
    resolve_fraction: float
    method: Method
    repeat_interval_seconds: int
    webhook_url: str
    receiver: str
    has_secret: bool = Field(description="Whether notifications are signed.")
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why the monitor disabled the rule, if it did (the config file that provisioned it no "
        "longer declares it)."
    )
    managed_by: ManagedBy = Field(description=MANAGED_BY_DOC)
    config_file: str | None = Field(description=CONFIG_FILE_DOC)
    created_at: datetime
    updated_at: datetime
    warnings: list[str] = Field(
        default_factory=list,
        description="One line per name of match that no story is tagged with now (no configured entity, "
        "alias, ticker or topic, no source's tag, no cashtag), with the close known names; such a name is "
        "kept, as a source or a cashtag may bring it later. A rule stored with a resolve_fraction below 0.01 "
        "(taken before that bound) gets a line saying so.",
    )

    @model_validator(mode="before")
    @classmethod
    def _secret_to_flag(cls, data: Any) -> Any:
        # Read from a row (or a dict) without ever copying the secret itself into the model.
        if isinstance(data, dict):
            values = {key: value for key, value in data.items() if key != "secret"}
            values.setdefault("has_secret", data.get("secret") is not None)
            return values
        values = {name: getattr(data, name) for name in cls.model_fields if name not in _DERIVED}
        values["has_secret"] = getattr(data, "secret", None) is not None
        return values

    @field_validator("webhook_url")
    @classmethod
    def _mask_credentials(cls, value: str) -> str:
        return redact(value)


class DocumentOut(BaseModel):
    """A stored story with its classification and tags."""

    id: int
    source_id: int | None
    url: str
    title: str
    text: str
    published_at: datetime | None
    seen_at: datetime = Field(description="When the monitor first saw the story.")
    label: str
    scores: dict[str, float] = Field(description="Label -> probability.")
    sentiment: float = Field(description="P(positive) - P(negative), in [-1, 1].")
    topics: list[str]
    entities: list[str]
    model_version: str


class DocumentPage(BaseModel):
    """One page of documents, newest first."""

    items: list[DocumentOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class Deliveries(BaseModel):
    """Notifications of one alert by delivery state: those kept (with ``FIN_RETENTION_DAYS`` set, the ones
    delivered or expired longer ago are deleted and no longer counted). ``expired`` counts too the ones
    superseded, still unsent, by a newer notification of their alert group."""

    pending: int = 0
    delivered: int = 0
    expired: int = 0
    last_error: str | None = Field(
        None,
        description="Why the notification now being tried (the oldest still to be sent) failed at its last "
        "try, e.g. 'HTTP 401: bad signature' or 'ConnectError: ...' (credentials masked); null when none "
        "waits or it has not failed yet.",
    )


class AlertOut(BaseModel):
    """One episode of a rule firing for one label set."""

    id: int
    rule_id: int
    rule: str = Field(description="Name of the rule that fired.")
    rule_deleted: bool = Field(
        False,
        description="The rule was deleted since: the alert stays listed as history, under the name the rule "
        "had when it fired, until the retention deletes it.",
    )
    fingerprint: str
    labels: dict[str, Any]
    annotations: dict[str, Any]
    status: Literal["firing", "resolved"]
    starts_at: datetime
    ends_at: datetime | None
    last_sent_at: datetime | None
    deliveries: Deliveries = Field(default_factory=Deliveries)


class ClassifyIn(BaseModel):
    """Texts to classify."""

    model_config = _INPUT

    # Stripped, as a chat message is: a text of whitespace alone, or of control and format characters, is
    # refused (422 naming texts[n]).
    texts: Annotated[
        list[
            Annotated[
                str,
                StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000),
                AfterValidator(_visible),
            ]
        ],
        Field(min_length=1, max_length=256),
    ] = Field(
        description="1 to 256 texts of 1 to 10000 characters, not counting surrounding whitespace; each with "
        "at least one character that is no whitespace, control or format character."
    )


class ClassifyOut(BaseModel):
    """The classification of one text."""

    label: str
    scores: dict[str, float] = Field(description="Label -> probability.")
    sentiment: float = Field(description="P(positive) - P(negative), in [-1, 1].")
