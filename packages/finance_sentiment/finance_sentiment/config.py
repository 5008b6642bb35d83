"""The monitor's config file: sources, alert rules, topics and entities, in TOML (or JSON), loaded at start.

    [[sources]]                       # SourceIn
    name = "markets wire"
    url = "https://example.com/markets.rss"
    kind = "rss"

    [[alert_rules]]                   # AlertRuleIn
    name = "banks"
    match = ["JPMorgan Chase"]
    webhook_url = "https://example.com/hooks/risk"

    [[topics]]                        # TopicIn
    name = "earnings"
    keywords = ["earnings", "quarterly results"]

    [[entities]]                      # EntityIn
    name = "Tesla"
    ticker = "TSLA"
    aliases = ["Tesla Motors"]

Sources and rules are upserted by name into the database (`apply_config`) and are then managed by the file
(``managed_by = "config"``, one created through the API too once the file declares its name), which is known
by its absolute path (`config_key`): at each start the file's settings replace changes made through the
API, and one the file no longer declares is disabled (never deleted: its documents and alerts stay) and
handed back to the API. Ones the file never declared are left alone, another config file's included (two
desks' files, or two cron jobs, on one database). Topics and entities configure the tagger and are not
stored. Before that, every source URL and webhook URL passes the address guard the API applies to them
(`admit_urls`), so a private or loopback address the operator did not allow stops the start instead of
failing each fetch or delivery later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from finance_sentiment import netguard, rules, sources
from finance_sentiment.credentials import redact
from finance_sentiment.fetching import BlockedAddress, guard_address
from finance_sentiment.rules import rule_out, upsert_rule
from finance_sentiment.schemas import AlertRuleIn, Name, SourceIn, Tag, describe_errors
from finance_sentiment.sources import upsert_source
from finance_sentiment.tables import AlertRule, Source
from finance_sentiment.tagging import EntitySpec, TopicSpec
from finance_sentiment.vocabulary import NameIndex, Vocabulary
from textcore.errors import CoreError, InvalidInput

log = logging.getLogger(__name__)

MAX_CONFIG_BYTES = 5_000_000
# PostgreSQL advisory lock key of the transaction that applies the config file: "fin.conf" in ASCII. API
# replicas and the worker start together with the same file; one at a time, the later ones find the rows the
# first created instead of inserting the same names again (a unique-name error that stopped their start).
CONFIG_LOCK = 0x66696E2E636F6E66
_INPUT = ConfigDict(extra="forbid")


class TopicIn(BaseModel):
    """A topic the tagger recognises, by keywords and/or a description matched by embedding similarity."""

    model_config = _INPUT

    name: Name = Field(description="The label the topic is reported under.")
    keywords: Annotated[list[Tag], Field(max_length=200)] = Field(
        default_factory=list, description="Words or phrases marking the topic (whole word, case-insensitive)."
    )
    description: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)] | None
    ) = Field(None, description="A sentence describing the topic, matched by embedding similarity.")
    threshold: float = Field(
        0.45, gt=0.0, le=1.0, description="Cosine similarity to the description a text needs, in (0, 1]."
    )

    @model_validator(mode="after")
    def _valid_spec(self) -> TopicIn:
        _checked(self.spec)
        return self

    def spec(self) -> TopicSpec:
        """The tagger's view of this topic."""
        return TopicSpec(
            name=self.name,
            keywords=tuple(self.keywords),
            description=self.description,
            threshold=self.threshold,
        )


class EntityIn(BaseModel):
    """A company (or other named entity) the tagger recognises by name, ticker and aliases."""

    model_config = _INPUT

    name: Name = Field(description="The canonical label, e.g. 'Tesla'; it also matches as an alias.")
    ticker: Annotated[str, StringConstraints(strip_whitespace=True, max_length=12)] | None = Field(
        None, description="Its ticker, e.g. 'TSLA': matches '$TSLA' and, case-sensitively, a bare 'TSLA'."
    )
    aliases: Annotated[list[Tag], Field(max_length=50)] = Field(
        default_factory=list, description="Other names, e.g. 'Tesla Motors' (whole word, case-insensitive)."
    )

    @model_validator(mode="after")
    def _valid_spec(self) -> EntityIn:
        _checked(self.spec)
        return self

    def spec(self) -> EntitySpec:
        """The tagger's view of this entity."""
        return EntitySpec(name=self.name, ticker=self.ticker, aliases=tuple(self.aliases))


def _checked(build: Any) -> None:
    # The tagging specs validate themselves; report their complaints at the config field that caused them.
    try:
        build()
    except InvalidInput as exc:
        raise ValueError(exc.message) from None


class MonitorConfig(BaseModel):
    """Everything the config file declares."""

    model_config = _INPUT

    sources: Annotated[list[SourceIn], Field(max_length=1000)] = Field(default_factory=list)
    alert_rules: Annotated[list[AlertRuleIn], Field(max_length=1000)] = Field(default_factory=list)
    topics: Annotated[list[TopicIn], Field(max_length=1000)] = Field(default_factory=list)
    entities: Annotated[list[EntityIn], Field(max_length=10_000)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> MonitorConfig:
        for section in ("sources", "alert_rules", "topics", "entities"):
            seen: set[str] = set()
            for item in getattr(self, section):
                if item.name in seen:
                    raise ValueError(f"expected unique names in {section}, found {item.name!r} twice")
                seen.add(item.name)
        return self

    def topic_specs(self) -> tuple[TopicSpec, ...]:
        """The topics, for `finance_sentiment.tagging.Tagger`."""
        return tuple(topic.spec() for topic in self.topics)

    def entity_specs(self) -> tuple[EntitySpec, ...]:
        """The entities, for `finance_sentiment.tagging.Tagger`."""
        return tuple(entity.spec() for entity in self.entities)


def load_config(path: str | Path) -> MonitorConfig:
    """Read and check a config file: TOML (``.toml``) or JSON (``.json``).

    Raises:
        InvalidInput: The file is missing, too large, not valid TOML/JSON, or a field is wrong; the message
            names the file and the field (e.g. ``sources[1].url``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in {".toml", ".json"}:
        raise InvalidInput(f"expected a config file ending in .toml or .json, found {str(path)!r}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read config file {str(path)!r}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise InvalidInput(
            f"expected a config file of at most {MAX_CONFIG_BYTES} bytes, found {len(raw)} in {path}"
        )
    data = _parse(path, raw, suffix)
    try:
        return MonitorConfig.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(f"config file {str(path)!r}: {describe_errors(exc, 'config')}") from None


def _parse(path: Path, raw: bytes, suffix: str) -> dict[str, Any]:
    fmt = "TOML" if suffix == ".toml" else "JSON"
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text) if fmt == "TOML" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"config file {str(path)!r}: expected valid UTF-8 {fmt}, found an error: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise InvalidInput(
            f"config file {str(path)!r}: expected a {fmt} object at the top, found {type(data).__name__}"
        )
    return data


async def admit_urls(
    config: MonitorConfig,
    path: str | Path,
    allowed_networks: Sequence[str],
    resolve: netguard.Resolver = netguard.resolve,
) -> None:
    """Check every source and webhook URL of the config file with the address guard (`guard_address`).

    A host that does not resolve now is only logged: the guard checks it again before every request, and
    a passing name-server failure should not keep the monitor from starting.

    Args:
        config: The loaded config file.
        path: Its path, for the message.
        allowed_networks: The CIDRs the operator allowed (``FIN_FETCH__ALLOWED_NETWORKS``).
        resolve: Host name to addresses.

    Raises:
        InvalidInput: A URL is on an address the guard refuses; the message names the file, the entry (as
            ``alert_rules[0].webhook_url``, with its name) and the URL.
    """
    entries = [(f"sources[{i}].url", item.name, item.url) for i, item in enumerate(config.sources)]
    entries += [
        (f"alert_rules[{i}].webhook_url", item.name, item.webhook_url)
        for i, item in enumerate(config.alert_rules)
    ]
    allowed = netguard.parse_networks(allowed_networks)

    async def guard(url: str) -> None:  # parsed here, so a malformed URL is named with its entry
        await guard_address(netguard.parse_http_url(url), allowed, resolve)

    outcomes = await asyncio.gather(*(guard(url) for _, _, url in entries), return_exceptions=True)
    for (where, name, _), outcome in zip(entries, outcomes, strict=True):
        if isinstance(outcome, InvalidInput):
            raise InvalidInput(
                f"config file {str(path)!r}: {where} of {name!r} is refused: {outcome.message}"
            )
        if isinstance(outcome, BlockedAddress):
            raise InvalidInput(
                f"config file {str(path)!r}: {where} of {name!r} is refused: {redact(outcome.message)} "
                "(add its network to FIN_FETCH__ALLOWED_NETWORKS to allow it)"
            )
        if isinstance(outcome, CoreError):
            log.warning(
                "config file %s: %s of %r not checked: %s", path, where, name, redact(outcome.message)
            )
        elif isinstance(outcome, BaseException):
            raise outcome


def config_key(path: str | Path) -> str:
    """How a config file is known in the database: its absolute path, symbolic links not followed (a
    Kubernetes ConfigMap mount points its file at a new folder at each update; its name stays)."""
    return os.path.abspath(path)  # noqa: PTH100 - Path.resolve follows the links


def apply_config(session: Session, config: MonitorConfig, path: str | Path) -> None:
    """Upsert the config's sources and alert rules by name, and disable the ones it provisioned before but
    no longer declares (idempotent: a second run changes nothing).

    The file (`path`, known by `config_key`) is the source of truth for what it provisions: a source or rule
    it declares is marked ``managed_by = "config"`` and as this file's (one created through the API, or
    provisioned by another file, too: the other file's claim is logged), and one marked as this file's that
    it no longer declares is disabled with a `disabled_reason`, logged by name, and marked ``"api"`` again
    (`sources.release_undeclared`, `rules.release_undeclared`): its documents, alerts and history stay, and
    a later start leaves it alone unless a file declares it again. Its firing alerts are resolved at the
    next evaluation, as when a rule is disabled through the API. Another file's sources and rules are left
    alone, so several files can provision one database; a row stored before the file was recorded counts as
    the file's that starts next.

    A rule's `match` is resolved with the file's topics and entities and the sources' tags (an alias,
    ticker or other case of a configured name is stored as the canonical name); a name no story is
    tagged with now is kept and logged as a warning, since a source or a cashtag may bring it later.

    On PostgreSQL the transaction first takes an advisory lock (`CONFIG_LOCK`), so processes started together
    with the same file apply it one after the other (SQLite already serialises writers).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CONFIG_LOCK})
    key = config_key(path)
    _warn_claims(session, config, key)
    for source in config.sources:
        upsert_source(session, source, key)
    session.flush()
    names = NameIndex.read(session, Vocabulary(config.topic_specs(), config.entity_specs()))
    for data in config.alert_rules:
        for warning in rule_out(upsert_rule(session, data, key, names), names).warnings:
            log.warning("config file %s: alert rule %r: %s", key, data.name, warning)
    for row in sources.release_undeclared(session, {source.name for source in config.sources}, key):
        log.warning(
            "config file %s: source %r (id %d) is no longer declared: disabled, its documents kept, and "
            "managed through the API from now on (disabled_reason: %s)",
            key,
            row.name,
            row.id,
            redact(row.disabled_reason or ""),
        )
    for rule in rules.release_undeclared(session, {data.name for data in config.alert_rules}, key):
        log.warning(
            "config file %s: alert rule %r (id %d) is no longer declared: it is disabled (its alerts are "
            "kept, firing ones are resolved at the next evaluation) and managed through the API from now on",
            key,
            rule.name,
            rule.id,
        )


def _warn_claims(session: Session, config: MonitorConfig, key: str) -> None:
    """Log, in one line, the sources and rules the file declares that another config file provisioned: from
    now on they follow this file (whichever file starts last sets them), which two files should not both
    want. One line per start, not one per row: a file moved to a new path, or mounted at different paths by
    replicas, claims every row it declares."""
    claims = {
        "source": select(Source.name, Source.config_file)
        .where(
            Source.managed_by == "config",
            Source.config_file != key,
            Source.name.in_([source.name for source in config.sources]),
        )
        .order_by(Source.id),
        "alert rule": select(AlertRule.name, AlertRule.config_file)
        .where(
            AlertRule.managed_by == "config",
            AlertRule.config_file != key,
            AlertRule.name.in_([rule.name for rule in config.alert_rules]),
        )
        .order_by(AlertRule.id),
    }
    claimed: dict[str, dict[str, list[str]]] = {}
    for what, query in claims.items():
        for name, other in session.execute(query):
            claimed.setdefault(str(other), {}).setdefault(what, []).append(name)
    if not claimed:
        return
    parts = []
    for other, rows in sorted(claimed.items()):
        counts = " and ".join(_counted(len(names), what) for what, names in rows.items())
        parts.append(
            f"{counts} of config file {other} ({_some([n for names in rows.values() for n in names])})"
        )
    log.warning(
        "config file %s: takes over %s, which it declares too, and manages them from now on (declare each "
        "name in one file only; a file is known by its path, so give every process the same one)",
        key,
        "; ".join(parts),
    )


def _counted(count: int, what: str) -> str:
    return f"{count} {what}" + ("" if count == 1 else "s")


def _some(names: list[str], shown: int = 5) -> str:
    """The first `shown` names, quoted, and how many more."""
    listed = ", ".join(repr(name) for name in names[:shown])
    return listed + (f" and {len(names) - shown} more" if len(names) > shown else "")
