"""`/v1/score` and `/v1/recommend`: the model's answers, computed in the worker pool."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from recommender.deps import LimiterDep, RecommenderDep
from recommender.profiles import Query as Who
from recommender.schemas import Interests, ScoredOut, ScoreIn, StoredId, scored_json

router = APIRouter(prefix="/v1", tags=["recommendations"])
MAX_OFFSET = 10_000  # places skipped at most: every one of them is ranked too


# The bodies are written by `scored_json` straight from the results (response_model documents them).
@router.post("/score", response_model=list[ScoredOut])
async def score(body: ScoreIn, recommender: RecommenderDep, limiter: LimiterDep) -> Response:
    """Score candidate items for a user, a history or free-text interests; best first, with reasons."""
    history = tuple(body.history) if body.history is not None else None
    who = Who(user_id=body.user_id, history=history, interests=body.interests)
    results = await limiter.run(recommender.score, who, body.items)
    return Response(scored_json(results), media_type="application/json")


class RecommendQuery(BaseModel):
    """The query of `GET /v1/recommend`; any other parameter (a guessed `category=`, a misspelt
    `exclude-seen`) is a 422 naming it, not a page that silently ignored it."""

    model_config = ConfigDict(extra="forbid")

    user_id: StoredId | None = None
    interests: Interests | None = None
    k: int = Field(10, ge=1, le=1000)
    exclude_seen: bool = Field(
        True,
        description="Leave out the items the user interacted with (false: offer again the ones they liked; "
        "an item their latest rating puts below the threshold is never offered).",
    )
    offset: int = Field(
        0,
        ge=0,
        le=MAX_OFFSET,
        description="How many of the best items to skip: `offset=20&k=10` is places 21-30 of the "
        "ranking `k=30` returns, the page after `offset=10&k=10` (empty past the end). Pages agree "
        "while the user's events and the catalog stay as they were; with `exclude_seen`, an item "
        "the user interacted with since leaves the ranking and the later ones move up a place.",
    )


@router.get("/recommend", response_model=list[ScoredOut])
async def recommend(
    recommender: RecommenderDep, limiter: LimiterDep, query: Annotated[RecommendQuery, Query()]
) -> Response:
    """The `k` best items for a stored user (or free-text interests) after the `offset` best, best first,
    with reasons. An unknown query parameter, or one sent twice, is a 422 naming it."""
    who = Who(user_id=query.user_id, interests=query.interests)
    results = await limiter.run(
        recommender.recommend, who, query.k, exclude_seen=query.exclude_seen, offset=query.offset
    )
    return Response(scored_json(results), media_type="application/json")
