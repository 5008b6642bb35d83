"""Everything the customer service runs on, built once at start and closed at the end.

`open_service` migrates the database, loads the retrieval encoder and the knowledge base's index (rebuilt
when stale), ingests `knowledge_file` into a knowledge base never written to (one emptied by its operator
stays empty), loads the optional re-ranker, intent model, sentiment model, templates and generator, and
wires the bot. Blocking loads run in a thread so that the event loop stays free while the service starts.
It also holds `background`, the tasks that outlive a request (a keyed stream's turn completed after its client
left): they are cancelled when the service closes, before the generator and the database are.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from customer_service.answers import Answerer
from customer_service.bot import Bot, Runner
from customer_service.conversations import Conversations
from customer_service.database import Database
from customer_service.generation import Generator, LocalGenerator, OpenAICompatibleGenerator
from customer_service.ingest import ingest_path
from customer_service.intents import IntentModel
from customer_service.knowledge import KnowledgeBase
from customer_service.retrieval import Retriever
from customer_service.sentiment import load_sentiment
from customer_service.settings import CustomerServiceSettings, GeneratorSettings
from customer_service.templates import TemplateStore
from textcore import Encoder, HttpClientConfig, Reranker, make_http_client

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CustomerService:
    """The parts the routes reach."""

    settings: CustomerServiceSettings
    db: Database
    kb: KnowledgeBase
    retriever: Retriever
    intents: IntentModel | None
    conversations: Conversations
    bot: Bot
    generator: str  # off | local | openai
    background: TaskGroup  # work that outlives its request; cancelled when the service closes


def open_database(settings: CustomerServiceSettings) -> Database:
    """The service's database, migrated to the latest schema."""
    db = Database(settings.database_url)
    db.migrate()
    return db


def open_knowledge(settings: CustomerServiceSettings, db: Database) -> KnowledgeBase:
    """The knowledge base with the retrieval encoder; `knowledge_file` ingested when it was never written to.

    A knowledge base that is empty because its entries were deleted (version above 0) stays empty: the
    operator emptied it, and seeding it again at the next start or CLI command would bring back every entry
    they removed."""
    enc = settings.encoder
    encoder = Encoder.from_pretrained(
        settings.retriever_path or enc.model, device=enc.device, precision=enc.precision,
        max_length=enc.max_length, batch_size=enc.batch_size,
    )  # fmt: skip
    kb = KnowledgeBase.open(db, encoder, settings.index_dir)
    if settings.knowledge_file is not None and kb.version == 0 and kb.count() == 0:
        ingest_path(kb, settings.knowledge_file)
    return kb


def _load_models(
    settings: CustomerServiceSettings, db: Database
) -> tuple[KnowledgeBase, Retriever, IntentModel | None]:
    enc = settings.encoder
    kb = open_knowledge(settings, db)
    reranker = (
        Reranker.load(settings.reranker_path, device=enc.device, precision=enc.precision, max_length=256)
        if settings.reranker_path is not None
        else None
    )
    intents = (
        IntentModel.load(settings.intent_model_path, device=enc.device, precision=enc.precision)
        if settings.intent_model_path is not None
        else None
    )
    if intents is not None and intents.share_frozen_encoder(kb.encoder, kb.query_vectors):
        # the intent model's frozen view reads the retrieval embedding of each message: no second pass
        logger.info("intents: the frozen view reads the retrieval encoder's query embeddings")
    return kb, Retriever(kb, reranker, candidates=settings.rerank_candidates), intents


async def _generator(settings: GeneratorSettings, stack: AsyncExitStack) -> Generator | None:
    if settings.kind == "off":
        return None
    if settings.kind == "local":
        return await anyio.to_thread.run_sync(lambda: LocalGenerator.load(max_new_tokens=settings.max_tokens))
    client = await stack.enter_async_context(
        make_http_client(HttpClientConfig(read_timeout=settings.timeout_s, user_agent="customer-service/0.1"))
    )
    return OpenAICompatibleGenerator(
        client, settings.base_url, settings.model, api_key=settings.api_key, max_tokens=settings.max_tokens,
        temperature=settings.temperature, timeout_s=settings.timeout_s,
    )  # fmt: skip


@asynccontextmanager
async def open_service(settings: CustomerServiceSettings, runner: Runner) -> AsyncIterator[CustomerService]:
    """Build the service; `runner` runs the bot's blocking calls (the app's worker pool)."""
    async with AsyncExitStack() as stack:
        db = await anyio.to_thread.run_sync(open_database, settings)
        stack.callback(db.dispose)
        kb, retriever, intents = await anyio.to_thread.run_sync(_load_models, settings, db)
        sentiment = await anyio.to_thread.run_sync(load_sentiment, settings.sentiment_model_path)
        templates = (
            TemplateStore.load(settings.templates_file) if settings.templates_file else TemplateStore({})
        )
        generator = await _generator(settings.generator, stack)
        conversations = Conversations(db)
        answerer = Answerer(templates, generator, generation_timeout_s=settings.generator.timeout_s)
        bot = Bot(
            settings=settings, conversations=conversations, retriever=retriever, intents=intents,
            sentiment=sentiment, answerer=answerer, runner=runner,
        )  # fmt: skip
        background = await stack.enter_async_context(anyio.create_task_group())
        # at shutdown the tasks still running are cancelled (each stores what it has), then awaited
        stack.callback(background.cancel_scope.cancel)
        yield CustomerService(
            settings=settings, db=db, kb=kb, retriever=retriever, intents=intents,
            conversations=conversations, bot=bot, generator=settings.generator.kind, background=background,
        )  # fmt: skip
