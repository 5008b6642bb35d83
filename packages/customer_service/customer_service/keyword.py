"""Keyword search: BM25 (bm25s, Lucene variant) over the knowledge base's passages.

Text is lower-cased, split into word tokens of two or more characters, stripped of English stopwords
(Lucene's short list) and stemmed with the Snowball English stemmer (PyStemmer) when it is installed.
An index is immutable: the knowledge base builds a new one after every change and swaps the reference
(building one over a few thousand passages takes well under a second), so searches never need a lock.
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
        scores = np.asarray(self._bm25.get_scores(terms), dtype=np.float32)  # (n,) float32
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        order = sorted(top.tolist(), key=lambda i: (-float(scores[i]), i))  # ties: storage order
        return [(self._ids[i], float(scores[i])) for i in order if scores[i] > 0]


def _stemmer() -> Any:
    if Stemmer is None:
        return None
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer
