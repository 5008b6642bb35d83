"""`/v1/knowledge`: the knowledge base; every change is visible to the next chat request."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response

from customer_service.chunking import guess_format
from customer_service.deps import CurrentServiceDep, LimiterDep, ServiceDep
from customer_service.ingest import with_stored_ids
from customer_service.knowledge import MAX_OFFSET, FaqIn
from customer_service.retrieval_eval import faq_id
from customer_service.schemas import (
    ChangeOut,
    DocumentIn,
    EntryOut,
    EntryPage,
    FaqBody,
    FaqsIn,
    PassageOut,
)
from textcore import NotFound
from textcore.printable import check_printable

router = APIRouter(prefix="/v1/knowledge", tags=["knowledge"])
EntryIdPath = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^#]+$")]
AnyIdPath = Annotated[str, Path(min_length=1, max_length=210)]


@router.get("")
async def list_entries(
    service: CurrentServiceDep,
    limiter: LimiterDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    kind: Literal["faq", "chunk"] | None = None,
    category: Annotated[str | None, Query(max_length=200)] = None,
    document: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> EntryPage:
    """FAQs and document chunks, a page at a time (`offset` at most 10,000,000); `document` lists the chunks
    of one document, in order."""
    kb = service.kb
    rows = await limiter.run(kb.list, offset, limit, kind, category, document)
    total = await limiter.run(kb.count, kind, category, document)
    return EntryPage(items=[EntryOut(**asdict(r)) for r in rows], total=total, version=kb.version)


@router.post("/faqs")
async def upsert_faqs(body: FaqsIn, service: ServiceDep, limiter: LimiterDep) -> ChangeOut:
    """Create or replace FAQs in bulk (all or nothing); one without an id replaces the stored FAQ with its
    question (`with_stored_ids`)."""
    rows = [
        FaqIn(f.id or faq_id(f.question, f.answer), f.question, f.answer, f.category, f.source)
        for f in body.items
    ]
    rows = await limiter.run(with_stored_ids, service.kb, rows)
    stored = await limiter.run(service.kb.upsert_faqs, rows)
    return ChangeOut(stored=stored, ids=[r.id for r in rows], version=service.kb.version)


@router.put("/faqs/{entry_id:path}")  # FAQ ids may hold "/" too (POST and ingest store them)
async def put_faq(
    entry_id: EntryIdPath, body: FaqBody, service: ServiceDep, limiter: LimiterDep
) -> ChangeOut:
    """Create or replace one FAQ."""
    faq_id = _faq_id(entry_id)
    stored = await limiter.run(
        service.kb.upsert_faqs, [FaqIn(faq_id, body.question, body.answer, body.category, body.source)]
    )
    return ChangeOut(stored=stored, ids=[faq_id], version=service.kb.version)


def _faq_id(entry_id: str) -> str:
    """The FAQ id of the path, taken as one in a body is: refused with a control character (checked as
    sent, worded as the knowledge base words it), then stripped of surrounding whitespace."""
    check_printable(entry_id, f"id of FAQ {entry_id!r:.80}")
    return entry_id.strip()


@router.put("/documents/{document_id:path}")  # ids of ingested files hold "/"
async def put_document(
    document_id: EntryIdPath, body: DocumentIn, service: ServiceDep, limiter: LimiterDep
) -> ChangeOut:
    """Store a document (Markdown, HTML or text) as overlapping chunks, replacing its earlier chunks; one
    sent without its format is HTML when it is an HTML page, else Markdown when a line is a Markdown heading,
    else HTML when it holds an HTML block element (`guess_format`), else text."""
    kb = service.kb
    form = body.format or guess_format(body.text)
    ids = await limiter.run(
        kb.put_document, document_id, body.title, body.text, form, body.category, body.source
    )
    return ChangeOut(stored=len(ids), ids=ids, version=kb.version)


@router.get("/search")
async def search(
    service: CurrentServiceDep,
    limiter: LimiterDep,
    q: Annotated[str, Query(min_length=1, max_length=2_000)],
    k: Annotated[int, Query(ge=1, le=50)] = 5,
    mode: Literal["dense", "keyword", "hybrid", "rerank"] | None = None,
) -> list[PassageOut]:
    """What retrieval finds for a query (for operators checking the knowledge base)."""
    passages = await limiter.run(service.retriever.search, q, k, mode)
    return [PassageOut(**asdict(p)) for p in passages]


@router.get("/{entry_id:path}")
async def get_entry(entry_id: AnyIdPath, service: CurrentServiceDep, limiter: LimiterDep) -> EntryOut:
    """One FAQ or chunk (a document's id: 404 naming how to list its chunks)."""
    return EntryOut(**asdict(await limiter.run(service.kb.get, entry_id)))


@router.delete("/{entry_id:path}", status_code=204)
async def delete_entry(entry_id: AnyIdPath, service: ServiceDep, limiter: LimiterDep) -> Response:
    """Remove an FAQ, a chunk, or a whole document (by its id)."""
    removed = await limiter.run(service.kb.delete, [entry_id])
    if not removed:
        raise NotFound(f"expected an existing FAQ, chunk or document id; found nothing with id {entry_id!r}")
    return Response(status_code=204)
