"""BIO-tagged sentences: the training data of a tagger, read from CoNLL-style text or from tables.

A sentence is a list of words with one tag per word: `O` outside any entity, `B-TYPE` on the first word of an
entity of type TYPE and `I-TYPE` on each following word of it (IOB2). IOB1 input, where an entity may open
with `I-TYPE`, is accepted and rewritten to IOB2 on reading (an `I-TYPE` that does not continue a TYPE entity
becomes `B-TYPE`), the convention of conlleval and seqeval.

Two file layouts are read:
- CoNLL-style text (`.conll`, `.bio`, `.txt`): one word per line with its tag in the last whitespace-separated
  column (`Apple B-ORG`, or CoNLL-2003's `Apple NNP B-NP B-ORG`), a blank line between sentences; lines
  starting with `-DOCSTART-` are skipped.
- a table (CSV, TSV or JSON Lines, see `textcore.data.read_table`) with a tokens column and a tags column,
  each a JSON list of strings or a whitespace-separated string, of equal length in every row.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textcore.errors import InvalidInput
from textcore.table_files import read_table, require_file

OUTSIDE = "O"
CONLL_SUFFIXES = (".conll", ".bio", ".txt")
# the columns of a tagged table; `text` and `label` (the other tasks' defaults) fall back to them
TOKENS_COLUMN = "tokens"
TAGS_COLUMN = "tags"
_FALLBACK_COLUMNS = {"text": TOKENS_COLUMN, "label": TAGS_COLUMN}
_TAG = re.compile(r"(?P<prefix>[BI])-(?P<type>\S+)")
# a word: a run of letters, digits or underscores, joined across inner `&`, `.` or `-` (AT&T, 3.5,
# Coca-Cola); every other non-space character is a word of its own
WORD = re.compile(r"\w+(?:[&.\-]\w+)*|[^\w\s]")


@dataclass(frozen=True, slots=True)
class TaggedSentences:
    """Parallel lists of sentences (each a list of words) and their IOB2 tags, one tag per word."""

    tokens: list[list[str]]
    tags: list[list[str]]

    def __post_init__(self) -> None:
        """Check the shapes and tags; IOB1 tags are stored rewritten to IOB2."""
        if len(self.tokens) != len(self.tags):
            raise InvalidInput(
                f"expected as many tag lists as sentences; found {len(self.tags)} and {len(self.tokens)}"
            )
        for number, (words, tags) in enumerate(zip(self.tokens, self.tags, strict=True), start=1):
            if not words:
                raise InvalidInput(f"sentence {number}: expected at least one token; found none")
            if len(words) != len(tags):
                raise InvalidInput(
                    f"sentence {number}: expected one tag per token; found {len(words)} tokens "
                    f"and {len(tags)} tags"
                )
        iob2 = [check_tags(tags, f"sentence {n}") for n, tags in enumerate(self.tags, start=1)]
        object.__setattr__(self, "tags", iob2)  # frozen: set once, here

    def __len__(self) -> int:
        return len(self.tokens)

    def subset(self, indices: Sequence[int] | np.ndarray) -> TaggedSentences:
        pick = [int(i) for i in indices]
        return TaggedSentences([self.tokens[i] for i in pick], [self.tags[i] for i in pick])

    def split(self, fraction: float, seed: int) -> tuple[TaggedSentences, TaggedSentences]:
        """Random (train, validation) split of whole sentences; `fraction` of them (at least one) validate."""
        if not 0.0 < fraction < 1.0:
            raise InvalidInput(f"expected a validation fraction in (0, 1); found {fraction}")
        if len(self) < 2:
            raise InvalidInput(
                f"expected at least 2 sentences to carve a validation split; found {len(self)}"
            )
        order = np.random.default_rng(seed).permutation(len(self))
        n_val = min(len(self) - 1, max(1, round(len(self) * fraction)))
        return self.subset(order[n_val:]), self.subset(order[:n_val])

    def entity_counts(self) -> dict[str, int]:
        """Number of entities of each type (the count of `B-` tags in IOB2), sorted by type."""
        counts = Counter(tag[2:] for tags in self.tags for tag in tags if tag.startswith("B-"))
        return dict(sorted(counts.items()))

    def summary(self) -> dict[str, object]:
        """Sentence, token and entity counts (recorded in a model's metadata)."""
        return {
            "sentences": len(self),
            "tokens": sum(len(words) for words in self.tokens),
            "entities": self.entity_counts(),
        }


def tag_labels(entity_types: Iterable[str]) -> list[str]:
    """The label set of a tagger: `O`, then `B-T` and `I-T` for each entity type T in sorted order."""
    return [OUTSIDE, *(f"{p}-{t}" for t in sorted(set(entity_types)) for p in ("B", "I"))]


def to_iob2(tags: Sequence[str]) -> list[str]:
    """Rewrite an `I-T` that does not continue a T entity (IOB1, or a model's slip) to `B-T`."""
    out: list[str] = []
    previous = OUTSIDE
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = f"B-{tag[2:]}"  # noqa: PLW2901 - the rewritten tag is what follows
        out.append(tag)
        previous = tag
    return out


def check_tags(tags: Sequence[str], where: str) -> list[str]:
    """Validate one sentence's tags and return them in IOB2.

    Args:
        tags: the tags of one sentence.
        where: names the sentence in error messages (`file.conll: sentence 3`).

    Raises:
        InvalidInput: a tag is neither `O` nor `B-TYPE`/`I-TYPE`.
    """
    for position, tag in enumerate(tags, start=1):
        if tag != OUTSIDE and not _TAG.fullmatch(tag):
            raise InvalidInput(
                f"{where}, token {position}: expected a tag O, B-TYPE or I-TYPE (IOB2); found {tag!r}"
            )
    return to_iob2(tags)


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Split raw text into (word, start, end) triples with `text[start:end] == word`."""
    return [(m.group(), m.start(), m.end()) for m in WORD.finditer(text)]


def read_tagged(
    path: str | os.PathLike[str], tokens_column: str = TOKENS_COLUMN, tags_column: str = TAGS_COLUMN
) -> TaggedSentences:
    """Read tagged sentences from a CoNLL-style text file or a CSV/TSV/JSONL table.

    Args:
        path: the file; `.conll`, `.bio` and `.txt` are read as CoNLL, anything else as a table.
        tokens_column: the table column with the words (ignored for CoNLL). When it is `text` and the table
            has no such column, `tokens` is used, so the command line's defaults fit a tokens/tags table.
        tags_column: the table column with the tags; `label` falls back to `tags` in the same way.

    Returns:
        The sentences with their tags in IOB2.

    Raises:
        InvalidInput: missing file or column, no sentences, an empty sentence, a token and tag count that
            differ, or a tag that is not O, B-TYPE or I-TYPE; the message names the row or sentence.
    """
    file = Path(path)
    if file.suffix.lower() in CONLL_SUFFIXES:
        return _read_conll(file)
    rows = read_table(file)
    if not rows:
        raise InvalidInput(f"{file}: expected at least one data row; found none")
    words_column, labels_column = (_column(file, rows[0], name) for name in (tokens_column, tags_column))
    tokens, tags = [], []
    for number, row in enumerate(rows, start=1):
        where = f"{file}: row {number}"
        words = _sequence(row[words_column], f"{where}, column {words_column!r}")
        labels = _sequence(row[labels_column], f"{where}, column {labels_column!r}")
        if not words:
            raise InvalidInput(f"{where} has no tokens in {words_column!r}; expected at least one")
        if len(words) != len(labels):
            raise InvalidInput(
                f"{where}: expected one tag per token; found {len(words)} tokens and {len(labels)} tags"
            )
        tokens.append(words)
        tags.append(check_tags(labels, where))
    return TaggedSentences(tokens, tags)


def _column(file: Path, row: dict[str, str], name: str) -> str:
    """`name` if the table has it, else its fallback (`text` -> `tokens`, `label` -> `tags`)."""
    fallback = _FALLBACK_COLUMNS.get(name, name)
    for column in (name, fallback):
        if column in row:
            return column
    raise InvalidInput(f"{file}: expected a column {name}; found {', '.join(row)}")


def _sequence(value: str, where: str) -> list[str]:
    """A cell as a list of strings: a JSON list, or whitespace-separated words."""
    text = value.strip()
    if not text.startswith("["):
        return text.split()
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{where}: expected a JSON list of strings; {exc.msg}") from exc
    if not isinstance(items, list) or not all(isinstance(x, str) and x.strip() for x in items):
        raise InvalidInput(f"{where}: expected a JSON list of non-empty strings; found {text[:60]!r}")
    return [x.strip() for x in items]


def _read_conll(file: Path) -> TaggedSentences:
    require_file(file, "data file")
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{file}: expected UTF-8 text; byte {exc.start} is not valid UTF-8") from exc
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    words: list[str] = []
    labels: list[str] = []
    first_line = 0

    def close_sentence() -> None:
        if words:
            where = f"{file}: sentence {len(tokens) + 1} (line {first_line})"
            tokens.append(list(words))
            tags.append(check_tags(labels, where))
            words.clear()
            labels.clear()

    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            close_sentence()
            continue
        if len(fields) < 2:
            raise InvalidInput(f"{file}:{number}: expected a token and its tag; found {line.strip()!r}")
        if not words:
            first_line = number
        words.append(fields[0])
        labels.append(fields[-1])
    close_sentence()
    if not tokens:
        raise InvalidInput(f"{file}: expected at least one sentence (`token TAG` lines); found none")
    return TaggedSentences(tokens, tags)


def require_entities(data: TaggedSentences, where: str) -> list[str]:
    """Return the sorted entity types, refusing data without a single entity (nothing to learn)."""
    types = list(data.entity_counts())
    if not types:
        raise InvalidInput(f"{where}: expected at least one entity (a B-TYPE tag); found only O tags")
    return types
