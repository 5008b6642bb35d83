"""Files into the knowledge base: FAQ tables (CSV, TSV, JSON Lines) and documents (Markdown, HTML, text).

A path may be one file or a folder, read recursively in name order. A table file's rows are FAQs; any other
supported file is a document whose title is its first heading (else its file name) and whose chunks replace
the earlier ones of the document with the same id. A table row whose `kind` is "chunk" (as
`customer-service export` writes a document: one row per stored chunk, with document_id, position, title,
text, category and source) is a document chunk, stored as it is rather than cut again: a document's exported
chunks replace its earlier ones and come back with the same ids and text (`category` is for documents cut
from files; such a chunk keeps its own). An ingest is all or nothing: every file is read and checked before
anything is written, and all of it is written in one transaction, so a bad file (an empty page, an id the
knowledge base refuses) leaves the knowledge base as it was and names the file. Text with a control character
other than tab, newline and carriage return (NUL, escape, form feed, ...) is such a bad file: it is refused,
naming the file and the row and column (tables) or the line and column (documents), rather than cleaned, as
the API refuses it (`textcore.printable`).

Document ids:
- a folder's documents: their path relative to the folder ("guides/travel.md");
- a single file: its file name ("travel.md"), so that ingesting it again updates it; or the id given
  (`document_id`), e.g. the one its folder's ingest gave it;
- a stored chunk's row (an export's): its document_id;
- `id_prefix` goes before any of them ("branch-a/" + "faq.md").
A file name is no unique key: /a/faq.md and then /b/faq.md are one id, and the second replaces the first. The
report tells documents added from documents replaced and warns when a document is replaced from another
file than it was stored from, or when a file already stored under another id is stored again.

A document's `source`, which clients see (`GET /v1/knowledge`), is the file as the operator named it: its path
relative to the folder ingested ("guides/travel.md"), or the file's name; never a server path. The server
file it was read from is kept apart (`origin`, shown nowhere) for those warnings. A source that is an
absolute path all the same (a chunk row of an export written before this was so) is cut when stored
(`entries.shown_source`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from customer_service.chunking import format_of
from customer_service.knowledge import ChunkIn, DocumentIn, FaqIn, KnowledgeBase
from customer_service.retrieval_eval import faq_id, faqs_from_rows
from textcore import Conflict, InvalidInput, read_table
from textcore.printable import RULE, control_character

TABLES = (".csv", ".tsv", ".jsonl", ".ndjson")
DOCUMENTS = (".md", ".markdown", ".html", ".htm", ".txt")
CHUNK_COLUMNS = ("document_id", "position", "title", "text", "category", "source")  # and "id", "kind"
FAQ_TEXTS = ("question", "answer", "source")  # a JSON Lines row's must be strings, as the API's are
HEADING = re.compile(r"^\s*#\s+(.+?)\s*#*\s*$|<h1[^>]*>(.*?)</h1>", re.IGNORECASE | re.MULTILINE | re.DOTALL)


@dataclass
class IngestReport:
    """What one ingest stored."""

    faqs: int = 0
    documents: int = 0
    chunks: int = 0
    files: list[str] = field(default_factory=list)
    documents_added: int = 0
    documents_replaced: int = 0
    replaced: list[str] = field(default_factory=list)  # ids of the documents replaced
    warnings: list[str] = field(default_factory=list)  # replacements from another source, files stored twice


def ingest_path(
    kb: KnowledgeBase,
    path: Path,
    *,
    category: str = "",
    document_id: str | None = None,
    id_prefix: str = "",
) -> IngestReport:
    """Ingest a file or every supported file under a folder.

    Args:
        kb: The knowledge base.
        path: A table or document file, or a folder of them.
        category: The documents' category.
        document_id: The id of the document when `path` is one document file (default: its file name).
        id_prefix: Put before every document id.

    Raises:
        InvalidInput: If the path does not exist, holds no supported file, or a file cannot be read or
            holds a control character; if `document_id` is given for anything but one document file.
    """
    if not path.exists():
        raise InvalidInput(f"expected a knowledge file or folder; found nothing at {path}")
    if document_id is not None and (path.is_dir() or path.suffix.lower() not in DOCUMENTS):
        raise InvalidInput(
            f"document id: expected one document file ({', '.join(DOCUMENTS)}) to give it to; found "
            f"{'the folder' if path.is_dir() else 'the file'} {path} (use the id prefix for several)"
        )
    files = (
        sorted(p for p in path.rglob("*") if p.suffix.lower() in (*TABLES, *DOCUMENTS))
        if path.is_dir()
        else [path]
    )
    if not files:
        raise InvalidInput(f"expected {', '.join((*TABLES, *DOCUMENTS))} files under {path}; found none")
    faqs: list[FaqIn] = []
    documents: list[DocumentIn] = []
    chunks: list[ChunkIn] = []
    for file in files:
        if file.suffix.lower() in TABLES:
            file_faqs, file_chunks = _table(file, id_prefix)
            faqs += file_faqs
            chunks += file_chunks
        elif file.suffix.lower() in DOCUMENTS:
            named = file.relative_to(path).as_posix() if path.is_dir() else file.name
            text = file.read_text(encoding="utf-8", errors="replace")
            if (found := control_character(text)) is not None:
                raise InvalidInput(f"{file}: {RULE}; found {found}")
            documents.append(
                DocumentIn(
                    id_prefix + (document_id or named), _title(text, file), text, format_of(file.name),
                    category, source=named, origin=str(file.resolve()),
                )
            )  # fmt: skip
        else:
            raise InvalidInput(f"expected one of {', '.join((*TABLES, *DOCUMENTS))}; found {file.name}")
    faqs = with_stored_ids(kb, faqs)
    stored = kb.document_sources() if documents or chunks else {}
    try:
        chunk_ids = kb.put_many(faqs, documents, chunks)
    except (InvalidInput, Conflict) as exc:
        raise type(exc)(f"{exc.message} (nothing from {path} was stored)") from exc
    replaced = [document_id for document_id in chunk_ids if document_id in stored]
    return IngestReport(
        faqs=len(faqs),
        documents=len(chunk_ids),
        chunks=sum(len(ids) for ids in chunk_ids.values()),
        files=[str(file) for file in files],
        documents_added=len(chunk_ids) - len(replaced),
        documents_replaced=len(replaced),
        replaced=replaced,
        warnings=_warnings(documents, stored),
    )


def _table(file: Path, id_prefix: str) -> tuple[list[FaqIn], list[ChunkIn]]:
    """A table file's FAQs, and its stored chunks (rows of kind "chunk"), their document ids prefixed."""
    faq_rows: list[tuple[int, dict[str, str]]] = []
    chunks: list[ChunkIn] = []
    for number, row in enumerate(read_table(file, strings=FAQ_TEXTS), start=1):
        if row.get("kind", "").strip() == "chunk":
            chunks.append(_chunk(file, number, row, id_prefix))
        else:
            faq_rows.append((number, row))
    faqs = faqs_from_rows(file, faq_rows) if faq_rows or not chunks else []  # chunks alone: no FAQ
    return faqs, chunks


def with_stored_ids(kb: KnowledgeBase, faqs: list[FaqIn]) -> list[FaqIn]:
    """FAQs given without an id (theirs derived from question and answer, `faq_id`) take the id of the one
    stored FAQ asking the same question, so that a row whose answer was edited replaces the stored answer
    rather than being stored beside it (both found for the question, offered side by side or the old one
    answered). With no such FAQ, or several, the derived id stays."""
    no_ids = [faq.id == faq_id(faq.question, faq.answer) for faq in faqs]
    questions = [faq.question for faq, no_id_given in zip(faqs, no_ids, strict=True) if no_id_given]
    stored = kb.faq_ids_by_question(questions) if questions else {}
    taken = {faq.id for faq in faqs}
    kept = []
    for faq, no_id_given in zip(faqs, no_ids, strict=True):
        ids = stored.get(faq.question, []) if no_id_given else []
        if len(ids) == 1 and ids[0] != faq.id and ids[0] not in taken:
            taken.add(ids[0])
            kept.append(replace(faq, id=ids[0]))
        else:
            kept.append(faq)
    return kept


def _chunk(file: Path, number: int, row: dict[str, str], id_prefix: str) -> ChunkIn:
    """A stored chunk from a table row (an export's), its text checked as an FAQ row's is."""
    for column in ("id", *CHUNK_COLUMNS):
        if (found := control_character(row.get(column, ""))) is not None:
            raise InvalidInput(f"{file}: row {number}, column {column!r}: {RULE}; found {found}")
    document_id, position = row.get("document_id", ""), row.get("position", "").strip()
    if not document_id or not (position.isascii() and position.isdigit()):
        raise InvalidInput(
            f"{file}: row {number} is a chunk: expected its document_id and a whole-number position; found "
            f"{document_id!r:.80} and {position!r:.20}"
        )
    given = row.get("id", "")
    if given and given != f"{document_id}#{int(position)}":
        raise InvalidInput(
            f"{file}: row {number}: expected the chunk id {document_id}#{int(position)} (its document_id, "
            f"'#', its position); found {given!r:.80}"
        )
    return ChunkIn(
        id_prefix + document_id, int(position), row.get("title", ""), row.get("text", ""),
        row.get("category", ""), row.get("source", ""),
    )  # fmt: skip


def _warnings(documents: list[DocumentIn], stored: dict[str, str]) -> list[str]:
    """Replacements from another file than the stored one; files already stored under another id (`stored`:
    where each stored document came from, `KnowledgeBase.document_sources`; the documents' `origin`)."""
    ids_by_origin: dict[str, list[str]] = {}
    for stored_id, origin in stored.items():
        if (file := _same_file(origin)) is not None:
            ids_by_origin.setdefault(file, []).append(stored_id)
    found = []
    for document in documents:
        before = stored.get(document.document_id)
        file = None if before is None else _same_file(before)
        if file is not None and file != document.origin:
            found.append(
                f"document {document.document_id!r} from {before} was replaced by {document.origin} "
                "(a single file is keyed by its file name: give --id or --id-prefix to keep both)"
            )
        others = [i for i in ids_by_origin.get(document.origin, []) if i != document.document_id]
        if before is None and others:
            found.append(
                f"{document.origin} is stored already as document {others[0]!r}; it is now stored as "
                f"{document.document_id!r} too (give --id {others[0]} to replace that one instead)"
            )
    return found


def _same_file(source: str) -> str | None:
    """A stored origin or source as an absolute path (URLs and "" unchanged); None for a relative name (a
    chunk restored from an export, which keeps no server path): which file it was is not known."""
    if not source or "://" in source:
        return source
    path = Path(source)
    return str(path.resolve()) if path.is_absolute() else None


def _title(text: str, file: Path) -> str:
    match = HEADING.search(text[:20_000])
    heading = (match.group(1) or match.group(2)) if match else None
    title = re.sub(r"<[^>]+>", "", heading or "").strip()
    return title or file.stem.replace("_", " ").replace("-", " ").strip() or file.name
