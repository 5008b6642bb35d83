"""The names stories are tagged with, and what a person may type for them: aliases, tickers, case.

A story's tags are compared by exact name, so a rule's `match` and the `entity`/`topic` filters of
`/v1/documents` and `/v1/trends` first go through `NameIndex.resolve` (the one resolver). Names come into
being in three ways, and the resolver knows each:

* the config file's ``[[entities]]`` (tagged under their canonical ``name``) and ``[[topics]]``;
* a source's own ``topics`` and ``entities``, given to every story of that source as written;
* a cashtag of no configured ticker (``$NVDA``), tagged with the ticker in upper case (``NVDA``).

Resolution of one name of a kind (``entity`` or ``topic``), first rule that applies:

1. A configured name, exactly: itself.
2. A configured entity's name, alias or ticker (with or without ``$``), or a configured topic's name,
   ignoring case: the canonical name (every entity that shares the alias, when several do).
3. A source's tag of that kind, ignoring case: the tag as the source writes it.
4. Entities: a cashtag ``$nvda`` becomes ``NVDA``; an upper-case ticker such as ``NVDA`` stays. Both are
   the names cashtags produce at run time.
5. Otherwise the name stays as given and is *unknown*: nothing tags stories with it now. It is not
   refused, since a source added later (or the next config file) may bring it; a rule answers a warning
   naming the field and the close known names instead.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from finance_sentiment.tables import Source
from finance_sentiment.tagging import EntitySpec, TopicSpec

KINDS = ("entity", "topic")
_CASHTAG = re.compile(r"\$([A-Za-z]{1,5}(?:\.[A-Za-z])?)")
_UPPER_TICKER = re.compile(r"[A-Z]{1,5}(?:\.[A-Z])?")
_CLOSE = 5


def _key(name: str) -> str:
    """The form two spellings of one name share: case folded, runs of whitespace as one space."""
    return " ".join(name.split()).casefold()


class Vocabulary:
    """The configured topics and entities, indexed by every spelling that means them (pure, no database)."""

    def __init__(self, topics: Sequence[TopicSpec] = (), entities: Sequence[EntitySpec] = ()) -> None:
        """Index the specs.

        Args:
            topics: The configured topics.
            entities: The configured entities (name, aliases, ticker).
        """
        self._exact: dict[str, set[str]] = {
            "topic": {t.name for t in topics},
            "entity": {e.name for e in entities},
        }
        self._spellings: dict[str, dict[str, list[str]]] = {"topic": {}, "entity": {}}
        self._shown: dict[str, list[str]] = {"topic": [], "entity": []}
        for topic in topics:
            self._add("topic", topic.name, topic.name)
        for entity in entities:
            for spelling in (entity.name, *entity.aliases, *([entity.ticker] if entity.ticker else [])):
                self._add("entity", spelling, entity.name)

    def _add(self, kind: str, spelling: str, canonical: str) -> None:
        owners = self._spellings[kind].setdefault(_key(spelling), [])
        if canonical not in owners:
            owners.append(canonical)
        self._shown[kind].append(spelling)

    def canonical(self, kind: str, name: str) -> tuple[str, ...]:
        """The configured names `name` means as a `kind` (rules 1 and 2); empty when none."""
        if name in self._exact[kind]:
            return (name,)
        cashtag = _CASHTAG.fullmatch(name.strip()) if kind == "entity" else None
        return tuple(self._spellings[kind].get(_key(cashtag.group(1) if cashtag else name), ()))

    def spellings(self, kind: str) -> list[str]:
        """Every configured name, alias and ticker of a kind, for suggestions."""
        return list(self._shown[kind])


@dataclass(frozen=True)
class Resolution:
    """What a list of typed names resolved to.

    Attributes:
        names: The names to compare with stories' tags, unique, in the order given.
        warnings: One line per name that no story is tagged with now (see the module docstring).
    """

    names: list[str]
    warnings: list[str]


class NameIndex:
    """A `Vocabulary` together with the sources' own tags, read once from the database."""

    def __init__(self, vocabulary: Vocabulary, source_tags: dict[str, set[str]]) -> None:
        """Combine the two; `source_tags` maps each kind to the names sources give their stories."""
        self.vocabulary = vocabulary
        self.source_tags = source_tags

    @classmethod
    def read(cls, session: Session, vocabulary: Vocabulary | None = None) -> NameIndex:
        """The index of `vocabulary` (none configured when None) and the stored sources' tags."""
        tags: dict[str, set[str]] = {"topic": set(), "entity": set()}
        for topics, entities in session.execute(select(Source.topics, Source.entities)):
            tags["topic"].update(topics or ())
            tags["entity"].update(entities or ())
        return cls(vocabulary or Vocabulary(), tags)

    def resolve(self, kind: str, names: Iterable[str], field: str = "match") -> Resolution:
        """Resolve typed names of a kind (``entity`` or ``topic``) to stored tag names.

        Args:
            kind: ``entity`` or ``topic``.
            names: The names as typed.
            field: What to call the list in warnings, e.g. ``match`` (``match[0]: ...``).

        Returns:
            The names to compare with tags, and a warning for each name unknown now.
        """
        resolved: dict[str, None] = {}
        warnings: list[str] = []
        for i, name in enumerate(names):
            found = self._one(kind, name)
            if not found:
                found = (name,)
                warnings.append(self._unknown(kind, name, f"{field}[{i}]"))
            resolved.update(dict.fromkeys(found))
        return Resolution(list(resolved), warnings)

    def check(self, kind: str, name: str, where: str) -> str | None:
        """A warning when stories are not tagged with `name` itself: no name it resolves to is tagged, or it
        resolves to other names (a name stored before names were resolved); None when it is a tag name."""
        found = self._one(kind, name)
        if not found:
            return self._unknown(kind, name, where)
        if found != (name,):
            tagged = ", ".join(map(repr, found))
            return f"{where}: stories are tagged {tagged}, not {name!r}; send the match again to watch them"
        return None

    def _one(self, kind: str, name: str) -> tuple[str, ...]:
        canonical = self.vocabulary.canonical(kind, name)
        if canonical:
            return canonical
        if name in self.source_tags[kind]:
            return (name,)
        same = self._source_tag(kind, name)
        if same or kind != "entity":
            return same
        cashtag = _CASHTAG.fullmatch(name.strip())
        if cashtag:
            return (cashtag.group(1).upper(),)
        return (name,) if _UPPER_TICKER.fullmatch(name) else ()

    def _unknown(self, kind: str, name: str, where: str) -> str:
        configured = "configured entity, alias or ticker" if kind == "entity" else "configured topic"
        line = f"{where}: no story is tagged with the {kind} {name!r}: no {configured} nor source's {kind}"
        if kind == "entity" and _CASHTAG.fullmatch(f"${name.strip()}"):
            line += f" (for the cashtag, write '${name.strip().upper()}')"
        other = "topic" if kind == "entity" else "entity"
        elsewhere = self.vocabulary.canonical(other, name) or self._source_tag(other, name)
        if elsewhere:
            line += f"; {', '.join(map(repr, elsewhere))} is a {other}, but this groups by {kind}"
        close = self._close(kind, name)
        line += f"; close known names: {', '.join(map(repr, close))}" if close else "; no known name is close"
        return line + "; kept as given, it matches once stories are tagged with it"

    def _source_tag(self, kind: str, name: str) -> tuple[str, ...]:
        return tuple(sorted(tag for tag in self.source_tags[kind] if _key(tag) == _key(name)))

    def _close(self, kind: str, name: str) -> list[str]:
        shown: dict[str, str] = {}
        for spelling in [*self.vocabulary.spellings(kind), *sorted(self.source_tags[kind])]:
            shown.setdefault(_key(spelling), spelling)
        keys = difflib.get_close_matches(_key(name), list(shown), n=_CLOSE, cutoff=0.6)
        return [shown[key] for key in keys]
