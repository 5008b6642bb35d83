"""Keyword search: BM25 (bm25s, Lucene variant) over the knowledge base's passages.

Text is lower-cased, split into word tokens of two or more characters, stripped of English stopwords
(Lucene's short list) and stemmed with the Snowball English stemmer (PyStemmer) when it is installed.
An index is immutable: the knowledge base builds a new one after every change and swaps the reference
(building one over a few thousand passages takes well under a second), so searches never need a lock.

A query word a bank's customers use where the FAQs use another (`SYNONYMS`: "how much does it cost", "what's
the price of" asked of an FAQ on fees) matches a passage by its own word or the FAQs' one: it scores the best
BM25 score of its group's terms in that passage, so a passage holding two of them ("fees ... cost") counts the
one thing once, as an unexpanded term would. The FAQs' word itself ("fees") is searched as it is, and only the
query is expanded: passages are indexed as written.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import bm25s
import numpy as np

from textcore import InvalidInput

try:  # optional: without it tokens are matched unstemmed
    import Stemmer
except ImportError:  # pragma: no cover - PyStemmer is a dependency; this is a degraded fallback
    Stemmer = None

STOPWORDS = "en"
# A group's first word is the FAQs' one, the others the customers' words for the same thing: "how much does
# it cost", "what's the price of" asked of an FAQ on fees. Kept short, each group measured with
# bench/retrieval.py on the bank FAQs, where this one changes no question's rank 1 (keyword, hybrid). "fee"
# itself stays unexpanded: read as "cost" too, it lifted the answers that say "cost" (overdraft) over the fees
# FAQ, and "and are there fees for that?" after "How do I send money abroad?" was answered with the transfer
# FAQ. "charge(s)" stays out: the bank FAQs ask about "charges" in 42 questions, and as a word of the group it
# cost two of them their answer at rank 1 (keyword)
SYNONYMS: tuple[tuple[str, ...], ...] = (("fee", "fees", "cost", "costs", "price", "prices"),)
_local = threading.local()  # a PyStemmer object is not safe to share between threads: one per thread


def stemming() -> bool:
    """Whether tokens are stemmed (PyStemmer is installed)."""
    return Stemmer is not None


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Lower-cased, stopword-free, stemmed word tokens of each text."""
    stemmer = _stemmer()
    tokens = bm25s.tokenize(
        list(texts),
        stopwords=STOPWORDS,
        stemmer=stemmer.stemWords if stemmer is not None else None,
        return_ids=False,
        show_progress=False,
    )
    return [list(map(str, row)) for row in tokens]


class KeywordIndex:
    """An immutable BM25 index over passages keyed by string ids.

    Args:
        ids: One unique id per text.
        texts: The passages' texts.

    Raises:
        InvalidInput: If the lengths differ or an id repeats.
    """

    def __init__(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        if isinstance(ids, str) or isinstance(texts, str) or len(ids) != len(texts):
            raise InvalidInput(f"expected one id per text; found {len(ids)} ids for {len(texts)} texts")
        if len(set(ids)) != len(ids):
            raise InvalidInput("expected unique ids; found repeats")
        self._ids = list(ids)
        # bm25s.BM25; None while no passage holds a term (bm25s cannot index nothing): an empty knowledge
        # base, or one whose only FAQ is "Is it?" / "It is." (stopwords) or "A?" / "5" (one letter or digit)
        self._bm25: Any = None
        tokens = tokenize(texts) if self._ids else []
        if any(tokens):
            self._bm25 = bm25s.BM25()
            self._bm25.index(tokens, show_progress=False)

    def __len__(self) -> int:
        return len(self._ids)

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The up-to-`k` passages sharing terms with `query`, best first, as (id, BM25 score > 0).

        Raises:
            InvalidInput: If `k` is below 1.
        """
        if k < 1:
            raise InvalidInput(f"k: expected a positive integer; found {k!r}")
        if self._bm25 is None:
            return []
        terms = tokenize([query])[0]
        if not terms:
            return []
        scores = self._scores(terms)  # (n,) float32
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        order = sorted(top.tolist(), key=lambda i: (-float(scores[i]), i))  # ties: storage order
        return [(self._ids[i], float(scores[i])) for i in order if scores[i] > 0]

    def _scores(self, terms: list[str]) -> np.ndarray:
        """(n,) float32 BM25 scores of the query terms; a customer's word of a `SYNONYMS` group scores, per
        passage, the best of its group's terms."""
        groups = _GROUPS
        plain = [t for t in terms if t not in groups]
        scores = np.asarray(self._bm25.get_scores(plain), dtype=np.float32) if plain else None
        for term in (t for t in terms if t in groups):
            per_term = [np.asarray(self._bm25.get_scores([g]), dtype=np.float32) for g in groups[term]]
            best = np.max(per_term, axis=0)
            scores = best if scores is None else scores + best
        assert scores is not None  # terms is not empty
        return scores


def _group_terms(groups: Sequence[Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """Each term of `groups` as tokenized ("costs" -> "cost") but a group's first (the FAQs' word: "fee")
    -> its group's distinct tokenized terms."""
    found: dict[str, tuple[str, ...]] = {}
    for group in groups:
        terms = tuple(dict.fromkeys(t for row in tokenize(group) for t in row))
        found.update(dict.fromkeys(terms[1:], terms))
    return found


def _stemmer() -> Any:
    if Stemmer is None:
        return None
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


_GROUPS = _group_terms(SYNONYMS)
