"""Knowledge-base changes: each write is checked and prepared as a `Change` before anything is written.

A `Change` holds the passages to index (embedded before the SQL transaction, so a failed embedding writes
nothing), the SQL write to run in that transaction, and the ids it stores. `KnowledgeBase` applies them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from customer_service.chunking import chunk_document
from customer_service.entries import (
    MAX_POSITION,
    ChunkIn,
    DocumentIn,
    FaqIn,
    check_faq,
    check_id,
    shown_source,
)
from customer_service.search_index import Record
from customer_service.tables import ID_LENGTH, KnowledgeEntry
from textcore import Conflict, InvalidInput
from textcore.printable import check_printable

_MAX_IDS_PER_QUERY = 500  # bounded IN lists
# (kind, passage id, title, text, category, document id) -> what is indexed of the passage
RecordOf = Callable[[str, str, str, str, str, str | None], Record]


@dataclass(frozen=True, slots=True)
class Change:
    """A checked write, not applied yet: the records to index, the SQL to run, the ids it stores."""

    records: list[Record]
    write: Callable[[Session], list[str]]
    ids: list[str]


def faq_change(rows: Sequence[FaqIn], record: RecordOf) -> Change:
    """Create or replace these FAQs (checked: `check_faq`, each id once; clashes when written)."""
    for row in rows:
        check_faq(row)
    repeats = sorted(i for i, n in Counter(r.id for r in rows).items() if n > 1)
    if repeats:
        raise InvalidInput(f"expected each FAQ id once; repeated: {repeats[:10]!r}")
    records = [record("faq", f.id, f.question, f.answer, f.category, None) for f in rows]

    def write(session: Session) -> list[str]:
        ids = [row.id for row in rows]
        existing = {e.id: e for e in stored_rows(session, KnowledgeEntry.id, ids)}
        clash = [e.id for e in existing.values() if e.kind != "faq"]
        clash += sorted({e.document_id or "" for e in stored_rows(session, KnowledgeEntry.document_id, ids)})
        if clash:
            raise Conflict(f"expected FAQ ids not used by documents or chunks; found {clash[:10]!r}")
        for row in rows:
            entry = existing.get(row.id) or KnowledgeEntry(
                id=row.id, kind="faq", position=0, source="", origin=""
            )
            entry.title, entry.question, entry.text = row.question, row.question, row.answer
            entry.category, entry.source = row.category, row.source
            session.add(entry)
        return []

    return Change(records, write, [r.id for r in rows])


def document_change(document: DocumentIn, record: RecordOf, max_words: int, overlap_words: int) -> Change:
    """Store a document as chunks (cut by `chunking.chunk_document`), in place of its earlier chunks."""
    document_id = document.document_id
    check_id(document_id, "document_id", ID_LENGTH - 10)
    for name in ("document_id", "title", "text", "category", "source"):
        check_printable(getattr(document, name), f"{name} of document {document_id!r:.80}")
    chunks = chunk_document(
        document.text,
        format=document.format,
        title=document.title,
        max_words=max_words,
        overlap_words=overlap_words,
    )
    if not chunks:
        raise InvalidInput(f"expected a document with text; {document_id!r} ({document.format}) has none")
    return chunks_change(
        document_id,
        [
            ChunkIn(
                document_id, c.position, c.title, c.text, document.category, document.source, document.origin
            )
            for c in chunks
        ],
        record,
    )


def restore_change(document_id: str, chunks: Sequence[ChunkIn], record: RecordOf) -> Change:
    """Store a document's chunks as given (an export's rows), checked, in place of its earlier chunks."""
    check_id(document_id, "document_id", ID_LENGTH - 10)
    repeats = sorted(p for p, n in Counter(c.position for c in chunks).items() if n > 1)
    if repeats:
        raise InvalidInput(
            f"expected each chunk position once per document; document {document_id!r:.80} repeats "
            f"{repeats[:10]!r}"
        )
    for chunk in chunks:
        where = f"chunk {document_id!r:.80}#{chunk.position}"
        if not isinstance(chunk.position, int) or not 0 <= chunk.position <= MAX_POSITION:
            raise InvalidInput(
                f"position: expected a whole number from 0 to {MAX_POSITION}; found "
                f"{chunk.position!r:.80} in document {document_id!r:.80}"
            )
        if not isinstance(chunk.text, str) or not chunk.text.strip():
            raise InvalidInput(f"text: expected non-empty text for {where}; found {chunk.text!r:.80}")
        if not isinstance(chunk.category, str) or len(chunk.category) > ID_LENGTH:
            raise InvalidInput(
                f"category: expected text of at most {ID_LENGTH} characters for {where}; found "
                f"{chunk.category!r:.80}"
            )
        for name in ("title", "text", "category", "source"):
            check_printable(getattr(chunk, name), f"{name} of {where}")
    return chunks_change(document_id, sorted(chunks, key=lambda c: c.position), record)


def chunks_change(document_id: str, chunks: Sequence[ChunkIn], record: RecordOf) -> Change:
    """Store `chunks` (checked) as the document's, in place of its earlier chunks."""
    ids = [f"{document_id}#{chunk.position}" for chunk in chunks]
    records = [
        record("chunk", i, c.title, c.text, c.category, document_id) for i, c in zip(ids, chunks, strict=True)
    ]

    def write(session: Session) -> list[str]:
        if session.get(KnowledgeEntry, document_id) is not None:
            raise Conflict(f"expected a document id not used by an FAQ; found FAQ {document_id!r}")
        old = stored_rows(session, KnowledgeEntry.document_id, [document_id])
        for entry in old:
            session.delete(entry)
        session.flush()  # the DELETEs before the INSERTs of the same ids
        for i, c in zip(ids, chunks, strict=True):
            entry = KnowledgeEntry(id=i, kind="chunk", title=c.title, question=None, text=c.text)
            entry.category, entry.document_id, entry.position = c.category, document_id, c.position
            entry.source, entry.origin = _source_and_origin(c, document_id)
            session.add(entry)
        return [e.id for e in old if e.id not in set(ids)]

    return Change(records, write, ids)


def _source_and_origin(chunk: ChunkIn, document_id: str) -> tuple[str, str]:
    """The chunk's source as clients see it and its origin: a source that is an absolute server path is
    shown cut (`shown_source`), the path kept as its origin."""
    shown = shown_source(chunk.source, document_id)
    return (chunk.source, chunk.origin) if shown is None else (shown, chunk.origin or chunk.source)


def stored_rows(session: Session, column: Any, values: Sequence[str]) -> list[KnowledgeEntry]:
    """The entries whose `column` is one of `values` (queried in bounded IN lists)."""
    found: list[KnowledgeEntry] = []
    for start in range(0, len(values), _MAX_IDS_PER_QUERY):
        part = list(values[start : start + _MAX_IDS_PER_QUERY])
        found.extend(session.scalars(select(KnowledgeEntry).where(column.in_(part))))
    return found
