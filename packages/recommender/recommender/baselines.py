"""Baselines every model is compared with: most popular, and item-kNN on co-occurrence.

Both are `protocol.Scorer`s: called with a batch of histories (catalog positions) they return
``(batch, n_items)`` float32 scores. They are fitted on `Split.train`, so they never see the held-out items.
"""

from __future__ import annotations

from itertools import chain

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]

from recommender.data import Catalog
from recommender.protocol import history_positions
from textcore import InvalidInput


class Popularity:
    """Scores every item by the number of training interactions with it, the same for every user."""

    def __init__(self, train: dict[str, list[str]], catalog: Catalog) -> None:
        positions = list(chain.from_iterable(history_positions(items, catalog) for items in train.values()))
        # (n_items,) float32: interactions per item; items outside the catalog are ignored
        self.counts = np.bincount(np.asarray(positions, dtype=np.int64), minlength=len(catalog)).astype(
            np.float32
        )

    def __call__(self, histories: list[list[int]]) -> np.ndarray:
        """The popularity row repeated for each history: (len(histories), n_items) float32."""
        return np.tile(self.counts, (len(histories), 1))


class ItemKNN:
    """Item-based k-nearest neighbours on co-occurrence: users are the feature dimension of each item.

    ``sim(i, j) = c_ij / (sqrt(n_i * n_j) + shrink)``, where ``c_ij`` counts users who interacted with both
    items and ``n_i`` users who interacted with ``i``: the cosine of the items' binary user vectors, shrunk
    towards 0 when the evidence is thin. A user's score for item ``i`` is the sum of ``sim(h, i)`` over the
    distinct items ``h`` of their history.

    With ``alpha`` other than 0.5 the similarity is the asymmetric cosine
    ``c_ij / (n_i ** alpha * n_j ** (1 - alpha) + shrink)``: above 0.5 it divides less by the candidate
    ``j``'s own popularity, so well-liked neighbours rank higher. The baseline is the plain cosine
    (``alpha=0.5``, ``shrink=10``); the text-interest model may choose others on validation data.

    No dense ``n_items x n_items`` matrix is ever built: co-occurrence and similarity are ``scipy.sparse``
    CSR, so memory grows with the number of co-occurring item pairs (235k on amazon_scientific's 4,385
    items, 2.0M on MovieLens-100k's 1,682), not with ``n_items ** 2``. With `neighbours` set, each item
    keeps only its strongest neighbours, bounding the kept matrix to ``n_items * neighbours`` entries. The
    only dense arrays are the ``(batch, n_items)`` float32 score rows a call returns.
    """

    def __init__(
        self,
        train: dict[str, list[str]],
        catalog: Catalog,
        *,
        shrink: float = 10.0,
        neighbours: int | None = None,
        alpha: float = 0.5,
    ) -> None:
        if shrink < 0:
            raise InvalidInput(f"expected shrink >= 0; found {shrink}")
        if not 0 <= alpha <= 1:
            raise InvalidInput(f"expected alpha in [0, 1]; found {alpha}")
        if neighbours is not None and neighbours < 1:
            raise InvalidInput(f"expected neighbours >= 1 or None; found {neighbours}")
        self.n_items = len(catalog)
        users = _binary_rows([history_positions(items, catalog) for items in train.values()], self.n_items)
        cooccurrence = (users.T @ users).tocoo()  # (n_items, n_items) users in common
        self.counts = users.sum(axis=0).A1.astype(np.float32)  # (n_items,) users per item
        off_diagonal = cooccurrence.row != cooccurrence.col  # an item is not its own neighbour
        rows = cooccurrence.row[off_diagonal]
        cols = cooccurrence.col[off_diagonal]
        history_norms, candidate_norms = liker_norms(self.counts, alpha)
        values = cooccurrence.data[off_diagonal] / (history_norms[rows] * candidate_norms[cols] + shrink)
        similarity = sp.csr_matrix(
            (values.astype(np.float32), (rows, cols)), shape=(self.n_items, self.n_items)
        )
        # (n_items, n_items) float32 CSR, row h = the neighbours of item h
        self.similarity = similarity if neighbours is None else _top_per_row(similarity, neighbours)

    def __call__(self, histories: list[list[int]], decay: float | None = None) -> np.ndarray:
        """Summed similarities to the history items: (len(histories), n_items) float32.

        Args:
            histories: Catalog positions, oldest first.
            decay: None sums every distinct history item once; a number in (0, 1] weighs the k-th newest
                item by ``decay**k`` (the newest by 1), so recent interests count more.
        """
        rows = (
            _binary_rows(histories, self.n_items)
            if decay is None
            else _recency_rows(histories, self.n_items, decay)
        )
        return np.asarray((rows @ self.similarity).toarray(), dtype=np.float32)

    def similar(self, item: int, k: int = 10) -> list[tuple[int, float]]:
        """The `k` items most similar to catalog position `item`, as (position, similarity), best first."""
        if not 0 <= item < self.n_items:
            raise InvalidInput(f"expected an item position in [0, {self.n_items}); found {item}")
        start, end = self.similarity.indptr[item], self.similarity.indptr[item + 1]
        cols = self.similarity.indices[start:end]
        values = self.similarity.data[start:end]
        order = np.lexsort((cols, -values))[:k]  # best first; ties by position, so the order is stable
        return [(int(cols[i]), float(values[i])) for i in order]


def liker_norms(likers: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Per item ``(n_i ** alpha, n_i ** (1 - alpha))``: ``sim(h, i)`` divides ``c_hi`` by ``first[h] *
    second[i] + shrink``. Both are ``sqrt(n_i)`` for the cosine (alpha 0.5). Returns float32 arrays."""
    users = np.asarray(likers, dtype=np.float32)
    if alpha == 0.5:
        root = np.sqrt(users)
        return root, root
    return (users**alpha).astype(np.float32), (users ** (1 - alpha)).astype(np.float32)


def _recency_rows(histories: list[list[int]], n_items: int, decay: float) -> sp.csr_matrix:
    """(len(histories), n_items) float32 CSR; the k-th newest item weighs ``decay**k`` (a repeat: newest)."""
    if not 0 < decay <= 1:
        raise InvalidInput(f"expected a recency decay in (0, 1]; found {decay}")
    rows: list[int] = []
    cols: list[int] = []
    weights: list[float] = []
    for row, history in enumerate(histories):
        seen: set[int] = set()
        for age, item in enumerate(reversed(history)):
            if item not in seen:
                seen.add(item)
                rows.append(row)
                cols.append(item)
                weights.append(decay**age)
    return sp.csr_matrix(
        (np.asarray(weights, dtype=np.float32), (rows, cols)), shape=(len(histories), n_items)
    )


def _binary_rows(histories: list[list[int]], n_items: int) -> sp.csr_matrix:
    """(len(histories), n_items) float32 CSR with 1 where a history holds the item (repeats count once)."""
    lengths = [len(h) for h in histories]
    cols = np.fromiter(chain.from_iterable(histories), dtype=np.int64, count=sum(lengths))
    rows = np.repeat(np.arange(len(histories)), lengths)
    matrix = sp.csr_matrix(
        (np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(histories), n_items)
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def _top_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the `k` largest entries of each row (ties broken by column)."""
    if matrix.nnz == 0:
        return matrix
    keep_rows: list[np.ndarray] = []
    keep_cols: list[np.ndarray] = []
    keep_values: list[np.ndarray] = []
    for row in range(matrix.shape[0]):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        cols = matrix.indices[start:end]
        values = matrix.data[start:end]
        best = np.lexsort((cols, -values))[:k]
        keep_rows.append(np.full(len(best), row))
        keep_cols.append(cols[best])
        keep_values.append(values[best])
    return sp.csr_matrix(
        (np.concatenate(keep_values), (np.concatenate(keep_rows), np.concatenate(keep_cols))),
        shape=matrix.shape,
    )
