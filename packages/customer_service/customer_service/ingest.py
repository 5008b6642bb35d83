"""Files into the knowledge base: FAQ tables (CSV, TSV, JSON Lines) and documents (Markdown, HTML, text).

A path may be one file or a folder, read recursively in name order. A table file's rows are FAQs; any other
supported file is a document whose id is its path relative to the folder (or its name), whose title is its
first heading (else its file name) and whose chunks replace the document's earlier ones. An ingest is all or
nothing: every file is read and checked before anything is written, and all of it is written in one
transaction, so a bad file (an empty page, an id the knowledge base refuses) leaves the knowledge base as it
was and names the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from customer_service.chunking import format_of
from customer_service.knowledge import DocumentIn, FaqIn, KnowledgeBase
from customer_service.retrieval_eval import read_faqs
from textcore import Conflict, InvalidInput

TABLES = (".csv", ".tsv", ".jsonl", ".ndjson")
DOCUMENTS = (".md", ".markdown", ".html", ".htm", ".txt")
HEADING = re.compile(r"^\s*#\s+(.+?)\s*#*\s*$|<h1[^>]*>(.*?)</h1>", re.IGNORECASE | re.MULTILINE | re.DOTALL)


@dataclass
class IngestReport:
    """What one ingest stored."""

    faqs: int = 0
    documents: int = 0
    chunks: int = 0
    files: list[str] = field(default_factory=list)


def ingest_path(kb: KnowledgeBase, path: Path, *, category: str = "") -> IngestReport:
    """Ingest a file or every supported file under a folder.

    Raises:
        InvalidInput: If the path does not exist, holds no supported file, or a file cannot be read.
    """
    if not path.exists():
        raise InvalidInput(f"expected a knowledge file or folder; found nothing at {path}")
    files = (
        sorted(p for p in path.rglob("*") if p.suffix.lower() in (*TABLES, *DOCUMENTS))
        if path.is_dir()
        else [path]
    )
    if not files:
        raise InvalidInput(f"expected {', '.join((*TABLES, *DOCUMENTS))} files under {path}; found none")
    faqs: list[FaqIn] = []
    documents: list[DocumentIn] = []
    for file in files:
        if file.suffix.lower() in TABLES:
            faqs += read_faqs(file)
        elif file.suffix.lower() in DOCUMENTS:
            document_id = file.relative_to(path).as_posix() if path.is_dir() else file.name
            text = file.read_text(encoding="utf-8", errors="replace")
            documents.append(
                DocumentIn(document_id, _title(text, file), text, format_of(file.name), category, str(file))
            )
        else:
            raise InvalidInput(f"expected one of {', '.join((*TABLES, *DOCUMENTS))}; found {file.name}")
    try:
        chunks = kb.put_many(faqs, documents)
    except (InvalidInput, Conflict) as exc:
        raise type(exc)(f"{exc.message} (nothing from {path} was stored)") from exc
    return IngestReport(
        faqs=len(faqs),
        documents=len(documents),
        chunks=sum(len(ids) for ids in chunks.values()),
        files=[str(file) for file in files],
    )


def _title(text: str, file: Path) -> str:
    match = HEADING.search(text[:20_000])
    heading = (match.group(1) or match.group(2)) if match else None
    title = re.sub(r"<[^>]+>", "", heading or "").strip()
    return title or file.stem.replace("_", " ").replace("-", " ").strip() or file.name
