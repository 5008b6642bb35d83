"""A faiss vector index keyed by string ids, for float32 L2-normalised embeddings (inner product = cosine).

The numpy store (ids in row order plus an (n, dim) float32 matrix) is the source of truth; the faiss structure
is derived from it: exact `IndexFlatIP` in an `IndexIDMap2` up to `approximate_threshold` vectors, HNSW above.

Exact: faiss labels are row positions. Appends are added in place; a remove or an overwrite marks the index
dirty and the next search rebuilds it (a flat copy of the vectors: quick at this size).

HNSW: faiss labels are slots, one per vector ever added since the last build. A graph is slow to build
(seconds at tens of thousands of vectors), so writes never wait for one: an append adds new slots, an
overwrite retires the id's slot and adds a new one, a remove retires its slot, and searches skip retired
slots (a faiss ID selector) instead of finding them. Only when retired slots pass `RETIRED_REBUILD_SHARE` of
the graph does the next search rebuild it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
import numpy.typing as npt

from textcore.artifacts import give_plain_mode
from textcore.errors import Conflict, InvalidInput, NotFound

__all__ = ["SearchHit", "VectorIndex"]

_FORMAT_VERSION = 1
RETIRED_REBUILD_SHARE = 0.25  # an HNSW graph with this share of retired slots is rebuilt at the next search
Kind = Literal["exact", "hnsw"]


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One search result: a stored id and its inner-product (cosine) score."""

    id: str
    score: float


class _RWLock:
    """Many readers or one writer; a waiting writer blocks new readers (no starvation). Not re-entrant."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers, self._writers_waiting, self._writing = 0, 0, False

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class VectorIndex:
    """Cosine search over L2-normalised float32 vectors keyed by string ids.

    Locking: a readers-writer lock. Writers (add/upsert/remove) hold it exclusively while they change the
    store, so a search never sees a half-applied update; searches share it. The lazy rebuild happens inside
    a search (under the shared lock, so the store cannot change) and is serialised by a separate mutex.
    """

    def __init__(
        self, dim: int, *, approximate_threshold: int = 20_000, hnsw_m: int = 32, ef_search: int = 64
    ) -> None:
        """Create an empty index.

        Args:
            dim: Vector dimension.
            approximate_threshold: Above this many vectors the faiss structure is HNSW instead of exact.
            hnsw_m: HNSW neighbours per node.
            ef_search: HNSW search breadth (raised to k when k is larger).

        Raises:
            InvalidInput: If a setting is not a positive integer.
        """
        settings = {"approximate_threshold": approximate_threshold, "hnsw_m": hnsw_m, "ef_search": ef_search}
        for name, value in {"dim": dim, **settings}.items():
            _check_positive(name, value)
        self._dim, self._threshold = dim, approximate_threshold
        self._hnsw_m, self._ef_search = hnsw_m, ef_search
        self._ids: list[str] = []  # row -> id
        self._rows: dict[str, int] = {}  # id -> row
        self._vectors = np.empty((0, dim), dtype=np.float32)  # (n, dim) float32
        self._faiss: faiss.Index | None = None  # built lazily; labels: rows (exact) or slots (HNSW)
        self._faiss_kind: Kind | None = None
        self._slots: list[str | None] = []  # HNSW: slot -> id, None once retired
        self._slot_of: dict[str, int] = {}  # HNSW: id -> its live slot
        self._live = np.empty(0, dtype=bool)  # HNSW: (slots,) bool, False for a retired slot
        self._dirty = True
        self._lock = _RWLock()
        self._build_lock = threading.Lock()

    @property
    def dim(self) -> int:
        """The vector dimension."""
        return self._dim

    @property
    def kind(self) -> Kind:
        """The faiss structure in use: "exact" up to `approximate_threshold` vectors, "hnsw" above."""
        with self._lock.read():
            return self._kind_for(len(self._ids))

    def __len__(self) -> int:
        with self._lock.read():
            return len(self._ids)

    def __contains__(self, id: object) -> bool:
        with self._lock.read():
            return id in self._rows

    def ids(self) -> list[str]:
        """Return every stored id, in storage order."""
        with self._lock.read():
            return list(self._ids)

    def get(self, id: str) -> npt.NDArray[np.float32]:
        """Return a copy of the stored (dim,) float32 vector of `id`.

        Raises:
            NotFound: If `id` is not stored.
        """
        with self._lock.read():
            row = self._rows.get(id)
            if row is None:
                raise NotFound(f"id {id!r} is not in the index")
            return np.array(self._vectors[row], dtype=np.float32)  # (dim,) float32, a copy

    def get_many(self, ids: Sequence[str]) -> npt.NDArray[np.float32]:
        """Return copies of the stored vectors of `ids`, in the order given, under one lock in one gather.

        Much cheaper than one `get` per id for many ids (one lock round trip instead of one per id).

        Returns:
            (len(ids), dim) float32; (0, dim) for no ids.

        Raises:
            InvalidInput: If `ids` is a single string rather than a sequence of them.
            NotFound: Naming the first few ids that are not stored and how many are missing in all.
        """
        if isinstance(ids, str):
            raise InvalidInput(f"ids: expected a sequence of strings, found the string {ids!r:.80}")
        with self._lock.read():
            find = self._rows.get
            rows = np.fromiter((find(i, -1) for i in ids), dtype=np.int64, count=len(ids))  # (n,) int64
            if rows.size and rows.min() < 0:
                missing = [i for i, row in zip(ids, rows.tolist(), strict=True) if row < 0]
                raise NotFound(f"ids not in the index: {missing[:5]!r} ({len(missing)} in all)")
            return self._vectors[rows]  # (n, dim) float32; fancy indexing copies

    def add(self, ids: Sequence[str], vectors: npt.NDArray[np.float32]) -> None:
        """Add new vectors.

        Args:
            ids: One unique string id per row of `vectors`.
            vectors: (n, dim) float32, L2-normalised.

        Raises:
            InvalidInput: On a wrong shape or dtype, non-finite values or repeated ids.
            Conflict: If an id is already stored (then nothing is added).
        """
        new_ids, rows = self._check_rows(ids, vectors)  # rows: (n, dim) float32
        with self._lock.write():
            existing = [i for i in new_ids if i in self._rows]
            if existing:
                raise Conflict(f"ids already in the index: {existing[:5]!r} ({len(existing)} in all)")
            self._append(new_ids, rows)

    def upsert(self, ids: Sequence[str], vectors: npt.NDArray[np.float32]) -> None:
        """Like `add`, but ids already stored get their vector replaced instead of raising `Conflict`."""
        all_ids, rows = self._check_rows(ids, vectors)  # rows: (n, dim) float32
        with self._lock.write():
            old = [j for j, i in enumerate(all_ids) if i in self._rows]
            if old:
                self._vectors[[self._rows[all_ids[j]] for j in old]] = rows[old]
                if self._graph_in_use():  # retire the old slots, add the new vectors as new ones
                    self._retire([all_ids[j] for j in old])
                    self._add_slots([all_ids[j] for j in old], rows[old])
                else:
                    self._dirty = True
            new = [j for j, i in enumerate(all_ids) if i not in self._rows]
            self._append([all_ids[j] for j in new], rows[new])

    def remove(self, ids: Sequence[str]) -> int:
        """Remove ids; unknown ids are ignored.

        Returns:
            How many vectors were removed.
        """
        with self._lock.write():
            drop = {self._rows[i] for i in ids if i in self._rows}
            if not drop:
                return 0
            if self._graph_in_use():  # slots are keyed by id, not row: only the removed ones change
                self._retire([self._ids[r] for r in drop])
            else:
                self._dirty = True
            keep = np.ones(len(self._ids), dtype=bool)  # (n,) bool
            keep[list(drop)] = False
            self._vectors = self._vectors[keep]
            self._ids = [i for r, i in enumerate(self._ids) if r not in drop]
            self._rows = {i: r for r, i in enumerate(self._ids)}
            if self._faiss_kind != self._kind_for(len(self._ids)):
                self._dirty = True
            return len(drop)

    def search(self, query: npt.NDArray[np.float32], k: int) -> list[SearchHit]:
        """Return up to `k` nearest ids to one (dim,) float32 query, best first."""
        q = np.asarray(query)
        if q.shape != (self._dim,):
            raise InvalidInput(f"query: expected shape ({self._dim},), found {q.shape}")
        return self.search_batch(q[None, :], k)[0]

    def search_batch(self, queries: npt.NDArray[np.float32], k: int) -> list[list[SearchHit]]:
        """Return up to `k` nearest ids for each row of (n, dim) float32 `queries`, best first.

        Raises:
            InvalidInput: On a wrong shape or dtype, non-finite values or a `k` below 1.
        """
        _check_positive("k", k)
        qs = self._check_matrix("queries", queries)  # (n, dim) float32
        with self._lock.read():
            if not self._ids or len(qs) == 0:
                return [[] for _ in range(len(qs))]
            with self._build_lock:
                if self._dirty:
                    self._rebuild()
                assert self._faiss is not None
                index = self._faiss
            k = min(k, len(self._ids))
            if self._faiss_kind != "hnsw":
                scores, labels = index.search(qs, k)  # (n, k) float32, (n, k) int64: rows
                names: Sequence[str | None] = self._ids
            else:
                scores, labels = self._search_graph(index, qs, k)  # labels: slots
                names = self._slots
            return [
                [
                    SearchHit(name, float(s))
                    for s, r in zip(srow, lrow, strict=True)
                    if r >= 0 and (name := names[r]) is not None
                ]
                for srow, lrow in zip(scores.tolist(), labels.tolist(), strict=True)
            ]

    def _search_graph(
        self, index: faiss.Index, queries: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """HNSW search that skips retired slots; efSearch at least k (faiss does not raise it itself)."""
        bits = selector = None
        if not self._live.all():
            bits = np.packbits(self._live, bitorder="little")  # bit i of byte i >> 3: slot i is live
            selector = faiss.IDSelectorBitmap(len(self._live), faiss.swig_ptr(bits))
        params = faiss.SearchParametersHNSW(efSearch=max(self._ef_search, k), sel=selector)  # type: ignore[attr-defined]
        scores, labels = index.search(queries, k, params=params)  # (n, k) float32, (n, k) int64
        del bits  # kept alive until the search is done: the selector points into it
        return scores, labels

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to one `.npz` file at `path` atomically (temp file in its directory, then replace).

        The file gets the mode of the one it replaces, or that of a plain `open()` (0666 less the umask).

        Raises:
            OSError: If the directory is missing or not writable (no temp file is left behind).
        """
        with self._lock.read():
            header = {"version": _FORMAT_VERSION, "dim": self._dim, "approximate_threshold": self._threshold,
                      "hnsw_m": self._hnsw_m, "ef_search": self._ef_search}  # fmt: skip
            ids = json.dumps(self._ids)
            vectors = self._vectors.copy()  # (n, dim) float32
        final = Path(path)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
        try:
            give_plain_mode(fd, final)  # mkstemp's 0600 would lock out a service running as another user
            with os.fdopen(fd, "wb") as f:
                np.savez(f, header=_bytes(json.dumps(header)), ids=_bytes(ids), vectors=vectors)
                f.flush()
                os.fsync(f.fileno())
            Path(tmp).replace(final)  # os.replace: atomic within one filesystem
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VectorIndex:
        """Read an index written by `save`.

        Raises:
            NotFound: If `path` does not exist.
            InvalidInput: If the file is not a valid saved index.
        """
        try:
            # Open the file ourselves: np.load leaks its handle when the zip is corrupt.
            with Path(path).open("rb") as f, np.load(f, allow_pickle=False) as data:
                header = json.loads(data["header"].tobytes())
                ids = json.loads(data["ids"].tobytes())
                vectors = data["vectors"]  # (n, dim) float32
            if not isinstance(header, dict) or header.get("version") != _FORMAT_VERSION:
                raise InvalidInput(f"expected index format version {_FORMAT_VERSION}, found {header!r}")
            settings = {k: header[k] for k in ("approximate_threshold", "hnsw_m", "ef_search")}
            index = cls(header["dim"], **settings)
            if not isinstance(ids, list):
                raise InvalidInput(f"ids: expected a list, found {type(ids).__name__}")
            index.add(ids, vectors)
        except FileNotFoundError as e:
            raise NotFound(f"no index file at {os.fspath(path)!r}") from e
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
            raise InvalidInput(f"{os.fspath(path)!r} is not a valid index file: {e}") from e
        except InvalidInput as e:
            raise InvalidInput(f"{os.fspath(path)!r} is not a valid index file: {e.message}") from e
        return index

    # Internals: callers hold the right lock.

    def _kind_for(self, n: int) -> Kind:
        return "hnsw" if n > self._threshold else "exact"

    def _check_matrix(self, what: str, a: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        if not isinstance(a, np.ndarray):
            raise InvalidInput(f"{what}: expected a numpy array, found {type(a).__name__}")
        if a.dtype != np.float32:
            raise InvalidInput(f"{what}: expected dtype float32, found {a.dtype}")
        if a.ndim != 2 or a.shape[1] != self._dim:
            raise InvalidInput(f"{what}: expected shape (n, {self._dim}), found {a.shape}")
        if not np.isfinite(a).all():
            raise InvalidInput(f"{what}: expected finite values, found NaN or infinity")
        return np.ascontiguousarray(a)

    def _check_rows(
        self, ids: Sequence[str], vectors: npt.NDArray[Any]
    ) -> tuple[list[str], npt.NDArray[np.float32]]:
        id_list = list(ids)
        if isinstance(ids, str) or not all(isinstance(i, str) for i in id_list):
            raise InvalidInput(f"ids: expected a sequence of strings, found {type(ids).__name__} {ids!r:.80}")
        rows = self._check_matrix("vectors", vectors)  # (n, dim) float32
        if len(id_list) != len(rows):
            raise InvalidInput(f"expected one id per row, found {len(id_list)} ids for {len(rows)} rows")
        if len(set(id_list)) != len(id_list):
            dupes = sorted(i for i, c in Counter(id_list).items() if c > 1)
            raise InvalidInput(f"ids: expected unique ids, found repeats {dupes[:5]!r}")
        return id_list, rows

    def _append(self, ids: list[str], vectors: npt.NDArray[np.float32]) -> None:
        if not ids:
            return
        start = len(self._ids)
        self._vectors = np.concatenate([self._vectors, vectors])  # (n + m, dim) float32
        self._ids.extend(ids)
        self._rows.update((i, start + j) for j, i in enumerate(ids))
        if self._dirty or self._faiss_kind != self._kind_for(len(self._ids)):
            self._dirty = True
        elif self._graph_in_use():
            self._add_slots(ids, vectors)
        elif self._faiss is not None:
            self._faiss.add_with_ids(vectors, np.arange(start, len(self._ids), dtype=np.int64))

    def _graph_in_use(self) -> bool:
        """Whether a built HNSW graph serves searches (writes then update it by slots, not by a rebuild)."""
        return self._faiss_kind == "hnsw" and self._faiss is not None and not self._dirty

    def _add_slots(self, ids: list[str], vectors: npt.NDArray[np.float32]) -> None:
        assert self._faiss is not None
        start = len(self._slots)
        self._faiss.add(vectors)  # labels continue at `start`
        self._slots.extend(ids)
        self._slot_of.update((i, start + j) for j, i in enumerate(ids))
        self._live = np.concatenate([self._live, np.ones(len(ids), dtype=bool)])

    def _retire(self, ids: list[str]) -> None:
        for id in ids:
            slot = self._slot_of.pop(id)
            self._slots[slot] = None
            self._live[slot] = False
        if (~self._live).sum() > RETIRED_REBUILD_SHARE * len(self._live):
            self._dirty = True

    def _rebuild(self) -> None:
        kind = self._kind_for(len(self._ids))
        index: faiss.Index
        if kind == "hnsw":
            hnsw = faiss.IndexHNSWFlat(self._dim, self._hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efSearch = self._ef_search
            hnsw.add(self._vectors)
            index = hnsw
            self._slots = list(self._ids)
            self._slot_of = dict(self._rows)
            self._live = np.ones(len(self._ids), dtype=bool)
        else:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(self._dim))
            index.add_with_ids(self._vectors, np.arange(len(self._ids), dtype=np.int64))
        self._faiss, self._faiss_kind, self._dirty = index, kind, False


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name}: expected a positive integer, found {value!r}")


def _bytes(text: str) -> npt.NDArray[np.uint8]:
    return np.frombuffer(text.encode(), dtype=np.uint8)  # (len,) uint8: UTF-8 JSON, no pickle needed
