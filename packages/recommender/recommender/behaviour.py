"""Collaborative signals kept in memory: item co-occurrence (item-kNN) and popularity from positive events.

The formulas are the offline baselines' (`recommender.baselines`), so a model's blend weights, fitted
offline, mean the same online: ``sim(i, j) = c_ij / (sqrt(n_i * n_j) + shrink)`` with ``c_ij`` the users
who liked both items and ``n_i`` the users who liked ``i``; popularity is the number of positive
interactions with an item. Every refresh builds a new immutable `BehaviourSnapshot` and swaps it in, so a
request works on one consistent view while events are ingested.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]


@dataclass(frozen=True)
class BehaviourSnapshot:
    """Co-occurrence similarities and popularity over the items seen in events, at one moment."""

    columns: dict[str, int]  # item id -> column
    ids: list[str]  # column -> item id
    similarity: sp.csr_matrix  # (n, n) float32, row h = the neighbours of item h, no diagonal
    counts: np.ndarray  # (n,) float32 positive interactions per item

    def positions(self, ids: Sequence[str]) -> np.ndarray:
        """(len(ids),) int64 columns, -1 for items never seen in events."""
        return np.fromiter((self.columns.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))

    def knn_row(self, history: Sequence[str]) -> np.ndarray:
        """(n,) float32 summed similarity of every item to the distinct history items."""
        cols = np.unique(self.positions(history))
        cols = cols[cols >= 0]
        if cols.size == 0:
            return np.zeros(len(self.ids), dtype=np.float32)
        return np.asarray(self.similarity[cols].sum(axis=0), dtype=np.float32).ravel()

    def pick(self, row: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """(len(ids),) float32 entries of a per-column `row` for `ids` (0 for unseen items)."""
        positions = self.positions(ids)
        values = np.zeros(len(ids), dtype=np.float32)
        known = positions >= 0
        values[known] = row[positions[known]]
        return values

    def popularity(self, ids: Sequence[str]) -> np.ndarray:
        """(len(ids),) float32 positive interactions with each item."""
        return self.pick(self.counts, ids)

    def pair_similarity(self, history: Sequence[str], ids: Sequence[str]) -> np.ndarray:
        """(len(history), len(ids)) float32 sim(h, i) (0 where either item was never seen)."""
        out = np.zeros((len(history), len(ids)), dtype=np.float32)
        rows, cols = self.positions(history), self.positions(ids)
        r, c = np.flatnonzero(rows >= 0), np.flatnonzero(cols >= 0)
        if r.size and c.size:
            out[np.ix_(r, c)] = self.similarity[rows[r]][:, cols[c]].toarray()
        return out

    def top(self, row: np.ndarray, k: int) -> list[str]:
        """Ids of the `k` largest positive entries of a per-column `row`, best first."""
        positive = np.flatnonzero(row > 0)
        if positive.size > k:
            positive = positive[np.argpartition(-row[positive], k - 1)[:k]]
        order = positive[np.lexsort((positive, -row[positive]))]
        return [self.ids[int(c)] for c in order]


def _empty() -> BehaviourSnapshot:
    return BehaviourSnapshot({}, [], sp.csr_matrix((0, 0), dtype=np.float32), np.zeros(0, np.float32))


class Behaviour:
    """Accumulates positive (user, item) pairs and serves snapshots of co-occurrence and popularity.

    Thread-safe: `add` appends and rebuilds under a lock; `snapshot` returns the current immutable view.

    Args:
        shrink: Shrinks the similarity of items with few users in common towards 0.
    """

    def __init__(self, shrink: float = 10.0) -> None:
        self.shrink = shrink
        self._lock = threading.Lock()
        self._users: dict[str, int] = {}
        self._items: dict[str, int] = {}
        self._item_ids: list[str] = []
        self._rows = array("q")  # user code per positive interaction
        self._cols = array("q")  # item code per positive interaction
        self._snapshot = _empty()

    def snapshot(self) -> BehaviourSnapshot:
        """The current view (never changes once returned)."""
        return self._snapshot

    def add(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Count positive (user_id, item_id) interactions and refresh the snapshot; returns how many."""
        with self._lock:
            added = 0
            for user, item in pairs:
                self._rows.append(self._users.setdefault(user, len(self._users)))
                column = self._items.get(item)
                if column is None:
                    column = self._items[item] = len(self._item_ids)
                    self._item_ids.append(item)
                self._cols.append(column)
                added += 1
            if added:
                self._snapshot = self._build()
            return added

    def _build(self) -> BehaviourSnapshot:
        n_users, n_items = len(self._users), len(self._item_ids)
        rows = np.frombuffer(self._rows, dtype=np.int64)
        cols = np.frombuffer(self._cols, dtype=np.int64)
        counts = np.bincount(cols, minlength=n_items).astype(np.float32)  # repeats count, as in Popularity
        users = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(n_users, n_items))
        users.sum_duplicates()
        users.data[:] = 1.0  # (n_users, n_items) binary: liked at least once
        together = (users.T @ users).tocoo()  # (n_items, n_items) users in common
        norms = np.sqrt(np.asarray(users.sum(axis=0), dtype=np.float32).ravel())
        off = together.row != together.col  # an item is not its own neighbour
        r, c = together.row[off], together.col[off]
        values = (together.data[off] / (norms[r] * norms[c] + self.shrink)).astype(np.float32)
        similarity = sp.csr_matrix((values, (r, c)), shape=(n_items, n_items), dtype=np.float32)
        return BehaviourSnapshot(dict(self._items), list(self._item_ids), similarity, counts)
