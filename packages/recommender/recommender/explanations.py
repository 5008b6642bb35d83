"""Why an item scored as it did: the history items and interest phrases that speak for it.

Every result of `recommender.serving` explains itself: the history items most similar to it (by content and
co-occurrence) and the interest phrases it matched best. Reasons are computed for all results at once with
matrix products; only the few named reasons per result are Python objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recommender.behaviour import BehaviourSnapshot
from recommender.catalog import ItemCatalog

EXPLAINED_HISTORY = 50  # newest history items an explanation may name
REASONS = 3  # history items / interest phrases named per result
MIN_PHRASE_SIMILARITY = 0.2  # below this cosine a phrase did not match (unrelated MiniLM texts score ~0-0.15)


@dataclass(frozen=True)
class HistoryMatch:
    """A history item that speaks for a result, with its similarity to it."""

    item_id: str
    title: str
    similarity: float


@dataclass(frozen=True)
class Explanation:
    """Why an item scored as it did."""

    because: list[HistoryMatch]
    matched_interests: list[str]


def history_reasons(
    catalog: ItemCatalog, history: list[str], snapshot: BehaviourSnapshot, ids: list[str], vectors: np.ndarray
) -> list[list[HistoryMatch]]:
    """Per item, the (up to REASONS) history items most similar to it, strongest first."""
    history, history_vectors = catalog.present(history)  # one deleted meanwhile is no reason
    if not history:
        return [[] for _ in ids]
    # content cosine plus co-occurrence similarity: both in [-1, 1], both reasons to show an item
    strength = history_vectors @ vectors.T  # (h, n)
    strength += snapshot.pair_similarity(history, ids)
    place = {item: row for row, item in enumerate(history)}
    itself = np.fromiter((place.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))  # (n,)
    named = np.flatnonzero(itself >= 0)
    strength[itself[named], named] = -np.inf  # an item is no reason for itself
    rows, values = best_rows(strength, REASONS)  # (r, n) each, r = min(REASONS, h)
    # item-major flat lists, turned into objects by one `map` (a nested comprehension costs twice as much)
    flat = rows.T.ravel()
    matches = list(
        map(
            HistoryMatch,
            np.asarray(history, dtype=object)[flat].tolist(),
            np.asarray(catalog.titles(history), dtype=object)[flat].tolist(),
            np.round(values.T.ravel(), 4).tolist(),
        )
    )
    r = len(rows)
    if named.size and r == len(history):  # every history item named: an item's own entry is among them
        return [[m for m in matches[i : i + r] if m.similarity > -np.inf] for i in range(0, len(matches), r)]
    return [matches[i : i + r] for i in range(0, len(matches), r)]


def best_rows(strength: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per column of an (h, n) matrix, the rows of the `count` largest entries, largest first.

    Returns:
        (min(count, h), n) int64 rows and their float values; equal values keep the earlier row first.
    """
    count = min(count, len(strength))
    if count < len(strength):  # a partition (O(h) per column) instead of sorting every column
        rows = np.argpartition(-strength, count - 1, axis=0)[:count]
    else:
        rows = np.broadcast_to(np.arange(count)[:, None], strength.shape)
    values = np.take_along_axis(strength, rows, axis=0)
    order = np.lexsort((rows, -values), axis=0)
    return np.take_along_axis(rows, order, axis=0), np.take_along_axis(values, order, axis=0)


def matched_phrases(phrases: list[str], phrase_vectors: np.ndarray, vectors: np.ndarray) -> list[list[str]]:
    """Per item vector, the interest phrases it matched: up to REASONS close to its best one, best first."""
    if not phrases:
        return [[] for _ in range(len(vectors))]
    similarity = vectors @ phrase_vectors.T  # (n, n_phrases)
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :REASONS]  # (n, <= REASONS)
    # phrases close to the best one and similar enough at all
    floor = np.maximum(similarity.max(axis=1) - 0.05, MIN_PHRASE_SIMILARITY)
    good = np.take_along_axis(similarity, order, axis=1) >= floor[:, None]
    return [
        [phrases[p] for p, ok in zip(ps, oks, strict=True) if ok]
        for ps, oks in zip(order.tolist(), good.tolist(), strict=True)
    ]
