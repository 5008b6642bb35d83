"""`/v1/score` and `/v1/recommend`: the model's answers, computed in the worker pool."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from recommender.deps import LimiterDep, RecommenderDep
from recommender.schemas import Interests, ItemId, ScoredOut, ScoreIn, scored_json
from recommender.serving import Query as Who

router = APIRouter(prefix="/v1", tags=["recommendations"])


# The bodies are written by `scored_json` straight from the results (response_model documents them).
@router.post("/score", response_model=list[ScoredOut])
async def score(body: ScoreIn, recommender: RecommenderDep, limiter: LimiterDep) -> Response:
    """Score candidate items for a user, a history or free-text interests; best first, with reasons."""
    history = tuple(body.history) if body.history is not None else None
    who = Who(user_id=body.user_id, history=history, interests=body.interests)
    results = await limiter.run(recommender.score, who, body.items)
    return Response(scored_json(results), media_type="application/json")


@router.get("/recommend", response_model=list[ScoredOut])
async def recommend(
    recommender: RecommenderDep,
    limiter: LimiterDep,
    user_id: Annotated[ItemId | None, Query()] = None,
    interests: Annotated[Interests | None, Query()] = None,
    k: Annotated[int, Query(ge=1, le=1000)] = 10,
    exclude_seen: bool = True,
) -> Response:
    """The `k` best items for a stored user (or free-text interests), best first, with reasons."""
    who = Who(user_id=user_id, interests=interests)
    results = await limiter.run(recommender.recommend, who, k, exclude_seen=exclude_seen)
    return Response(scored_json(results), media_type="application/json")
