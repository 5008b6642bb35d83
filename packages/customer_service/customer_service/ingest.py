"""Files into the knowledge base: FAQ tables (CSV, TSV, JSON Lines) and documents (Markdown, HTML, text).

A path may be one file or a folder, read recursively in name order. A table file's rows are FAQs; any other
supported file is a document whose id is its path relative to the folder (or its name), whose title is its
first heading (else its file name) and whose chunks replace the document's earlier ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from customer_service.chunking import format_of
from customer_service.knowledge import KnowledgeBase
from customer_service.retrieval_eval import read_faqs
from textcore import InvalidInput

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
    report = IngestReport()
    for file in files:
        if file.suffix.lower() in TABLES:
            report.faqs += kb.upsert_faqs(read_faqs(file))
        elif file.suffix.lower() in DOCUMENTS:
            document_id = file.relative_to(path).as_posix() if path.is_dir() else file.name
            text = file.read_text(encoding="utf-8", errors="replace")
            chunks = kb.put_document(
                document_id, _title(text, file), text, format_of(file.name), category, source=str(file)
            )
            report.documents += 1
            report.chunks += len(chunks)
        else:
            raise InvalidInput(f"expected one of {', '.join((*TABLES, *DOCUMENTS))}; found {file.name}")
        report.files.append(str(file))
    return report


def _title(text: str, file: Path) -> str:
    match = HEADING.search(text[:20_000])
    heading = (match.group(1) or match.group(2)) if match else None
    title = re.sub(r"<[^>]+>", "", heading or "").strip()
    return title or file.stem.replace("_", " ").replace("-", " ").strip() or file.name
