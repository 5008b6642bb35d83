"""Stored documents: filtered listing, newest first, with keyset (cursor) pagination.

A cursor is the opaque, URL-safe base64 of the last row's ``(seen_at, id)``; the next page holds the rows
strictly older in that order. Unlike offsets, a cursor neither skips nor repeats rows when new documents
arrive between two pages (they are newer, so they sort before it).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from finance_sentiment.labels import FINANCE_LABELS
from finance_sentiment.schemas import DocumentOut, DocumentPage
from finance_sentiment.tables import MAX_ID, Document, DocumentTag
from finance_sentiment.vocabulary import NameIndex, Vocabulary
from textcore.errors import InvalidInput
from textcore.printable import check_printable
from textcore.sql import aware_utc

MAX_LIMIT = 500
_MAX_CURSOR_CHARS = 200


@dataclass(frozen=True)
class DocumentFilter:
    """Which documents to list, and which page.

    Attributes:
        source_id: Only documents of this source.
        topic: Only documents tagged with this topic.
        entity: Only documents tagged with this entity.
        label: Only documents classified with this label (e.g. "negative"), in any case.
        since: Only documents first seen at or after this time (timezone-aware).
        until: Only documents first seen before this time (timezone-aware).
        limit: Page size, 1..500.
        cursor: The `next_cursor` of the previous page; None for the first page.
    """

    source_id: int | None = None
    topic: str | None = None
    entity: str | None = None
    label: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    cursor: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidInput(f"expected a limit in 1..{MAX_LIMIT}, found {self.limit}")
        if self.source_id is not None and not 1 <= self.source_id <= MAX_ID:
            raise InvalidInput(f"expected a source_id in 1..{MAX_ID}, found {self.source_id}")
        # No stored name holds a control character; PostgreSQL would refuse a NUL in the query itself.
        for name in ("topic", "entity", "label"):
            value = getattr(self, name)
            if value is not None:
                check_printable(value, name)
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, aware_utc(name, value))
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise InvalidInput(
                f"expected since before until, found since={self.since.isoformat()} "
                f"until={self.until.isoformat()}"
            )


def list_documents(
    session: Session, where: DocumentFilter, vocabulary: Vocabulary | None = None
) -> tuple[list[Document], str | None]:
    """One page of documents matching `where`, newest first by ``(seen_at, id)``.

    The `topic` and `entity` filters are resolved like a rule's match (`finance_sentiment.vocabulary`): an
    alias, a ticker or another case of a configured entity or topic (of `vocabulary`), or another case of
    a source's tag, finds the stories tagged with its canonical name.

    Returns:
        The page (at most `where.limit` documents, tags loaded) and the cursor of the next page, or None
        when this page is the last.

    Raises:
        InvalidInput: The cursor was not produced by this function, or the label is unknown (none of the
            finance labels, and no stored story has it).
    """
    _require_known_label(session, where.label)
    # One row more than asked tells whether another page exists without a COUNT.
    query = (
        select(Document)
        .where(*_conditions(where, _tag_names(session, where, vocabulary)))
        .order_by(Document.seen_at.desc(), Document.id.desc())
        .limit(where.limit + 1)
    )
    rows = list(session.scalars(query))
    page = rows[: where.limit]
    next_cursor = encode_cursor(page[-1].seen_at, page[-1].id) if len(rows) > where.limit else None
    return page, next_cursor


def _require_known_label(session: Session, label: str | None) -> None:
    """Refuse a label that is none of the finance labels and that no stored story has: a misspelt one
    (``neg``) would otherwise answer an empty page, read as "no such stories".

    Raises:
        InvalidInput: The label is unknown.
    """
    if label is None or label.lower() in FINANCE_LABELS:
        return
    if not session.scalar(select(exists().where(func.lower(Document.label) == label.lower()))):
        raise InvalidInput(
            f"expected label to be one of {', '.join(FINANCE_LABELS)} (in any case) or the label of a stored "
            f"story, found {label!r}"
        )


def _tag_names(
    session: Session, where: DocumentFilter, vocabulary: Vocabulary | None
) -> dict[str, list[str]]:
    """Each tag filter's kind -> the stored names it means."""
    wanted = {kind: name for kind, name in (("topic", where.topic), ("entity", where.entity)) if name}
    if not wanted:
        return {}
    index = NameIndex.read(session, vocabulary)
    return {kind: index.resolve(kind, [name]).names for kind, name in wanted.items()}


def _conditions(where: DocumentFilter, tag_names: dict[str, list[str]]) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if where.source_id is not None:
        conditions.append(Document.source_id == where.source_id)
    if where.label is not None:  # in any case: the labels of one model differ by more than case
        conditions.append(func.lower(Document.label) == func.lower(where.label))
    if where.since is not None:
        conditions.append(Document.seen_at >= where.since)
    if where.until is not None:
        conditions.append(Document.seen_at < where.until)
    for kind, names in tag_names.items():
        tagged = select(DocumentTag.document_id).where(
            DocumentTag.document_id == Document.id, DocumentTag.kind == kind, DocumentTag.name.in_(names)
        )
        conditions.append(tagged.exists())
    if where.cursor is not None:
        seen_at, last_id = decode_cursor(where.cursor)
        conditions.append(
            or_(Document.seen_at < seen_at, and_(Document.seen_at == seen_at, Document.id < last_id))
        )
    return conditions


def encode_cursor(seen_at: datetime, document_id: int) -> str:
    """The opaque cursor pointing just after the document ``(seen_at, document_id)``."""
    raw = json.dumps([seen_at.isoformat(), document_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The ``(seen_at, id)`` inside a cursor made by `encode_cursor`.

    Raises:
        InvalidInput: The cursor is not one.
    """
    problem = f"expected a cursor returned as next_cursor by an earlier page, found {cursor[:60]!r}"
    if len(cursor) > _MAX_CURSOR_CHARS:
        raise InvalidInput(problem)
    try:
        value: Any = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        seen_text, document_id = value
        seen_at = datetime.fromisoformat(seen_text)
    except (binascii.Error, ValueError, TypeError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidInput(problem) from None
    if type(document_id) is not int or not 1 <= document_id <= MAX_ID:
        raise InvalidInput(problem)
    try:
        return aware_utc("time", seen_at), document_id
    except InvalidInput:  # naive or out of range: no page ever gave it
        raise InvalidInput(problem) from None


def document_out(document: Document) -> DocumentOut:
    """The response body of a document, its tags split into topics and entities (each sorted)."""
    return DocumentOut(
        id=document.id,
        source_id=document.source_id,
        url=document.url,
        title=document.title,
        text=document.text,
        published_at=document.published_at,
        seen_at=document.seen_at,
        label=document.label,
        scores=document.scores,
        sentiment=document.sentiment,
        topics=sorted(tag.name for tag in document.tags if tag.kind == "topic"),
        entities=sorted(tag.name for tag in document.tags if tag.kind == "entity"),
        model_version=document.model_version,
    )


def document_page(documents: list[Document], next_cursor: str | None) -> DocumentPage:
    """The response body of one page from `list_documents`."""
    return DocumentPage(items=[document_out(document) for document in documents], next_cursor=next_cursor)
