"""`/v1/documents`: stored stories with their sentiment, newest first, filtered and paged by cursor."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from finance_sentiment import documents
from finance_sentiment.deps import MonitorDep, RowId, RowIdFilter
from finance_sentiment.schemas import DocumentOut, DocumentPage
from finance_sentiment.tables import Document
from textcore import NotFound

router = APIRouter(prefix="/v1/documents", tags=["documents"])
Name = Annotated[str | None, Query(max_length=200)]


@router.get("")
def list_documents(
    monitor: MonitorDep,
    source_id: RowIdFilter = None,
    topic: Name = None,
    entity: Name = None,
    label: Annotated[str | None, Query(max_length=40)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DocumentPage:
    """Stories, newest first; pass `next_cursor` back as `cursor` for the next page. `topic` and `entity`
    may be an alias, a ticker or another case of the tag's name."""
    query = documents.DocumentFilter(source_id, topic, entity, label, since, until, limit, cursor)
    with monitor.db.session() as session:
        rows, next_cursor = documents.list_documents(session, query, monitor.vocabulary)
        return DocumentPage(items=[documents.document_out(row) for row in rows], next_cursor=next_cursor)


@router.get("/{document_id}")
def get_document(document_id: RowId, monitor: MonitorDep) -> DocumentOut:
    """One stored story."""
    with monitor.db.session() as session:
        row = session.get(Document, document_id)
        if row is None:
            raise NotFound(f"expected an existing document id, found no document with id {document_id}")
        return documents.document_out(row)
