"""Composing the reply once the bot has decided to answer: a template, a grounded generation, or an extract.

In order:

1. template: the operator's template for the top passage's FAQ id, else for the intent (`templates`);
2. generated: the generator's answer to the numbered passages, within `generation_timeout_s`, when it cites
   at least one passage and no passage it was not given (errors, timeouts, empty or uncited output, and
   made-up sources fall through);
3. extractive: the top passage itself (an FAQ's answer whole, a document chunk cut to its first sentences),
   followed by the citation " [1]". A streamed generation that fails or stalls after its first words, or
   ends citing no passage or one it was not given, cannot take its words back: the extract follows them
   after a blank line, and the whole is the answer.

Citations in an `Answer` are 0-based indices into the passages the caller gave; generated and extractive
texts mark them as [1], [2] (1-based), matching the order of those passages.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from customer_service.generation import (
    Generator,
    PassageText,
    build_prompt,
    citations,
    dangling_citations,
)
from customer_service.templates import TemplateStore
from textcore import InvalidInput

logger = logging.getLogger(__name__)

# "fixed": a reply the caller wrote itself (clarify, fallback, hand-off); the Answerer never makes one
AnswerMode = Literal["template", "generated", "extractive", "fixed"]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class AnswerPassage(PassageText, Protocol):
    """What answering needs of a retrieved passage (`knowledge.Passage` has it)."""

    @property
    def id(self) -> str: ...

    @property
    def kind(self) -> str: ...  # faq | chunk


@dataclass(frozen=True, slots=True)
class Answer:
    """The reply text, how it was made, and which passages (0-based indices) it cites."""

    text: str
    mode: AnswerMode
    cited: list[int]


def extract(text: str, *, sentences: int = 3, max_chars: int = 600) -> str:
    """The first `sentences` sentences of `text`, cut at a word boundary (with "…") past `max_chars`."""
    parts = _SENTENCE_END.split(" ".join(text.split()))
    short = " ".join(parts[:sentences])
    if len(short) <= max_chars:
        return short
    return short[:max_chars].rsplit(" ", 1)[0].rstrip(",;:") + "…"


class Answerer:
    """Answers from templates, a generator (optional) and the passages themselves; safe to share.

    Args:
        templates: operator templates by FAQ id or intent name; None: no templates.
        generator: grounded generation; None: extractive answers only.
        generation_timeout_s: how long a whole generated answer (or, streaming, the first delta and each
            later gap) may take before the extractive answer is used instead.
        extractive_sentences: sentences kept from a document chunk in an extractive answer.
    """

    def __init__(
        self,
        templates: TemplateStore | None,
        generator: Generator | None,
        *,
        generation_timeout_s: float = 8.0,
        extractive_sentences: int = 3,
    ) -> None:
        if generation_timeout_s <= 0:
            raise InvalidInput(f"expected generation_timeout_s > 0 seconds; found {generation_timeout_s}")
        self.templates = templates
        self.generator = generator
        self.timeout = generation_timeout_s
        self.extractive_sentences = extractive_sentences

    def templated(
        self, intent_name: str | None, passages: Sequence[AnswerPassage], slots: Mapping[str, str] | None
    ) -> Answer | None:
        """The template answer: by the top passage's FAQ id (citing it), else by intent; None without one.

        A template that cites a source it is not given ("... [1]" with no passage) is not used: a reply's
        `[n]` must name a source shown with it.
        """
        if self.templates is None:
            return None
        if passages and passages[0].kind == "faq":
            text = self._render(passages[0].id, passages, slots)
            if text is not None:
                return Answer(text, "template", [0])
        text = self._render(intent_name, passages, slots) if intent_name else None
        if text is None:
            return None
        return Answer(text, "template", [number - 1 for number in citations(text, len(passages))])

    def _render(
        self, key: str, passages: Sequence[AnswerPassage], slots: Mapping[str, str] | None
    ) -> str | None:
        """Template `key` rendered, or None (see `TemplateStore.render`, and citations of missing sources)."""
        assert self.templates is not None  # the caller checked
        text = self.templates.render(key, slots)
        if text is not None and (missing := dangling_citations(text, len(passages))):
            logger.info("template %r cites sources %s it was not given; not used", key, missing)
            return None
        return text

    def extractive(self, passages: Sequence[AnswerPassage]) -> Answer:
        """The top passage as the answer, cited as [1].

        Raises:
            InvalidInput: there are no passages.
        """
        if not passages:
            raise InvalidInput("expected at least one passage (or a template for the intent) to answer from")
        top = passages[0]
        body = (
            " ".join(top.text.split())
            if top.kind == "faq"
            else extract(top.text, sentences=self.extractive_sentences)
        )
        return Answer(f"{body} [1]", "extractive", [0])

    async def answer(
        self,
        question: str,
        intent_name: str | None,
        passages: Sequence[AnswerPassage],
        slots: Mapping[str, str] | None = None,
        history: Sequence[tuple[str, str]] = (),
    ) -> Answer:
        """The reply to `question` (see the module docstring for the order of modes).

        Args:
            question: the customer's message (rewritten with its context when the caller does that).
            intent_name: the recognised intent, None when out of scope or unknown.
            passages: retrieved passages, best first.
            slots: values for template slots.
            history: earlier (customer message, bot answer) pairs, oldest first, for the generator.

        Raises:
            InvalidInput: no template applies and there are no passages.
        """
        fixed = self.templated(intent_name, passages, slots)
        if fixed is not None:
            return fixed
        if self.generator is None or not passages:
            return self.extractive(passages)
        prompt = build_prompt(question, passages, history)
        try:
            async with asyncio.timeout(self.timeout):
                text = (await self.generator.generate(prompt)).strip()
        except Exception as exc:  # any failure of the generator: the extract is still a good answer
            logger.warning("generation failed, answering extractively: %s: %s", type(exc).__name__, exc)
            return self.extractive(passages)
        cited = citations(text, len(passages))
        if not cited:
            # its length, not its text: a reply may repeat what the customer wrote (personal data)
            logger.info(
                "generated answer (%d characters) cites no passage, answering extractively", len(text)
            )
            return self.extractive(passages)
        if made_up := dangling_citations(text, len(passages)):
            logger.info("generated answer cites missing sources %s, answering extractively", made_up)
            return self.extractive(passages)
        return Answer(text, "generated", [number - 1 for number in cited])

    def stream(
        self,
        question: str,
        intent_name: str | None,
        passages: Sequence[AnswerPassage],
        slots: Mapping[str, str] | None = None,
        history: Sequence[tuple[str, str]] = (),
    ) -> AnswerStream:
        """The reply as text deltas; `AnswerStream.answer` holds the whole `Answer` once the stream ends.

        Templates and extracts come in one piece. A generator that fails or is silent for
        `generation_timeout_s` before its first delta gives way to the extract in one piece; one that fails or
        stalls later is followed by the extract, after a blank line (streamed text cannot be taken back, and
        a half-said answer is no answer): the answer is then both, in mode "extractive". So is one that ends
        citing no passage, or citing a passage it was not given (`answer` would have returned the extract
        instead: an ungrounded reply does not end the turn). A generation that ends normally citing only
        passages it was given is the answer in mode "generated". Arguments as `answer`.

        Raises:
            InvalidInput: while iterating, when no template applies and there are no passages.
        """
        return AnswerStream(self, question, intent_name, passages, slots, history)


class AnswerStream:
    """An async iterator of reply deltas; `answer` is set once it is exhausted."""

    def __init__(
        self,
        answerer: Answerer,
        question: str,
        intent_name: str | None,
        passages: Sequence[AnswerPassage],
        slots: Mapping[str, str] | None,
        history: Sequence[tuple[str, str]],
    ) -> None:
        self.answer: Answer | None = None
        self._answerer = answerer
        self._deltas = self._run(question, intent_name, passages, slots, history)

    def __aiter__(self) -> AnswerStream:
        return self

    async def __anext__(self) -> str:
        return await anext(self._deltas)

    async def aclose(self) -> None:
        """Stop early (the generator, if running, is stopped too)."""
        await self._deltas.aclose()

    async def _run(
        self,
        question: str,
        intent_name: str | None,
        passages: Sequence[AnswerPassage],
        slots: Mapping[str, str] | None,
        history: Sequence[tuple[str, str]],
    ) -> AsyncGenerator[str, None]:
        answerer = self._answerer
        fixed = answerer.templated(intent_name, passages, slots)
        if fixed is None and (answerer.generator is None or not passages):
            fixed = answerer.extractive(passages)
        if fixed is not None:
            self.answer = fixed
            yield fixed.text
            return
        assert answerer.generator is not None  # the branch above returned otherwise
        deltas = answerer.generator.stream(build_prompt(question, passages, history))
        parts: list[str] = []
        failed = False
        try:
            while True:
                try:
                    async with asyncio.timeout(answerer.timeout):
                        delta = await anext(deltas)
                except StopAsyncIteration:
                    break
                except Exception as exc:  # failure or stall of the generator
                    logger.warning("generation stream failed: %s: %s", type(exc).__name__, exc)
                    failed = True
                    break
                parts.append(delta)
                yield delta
        finally:
            close = getattr(deltas, "aclose", None)
            if close is not None:
                await close()
        text = "".join(parts).strip()
        if not text:
            self.answer = answerer.extractive(passages)
            yield self.answer.text
            return
        cited = [n - 1 for n in citations(text, len(passages))]
        # cut off, or ended without grounding (no source cited, or one it was not given): what it said
        # stays, and the extract, citing [1], completes the reply, as `answer` would have replaced it
        if failed or not cited or dangling_citations(text, len(passages)):
            if not failed:
                logger.info("streamed answer (%d characters) cites no passage or a missing one", len(text))
            extract = answerer.extractive(passages)
            tail = f"\n\n{extract.text}"
            whole = ("".join(parts) + tail).strip()
            self.answer = Answer(whole, "extractive", list(dict.fromkeys([*cited, *extract.cited])))
            yield tail
            return
        self.answer = Answer(text, "generated", cited)
