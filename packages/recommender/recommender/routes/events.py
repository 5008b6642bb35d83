"""`/v1/events`: behaviour, stored all or nothing and counted into co-occurrence at once."""

from __future__ import annotations

from fastapi import APIRouter

from recommender.deps import RecommenderDep
from recommender.schemas import EventsIn, EventsOut
from textcore.sql import utcnow

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.post("", status_code=201)
def post_events(body: EventsIn, recommender: RecommenderDep) -> EventsOut:
    """Store a batch of interactions; a malformed event or an unknown item id stores nothing."""
    now = utcnow()
    return EventsOut(stored=recommender.ingest([event.record(now) for event in body.events]))
