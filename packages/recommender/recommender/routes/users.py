"""`/v1/users/{user_id}`: erasure of a user's behaviour (their personal data).

A user id in the path follows the rule of ids in event bodies: surrounding whitespace is stripped, and it may
hold ``/``, so every user who has events can be erased. It names stored events
(`recommender.schemas.StoredId`): a user id stored with an invisible format character, before such ids were
refused, can still be erased.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from recommender.deps import LimiterDep, RecommenderDep
from recommender.schemas import StoredId

router = APIRouter(prefix="/v1/users", tags=["users"])
UserIdPath = Annotated[StoredId, Path(description="The user's id (1-200 characters; may contain '/').")]


@router.delete("/{user_id:path}", status_code=204)
async def erase_user(user_id: UserIdPath, recommender: RecommenderDep, limiter: LimiterDep) -> Response:
    """Delete every stored event of the user; recommendations stop counting them at once."""
    # Counting the remaining events again takes seconds on millions of them: one of the worker slots
    # (429 when all are busy), like the model calls.
    await limiter.run(recommender.erase_user, user_id)
    return Response(status_code=204)
