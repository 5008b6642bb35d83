"""Tag texts with topics (keywords or embedding similarity) and company mentions (names, aliases, tickers).

Matching rules:

* Cashtags (``$TSLA``, ``$tsla``, ``$BRK.B``: 1-5 letters and an optional one-letter class suffix) always
  produce an entity: the configured entity whose ticker it is, else the ticker itself in uppercase.
* A configured ticker also matches bare, case-sensitively and as a whole word (``TSLA`` but not ``tsla`` or
  ``TSLAQ``); single-letter tickers match only as cashtags, since a bare ``A`` or ``F`` is mostly prose.
* A Reuters-style ticker mark (``<AAPL.O>``, ``<BARC.L>``, ``<F.N>``, ``<BRKa.N>``, ``<brk.b>``, ``<.SPX>``,
  ``<EUR=>``; the shapes are drawn at `MARK`) names the configured entity whose ticker is
  the whole mark (``BARC.L``, ``BRK.B``), its root before the exchange suffix or quote (``AAPL``, ``SPX``,
  ``EUR``, single letters included), its share class as tickers are written (``BRKa`` is ``BRK.A``, ``BRK-A``
  or ``BRKA``) or the root without the class (``BRK``); a mark naming no configured entity tags nothing.
* Entity names and aliases match as whole words, case-insensitively: ``Tesla`` and ``Tesla's`` mention
  Tesla, ``Teslaville`` does not. Whitespace inside a multi-word alias matches any run of whitespace.
* A topic matches when one of its keywords does (whole word/phrase, case-insensitive) or, when an embed
  function is given and the topic has a description, when the text's cosine similarity to the description
  reaches the topic's threshold.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import lxml.html.defs  # type: ignore[import-untyped]
import numpy as np

from textcore.errors import InvalidInput

Embed = Callable[[list[str]], np.ndarray]
"""Embeds texts as an (n, dim) float32 array of L2-normalised rows."""

CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z]{1,5}(?:\.[A-Za-z])?)(?!\w)")
_TICKER = re.compile(r"[A-Za-z0-9]+(?:[.\-][A-Za-z0-9]+)*")
MAX_TICKER_CHARS = 12

# Reuters-style ticker marks, "Apple <AAPL.O> beats", "Berkshire <BRKa.N> rises", as the wires print
# Reuters Instrument Codes. A mark is written like an HTML tag, so a parser reading the text as HTML takes it
# for an unknown element and drops it (parsing escapes marks first, with `escape_marks`). Shapes:
#   a root of up to six upper-case letters and digits: <AAPL.O>, <0700.HK>, <US10YT=RR>;
#   an optional share class after a hyphen (<BF-B.N>) or in lower case (<BRKa.N>, <RDSa.L>, <VOWG_p.DE>, a
#   futures contract <LCOc1>); an optional exchange suffix (.N, .L, .HK) or quote (<EUR=>, <EUR=EBS>);
#   a leading dot for an index: <.SPX>, <.N225>;
#   the same all in lower case (<brk.a>, <aapl.o>, <.spx>, <eur=>), but only with a suffix, a quote or the
#   leading dot: a bare lower-case word in angle brackets is markup.
# A mark whose inside names an HTML element (<B>, <P>, <BR>, <H1>, <Td>: old pages write tags in upper case)
# is markup in HTML, as is anything with a space, a slash, a quote or an attribute (<br/>, </b>, <a href=x>).
_UPPER = r"\.?[A-Z0-9]{1,6}(?:-[A-Z0-9]{1,2}|_?[a-z]{1,2}[0-9]{0,2})?(?:\.[A-Z]{1,3}|=[A-Z0-9]{0,4})?"
_LOWER = r"\.[a-z0-9]{1,6}|[a-z0-9]{1,6}(?:-[a-z0-9]{1,2})?(?:\.[a-z]{1,3}|=[a-z0-9]{0,4})"
MARK = re.compile(rf"<({_UPPER}|{_LOWER})>")
"""A mark candidate; group 1 is its inside (``AAPL.O``). `is_mark` tells a mark from an upper-case tag."""
_MARK_BYTES = re.compile(MARK.pattern.encode("ascii"))
# A share class: BF-B, bf-b, BRKa, VOWG_p, LCOc1 -> (root, class).
_CLASS = re.compile(r"([A-Za-z0-9]+)-([A-Za-z0-9]{1,2})|([A-Z0-9]+)_?([a-z]{1,2}[0-9]{0,2})")
_HTML_TAGS = frozenset(lxml.html.defs.tags)


@dataclass(frozen=True)
class TopicSpec:
    """A topic to recognise.

    Attributes:
        name: The label the topic is reported under.
        keywords: Words or phrases that mark the topic (whole word, case-insensitive).
        description: A sentence describing the topic, matched by embedding similarity when an embed
            function is given.
        threshold: The cosine similarity to the description that a text needs, in (0, 1].
    """

    name: str
    keywords: tuple[str, ...] = ()
    description: str | None = None
    threshold: float = 0.45

    def __post_init__(self) -> None:
        _require_text("topic name", self.name)
        for keyword in self.keywords:
            _require_text(f"keyword of topic {self.name!r}", keyword)
        if self.description is not None:
            _require_text(f"description of topic {self.name!r}", self.description)
        if not self.keywords and self.description is None:
            raise InvalidInput(f"expected keywords or a description for topic {self.name!r}; found neither")
        if not (math.isfinite(self.threshold) and 0.0 < self.threshold <= 1.0):
            raise InvalidInput(
                f"expected a threshold in (0, 1] for topic {self.name!r}; found {self.threshold!r}"
            )


@dataclass(frozen=True)
class EntitySpec:
    """A company (or other named entity) to recognise.

    Attributes:
        name: The canonical label, e.g. "Tesla"; it also matches as an alias.
        ticker: Its ticker, e.g. "TSLA": matches "$TSLA" and, case-sensitively, a bare "TSLA".
        aliases: Other names, e.g. "Tesla Motors" (whole word, case-insensitive).
    """

    name: str
    ticker: str | None = None
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _require_text("entity name", self.name)
        for alias in self.aliases:
            _require_text(f"alias of entity {self.name!r}", alias)
        ticker = self.ticker
        if ticker is not None and (len(ticker) > MAX_TICKER_CHARS or not _TICKER.fullmatch(ticker)):
            raise InvalidInput(
                f"expected a ticker of letters and digits (e.g. 'TSLA', 'BRK.B') for entity {self.name!r}; "
                f"found {ticker!r}"
            )


@dataclass(frozen=True)
class Tags:
    """What one text was tagged with.

    Attributes:
        topics: Matching topic names, in the order the topics were configured.
        entities: Mentioned entity names and unknown cashtag tickers, sorted and unique.
    """

    topics: tuple[str, ...]
    entities: tuple[str, ...]


class Tagger:
    """Tags batches of texts with a fixed set of topics and entities.

    All patterns are compiled once, here; description embeddings are computed on the first `tag` call
    that needs them and reused after.
    """

    def __init__(
        self,
        topics: Sequence[TopicSpec] = (),
        entities: Sequence[EntitySpec] = (),
        embed: Embed | None = None,
    ) -> None:
        """Compile the specs.

        Args:
            topics: Topics to recognise; names must be unique.
            entities: Entities to recognise; one ticker may belong to one entity only.
            embed: Embeds texts for description matching; without it only keywords match topics.

        Raises:
            InvalidInput: Two topics share a name, or two entities share a ticker.
        """
        _require_unique("topic name", (topic.name for topic in topics))
        self.topics = tuple(topics)
        self.entities = tuple(entities)
        self.embed = embed
        self._keyword_patterns = [_keyword_pattern(topic) for topic in self.topics]
        self._entity_patterns = [_entity_pattern(entity) for entity in self.entities]
        self._by_ticker: dict[str, str] = {}
        for entity in self.entities:
            if entity.ticker is None:
                continue
            owner = self._by_ticker.setdefault(entity.ticker.upper(), entity.name)
            if owner != entity.name:
                raise InvalidInput(
                    f"expected each ticker to belong to one entity; found {entity.ticker!r} for both "
                    f"{owner!r} and {entity.name!r}"
                )
        # Only topics with a description take part in similarity matching, and only with an embed function.
        self._described = [i for i, topic in enumerate(self.topics) if topic.description] if embed else []
        self._description_vectors: np.ndarray | None = None

    def tag(self, texts: Sequence[str]) -> list[Tags]:
        """Tag a batch of texts.

        Args:
            texts: The texts, e.g. title and body of each item joined.

        Returns:
            One `Tags` per text, in input order.
        """
        similar = self._similar_topics(texts)
        return [self._tag_one(text, similar[row]) for row, text in enumerate(texts)]

    def _tag_one(self, text: str, similar: set[int]) -> Tags:
        topics = tuple(
            topic.name
            for i, (topic, pattern) in enumerate(zip(self.topics, self._keyword_patterns, strict=True))
            if i in similar or (pattern is not None and pattern.search(text))
        )
        entities = {
            entity.name
            for entity, pattern in zip(self.entities, self._entity_patterns, strict=True)
            if pattern.search(text)
        }
        for match in CASHTAG.finditer(text):
            ticker = match.group(1).upper()
            entities.add(self._by_ticker.get(ticker, ticker))
        # The text is plain by now: a mark shaped like a tag (Broadridge <BR>) is a mark here.
        for match in MARK.finditer(text):
            owners = (self._by_ticker.get(ticker) for ticker in mark_tickers(match[1]))
            if owner := next((o for o in owners if o is not None), None):
                entities.add(owner)
        return Tags(topics=topics, entities=tuple(sorted(entities)))

    def _similar_topics(self, texts: Sequence[str]) -> list[set[int]]:
        """Per text, the indices of the described topics whose threshold its embedding reaches."""
        if not self._described or not texts or self.embed is None:
            return [set() for _ in texts]
        if self._description_vectors is None:
            descriptions = [self.topics[i].description or "" for i in self._described]
            self._description_vectors = _checked(self.embed(descriptions), len(descriptions))
        vectors = _checked(self.embed(list(texts)), len(texts))
        if vectors.shape[1] != self._description_vectors.shape[1]:
            raise InvalidInput(
                f"expected text embeddings as wide as the description embeddings "
                f"({self._description_vectors.shape[1]}); found {vectors.shape[1]}"
            )
        similarity = vectors @ self._description_vectors.T
        thresholds = np.array([self.topics[i].threshold for i in self._described], dtype=np.float32)
        hits = similarity >= thresholds
        return [{self._described[col] for col in np.flatnonzero(row)} for row in hits]


def _words_regex(phrases: Iterable[str]) -> str:
    """A whole-word regex source matching any of `phrases`; "" when there are none."""
    alternatives = sorted({r"\s+".join(map(re.escape, phrase.split())) for phrase in phrases}, key=len)
    if not alternatives:
        return ""
    # Longest first, so that the longer of two overlapping phrases wins at a given position.
    return rf"(?<!\w)(?:{'|'.join(reversed(alternatives))})(?!\w)"


def _keyword_pattern(topic: TopicSpec) -> re.Pattern[str] | None:
    """The case-insensitive pattern of a topic's keywords; None when it has none."""
    regex = _words_regex(topic.keywords)
    return re.compile(regex, re.IGNORECASE) if regex else None


def _entity_pattern(entity: EntitySpec) -> re.Pattern[str]:
    """One pattern for the name and aliases (case-insensitive) and the bare ticker (case-sensitive)."""
    parts = [f"(?i:{_words_regex((entity.name, *entity.aliases))})"]
    ticker = (entity.ticker or "").upper()
    if len(ticker) > 1:
        # Not after "$" (cashtags are found separately) or "." and not followed by a word or a class suffix.
        parts.append(rf"(?<![\w$.]){re.escape(ticker)}(?!\w|\.\w)")
    return re.compile("|".join(parts))


def _checked(vectors: np.ndarray, rows: int) -> np.ndarray:
    """`vectors` as float32 after checking that it holds one row per text."""
    if vectors.ndim != 2 or vectors.shape[0] != rows:
        raise InvalidInput(f"expected embeddings of shape ({rows}, dim); found {vectors.shape}")
    return vectors.astype(np.float32, copy=False)


def _require_text(what: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"expected a non-empty {what}; found {value!r}")


def _require_unique(what: str, values: Iterable[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise InvalidInput(f"expected each {what} to be unique; found {value!r} twice")
        seen.add(value)


def is_mark(inside: str) -> bool:
    """Whether the inside of a `MARK` match is a ticker rather than an HTML element's name (``B``, ``Br``)."""
    return inside.lower() not in _HTML_TAGS


def escape_marks(html: str) -> str:
    """`html` with each ticker mark escaped (``&lt;AAPL.O&gt;``), so that an HTML parser keeps it as text;
    real tags (``<b>``, ``<P>``, ``<br/>``, ``<a href=...>``) are left as they are."""
    return MARK.sub(lambda m: f"&lt;{m[1]}&gt;" if is_mark(m[1]) else m[0], html)


def escape_marks_in_bytes(content: bytes) -> bytes:
    """`escape_marks` on an undecoded page (any ASCII-compatible encoding; others hold no match)."""
    return _MARK_BYTES.sub(
        lambda m: b"&lt;" + m[1] + b"&gt;" if is_mark(m[1].decode("ascii")) else m[0], content
    )


def blank_marks(text: str) -> str:
    """`text` with each ticker mark replaced by a space (to judge what remains)."""
    return MARK.sub(lambda m: " " if is_mark(m[1]) else m[0], text)


def mark_tickers(inside: str) -> list[str]:
    """The tickers, in upper case, that a mark's inside may name, most specific first: the whole mark
    (``BRK.B``), its root without exchange suffix or quote (``AAPL`` of ``AAPL.O``, ``EUR`` of ``EUR=``,
    ``SPX`` of ``.SPX``), a share class spelled the ways tickers are configured (``BRKa`` as ``BRK.A``,
    ``BRK-A``, ``BRKA``) and the root without its class (``BRK``)."""
    name = inside.removeprefix(".")
    root = re.split(r"[.=]", name, maxsplit=1)[0]
    found = [name, root]
    if split := _CLASS.fullmatch(root):
        base, share = split[1] or split[3], split[2] or split[4]
        found += [f"{base}.{share}", f"{base}-{share}", base + share, base]
    return list(dict.fromkeys(ticker.upper() for ticker in found))
