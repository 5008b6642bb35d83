"""Collaborative signals kept in memory: item co-occurrence (item-kNN) and popularity from positive events.

The formulas are the offline ones (`recommender.baselines.ItemKNN`), so a model's blend weights, fitted
offline, mean the same online: ``sim(i, j) = c_ij / (n_i ** alpha * n_j ** (1 - alpha) + shrink)`` with
``c_ij`` the users who liked both items and ``n_i`` the users who liked ``i`` (``alpha`` 0.5: the cosine;
the model says which ``alpha`` and ``shrink`` it was fitted with); popularity is the number of positive
interactions with an item. Every batch of events builds a new immutable `BehaviourSnapshot` and swaps it
in, so a request works on one consistent view while events are ingested.

A batch updates the counts incrementally: only the users in the batch are looked at, and the change of
``c`` is added to the previous matrix, so ingest costs what the batch changes (plus one copy of the sparse
counts), not a recount of every event so far. Similarities are divided out when a request reads the rows
it needs, so a new liker of an item does not mean rewriting every similarity of that item.

Which interactions are positive is `recommender.events`'s rule: a user's latest rating of an item below
``min_rating`` makes it no like, whatever they clicked. A batch's pairs come from `positives_after`, which
leaves such pairs out as they arrive, and names those of its users, so that `retract` takes back a pair
counted before a later low rating came (the same change of ``c`` as adding it, subtracted). A pair rated
well again counts its interactions from then on; `recount`, from every stored event, counts its earlier
ones too.

Events also go away (a user's erasure): `recount` then builds the counts anew from every remaining positive
and swaps them in at once, so nothing of the erased events, their user ids included, stays in memory.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]

from recommender.baselines import liker_norms


@dataclass(frozen=True)
class BehaviourSnapshot:
    """Co-occurrence and popularity over the items seen in events, at one moment."""

    columns: dict[str, int]  # item id -> column
    ids: list[str]  # column -> item id
    together: sp.csr_matrix  # (n, n) float32 c_ij, users who liked both items; no diagonal
    history_norms: np.ndarray  # (n,) float32 n_i ** alpha, n_i the users who liked item i
    candidate_norms: np.ndarray  # (n,) float32 n_i ** (1 - alpha)
    counts: np.ndarray  # (n,) float32 positive interactions per item
    shrink: float
    alpha: float = 0.5

    def positions(self, ids: Sequence[str]) -> np.ndarray:
        """(len(ids),) int64 columns, -1 for items never seen in events."""
        find = self.columns.get
        return np.fromiter((find(i, -1) for i in ids), dtype=np.int64, count=len(ids))

    def similarity_rows(self, columns: np.ndarray) -> sp.csr_matrix:
        """(len(columns), n) float32 sim(i, j) of the items at `columns` (valid, distinct) to every item."""
        rows = self.together[columns]
        owner = np.repeat(columns, np.diff(rows.indptr))  # the row item of each stored entry
        scale = self.history_norms[owner] * self.candidate_norms[rows.indices] + self.shrink
        values = rows.data / scale
        return sp.csr_matrix((values.astype(np.float32), rows.indices, rows.indptr), shape=rows.shape)

    def knn_row(self, history: Sequence[str], decay: float = 1.0) -> np.ndarray:
        """(n,) float32 similarity of every item to the distinct history items (oldest first), summed.

        With ``decay < 1`` the k-th newest distinct item counts ``decay**k`` (as `ItemKNN` with a decay).
        """
        newest_first = list(dict.fromkeys(reversed(history)))
        positions = self.positions(newest_first)
        weights = (decay ** np.arange(len(newest_first), dtype=np.float32))[positions >= 0]
        cols = positions[positions >= 0]
        if cols.size == 0:
            return np.zeros(len(self.ids), dtype=np.float32)
        rows = self.similarity_rows(cols)  # (len(cols), n) in the order of cols
        return np.asarray(rows.T @ weights, dtype=np.float32).ravel()

    def at(self, row: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """(len(positions),) float32 entries of a per-column `row` (0 where a position is -1)."""
        values = np.zeros(len(positions), dtype=np.float32)
        known = positions >= 0
        values[known] = row[positions[known]]
        return values

    def pick(self, row: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """(len(ids),) float32 entries of a per-column `row` for `ids` (0 for unseen items)."""
        return self.at(row, self.positions(ids))

    def popularity(self, ids: Sequence[str]) -> np.ndarray:
        """(len(ids),) float32 positive interactions with each item."""
        return self.pick(self.counts, ids)

    def pair_similarity(self, history: Sequence[str], ids: Sequence[str]) -> np.ndarray:
        """(len(history), len(ids)) float32 sim(h, i) (0 where either item was never seen)."""
        out = np.zeros((len(history), len(ids)), dtype=np.float32)
        rows, cols = self.positions(history), self.positions(ids)
        r, c = np.flatnonzero(rows >= 0), np.flatnonzero(cols >= 0)
        if r.size and c.size:
            counts = self.together[rows[r]][:, cols[c]].toarray()  # (r, c) float32
            first, second = self.history_norms[rows[r]], self.candidate_norms[cols[c]]
            out[np.ix_(r, c)] = counts / (first[:, None] * second[None, :] + self.shrink)
        return out

    def top(self, row: np.ndarray, k: int) -> list[str]:
        """Ids of the `k` largest positive entries of a per-column `row`, best first."""
        positive = np.flatnonzero(row > 0)
        if positive.size > k:
            positive = positive[np.argpartition(-row[positive], k - 1)[:k]]
        order = positive[np.lexsort((positive, -row[positive]))]
        return [self.ids[int(c)] for c in order]


class Behaviour:
    """Accumulates positive (user, item) pairs and serves snapshots of co-occurrence and popularity.

    Thread-safe: `add` and `recount` update the counts under a lock; `snapshot` returns the current immutable
    view.

    Args:
        shrink: Shrinks the similarity of items with few users in common towards 0.
        alpha: The similarity's exponent of the history item's likers (0.5: the cosine; see `ItemKNN`).
    """

    def __init__(self, shrink: float = 10.0, alpha: float = 0.5) -> None:
        self.shrink, self.alpha = shrink, alpha
        self._lock = threading.Lock()
        self._users: dict[str, int] = {}
        self._items: dict[str, int] = {}
        self._item_ids: list[str] = []
        self._liked: list[dict[int, int]] = []  # user code -> item liked -> its positive interactions
        self._likers = np.zeros(0, dtype=np.int64)  # (n,) distinct users per item
        self._counts = np.zeros(0, dtype=np.int64)  # (n,) positive interactions per item, repeats count
        empty = sp.csr_matrix((0, 0), dtype=np.float32)
        none = np.zeros(0, np.float32)
        self._snapshot = BehaviourSnapshot({}, [], empty, none, none, none, shrink, alpha)

    def snapshot(self) -> BehaviourSnapshot:
        """The current view (never changes once returned)."""
        return self._snapshot

    def add(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Count positive (user_id, item_id) interactions and refresh the snapshot; returns how many."""
        with self._lock:
            columns: list[int] = []  # item of every interaction
            fresh: list[tuple[int, int]] = []  # (user, item) liked for the first time
            for user, item in pairs:
                u = self._users.get(user)
                if u is None:
                    u = self._users[user] = len(self._liked)
                    self._liked.append({})
                column = self._items.get(item)
                if column is None:
                    column = self._items[item] = len(self._item_ids)
                    self._item_ids.append(item)
                columns.append(column)
                if column not in self._liked[u]:
                    fresh.append((u, column))
                self._liked[u][column] = self._liked[u].get(column, 0) + 1
            if columns:
                self._snapshot = self._refresh(columns, fresh)
            return len(columns)

    def retract(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Take back the likes of (user_id, item_id) `pairs` counted so far (a user's later low rating):
        their positive interactions leave popularity, and the users who liked each item, co-occurrence
        included, no longer hold them; a pair not counted is left alone. Returns how many were taken back."""
        with self._lock:
            gone: list[tuple[int, int]] = []  # (user, item) taken back
            taken: list[int] = []  # the item of each interaction taken back
            for user, item in dict.fromkeys(pairs):
                u, column = self._users.get(user), self._items.get(item)
                if u is None or column is None or column not in self._liked[u]:
                    continue
                gone.append((u, column))
                taken.extend([column] * self._liked[u][column])
            if gone:
                self._snapshot = self._withdrawn(gone, taken)
            return len(gone)

    def recount(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Replace everything counted so far by the counts of `pairs` (every positive there is now); returns
        how many. Requests go on reading the previous snapshot until the new one is complete."""
        fresh = Behaviour(self.shrink, self.alpha)
        with self._lock:  # an `add` meanwhile waits, then counts on top of the new counts
            counted = fresh.add(pairs)
            # Every field but the lock: one added to __init__ later cannot go on holding erased users' data.
            vars(self).update((name, value) for name, value in vars(fresh).items() if name != "_lock")
        return counted

    def _refresh(self, columns: list[int], fresh: list[tuple[int, int]]) -> BehaviourSnapshot:
        n = len(self._item_ids)
        self._counts = _grown(self._counts, n) + np.bincount(columns, minlength=n)
        old = self._snapshot
        together = old.together
        if fresh:
            new_items = np.fromiter((i for _, i in fresh), dtype=np.int64, count=len(fresh))
            self._likers = _grown(self._likers, n) + np.bincount(new_items, minlength=n)
            together = _resized(together, n) + self._change(fresh, n)
        # the id maps are shared with earlier snapshots until an item is added (a copy costs O(items))
        same = len(old.ids) == n
        columns_map, ids = (old.columns, old.ids) if same else (dict(self._items), list(self._item_ids))
        # the divisor's factors once per batch of events, not per request
        history_norms, candidate_norms = liker_norms(self._likers, self.alpha)
        return BehaviourSnapshot(
            columns_map,
            ids,
            together,
            history_norms,
            candidate_norms,
            self._counts.astype(np.float32),
            self.shrink,
            self.alpha,
        )

    def _withdrawn(self, gone: list[tuple[int, int]], taken: list[int]) -> BehaviourSnapshot:
        """The snapshot without the likes `gone` (still in `_liked`, removed here) and the interactions
        `taken`: per user, with R the items taken back and A every item liked before, the pairs lost are
        R x A and (A - R) x R, the gains of `_change` the other way round."""
        n = len(self._item_ids)
        lost = -self._change(gone, n)
        for u, column in gone:
            del self._liked[u][column]
        self._counts = self._counts - np.bincount(taken, minlength=n)
        self._likers = _grown(self._likers, n) - np.bincount([c for _, c in gone], minlength=n)
        old = self._snapshot
        together = old.together + lost
        together.eliminate_zeros()
        history_norms, candidate_norms = liker_norms(self._likers, self.alpha)
        return BehaviourSnapshot(
            old.columns,
            old.ids,
            together.tocsr(),
            history_norms,
            candidate_norms,
            self._counts.astype(np.float32),
            self.shrink,
            self.alpha,
        )

    def _change(self, fresh: list[tuple[int, int]], n: int) -> sp.csr_matrix:
        """(n, n) float32 change of c from the batch's first-time likes (`_liked` already holds them); also
        what taking likes back loses, with `_liked` still holding them (`_withdrawn`).

        Per user in the batch, with O the items liked before and F the new ones (all = O + F), the pairs
        gained are F x all and O x F: ``N.T @ A + (A - N).T @ N`` over the batch's users, diagonal removed.
        """
        users = list(dict.fromkeys(u for u, _ in fresh))
        local = {u: row for row, u in enumerate(users)}
        sizes = np.fromiter((len(self._liked[u]) for u in users), dtype=np.int64, count=len(users))
        liked_items = np.fromiter(
            chain.from_iterable(self._liked[u] for u in users), np.int64, int(sizes.sum())
        )
        every = _binary(np.repeat(np.arange(len(users)), sizes), liked_items, (len(users), n))  # A
        new_rows = np.fromiter((local[u] for u, _ in fresh), dtype=np.int64, count=len(fresh))
        new_cols = np.fromiter((i for _, i in fresh), dtype=np.int64, count=len(fresh))
        new = _binary(new_rows, new_cols, (len(users), n))  # N
        change = (new.T @ every + (every - new).T @ new).tocoo()
        off = change.row != change.col  # an item is not its own neighbour
        return sp.csr_matrix(
            (change.data[off], (change.row[off], change.col[off])), shape=(n, n), dtype=np.float32
        )


def _binary(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)


def _grown(values: np.ndarray, n: int) -> np.ndarray:
    """`values` padded with zeros to length `n` (a new array)."""
    out = np.zeros(n, dtype=values.dtype)
    out[: len(values)] = values
    return out


def _resized(matrix: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """A square csr matrix widened to (n, n) with empty rows and columns, sharing `matrix`'s arrays."""
    if matrix.shape == (n, n):
        return matrix
    indptr = np.concatenate(
        [matrix.indptr, np.full(n - matrix.shape[0], matrix.indptr[-1], matrix.indptr.dtype)]
    )
    return sp.csr_matrix((matrix.data, matrix.indices, indptr), shape=(n, n))
