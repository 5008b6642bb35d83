"""The knowledge base: FAQ entries and document chunks in SQL, searchable by meaning (faiss) and by keyword.

The database is the source of truth. Every change is one SQL transaction that also bumps
`KnowledgeState.version`; then the in-memory search index (vectors and BM25, `search_index.SearchIndex`)
is updated, visible to the next search, and saved atomically to ``index_dir/knowledge.index`` with the
version and a hash of each passage's text beside it in ``index_dir/knowledge.json``. `sync` (run by `open`)
loads the saved index and embeds only the passages whose text it does not hold: none when it is current,
everything when it is missing or was built by another encoder.

What is embedded and keyword-indexed per passage: an FAQ's answer (preceded by its question when
`index_questions`), a chunk's title then its text.

Threads: searches run concurrently with a writer (see `search_index`). Writers are serialised by one lock;
embedding happens under it, before the SQL transaction, so a failed embedding writes nothing.

What is given and stored, and the rules ids and fields must pass: `entries`. How each write is checked and
prepared before it is applied here: `knowledge_changes`.
"""

from __future__ import annotations

import builtins
import functools
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from customer_service.database import Database
from customer_service.entries import ChunkIn, DocumentIn, Entry, FaqIn, entry_of
from customer_service.knowledge_changes import (
    Change,
    document_change,
    faq_change,
    restore_change,
    stored_rows,
)
from customer_service.search_index import Passage, Record, SearchIndex, encoder_fingerprint
from customer_service.tables import KINDS, KnowledgeEntry, KnowledgeState
from textcore import Encoder, InvalidInput, NotFound

__all__ = ["MAX_OFFSET", "ChunkIn", "DocumentIn", "Entry", "FaqIn", "KnowledgeBase", "Passage"]

MAX_OFFSET = 10_000_000  # of a listing: beyond any knowledge base, and within every database's integers
Progress = Callable[[int, int], None]  # (done, total)


class KnowledgeBase:
    """FAQs and document chunks in the database, their vectors in faiss and their terms in BM25.

    Args:
        db: The migrated database.
        encoder: Embeds passages and queries.
        index_dir: Folder of the saved index and its sidecar (created).
        index_questions: Index an FAQ's question with its answer (the app); False indexes answers only.
        max_words: The most words in a document chunk.
        overlap_words: About how many words consecutive chunks share.
        fingerprint: Identifies the encoder's model (default: `search_index.encoder_fingerprint`).
    """

    def __init__(
        self,
        db: Database,
        encoder: Encoder,
        index_dir: Path,
        *,
        index_questions: bool = True,
        max_words: int = 180,
        overlap_words: int = 40,
        fingerprint: str | None = None,
    ) -> None:
        self.db, self.encoder, self.index_dir = db, encoder, Path(index_dir)
        self.index_questions, self.max_words, self.overlap_words = index_questions, max_words, overlap_words
        self.fingerprint = fingerprint or encoder_fingerprint(encoder)
        settings = {"model": self.fingerprint, "index_questions": index_questions}
        self._index = SearchIndex(encoder.dim, self.index_dir, settings)
        # a query is often embedded twice in a row (search, then relevance): keep recent query vectors
        self._query_vector: Callable[[str], np.ndarray] = functools.lru_cache(maxsize=256)(self._embed_query)
        self._write = threading.Lock()
        self._loaded = False  # whether the saved index was read (the first sync does it)

    def forget_queries(self) -> None:
        """Drop the recent queries kept with their vectors (after a conversation is erased: its messages
        were queries, and nothing of it may stay, in memory either)."""
        self._query_vector.cache_clear()  # type: ignore[attr-defined]

    @classmethod
    def open(
        cls,
        db: Database,
        encoder: Encoder,
        index_dir: Path,
        *,
        index_questions: bool = True,
        max_words: int = 180,
        overlap_words: int = 40,
        fingerprint: str | None = None,
        progress: Progress | None = None,
    ) -> KnowledgeBase:
        """A knowledge base (arguments as for the constructor), its index loaded and brought up to date."""
        kb = cls(
            db,
            encoder,
            index_dir,
            index_questions=index_questions,
            max_words=max_words,
            overlap_words=overlap_words,
            fingerprint=fingerprint,
        )
        kb.sync(progress)
        return kb

    @property
    def version(self) -> int:
        """The knowledge base version the in-memory index reflects."""
        return self._index.version

    def __len__(self) -> int:
        return len(self._index)

    def sync(self, progress: Progress | None = None) -> int:
        """Bring the index in line with the database.

        The first call loads the saved index and embeds what changed since it was saved; later calls (e.g.
        on a timer, when replicas share one database) look again only when the database's version differs.

        Returns:
            How many passages were embedded.
        """
        with self._write:
            if self._loaded and database_version(self.db) == self._index.version:
                return 0
            return self._sync(progress, load=not self._loaded)

    def refresh(self) -> int:
        """Catch up with changes another process made (the CLI, another replica on the same database).

        One read of the database's version; a `sync` only when it differs from the index's. Run before each
        request that reads the knowledge base, so such changes are visible to the next request.

        Returns:
            How many passages were embedded.
        """
        if self._loaded and database_version(self.db) == self._index.version:
            return 0
        return self.sync()

    # ------------------------------------------------------------------------------------------ reads

    def get(self, entry_id: str) -> Entry:
        """One stored entry.

        Raises:
            NotFound: If no FAQ or chunk has this id.
        """
        with self.db.session() as session:
            row = session.get(KnowledgeEntry, entry_id)
            if row is None:
                chunks = session.scalar(_filtered(select(func.count()), None, None, entry_id))
                if chunks:  # a document's id: its chunks are the entries
                    raise NotFound(
                        f"{entry_id!r} is a document of {chunks} chunk(s), not one entry: list them with GET "
                        f"/v1/knowledge?document=<its id>, or read one by its chunk id ({entry_id}#0, ...)"
                    )
                raise NotFound(f"expected an existing knowledge entry id; found no entry {entry_id!r}")
            return entry_of(row)

    def list(
        self,
        offset: int = 0,
        limit: int = 50,
        kind: str | None = None,
        category: str | None = None,
        document: str | None = None,
    ) -> builtins.list[Entry]:
        """Entries in order of document (an FAQ is its own), then chunk position; optionally filtered by kind,
        category and the document whose chunks they are."""
        if not 0 <= offset <= MAX_OFFSET or limit < 1:
            raise InvalidInput(
                f"expected 0 <= offset <= {MAX_OFFSET} and limit >= 1; found {offset}, {limit}"
            )
        group = func.coalesce(KnowledgeEntry.document_id, KnowledgeEntry.id)
        query = _filtered(select(KnowledgeEntry), kind, category, document)
        query = query.order_by(group, KnowledgeEntry.position, KnowledgeEntry.id).offset(offset).limit(limit)
        with self.db.session() as session:
            return [entry_of(row) for row in session.scalars(query)]

    def count(self, kind: str | None = None, category: str | None = None, document: str | None = None) -> int:
        """How many entries are stored, optionally of one kind, category and/or document."""
        query = _filtered(select(func.count()).select_from(KnowledgeEntry), kind, category, document)
        with self.db.session() as session:
            return int(session.scalar(query) or 0)

    def document_sources(self) -> dict[str, str]:
        """Each stored document's id and where its chunks came from: the server file ingest read (`origin`),
        else their source (a URL or name given with the document)."""
        query = select(KnowledgeEntry.document_id, KnowledgeEntry.origin, KnowledgeEntry.source).where(
            KnowledgeEntry.kind == "chunk"
        )
        with self.db.session() as session:
            found = session.execute(query.distinct())
            return {str(i): origin or source for i, origin, source in found if i is not None}

    def sources_of(self, ids: Sequence[str]) -> dict[str, str]:
        """The source (a URL or name, as clients see it) of each of these entries that has one, by id: a
        document's chunks carry the document's; an FAQ its own, when given one."""
        if not ids:
            return {}
        query = select(KnowledgeEntry.id, KnowledgeEntry.source).where(
            KnowledgeEntry.id.in_(builtins.list(dict.fromkeys(ids))), KnowledgeEntry.source != ""
        )
        with self.db.session() as session:
            return {str(i): str(source) for i, source in session.execute(query)}

    def faq_ids_by_question(self, questions: Sequence[str]) -> dict[str, builtins.list[str]]:
        """The ids of the stored FAQs asking each of these questions (exactly as stored), by question."""
        found: dict[str, builtins.list[str]] = {}
        with self.db.session() as session:
            for row in stored_rows(session, KnowledgeEntry.question, builtins.list(dict.fromkeys(questions))):
                if row.kind == "faq" and row.question is not None:
                    found.setdefault(row.question, []).append(row.id)
        return found

    def dense(self, query: str, k: int) -> builtins.list[Passage]:
        """The `k` passages nearest to `query` in embedding space, best first, scored by cosine."""
        return self._index.dense(self._query_vector(_query(query)), k)

    def query_vectors(self, queries: Sequence[str]) -> np.ndarray:
        """(len(queries), dim) float32 L2-normalised embeddings of queries, through the cache `dense` and
        `similarities` use (a query embedded here is not embedded again to search for it)."""
        rows = [self._query_vector(_query(q)) for q in queries]
        return np.stack(rows) if rows else np.zeros((0, self.encoder.dim), dtype=np.float32)

    def similarities(self, query: str, ids: Sequence[str]) -> builtins.list[float]:
        """The cosine similarity of `query` with each passage, in order (0.0 for an id not indexed)."""
        return self._index.similarities(self._query_vector(_query(query)), ids)

    def keyword(self, query: str, k: int) -> builtins.list[Passage]:
        """Up to `k` passages sharing terms with `query`, best first, scored by BM25."""
        return self._index.keyword(_query(query), k)

    def passages(self, ids: Sequence[str]) -> builtins.list[Passage]:
        """The indexed passages with these ids, in order, scored 0 (ids no longer indexed are left out)."""
        records = (self._index.record(passage_id) for passage_id in ids)
        return [record.passage for record in records if record is not None]

    def passage_text(self, passage: Passage) -> str:
        """The text indexed for a passage (embedded and keyword-indexed; the re-ranker reads
        `retrieval.reranker_passage` instead)."""
        record = self._index.record(passage.id)
        return (
            record.indexed if record is not None else self._indexed(passage.kind, passage.title, passage.text)
        )

    # ----------------------------------------------------------------------------------------- writes

    def upsert_faqs(self, rows: Sequence[FaqIn]) -> int:
        """Create or replace FAQs.

        Returns:
            How many FAQs were stored (created or replaced).

        Raises:
            InvalidInput: On an empty field, an overlong or '#'-containing id, an id given twice, or a
                control character other than tab, newline and carriage return (`printable`).
            Conflict: If an id is a document chunk's id or a document's id.
        """
        if rows:
            self._apply([faq_change(rows, self._record)])
        return len(rows)

    def put_document(
        self, document_id: str, title: str, text: str, format: str, category: str = "", source: str = ""
    ) -> builtins.list[str]:
        """Store a document as chunks, replacing its earlier chunks.

        Returns:
            The chunk ids, f"{document_id}#{position}", in order.

        Raises:
            InvalidInput: On a bad id, an unknown format, a document without text, or a control character
                other than tab, newline and carriage return in any field (`printable`).
            Conflict: If `document_id` is an FAQ's id.
        """
        document = DocumentIn(document_id, title, text, format, category, source)
        change = document_change(document, self._record, self.max_words, self.overlap_words)
        self._apply([change])
        return change.ids

    def put_many(
        self, faqs: Sequence[FaqIn], documents: Sequence[DocumentIn], chunks: Sequence[ChunkIn] = ()
    ) -> dict[str, builtins.list[str]]:
        """Store FAQs and documents together, all or nothing: every one is checked (ids, text, clashes)
        before anything is written, and they are written in one transaction.

        `chunks` are documents given as their stored chunks (`ChunkIn`, an export's rows): each document's
        chunks replace its earlier ones, as a document's do, and are stored as given rather than cut again.

        Returns:
            Each document's chunk ids, by document id (the documents', then those of `chunks`).

        Raises:
            InvalidInput: As `upsert_faqs` and `put_document`, naming the first bad FAQ, document or chunk;
                also a document id given twice (as a document, or as a document and chunks), a chunk
                position given twice in one document, or a chunk position outside 0 to 999,999,999.
            Conflict: As `upsert_faqs` and `put_document`.
        """
        restored: dict[str, builtins.list[ChunkIn]] = {}
        for chunk in chunks:
            restored.setdefault(chunk.document_id, []).append(chunk)
        given = [d.document_id for d in documents] + builtins.list(restored)
        repeats = sorted(i for i, n in Counter(given).items() if n > 1)
        if repeats:
            raise InvalidInput(f"expected each document id once; repeated: {repeats[:10]!r}")
        stored = [
            document_change(document, self._record, self.max_words, self.overlap_words)
            for document in documents
        ]
        stored += [restore_change(i, rows, self._record) for i, rows in restored.items()]
        changes = ([faq_change(faqs, self._record)] if faqs else []) + stored
        if changes:
            self._apply(changes)
        return {document_id: change.ids for document_id, change in zip(given, stored, strict=True)}

    def _apply(self, changes: Sequence[Change]) -> None:
        """Write prepared changes in one transaction (see `_change`)."""

        def write(session: Session) -> builtins.list[str]:
            removed: builtins.list[str] = []
            for change in changes:
                removed += change.write(session)
                session.flush()  # the next change's clash checks see this one's rows
            return removed

        self._change([r for change in changes for r in change.records], write)

    def delete(self, ids: Sequence[str]) -> int:
        """Remove entries: an FAQ or chunk id removes that entry, a document id all its chunks.

        Returns:
            How many entries were removed (unknown ids are ignored).
        """
        return len(self.delete_reporting(ids)[0])

    def delete_reporting(self, ids: Sequence[str]) -> tuple[builtins.list[str], builtins.list[str]]:
        """`delete`, saying what it did: the ids of the entries removed, and the given ids that named no
        entry or document (in the order given)."""
        if isinstance(ids, str):
            raise InvalidInput(f"ids: expected a sequence of ids; found the string {ids!r:.80}")
        wanted = builtins.list(dict.fromkeys(ids))
        removed: builtins.list[str] = []
        unknown: builtins.list[str] = builtins.list(wanted)

        def write(session: Session) -> builtins.list[str]:
            entries = {e.id: e for e in stored_rows(session, KnowledgeEntry.id, wanted)}
            entries.update((e.id, e) for e in stored_rows(session, KnowledgeEntry.document_id, wanted))
            for entry in entries.values():
                session.delete(entry)
            named = set(entries).union(e.document_id for e in entries.values() if e.document_id)
            removed[:] = entries
            unknown[:] = [i for i in wanted if i not in named]
            return removed

        if wanted:
            self._change([], write, only_if=lambda: bool(removed))
        return removed, unknown

    # -------------------------------------------------------------------------------------- internals

    def _indexed(self, kind: str, title: str, text: str) -> str:
        if kind == "faq" and not self.index_questions:
            return text
        return f"{title}\n{text}" if title else text

    def _record(
        self, kind: str, passage_id: str, title: str, text: str, category: str, document_id: str | None
    ) -> Record:
        passage = Passage(passage_id, kind, title, text, category, document_id, 0.0)
        return Record(passage, self._indexed(kind, title, text))

    def _change(
        self,
        records: Sequence[Record],
        write: Callable[[Session], builtins.list[str]],
        only_if: Callable[[], bool] | None = None,
    ) -> None:
        """Embed `records`, run `write` (it returns removed ids) with the version bump, update the index.

        `only_if`, asked after `write`, can call the change off (nothing is committed then).
        """
        with self._write:
            embedded = self._index.to_embed(records)
            vectors = self._embed([r.indexed for r in embedded])  # (n, dim) float32
            with self.db.session() as session:
                removed = write(session)
                if only_if is not None and not only_if():
                    return
                previous, version = _bump(session)
            stale = previous != self._index.version  # another process changed the database meanwhile
            self._index.apply(version, records, embedded, vectors, removed)
            if stale:
                self._sync(None, load=False)
            else:
                self._index.save()

    def _sync(self, progress: Progress | None, *, load: bool) -> int:
        """Re-read every entry; embed the passages whose text the vectors do not hold yet.

        Vectors saved for exactly the database's version by another process sharing the index folder (the
        CLI after an ingest) are adopted rather than embedded again.
        """
        with self.db.session() as session:
            version = _version_in(session)
            rows = builtins.list(session.scalars(select(KnowledgeEntry)))
        loaded = self._index.load() if load or self._index.saved_version() == version else True
        self._loaded = True
        records = [self._record(r.kind, r.id, r.title, r.text, r.category, r.document_id) for r in rows]
        embedded = self._index.to_embed(records)
        vectors = self._embed([r.indexed for r in embedded], progress)
        before = len(self._index)
        self._index.apply(version, records, embedded, vectors, complete=True)
        if not loaded or embedded or before != len(self._index) or self._index.saved_version() != version:
            self._index.save()
        return len(embedded)

    def _embed_query(self, query: str) -> np.ndarray:
        vector: np.ndarray = self.encoder.encode([query])[0]  # (dim,) float32, L2-normalised
        vector.flags.writeable = False  # shared through the cache
        return vector

    def _embed(self, texts: builtins.list[str], progress: Progress | None = None) -> np.ndarray:
        parts = [np.zeros((0, self.encoder.dim), dtype=np.float32)]
        step = self.encoder.batch_size * 4
        for start in range(0, len(texts), step):
            parts.append(self.encoder.encode(texts[start : start + step]))
            if progress is not None:
                progress(min(start + step, len(texts)), len(texts))
        return np.concatenate(parts)  # (n, dim) float32, L2-normalised


# ------------------------------------------------------------------------------------------ helpers


def _version_in(session: Session) -> int:
    return int(session.scalar(select(KnowledgeState.version).where(KnowledgeState.id == 1)) or 0)


def database_version(db: Database) -> int:
    """The knowledge base's version as stored (one short read)."""
    with db.session() as session:
        return _version_in(session)


def _bump(session: Session) -> tuple[int, int]:
    """Increment the knowledge base version in this transaction; returns (previous, new)."""
    state = session.get(KnowledgeState, 1, with_for_update=True)
    if state is None:
        state = KnowledgeState(id=1, version=0)
        session.add(state)
    previous = state.version or 0
    state.version = previous + 1
    return previous, previous + 1


def _filtered(query: Any, kind: str | None, category: str | None, document: str | None = None) -> Any:
    if kind is not None:
        if kind not in KINDS:
            raise InvalidInput(f"kind: expected one of {', '.join(KINDS)}; found {kind!r}")
        query = query.where(KnowledgeEntry.kind == kind)
    if category is not None:
        query = query.where(KnowledgeEntry.category == category)
    if document is not None:
        query = query.where(KnowledgeEntry.document_id == document)
    return query


def _query(query: str) -> str:
    if not isinstance(query, str) or not query.strip():
        raise InvalidInput(f"query: expected non-empty text; found {query!r:.80}")
    return query
