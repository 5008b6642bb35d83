"""The catalog's index files: a faiss index file, a sidecar JSON beside it (the model fingerprint and a hash
of each item's encoder text) and the file lock under which both are read and written (`recommender.catalog`
says why)."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textcore import CoreError, VectorIndex
from textcore.artifacts import write_text_atomic

SIDECAR_VERSION = 1


@dataclass
class Snapshot:
    """The index at one moment, for a save: its ids, their (n, dim) float32 vectors and text hashes (the
    vectors are let go once copied into the index that is saved, so a save holds two copies at most)."""

    changes: int  # how many writes the catalog had made to its index when it was taken
    ids: list[str]
    vectors: np.ndarray
    hashes: dict[str, str]


@contextmanager
def files_locked(index_path: Path, operation: int) -> Iterator[None]:
    """Hold the lock of the index files at `index_path` (`fcntl.LOCK_SH` to read them, `LOCK_EX` to write),
    which other processes on them take too."""
    # Read-only is enough for flock, so a service and a command run as other users share the file.
    fd = os.open(index_path.with_suffix(".lock"), os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def indexed_model(index_path: Path) -> str | None:
    """The fingerprint of the model whose vectors the index file at `index_path` holds, as its sidecar
    records it (`ItemCatalog`'s `fingerprint`); None when there is no readable sidecar."""
    sidecar = index_path.with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        with files_locked(index_path, fcntl.LOCK_SH):
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    model = meta.get("model") if isinstance(meta, dict) else None
    return model if isinstance(model, str) else None


def read_index_files(
    index_path: Path, fingerprint: str, dim: int
) -> tuple[VectorIndex, dict[str, str]] | None:
    """The saved index and its text hashes when they match the model (`fingerprint`, `dim`) and each other;
    None when the files are missing, unreadable, or built by another model."""
    try:
        with files_locked(index_path, fcntl.LOCK_SH):
            meta = json.loads(index_path.with_suffix(".json").read_text(encoding="utf-8"))
            index = VectorIndex.load(index_path)
    except (OSError, ValueError, CoreError):
        return None
    hashes = meta.get("hashes") if isinstance(meta, dict) else None
    usable = (
        meta.get("version") == SIDECAR_VERSION
        and meta.get("model") == fingerprint
        and index.dim == dim
        and isinstance(hashes, dict)
        and set(hashes) == set(index.ids())
    )
    if usable and isinstance(hashes, dict):
        return index, {str(k): str(v) for k, v in hashes.items()}
    return None


def write_index_files(index_path: Path, fingerprint: str, dim: int, snapshot: Snapshot) -> None:
    """Write a snapshot to the index file and its sidecar, under the files' lock; the snapshot's vectors are
    let go once copied into the index written."""
    index = VectorIndex(dim)
    index.add(snapshot.ids, snapshot.vectors)
    snapshot.vectors = np.zeros((0, dim), dtype=np.float32)  # copied: 155 MB at 100,000 items, not kept
    meta = {"version": SIDECAR_VERSION, "model": fingerprint, "hashes": snapshot.hashes}
    index_path.parent.mkdir(parents=True, exist_ok=True)
    with files_locked(index_path, fcntl.LOCK_EX):  # the index first: a crash before its sidecar re-embeds
        index.save(index_path)
        write_text_atomic(index_path.with_suffix(".json"), json.dumps(meta))
