"""The knowledge base's search state in memory and on disk: passage vectors (faiss), BM25 terms, records.

    index_dir/knowledge.index   the `VectorIndex` (numpy store + ids), written atomically
    index_dir/knowledge.json    sidecar: the knowledge base version the index reflects, the settings it was
                                built with (encoder fingerprint, whether FAQ questions are indexed) and a
                                hash of each passage's indexed text

The index file is written before the sidecar; a crash between the two leaves hashes that disagree with
the vectors for the changed passages only, and those are embedded again at the next start.

Threads: the vector index has its own readers-writer lock; the records and BM25 index form one immutable
snapshot swapped by one reference assignment, so readers see the state before or after a change. Callers
serialise writers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from customer_service.keyword import KeywordIndex
from textcore import CoreError, Encoder, NotFound, VectorIndex
from textcore.artifacts import write_text_atomic

INDEX_FILE, SIDECAR_FILE = "knowledge.index", "knowledge.json"
_SIDECAR_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Passage:
    """A search result: a passage and its score (cosine, BM25, RRF or re-ranker probability by mode).

    `relevance`: what the chat policy judged the passage by (re-ranker probability, else the cosine similarity
    of query and passage), set by the bot; None elsewhere."""

    id: str
    kind: str  # faq | chunk
    title: str  # the FAQ's question, or "Doc title > Section"
    text: str  # the FAQ's answer or the chunk's text
    category: str
    document_id: str | None
    score: float
    relevance: float | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """A passage as indexed: the passage (score 0) and the text that is embedded and keyword-indexed."""

    passage: Passage
    indexed: str


@dataclass(frozen=True, slots=True)
class _Snapshot:
    version: int
    records: dict[str, Record]
    keyword: KeywordIndex


def text_hash(text: str) -> str:
    """A short stable digest of an indexed text (a change means the vector must be recomputed)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encoder_fingerprint(encoder: Encoder) -> str:
    """Identifies the encoder whose vectors an index holds: its folder and weight files, its max length."""
    folder = encoder.backbone.path.resolve()
    digest = hashlib.sha256(str(folder).encode())
    for weights in sorted(folder.glob("*.safetensors")):
        stat = weights.stat()
        digest.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return f"{folder.name}:{encoder.max_length}:{digest.hexdigest()[:16]}"


class SearchIndex:
    """Vectors, BM25 and records of one knowledge base, and the files they are saved to.

    Args:
        dim: The embedding width.
        folder: Where the index and its sidecar are saved (created on save).
        settings: What the vectors depend on besides the texts (e.g. the encoder fingerprint); a saved
            index built with other settings is not loaded.
    """

    def __init__(self, dim: int, folder: Path, settings: dict[str, Any]) -> None:
        self.dim, self.folder, self.settings = dim, folder, {"format": _SIDECAR_FORMAT, **settings}
        self._vectors = VectorIndex(dim)
        self._hashes: dict[str, str] = {}  # id -> text_hash of what `_vectors` holds
        self._snapshot = _Snapshot(0, {}, KeywordIndex([], []))

    @property
    def version(self) -> int:
        """The knowledge base version the index reflects."""
        return self._snapshot.version

    def __len__(self) -> int:
        return len(self._snapshot.records)

    def record(self, passage_id: str) -> Record | None:
        """The indexed record of a passage (None when it is not indexed)."""
        return self._snapshot.records.get(passage_id)

    def records(self) -> dict[str, Record]:
        """Every indexed record by id (a read-only view: do not change it)."""
        return self._snapshot.records

    def to_embed(self, records: Iterable[Record]) -> list[Record]:
        """The records whose indexed text the vectors do not hold yet."""
        return [r for r in records if self._hashes.get(r.passage.id) != text_hash(r.indexed)]

    def apply(
        self,
        version: int,
        records: Sequence[Record],
        embedded: Sequence[Record],
        vectors: np.ndarray,
        removed: Sequence[str] = (),
        *,
        complete: bool = False,
    ) -> None:
        """Bring the index to `version`.

        Args:
            version: The knowledge base version after the change.
            records: Records created or replaced (every record when `complete`).
            embedded: The records among them whose vectors are given.
            vectors: (len(embedded), dim) float32, L2-normalised.
            removed: Ids to drop.
            complete: `records` is the whole knowledge base: anything else is dropped.
        """
        current = {} if complete else dict(self._snapshot.records)
        gone = set(removed) | (set(self._hashes) - {r.passage.id for r in records} if complete else set())
        if gone:
            self._vectors.remove(sorted(gone))
            for passage_id in gone:
                self._hashes.pop(passage_id, None)
                current.pop(passage_id, None)
        if embedded:
            self._vectors.upsert([r.passage.id for r in embedded], vectors)
            self._hashes.update((r.passage.id, text_hash(r.indexed)) for r in embedded)
        current.update((r.passage.id, r) for r in records)
        keyword = KeywordIndex(list(current), [r.indexed for r in current.values()])
        self._snapshot = _Snapshot(version, current, keyword)  # one reference swap

    def dense(self, vector: np.ndarray, k: int) -> list[Passage]:
        """The `k` passages nearest to a (dim,) float32 L2-normalised query vector, scored by cosine."""
        snapshot = self._snapshot
        hits = self._vectors.search(vector, k)
        return [_scored(snapshot, hit.id, hit.score) for hit in hits if hit.id in snapshot.records]

    def similarities(self, vector: np.ndarray, ids: Sequence[str]) -> list[float]:
        """Cosine of a (dim,) float32 L2-normalised query vector with each passage (0.0: not indexed)."""
        scores = []
        for passage_id in ids:
            try:
                scores.append(float(self._vectors.get(passage_id) @ vector))
            except NotFound:  # removed since it was found
                scores.append(0.0)
        return scores

    def keyword(self, query: str, k: int) -> list[Passage]:
        """Up to `k` passages sharing terms with `query`, scored by BM25."""
        snapshot = self._snapshot
        hits = snapshot.keyword.search(query, k)
        return [_scored(snapshot, i, score) for i, score in hits if i in snapshot.records]

    # --------------------------------------------------------------------------------------------- files

    def load(self) -> bool:
        """Adopt the saved vectors when they were built with these settings; returns whether it did.

        Only the vectors and their text hashes are loaded; the records come from the database (`apply`).
        """
        try:
            meta = json.loads((self.folder / SIDECAR_FILE).read_text(encoding="utf-8"))
            vectors = VectorIndex.load(self.folder / INDEX_FILE)
        except (OSError, ValueError, CoreError):
            return False
        if not isinstance(meta, dict) or not isinstance(hashes := meta.get("hashes"), dict):
            return False
        usable = (
            all(meta.get(key) == value for key, value in self.settings.items())
            and vectors.dim == self.dim
            and set(hashes) == set(vectors.ids())
        )
        if usable:
            self._vectors, self._hashes = vectors, {str(k): str(v) for k, v in hashes.items()}
        return usable

    def saved_version(self) -> int | None:
        """The version recorded beside the saved index (None when there is none)."""
        try:
            meta = json.loads((self.folder / SIDECAR_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        version = meta.get("version") if isinstance(meta, dict) else None
        return version if isinstance(version, int) else None

    def save(self) -> None:
        """Write the vectors, then the sidecar, each atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._vectors.save(self.folder / INDEX_FILE)
        meta = {**self.settings, "version": self.version, "hashes": self._hashes}
        write_text_atomic(self.folder / SIDECAR_FILE, json.dumps(meta))


def _scored(snapshot: _Snapshot, passage_id: str, score: float) -> Passage:
    return replace(snapshot.records[passage_id].passage, score=score)
