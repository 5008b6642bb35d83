"""`/v1/items`: the catalog. Upserts embed the items (in the worker pool) and are recommendable at once.

Query parameters follow `textcore.web.query`: only the documented ones, each once. An item id in a path
follows the rule of ids in bodies: surrounding whitespace is stripped, and it may hold ``/`` (sent as is or
as ``%2F``), so every stored item can be read, replaced and deleted by its id. A PUT's id is a new id
(`recommender.schemas.ItemId`: no invisible format character); a GET's or DELETE's names a stored item
(`StoredId`), so one stored before that rule can still be read and deleted.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from recommender.deps import LimiterDep, RecommenderDep
from recommender.item_records import ItemRecord, StoredItem
from recommender.schemas import ItemBody, ItemId, ItemOut, ItemPage, ItemsIn, StoredId, UpsertOut
from recommender.serving import Recommender
from textcore.printable import Printable

router = APIRouter(prefix="/v1/items", tags=["items"])
ItemIdPath = Annotated[ItemId, Path(description="The item's id (1-200 characters; may contain '/').")]
StoredIdPath = Annotated[StoredId, Path(description="The item's id (1-200 characters; may contain '/').")]


@router.post("")
async def upsert_items(body: ItemsIn, recommender: RecommenderDep, limiter: LimiterDep) -> UpsertOut:
    """Create or replace items in bulk (all or nothing)."""
    report = await limiter.run(recommender.upsert_items, [item.record(item.id) for item in body.items])
    return UpsertOut(created=report.created, updated=report.updated, embedded=report.embedded)


class ItemsQuery(BaseModel):
    """The query of `GET /v1/items`; any other parameter (a misspelt `limt=`, a guessed filter) is a 422
    naming it, not the first page unfiltered."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(100, ge=1, le=1000)
    cursor: Annotated[str | None, Field(max_length=200), Printable] = None


@router.get("")
def list_items(recommender: RecommenderDep, query: Annotated[ItemsQuery, Query()]) -> ItemPage:
    """Items in id order; pass `next_cursor` back as `cursor` for the next page. An unknown query parameter,
    or one sent twice, is a 422 naming it."""
    rows, next_cursor = recommender.catalog.page(query.limit, query.cursor)
    return ItemPage(items=[ItemOut.of(row) for row in rows], next_cursor=next_cursor)


@router.get("/{item_id:path}")
def get_item(item_id: StoredIdPath, recommender: RecommenderDep) -> ItemOut:
    """One item. It takes no query parameter: one sent is a 422 naming it."""
    return ItemOut.of(recommender.catalog.get(item_id))


@router.put("/{item_id:path}")
async def put_item(
    item_id: ItemIdPath, body: ItemBody, recommender: RecommenderDep, limiter: LimiterDep
) -> ItemOut:
    """Create or replace one item."""
    return ItemOut.of(await limiter.run(_replace, recommender, body.record(item_id)))


def _replace(recommender: Recommender, item: ItemRecord) -> StoredItem:
    recommender.upsert_items([item])
    return recommender.catalog.get(item.id)


@router.delete("/{item_id:path}", status_code=204)
def delete_item(item_id: StoredIdPath, recommender: RecommenderDep) -> Response:
    """Remove an item from the catalog. Its past events stay, detached from the id: their users are still
    known, and an item created later under the same id starts with no behaviour."""
    recommender.delete_item(item_id)
    return Response(status_code=204)
