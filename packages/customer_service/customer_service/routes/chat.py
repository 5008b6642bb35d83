"""`/v1/chat` and `/v1/chat/stream`: one customer message in, the bot's reply out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from customer_service.bot import reply_json
from customer_service.deps import LimiterDep, ServiceDep
from customer_service.schemas import ChatIn, ChatOut

router = APIRouter(prefix="/v1", tags=["chat"])


@router.post("/chat")
async def chat(body: ChatIn, service: ServiceDep) -> ChatOut:
    """Answer a message: action (answer | clarify | fallback | handoff), intent, cited sources."""
    reply = await service.bot.chat(body.session_id, body.message, body.context)
    return ChatOut.model_validate(reply_json(reply))


@router.post("/chat/stream", response_class=StreamingResponse)
async def chat_stream(body: ChatIn, service: ServiceDep, limiter: LimiterDep) -> StreamingResponse:
    """The same reply as server-sent events: `meta`, then `delta` pieces of the answer, then `done`."""
    plan = await limiter.run(service.bot.plan, body.session_id, body.message, body.context)
    return StreamingResponse(
        _events(service.bot.stream(plan)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(events: AsyncIterator[tuple[str, dict[str, Any]]]) -> AsyncIterator[str]:
    async for name, data in events:
        yield f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
