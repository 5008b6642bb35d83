"""The reply to a planned message as server-sent events (`TurnStream`), for `POST /v1/chat/stream`."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

from customer_service.answers import Answer
from customer_service.planner import Plan
from customer_service.replies import (
    Reply,
    fixed_reply,
    intent_json,
    is_fixed,
    replay_events,
    reply_json,
    shown_sources,
)

if TYPE_CHECKING:
    from customer_service.bot import Bot

# how a turn whose stream ended before its reply did is marked in its reason
CUT_SHORT = "the stream ended before the reply did: the answer holds what was sent"


class TurnStream:
    """The reply to a planned message as server-sent events: `meta`, `delta`..., then `done`.

    `meta` carries the action, intent and sources before any text; `done` carries the stored reply. The
    stream is closed with `aclose` however it ended. One that ended before its reply did (the customer
    closed the page, the connection dropped, the server stops) still stores its turn there: the message
    was received and part of the reply may have been read. The turn stores what was sent (nothing, when
    the customer left before the first words), with the session's new state as planned (a request for a
    person still reaches the agents' queue), and its `reason` says the stream ended early
    (`CUT_SHORT`). Generation stops at once, as a stream broken off by its generator keeps its words; a
    turn that failed (an `error` event) is not stored again. (`POST /v1/chat/stream` reads a turn with an
    idempotency key to its end even when its client leaves, so that the retry gets the whole reply; only a
    server shutdown closes such a turn early, and it then holds what was generated.) A fallback, and the
    hand-off it may become, is stored first and then sent as stored: whether it makes the fallbacks in a row
    that hand the customer to a person is known only where the turn is stored (`Bot.record`).
    """

    def __init__(self, bot: Bot, plan: Plan) -> None:
        self._bot, self._plan = bot, plan
        self._sent: list[str] = []  # the answer's text handed to the client so far
        self._ended = False  # stored, or failed with an error the client is told of
        self._events = self._run()

    def __aiter__(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        return self._events

    async def aclose(self) -> Reply | None:
        """End the stream; the turn stored now, when it ended before its reply did, else None."""
        await self._events.aclose()  # a generator still running stops here
        if self._ended:
            return None
        self._ended = True
        # what was sent, however it was made (a turn stores no mode)
        answer = Answer(text="".join(self._sent).strip(), mode="fixed", cited=[])
        return await self._bot.runner.finish(self._bot.record, self._plan, answer, cut_short=True)

    async def _run(self) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        try:
            async for event in self._reply():
                yield event
        except Exception:  # the route ends the stream with an error event: this turn is not stored
            self._ended = True
            raise

    async def _reply(self) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        bot, plan = self._bot, self._plan
        if plan.decision.streak == "count":  # fallback or hand-off: settled when stored, then sent as stored
            stored = await bot.runner.finish(self._store, fixed_reply(plan))
            for event in replay_events(stored):
                yield event
            return
        yield (
            "meta",
            {
                "session_id": plan.session.id,
                "action": plan.decision.action,
                "intent": intent_json(plan.intent),
                "sources": [s.__dict__ for s in shown_sources(plan, bot.settings.sources_per_answer)],
            },
        )
        if is_fixed(plan.decision):
            answer = fixed_reply(plan)
            self._sent.append(answer.text)
            yield "delta", {"text": answer.text}
        else:
            stream = bot.answerer.stream(*bot.answer_args(plan))
            try:
                async for piece in stream:
                    self._sent.append(piece)
                    yield "delta", {"text": piece}
            finally:
                await stream.aclose()  # the client went away: stop generating
            assert stream.answer is not None  # an exhausted stream holds its answer
            answer = stream.answer
        reply = await bot.runner.finish(self._store, answer)
        yield "done", reply_json(reply)

    def _store(self, answer: Answer) -> Reply:
        """Store the whole turn (blocking); marked stored in the worker, so a stream cancelled meanwhile
        is not stored twice."""
        reply = self._bot.record(self._plan, answer)
        self._ended = True
        return reply
