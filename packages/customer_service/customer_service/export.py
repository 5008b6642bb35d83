"""The knowledge base out to a file (`customer-service export`): for a backup, a review in a spreadsheet, a
move to another database or a diff between environments. `customer-service ingest` of the file into an empty
knowledge base gives back the same entries.

What a file holds:
- FAQs, as CSV or JSON Lines (by the file's suffix), with exactly the columns ingest reads: id, question,
  answer, category, source (the page an FAQ answers from, "" for none); in order of id.
- Documents, in JSON Lines only. A document's own text is not stored: only its chunks, cut from it with
  about 40 words of overlap and without its Markdown or HTML markup, so the original file cannot be given
  back. What is exported is each chunk as stored, one row per chunk: kind ("chunk"), id, document_id,
  position, title, text, category, source; in order of document id and position. Ingest stores such rows as
  they are, not cut again, so each document comes back with the same chunk ids, titles and text.
Not exported: when an entry was created or last changed (an ingest stamps its own times), and the search
index (built again from the text).

The entries are read a page at a time (keyset pages, each in its own short transaction, so writers are never
held up for long); the knowledge base's version is read before and after, and when a change came in between
the entries are read again (3 tries), so that a file is the copy of one version. The file is written beside
OUTPUT under a temporary name, flushed to disk and then renamed: OUTPUT is the whole export or is untouched.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Row, func, select, tuple_

from customer_service.database import Database
from customer_service.knowledge import database_version
from customer_service.tables import KnowledgeEntry
from textcore import Conflict, InvalidInput

FORMATS = {".csv": "csv", ".jsonl": "jsonl"}
KINDS = ("faq", "document", "all")
FAQ_COLUMNS = ("id", "question", "answer", "category", "source")
CHUNK_COLUMNS = ("kind", "id", "document_id", "position", "title", "text", "category", "source")
PAGE_SIZE = 1_000
TRIES = 3
Progress = Callable[[int], None]  # entries written so far


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What an export wrote."""

    output: str
    format: str  # csv | jsonl
    kind: str  # faq | document | all
    faqs: int
    documents: int
    chunks: int
    version: int  # the knowledge base's version the file is a copy of
    warnings: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line: how many entries went to which file."""
        faqs = _many(self.faqs, "FAQ")
        documents = f"{_many(self.documents, 'document')} ({_many(self.chunks, 'chunk')})"
        what = {"faq": faqs, "document": documents}.get(self.kind, f"{faqs} and {documents}")
        return f"exported {what} to {self.output} (knowledge base version {self.version})"


def export_knowledge(
    db: Database,
    output: Path,
    *,
    kind: str = "all",
    category: str | None = None,
    force: bool = False,
    page_size: int = PAGE_SIZE,
    progress: Progress | None = None,
) -> ExportReport:
    """Write the knowledge base's FAQs and/or documents to `output` (see the module's description).

    Args:
        db: The customer service's migrated database.
        output: The file to write: .csv (FAQs) or .jsonl (FAQs and document chunks).
        kind: "faq", "document" or "all".
        category: Only the entries of this category.
        force: Replace `output` if it exists.
        page_size: Entries read per query.
        progress: Called after each page with how many entries are written so far.

    Raises:
        InvalidInput: On another suffix, an unknown kind, documents asked of a CSV file (or, with kind "all",
            held by the knowledge base), an existing `output` without `force`, a missing folder.
        Conflict: If the knowledge base changed while it was read, three times in a row.
    """
    form = check_output(output, kind, force)
    if form == "csv" and kind == "all" and (held := _count(db, "chunk", category)):
        raise InvalidInput(
            f"{output}: a CSV file holds FAQs only, and the knowledge base holds "
            f"{_many(held, 'document chunk')}; expected a .jsonl file for them too, or --kind faq"
        )
    if page_size < 1:
        raise InvalidInput(f"page size: expected at least 1; found {page_size}")
    versions = []
    for _ in range(TRIES):
        version = database_version(db)
        handle, temporary = _temporary(output)
        try:
            with handle:
                written = _write(handle, db, form, kind, category, page_size, progress)
                handle.flush()
                os.fsync(handle.fileno())
            if database_version(db) == version:
                _place(temporary, output, force)
                counts, warnings = written.counts, _warning(written.padded)
                return ExportReport(str(output), form, kind, *counts, version, warnings)
            versions.append(version)
        finally:
            temporary.unlink(missing_ok=True)
    raise Conflict(
        f"expected the knowledge base to stay unchanged while it was read; it changed during each of {TRIES} "
        f"reads (from versions {', '.join(map(str, versions))}); nothing was written to {output}"
    )


def check_output(output: Path, kind: str, force: bool) -> str:
    """The file format ("csv" or "jsonl") `output` asks for, once it is known to suit `kind` and be writable.

    Raises:
        InvalidInput: As `export_knowledge`, for anything but what the knowledge base holds.
    """
    if kind not in KINDS:
        raise InvalidInput(f"kind: expected one of {', '.join(KINDS)}; found {kind!r}")
    form = FORMATS.get(output.suffix.lower())
    if form is None:
        raise InvalidInput(
            f"{output}: expected a file name ending in .csv (FAQs) or .jsonl (FAQs and documents); found "
            f"{output.suffix or 'no suffix'}"
        )
    if form == "csv" and kind == "document":
        raise InvalidInput(f"{output}: a CSV file holds FAQs only; expected a .jsonl file for documents")
    if not output.parent.is_dir():
        raise InvalidInput(
            f"{output}: expected an existing folder to write into; found no folder {output.parent}"
        )
    if output.is_dir():
        raise InvalidInput(f"{output}: expected a file name; found a folder")
    if output.exists() and not force:
        raise InvalidInput(f"{output}: expected a new file; it exists (--force replaces it)")
    return form


def _temporary(output: Path) -> tuple[IO[str], Path]:
    """A new file beside `output` (so that renaming it is atomic), with the permissions of a new file."""
    descriptor, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(descriptor, 0o666 & ~umask)  # mkstemp's 0600 would outlive the rename
    return os.fdopen(descriptor, "w", encoding="utf-8", newline=""), Path(name)


def _place(temporary: Path, output: Path, force: bool) -> None:
    """Rename the written file to `output`; without `force` never over a file that appeared meanwhile."""
    if force:
        temporary.replace(output)
    else:
        try:
            os.link(temporary, output)  # fails if `output` exists, where a rename would replace it
        except FileExistsError as exc:
            raise InvalidInput(f"{output}: expected a new file; it exists (--force replaces it)") from exc
        except OSError:  # a file system without hard links
            if output.exists():
                raise InvalidInput(
                    f"{output}: expected a new file; it exists (--force replaces it)"
                ) from None
            temporary.replace(output)
    if hasattr(os, "O_DIRECTORY"):  # the rename itself on disk (POSIX)
        folder = os.open(output.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


@dataclass(frozen=True, slots=True)
class _Written:
    counts: tuple[int, int, int]  # FAQs, documents, chunks
    padded: list[str]  # ids of the FAQs with a field ingest would strip


def _write(
    handle: IO[str], db: Database, form: str, kind: str, category: str | None, size: int,
    progress: Progress | None,
) -> _Written:  # fmt: skip
    """Write the entries."""
    write = _csv_writer(handle) if form == "csv" else _jsonl_writer(handle)
    faqs = documents = chunks = 0
    padded: list[str] = []
    if kind in ("faq", "all"):
        for page in _faq_pages(db, category, size):
            for faq in page:
                write(dict(zip(FAQ_COLUMNS, faq, strict=True)))
                if any(value != value.strip() for value in faq):
                    padded.append(faq[0])
            faqs += len(page)
            if progress is not None:
                progress(faqs)
    if kind in ("document", "all"):
        last = None
        for page in _chunk_pages(db, category, size):
            for chunk in page:
                write(dict(zip(CHUNK_COLUMNS, ("chunk", *chunk), strict=True)))
                documents += chunk.document_id != last
                last = chunk.document_id
            chunks += len(page)
            if progress is not None:
                progress(faqs + chunks)
    return _Written((faqs, documents, chunks), padded)


def _csv_writer(handle: IO[str]) -> Callable[[dict[str, Any]], None]:
    writer = csv.DictWriter(handle, fieldnames=FAQ_COLUMNS)  # RFC 4180: CRLF, fields quoted as needed
    writer.writeheader()
    return writer.writerow


def _jsonl_writer(handle: IO[str]) -> Callable[[dict[str, Any]], None]:
    def write(row: dict[str, Any]) -> None:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    return write


def _faq_pages(db: Database, category: str | None, size: int) -> Iterator[Sequence[Row[Any]]]:
    """FAQs (id, question, answer, category, source) in order of id, `size` at a time."""
    entry = KnowledgeEntry
    query = _of(select(entry.id, func.coalesce(entry.question, entry.title), entry.text, entry.category,
                       entry.source), "faq", category)  # fmt: skip
    return _pages(db, query, (entry.id,), size)


def _chunk_pages(db: Database, category: str | None, size: int) -> Iterator[Sequence[Row[Any]]]:
    """Chunks (id, document_id, position, title, text, category, source) by document and position."""
    entry = KnowledgeEntry
    columns = (entry.id, entry.document_id, entry.position, entry.title, entry.text, entry.category,
               entry.source)  # fmt: skip
    return _pages(db, _of(select(*columns), "chunk", category), (entry.document_id, entry.position), size)


def _pages(db: Database, query: Any, key: tuple[Any, ...], size: int) -> Iterator[Sequence[Row[Any]]]:
    """The rows of `query` in order of `key` (selected columns, unique together), `size` per short
    transaction; each page starts after the last row of the one before (keyset, not offset)."""
    query = query.order_by(*key).limit(size)
    last: tuple[Any, ...] | None = None
    while True:
        with db.session() as session:
            page = session.execute(query if last is None else query.where(tuple_(*key) > tuple_(*last))).all()
        if not page:
            return
        yield page
        last = tuple(page[-1]._mapping[column] for column in key)


def _of(query: Any, kind: str, category: str | None) -> Any:
    query = query.where(KnowledgeEntry.kind == kind)
    return query if category is None else query.where(KnowledgeEntry.category == category)


def _count(db: Database, kind: str, category: str | None) -> int:
    with db.session() as session:
        return int(session.scalar(_of(select(func.count()).select_from(KnowledgeEntry), kind, category)) or 0)


def _warning(padded: list[str]) -> tuple[str, ...]:
    """FAQs that an ingest of the file would not give back as stored: ingest strips each field's leading and
    trailing white space (the API and ingest store fields stripped; a program calling the library may not)."""
    if not padded:
        return ()
    shown = ", ".join(map(repr, padded[:3])) + (f" and {len(padded) - 3} more" if len(padded) > 3 else "")
    return (
        "FAQs with leading or trailing white space in a field, which an ingest of this file strips: "
        f"{len(padded)} ({shown})",
    )


def _many(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
