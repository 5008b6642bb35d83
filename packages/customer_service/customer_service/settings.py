"""Configuration of the customer service, read from ``CS_*`` environment variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from textcore.settings import MIN_API_KEY_LENGTH, ServiceSettings, long_keys, split_list

MAX_RETENTION_DAYS = 36_500  # a century: longer is keeping every session, the default


class GeneratorSettings(BaseModel):
    """Grounded generation (``CS_GENERATOR__<FIELD>``): off, local SmolLM2, or an OpenAI-compatible server."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = Field("off", pattern="^(off|local|openai)$", description="off, local (SmolLM2) or openai.")
    base_url: str = Field(
        "http://127.0.0.1:8001", max_length=500, description="OpenAI-compatible server (vLLM, TGI, Ollama)."
    )
    model: str = Field("default", max_length=200, description="Model name sent to the server.")
    api_key: str | None = Field(None, description="Bearer token for the server, if it wants one.")
    max_tokens: int = Field(200, ge=1, le=4096, description="Longest generated answer, in tokens.")
    temperature: float = Field(0.0, ge=0, le=2)
    timeout_s: float = Field(8.0, gt=0, le=300, description="Past this the extractive answer is returned.")


# First-person reports of an incident happening now, which a bank answers with a person at once (the hand-off
# reason is "urgent: <topic>"): "I want to report fraud", "there's a transaction I didn't make", "You stole my
# money", "someone hacked my account", "my card was stolen". A question about these topics, which an FAQ
# answers, is read as any other: "How do I report a lost card?", "What is your fraud protection policy?",
# "What should I do if my card is stolen?". Case-insensitive regular expressions, searched in the message
# with its curly apostrophes made straight.
_ITEM = r"(?:transaction|payment|charge|withdrawal|purchase|debit|transfer)s?"
_SOMEONE = r"(?:someone|somebody|some ?one|a stranger|a scammer|a fraudster|they|you|the bank)"
_MINE = r"(?:my|our|all my|all our)"
_NOT_IF = r"(?<!\bif )(?<!\bwhen )(?<!\bcase )"  # "what if my card was stolen?" asks about the case
URGENT_TOPICS: dict[str, tuple[str, ...]] = {
    "possible fraud": (
        r"\bi(?:'d| would| want| wish| need| have| must|'m| am)(?: like| want| trying| going)?(?: to)? "
        r"report(?:ing)? (?:a |an |some |the )?(?:fraud|scam|theft|stolen|unauthori[sz]ed|suspicious|"
        r"unrecogni[sz]ed)",
        r"^\W*report(?:ing)? (?:a |an )?(?:fraud|scam|theft)\W*$",
        rf"\b{_ITEM} (?:that |which )?(?:i|we) (?:did ?n'?t|did not|never|do ?n'?t recogni[sz]e|do not "
        r"recogni[sz]e|have ?n'?t|have not|did ?n'?t authori[sz]e|never authori[sz]ed)",
        r"\b(?:i|we) (?:did ?n'?t|did not|never|have ?n'?t|have not) "
        r"(?:make|made|authori[sz]e|authori[sz]ed|do|done) "
        rf"(?:this|that|these|those|the|a|an|any|some) {_ITEM}",
        r"\b(?:there(?:'s| is| are| was| were| have been)|i (?:see|found|have|noticed|got|can see)|"
        r"i've (?:got|found|noticed|seen)) (?:an? |some |two |several |many )?(?:unauthori[sz]ed|"
        rf"fraudulent|unrecogni[sz]ed|unknown) {_ITEM}",
        rf"\b{_SOMEONE} (?:has |have |had |just |is |are )?(?:stole|stolen|taken|took|used|withdrew|spent|"
        rf"is using|are using)\b[^.?!]{{0,12}}\b{_MINE} (?:money|savings|funds|card|account|details|"
        r"identity|pin|password)",
        rf"\b{_NOT_IF}{_MINE} (?:money|savings|funds|identity) (?:has been|have been|was|were|got|'s been) "
        r"(?:stolen|taken)",
        rf"\bstolen from {_MINE} (?:account|card)",
        r"\bi(?:'ve| have|'m| am)? ?(?:been|was|got|being|think i(?:'ve| have) been) (?:scammed|defrauded|"
        r"conned|phished|robbed)",
    ),
    "account compromise": (
        rf"\b{_SOMEONE} (?:has |have |just |is |are )?(?:hacked|hacked into|broke into|broken into|got into|"
        rf"accessed|logged into|logged in to|has access to|took over|taken over) {_MINE} (?:online banking |"
        r"bank |banking )?(?:account|app|online banking|profile|email|password|login)",
        rf"\b{_NOT_IF}{_MINE} (?:online banking |bank |banking )?(?:account|app|online banking|profile|email|"
        r"password|login|card details|details|pin)s? (?:has been|have been|was|were|got|'s been|is being) "
        r"(?:hacked|compromised|breached|stolen|leaked|taken over|accessed)",
        r"\bi(?:'ve| have)? (?:been|got|was) hacked\b",
    ),
    "stolen card": (
        rf"\b{_NOT_IF}{_MINE} (?:debit |credit |bank )?(?:card|cards|wallet|purse|bag|phone|cheque ?book|"
        r"checkbook) (?:has been|have been|was|were|got|'s been|has just been) stolen",
        r"\bi(?:'ve| have)? (?:had|got|just had) my (?:debit |credit |bank )?(?:card|wallet|purse|bag|phone) "
        r"stolen",
    ),
}


class PolicySettings(BaseModel):
    """When the bot answers, asks, falls back or hands off (``CS_POLICY__<FIELD>``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_answer_score: float = Field(0.5, ge=0, le=1, description="Least re-ranker probability to answer.")
    min_similarity: float = Field(
        0.45, ge=-1, le=1, description="Without a re-ranker: least query-passage cosine similarity to answer."
    )
    strong_answer_score: float = Field(
        0.9, ge=0, le=1, description="Re-ranker probability that answers even a message the intents reject."
    )
    strong_similarity: float = Field(
        0.75,
        ge=-1,
        le=1,
        description="Without a re-ranker: cosine that answers a message the intents reject.",
    )
    clarify_margin: float = Field(
        0.08, ge=0, le=1, description="Two candidates closer than this, from different entries: offer both."
    )
    fallbacks_before_handoff: int = Field(2, ge=1, le=20, description="Fallbacks in a row, then a person.")
    template_intent_confidence: float = Field(
        0.7,
        ge=0,
        le=1,
        description="Least confidence of an in-scope intent for its own template to answer, with the "
        "passages found or, when none is relevant, alone.",
    )
    negative_sentiment: float = Field(
        0.8, ge=0, le=1, description="Hand off when the message's negative-sentiment score reaches this."
    )
    urgent_topics: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: dict(URGENT_TOPICS),
        description="Hand off at once, with the reason 'urgent: <topic>', a message in which one of a "
        "topic's patterns (case-insensitive regular expressions) is found; the default: first-person "
        "reports of possible fraud, account compromise and a stolen card. {} turns the rule off.",
    )

    @field_validator("urgent_topics")
    @classmethod
    def _patterns_compile(cls, topics: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for topic, patterns in topics.items():
            if not topic.strip():
                raise ValueError("expected a topic name (the hand-off reason) that is not empty")
            for pattern in patterns:
                try:
                    re.compile(pattern)
                except re.error as error:
                    raise ValueError(
                        f"topic {topic!r}: {pattern!r} is no regular expression ({error})"
                    ) from None
        return topics


class CustomerServiceSettings(ServiceSettings):
    """Settings of the customer service.

    Every field can be set from the environment as ``CS_<FIELD>`` (nested fields with ``__``), for example
    ``CS_INTENT_MODEL_PATH=var/models/intents``, ``CS_GENERATOR__KIND=openai`` or
    ``CS_POLICY__MIN_ANSWER_SCORE=0.5``. Without trained models the service retrieves with the base encoder
    (``encoder.model``), fuses it with BM25 and answers from the best passage; intents and the re-ranker are
    added by pointing at the folders `customer-service train-intents` / `train-reranker` wrote.
    """

    model_config = SettingsConfigDict(env_prefix="CS_")

    database_url: str = Field(
        "sqlite:///var/customer_service/customer_service.db",
        description="SQLAlchemy URL; SQLite file or PostgreSQL.",
    )
    index_dir: Path = Field(
        Path("var/customer_service/index"), description="Where the knowledge-base index is kept between runs."
    )
    retriever_path: Path | None = Field(
        None, description="Encoder folder from `train-retriever`; None: the base encoder (`encoder.model`)."
    )
    reranker_path: Path | None = Field(None, description="Re-ranker folder from `train-reranker`.")
    intent_model_path: Path | None = Field(None, description="Intent classifier folder from `train-intents`.")
    sentiment_model_path: Path | None = Field(
        None,
        description="A textcore classifier with a `negative` label for the hand-off rule; "
        "None: a built-in list of strongly negative phrases.",
    )
    templates_file: Path | None = Field(
        None, description="TOML or JSON answer templates per intent / FAQ id."
    )
    knowledge_file: Path | None = Field(
        None,
        description="FAQ CSV/JSONL (or a folder of documents) ingested at start into a KB never "
        "written to (one whose entries were all deleted stays empty).",
    )
    generator: GeneratorSettings = Field(default_factory=GeneratorSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    rerank_candidates: int = Field(
        10, ge=1, le=200, description="Passages of each first-stage ranking, and what the re-ranker reads."
    )
    max_message_chars: int = Field(2000, ge=1, le=100_000, description="Longest accepted chat message.")
    sources_per_answer: int = Field(3, ge=1, le=20, description="Passages returned with an answer.")
    history_turns: int = Field(
        4,
        ge=0,
        le=50,
        description="Earlier turns the generator sees; also the topical turns (of at most 4 times as many "
        "turns) a follow-up can lean on.",
    )
    max_body_bytes: int = Field(4_000_000, ge=1, description="Largest accepted request body, in bytes.")
    session_retention_days: int | None = Field(
        None,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="Erase sessions (turns and feedback with them) inactive for more than this many days, at "
        "start and hourly; a session waiting for an agent is kept. None (the default) keeps every session.",
    )
    chat_api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (),
        description=(
            "Keys that may call the chat endpoints only (POST /v1/chat, /v1/chat/stream, /v1/feedback): the "
            "key a chat widget ships in its page. Any other endpoint answers them 403. Carried and given as "
            f"CS_API_KEYS are (each at least {MIN_API_KEY_LENGTH} characters), and only with CS_API_KEYS "
            "set, which keep full access. None (the default): no such keys."
        ),
    )

    @field_validator("chat_api_keys", mode="before")
    @classmethod
    def _split_chat_keys(cls, value: object) -> object:
        return split_list(value)

    @field_validator("chat_api_keys")
    @classmethod
    def _chat_keys(cls, keys: tuple[SecretStr, ...], info: ValidationInfo) -> tuple[SecretStr, ...]:
        long_keys(keys)
        if "api_keys" not in info.data:  # refused itself: that error is the one to read
            return keys
        operators = {key.get_secret_value() for key in info.data["api_keys"]}
        if keys and not operators:
            raise ValueError(
                "expected CS_API_KEYS to be set too: without it the sessions, knowledge and analytics "
                "endpoints would be open to anyone"
            )
        for position, key in enumerate(keys, start=1):
            if key.get_secret_value() in operators:
                raise ValueError(f"expected chat keys apart from CS_API_KEYS; key {position} is one of them")
        return keys
