"""The item catalog: rows in SQL, their embeddings in a faiss `VectorIndex` kept in step with them.

The database is the source of truth. The index file (``index_path``) and a sidecar JSON beside it (the model
fingerprint and a hash of each item's encoder text) let a restart re-embed only what changed; when the file is
missing, was built by another model, or disagrees with its sidecar, the index is rebuilt from the database.
The pair is written and read under a file lock beside them (``.lock``): another process writing the same files
(`recommender ingest-items` beside a running service) would otherwise leave one writer's index with the
other's sidecar, whose hashes then vouch for vectors of texts the index does not hold.

Writes (upsert, delete) hold one lock, so the database, the index and the file change in the same order.
An upsert embeds before it takes the lock, then decides under it again which items need a vector (a delete or
another upsert may have run meanwhile) and embeds any it missed, so the index always holds the vector of the
text the database holds. Reads go through the index's own readers-writer lock.

Saving the files rewrites every vector (300 MB for 200,000 items of 384 floats). With ``save_after_s`` above
0 (the service's ``REC_INDEX_SAVE_S``) a write does not save them itself: it leaves that to a background save
at most that many seconds later, which takes in every write made meanwhile, and to `close` (the service's
shutdown). That save copies the index and its hashes under the write lock (0.07-0.2 s at 100,000 items on
two busy cores) and writes the copy to the files outside it (1-3 s), so writes do not wait for the disk;
saves write one at a time, and a write made during one schedules the next (bench/item_edits.py). Nothing
is lost by a crash in between: the database already holds the writes, and the next start re-embeds the items
whose text changed since the files were last saved (their sidecar hashes differ) and drops the deleted ones,
exactly as after another process's writes.

Other processes may write the items table too (`recommender ingest-items`, another replica): each write bumps
the items change counter (`recommender.changes`), and `refresh` brings the index in line with the database
when the counter moved past what this catalog has taken in (the catalog's own writes move it along).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sqlalchemy import select

from recommender.changes import ITEMS, bump, counter
from recommender.database import Database
from recommender.index_files import Snapshot, read_index_files, write_index_files
from recommender.item_deletion import delete_items
from recommender.item_records import (
    ItemRecord,
    StoredItem,
    UpsertReport,
    id_listing,
    require_unique,
    stored_item,
    text_hash,
)
from recommender.tables import Item
from textcore import InvalidInput, NotFound, VectorIndex

Embed = Callable[[list[str]], np.ndarray]  # texts -> (n, dim) float32, L2-normalised
Progress = Callable[[int, int], None]  # (done, total)
logger = logging.getLogger(__name__)


class ItemCatalog:
    """Items in the database and their vectors in a `VectorIndex`.

    Args:
        db: The migrated database.
        embed: Texts -> (n, dim) float32 L2-normalised vectors (the model's item tower).
        dim: The vector width of `embed`.
        index_path: The index file; its folder is created.
        fingerprint: Identifies the model that produced the vectors; an index built by another is discarded.
        batch_size: Texts per `embed` call.
        save_after_s: 0: every write saves the files before it returns. Above 0: a write leaves the save to
            a background thread at most this many seconds later (one save for every write made meanwhile)
            and to `flush` / `close`.
    """

    def __init__(
        self,
        db: Database,
        embed: Embed,
        dim: int,
        index_path: Path,
        fingerprint: str,
        batch_size: int = 256,
        save_after_s: float = 0.0,
    ) -> None:
        if not save_after_s >= 0:
            raise InvalidInput(f"expected save_after_s of 0 or more seconds, found {save_after_s!r}")
        self.db, self._embed, self.dim = db, embed, dim
        self.index_path, self.fingerprint, self.batch_size = index_path, fingerprint, batch_size
        self.index = VectorIndex(dim)
        self._hashes: dict[str, str] = {}  # id -> text_hash of what the index holds
        self._titles: dict[str, str] = {}  # id -> title, for explanations without a query
        self._write = threading.Lock()
        self.version = 0  # bumped by every change, so caches of catalog samples know to refresh
        self._seen = -1  # the items change counter the index reflects (-1: not synced yet)
        self.save_after_s = save_after_s
        self._changes = 0  # writes to the index so far (under `_write`)
        self._saved = 0  # the `_changes` the files hold (set under `_files`)
        self._files = threading.Lock()  # one writer of the files at a time (taken after `_write`, if both)
        self._saver: threading.Timer | None = None  # the pending background save (under `_write`)

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.index

    def title(self, item_id: str) -> str:
        """The title of a catalog item ('' when it is not in the catalog)."""
        return self._titles.get(item_id, "")

    def titles(self, ids: Sequence[str]) -> list[str]:
        """The titles of catalog items, in order ('' for ids not in the catalog)."""
        find = self._titles.get
        return [find(i, "") for i in ids]

    def sync(self, progress: Progress | None = None) -> int:
        """Load the index file and bring it in line with the database; returns how many were embedded."""
        with self._write:
            return self._reconcile(progress, save=self._load_file())

    def refresh(self, items_counter: int, progress: Progress | None = None) -> int:
        """Take in what other processes changed since the index last matched the database.

        Args:
            items_counter: The items change counter as just read (`recommender.changes.read_counters`); when
                the index already reflects it, nothing is read.
            progress: Told of the embedding of new and changed items.

        Returns:
            How many items were embedded.
        """
        if items_counter <= self._seen:
            return 0
        with self._write:
            if items_counter <= self._seen:  # another thread took it in meanwhile
                return 0
            return self._reconcile(progress, save=False)

    def upsert(self, items: Sequence[ItemRecord], progress: Progress | None = None) -> UpsertReport:
        """Create or replace items; only items whose encoder text changed are embedded again.

        Raises:
            InvalidInput: If an id appears twice in `items`.
        """
        require_unique([item.id for item in items])
        early = self._stale(items)
        ready = dict(zip([item.id for item in early], self._vectors_of(early, progress), strict=True))
        with self._write:
            # A delete or another upsert may have changed the index while the slow part ran outside the
            # lock: what needs a vector is decided again, and anything it left stale is embedded now.
            stale = self._stale(items)
            late = [item for item in stale if item.id not in ready]
            ready.update(zip([item.id for item in late], self._vectors_of(late, None), strict=True))
            vectors = np.stack([ready[item.id] for item in stale]) if stale else self._no_vectors()
            created, before = self._store(items)
            self._took_in(before)
            self._apply(stale, vectors, [])
            self._titles.update((item.id, item.title) for item in items)
            self._changed()
            self.version += 1
        return UpsertReport(created=created, updated=len(items) - created, embedded=len(stale))

    def delete(self, item_id: str) -> None:
        """Remove an item from the database and the index.

        Raises:
            NotFound: If no item has this id.
        """
        with self._write:
            self._took_in(delete_items(self.db, [item_id]))
            self._apply([], self._no_vectors(), [item_id])
            self._titles.pop(item_id, None)
            self._changed()
            self.version += 1

    def flush(self) -> bool:
        """Save the index files now if they lack writes (`save_after_s`); returns whether it saved.

        Once it returns, the files hold every write made before it was called. Writes wait only while the
        index is copied (`_snapshot`), not while the files are written.
        """
        with self._write:
            if self._saver is not None:
                self._saver.cancel()
                self._saver = None
            if self._changes == self._saved:
                return False
            snapshot = self._snapshot()
        self._write_files(snapshot)
        return True

    def close(self) -> None:
        """Save what the files lack (the service's shutdown); later writes save or schedule again as usual."""
        self.flush()

    def get(self, item_id: str) -> StoredItem:
        """One stored item.

        Raises:
            NotFound: If no item has this id.
        """
        with self.db.session() as session:
            row = session.get(Item, item_id)
            if row is None:
                raise NotFound(f"expected an existing item id, found no item {item_id!r}")
            return stored_item(row)

    def page(self, limit: int, cursor: str | None = None) -> tuple[list[StoredItem], str | None]:
        """Items in id order after `cursor`, and the cursor of the next page (None at the end)."""
        query = select(Item).order_by(Item.id).limit(limit + 1)
        if cursor is not None:
            query = query.where(Item.id > cursor)
        with self.db.session() as session:
            rows = [stored_item(row) for row in session.scalars(query)]
        return rows[:limit], rows[limit - 1].id if len(rows) > limit else None

    def encoder_texts(self, ids: Sequence[str]) -> list[str]:
        """What the model reads of each item (title, then text), in order, from the database.

        Raises:
            NotFound: Listing the ids that are not stored.
        """
        found: dict[str, str] = {}
        with self.db.session() as session:
            for start in range(0, len(ids), 500):  # bounded IN lists
                chunk = ids[start : start + 500]
                rows = session.execute(select(Item.id, Item.title, Item.text).where(Item.id.in_(chunk)))
                found.update((r.id, ItemRecord(r.id, r.title, r.text).encoder_text) for r in rows)
        missing = [i for i in dict.fromkeys(ids) if i not in found]
        if missing:
            raise NotFound(f"expected stored item ids; unknown: {id_listing(missing)}")
        return [found[i] for i in ids]

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        """(len(ids), dim) float32 vectors of catalog items.

        Raises:
            NotFound: Listing every id that is not in the catalog.
        """
        try:
            return self.index.get_many(ids)  # one lock and one gather (a lock per id costs ~2 ms per 1,000)
        except NotFound:
            unknown = [i for i in dict.fromkeys(ids) if i not in self.index]
            if not unknown:  # added since: the index has them all now
                return self.index.get_many(ids)
            raise NotFound(f"expected catalog item ids; unknown: {id_listing(unknown)}") from None

    def present(self, ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """The ids still in the catalog, in order, and their (n, dim) float32 vectors.

        For the items a request found itself (candidates, a stored user's history): one deleted while the
        request runs is left out, where `vectors` would refuse the request for an id its caller never sent.
        """
        kept = list(ids)
        while True:
            kept = [i for i in kept if i in self.index]
            try:
                return kept, self.index.get_many(kept)
            except NotFound:  # removed between the check and the read: check again (kept only shrinks)
                continue

    # Internals.

    def _reconcile(self, progress: Progress | None, *, save: bool) -> int:
        """Embed what the database holds and the index lacks; drop what the database lost (under the lock)."""
        with self.db.session() as session:
            seen = counter(session, ITEMS)  # read first: the rows are at least as new
            rows = session.execute(select(Item.id, Item.title, Item.text)).all()
        records = [ItemRecord(r.id, r.title, r.text) for r in rows]
        changed = self._stale(records)
        vectors = self._vectors_of(changed, progress)
        gone = set(self._hashes) - {r.id for r in records}
        self._apply(changed, vectors, sorted(gone))
        self._titles = {r.id: r.title for r in records}
        if save:  # the file was missing or unusable: write it now
            self._save()
        elif changed or gone:
            self._changed()
        self._seen = seen
        self.version += 1
        return len(changed)

    def _took_in(self, before: int) -> None:
        """After this catalog's own write moved the items counter on from `before` (under the lock)."""
        if before == self._seen:  # nobody else wrote in between: the index reflects the new value
            self._seen = before + 1

    def _stale(self, items: Sequence[ItemRecord]) -> list[ItemRecord]:
        """The items whose vector the index lacks or holds for another text."""
        return [item for item in items if self._hashes.get(item.id) != text_hash(item.encoder_text)]

    def _no_vectors(self) -> np.ndarray:
        return np.zeros((0, self.dim), dtype=np.float32)

    def _vectors_of(self, items: Sequence[ItemRecord], progress: Progress | None) -> np.ndarray:
        texts = [item.encoder_text for item in items]
        parts = [self._no_vectors()]
        for start in range(0, len(texts), self.batch_size):
            parts.append(np.asarray(self._embed(texts[start : start + self.batch_size]), dtype=np.float32))
            if progress is not None:
                progress(min(start + self.batch_size, len(texts)), len(texts))
        return np.concatenate(parts)  # (n, dim) float32

    def _store(self, items: Sequence[ItemRecord]) -> tuple[int, int]:
        """Write the items; returns how many were created and the items counter before this write."""
        created = 0
        with self.db.session() as session:
            before = bump(session, ITEMS)
            existing = {}
            for start in range(0, len(items), 500):  # bounded IN lists
                chunk = [item.id for item in items[start : start + 500]]
                rows = session.scalars(select(Item).where(Item.id.in_(chunk)))
                existing.update({row.id: row for row in rows})
            for item in items:
                row = existing.get(item.id)
                if row is None:
                    row = Item(id=item.id)
                    session.add(row)
                    created += 1
                row.title, row.text = item.title, item.text
                row.categories, row.meta = list(item.categories), dict(item.metadata)
        return created, before

    def _apply(self, items: Sequence[ItemRecord], vectors: np.ndarray, removed: Sequence[str]) -> None:
        if items:
            self.index.upsert([item.id for item in items], vectors)
            self._hashes.update((item.id, text_hash(item.encoder_text)) for item in items)
        if removed:
            self.index.remove(removed)
            for item_id in removed:
                self._hashes.pop(item_id, None)

    def _load_file(self) -> bool:
        """Adopt the saved index when it matches this model; returns whether it had to be discarded."""
        saved = read_index_files(self.index_path, self.fingerprint, self.dim)
        if saved is not None:
            self.index, self._hashes = saved
        return saved is None

    def _changed(self) -> None:
        """After a write to the index (under the lock): save the files now, or have them saved shortly."""
        self._changes += 1
        if self.save_after_s == 0:
            self._save()
            return
        if self._saver is None:
            self._saver = threading.Timer(self.save_after_s, self._save_later)
            self._saver.daemon = True  # `close` saves at shutdown; a crash loses nothing (see the module)
            self._saver.start()

    def _save_later(self) -> None:
        """The background save: every write made since the last save, in one. Writes wait while the index
        is copied, under the lock, not while the copy is written to the files (seconds at 100,000 items);
        a write made meanwhile schedules the next save."""
        with self._write:
            if self._saver is not threading.current_thread():  # flushed, or rescheduled, meanwhile
                return
            self._saver = None
            if self._changes == self._saved:
                return
            snapshot = self._snapshot()
        try:
            self._write_files(snapshot)
        except OSError:  # the next write schedules another save; a restart re-embeds meanwhile
            logger.exception("could not save the item index to %s; it stays unsaved", self.index_path)

    def _save(self) -> None:
        """Write the index and its sidecar now, whatever they hold (under `_write`)."""
        self._write_files(self._snapshot(), force=True)

    def _snapshot(self) -> Snapshot:
        """A copy of the index and its hashes as they are (under `_write`, so they hold one moment)."""
        ids = self.index.ids()
        return Snapshot(self._changes, ids, self.index.get_many(ids), dict(self._hashes))

    def _write_files(self, snapshot: Snapshot, *, force: bool = False) -> None:
        """Write a snapshot to the index file and its sidecar, unless the files hold as new a one already
        (`force`: also then). Saves write one at a time, so an older snapshot never replaces a newer one."""
        with self._files:
            if snapshot.changes <= self._saved and not force:
                return
            write_index_files(self.index_path, self.fingerprint, self.dim, snapshot)
            self._saved = max(self._saved, snapshot.changes)
