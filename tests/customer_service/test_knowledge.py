"""The knowledge base: FAQs and documents in SQL, their vectors and terms indexed, versioned, saved, reloaded.

These tests use the tiny random BERT (its vectors mean nothing, so searches are checked through BM25 and
through what the vector index holds); retrieval quality with the real MiniLM is in test_retrieval.py.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from customer_service.database import Database
from customer_service.knowledge import Entry, FaqIn, KnowledgeBase, Passage
from customer_service.search_index import INDEX_FILE, SIDECAR_FILE
from tests.conftest import migrated
from textcore import Conflict, Encoder, InvalidInput, NotFound
from textcore.models import load_backbone

FAQS = [
    FaqIn(
        "password",
        "How do I reset my password?",
        "Use the forgotten-password link on the sign-in page.",
        "account",
    ),
    FaqIn("card", "I lost my card", "Block the card in the app, then order a replacement.", "cards"),
    FaqIn("hours", "When are branches open?", "Branches open Monday to Friday, nine to five.", "branches"),
]
GUIDE = """# Travel

## Abroad
Tell us before you travel so that payments abroad are not declined.

## Currency
Foreign currency is converted at the daily exchange rate plus one percent.

## Emergencies
Call the emergency line when your wallet is stolen.
"""


@pytest.fixture(scope="module")
def encoder(tiny_model_dir: Path) -> Encoder:
    return Encoder(load_backbone(tiny_model_dir), device="cpu", precision="fp32")


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[Database]:
    with migrated(Database(sqlite_url)) as db:
        yield db


def _ids(passages: list[Passage]) -> list[str]:
    return [p.id for p in passages]


def test_faqs_are_stored_versioned_and_searchable(
    database: Database, encoder: Encoder, tmp_path: Path
) -> None:
    kb = KnowledgeBase.open(database, encoder, tmp_path / "index")
    assert (kb.version, len(kb)) == (0, 0)
    assert kb.keyword("password", 5) == [] and kb.dense("password", 5) == []

    assert kb.upsert_faqs(FAQS) == 3
    assert (kb.version, len(kb), kb.count(), kb.count(category="cards")) == (1, 3, 3, 1)
    entry = kb.get("card")
    assert isinstance(entry, Entry)
    assert (entry.kind, entry.title, entry.question, entry.text) == (
        "faq",
        "I lost my card",
        "I lost my card",
        FAQS[1].answer,
    )
    assert [e.id for e in kb.list()] == ["card", "hours", "password"]
    assert [e.id for e in kb.list(offset=1, limit=1)] == ["hours"]
    assert kb.keyword("replacement card", 5)[0].id == "card"
    assert sorted(_ids(kb.dense("anything", 10))) == ["card", "hours", "password"]

    kb.upsert_faqs([FaqIn("card", "I lost my card", "Freeze it under Settings and call us.", "cards")])
    assert (kb.version, len(kb)) == (2, 3)
    assert kb.get("card").text == "Freeze it under Settings and call us."
    assert "card" not in _ids(kb.keyword("replacement", 5))
    assert kb.keyword("freeze", 5)[0].id == "card"

    assert kb.delete(["hours", "unknown"]) == 1
    assert (kb.version, len(kb)) == (3, 2)
    with pytest.raises(NotFound, match="hours"):
        kb.get("hours")
    assert "hours" not in _ids(kb.dense("branches", 10))
    assert kb.delete(["unknown"]) == 0
    assert kb.version == 3  # nothing changed: no new version


def test_documents_are_chunked_and_replaced_whole(
    database: Database, encoder: Encoder, tmp_path: Path
) -> None:
    kb = KnowledgeBase.open(database, encoder, tmp_path / "index")
    kb.upsert_faqs(FAQS[:1])
    ids = kb.put_document("travel", "Travel", GUIDE, "markdown", category="guides", source="travel.md")
    assert ids == ["travel#0", "travel#1", "travel#2"]
    chunk = kb.get("travel#1")
    assert (chunk.kind, chunk.title, chunk.document_id, chunk.position, chunk.source, chunk.category) == (
        "chunk",
        "Travel > Currency",
        "travel",
        1,
        "travel.md",
        "guides",
    )
    assert [e.id for e in kb.list(kind="chunk")] == ids
    assert [e.id for e in kb.list()] == ["password", *ids]
    hit = kb.keyword("exchange rate", 3)[0]
    assert (hit.id, hit.kind, hit.title, hit.document_id) == (
        "travel#1",
        "chunk",
        "Travel > Currency",
        "travel",
    )
    assert kb.keyword("Currency", 3)[0].id == "travel#1"  # the title is indexed with the text

    assert kb.put_document("travel", "Travel", "Only one paragraph about abroad now.", "text") == ["travel#0"]
    assert kb.count(kind="chunk") == 1 and len(kb) == 2
    with pytest.raises(NotFound):
        kb.get("travel#2")
    assert kb.keyword("exchange rate", 3) == []

    assert kb.delete(["travel"]) == 1  # a document id removes all its chunks
    assert kb.count() == 1 and _ids(kb.dense("x", 5)) == ["password"]


def test_bad_input_is_refused_and_changes_nothing(
    sqlite_db: Database, encoder: Encoder, tmp_path: Path
) -> None:
    kb = KnowledgeBase.open(sqlite_db, encoder, tmp_path / "index")
    kb.upsert_faqs(FAQS)
    kb.put_document("guide", "Guide", GUIDE, "markdown")
    version = kb.version
    bad = [
        [FaqIn("a#1", "q", "a")],
        [FaqIn("", "q", "a")],
        [FaqIn("x" * 201, "q", "a")],
        [FaqIn("a", "q", "  ")],
        [FaqIn("a", "", "a")],
        [FaqIn("a", "q", "a"), FaqIn("a", "q2", "a2")],
        [FaqIn("search", "q", "a")],  # GET /v1/knowledge/search is the search route
        # a URL path cannot carry dot segments: GET /v1/knowledge/.. is /v1, .../a/../b is .../b
        *([FaqIn(dots, "q", "a")] for dots in (".", "..", "guides/../x", "./x", "x/.")),
    ]
    for rows in bad:
        with pytest.raises(InvalidInput):
            kb.upsert_faqs(rows)
    with pytest.raises(Conflict, match="guide"):
        kb.upsert_faqs([FaqIn("guide", "q", "a")])  # a document's id
    with pytest.raises(Conflict, match="password"):
        kb.put_document("password", "t", "text", "text")  # an FAQ's id
    with pytest.raises(InvalidInput, match="reserved"):
        kb.put_document("search", "t", "text", "text")
    with pytest.raises(InvalidInput, match=r"without '\.' or '\.\.' between slashes"):
        kb.put_document("guides/../cards.md", "t", "text", "text")
    with pytest.raises(InvalidInput, match="format"):
        kb.put_document("doc", "t", "text", "pdf")
    with pytest.raises(InvalidInput, match="has none"):
        kb.put_document("doc", "t", "<script>x()</script>", "html")
    # control characters, whoever stores the text (the CLI's --category and file names reach these)
    with pytest.raises(InvalidInput, match=r"^answer of FAQ 'bell': .* found U\+0007 at character 5$"):
        kb.upsert_faqs([FaqIn("bell", "Ring?", "Ding\x07")])
    with pytest.raises(InvalidInput, match=r"^category of document 'doc': .* U\+001B at character 1$"):
        kb.put_document("doc", "t", "text", "text", category="\x1b[2J")
    with pytest.raises(InvalidInput, match=r"^source of document 'doc': .* U\+0000 \(NUL\) at character 3$"):
        kb.put_document("doc", "t", "text", "text", source="a/\x00")
    with pytest.raises(InvalidInput, match="kind"):
        kb.list(kind="video")
    with pytest.raises(InvalidInput, match="query"):
        kb.keyword("  ", 3)
    assert kb.version == version and kb.count() == 6


def test_index_questions_decides_what_is_indexed(
    sqlite_db: Database, encoder: Encoder, tmp_path: Path
) -> None:
    with_questions = KnowledgeBase.open(sqlite_db, encoder, tmp_path / "a")
    with_questions.upsert_faqs(FAQS)
    answers_only = KnowledgeBase.open(sqlite_db, encoder, tmp_path / "b", index_questions=False)
    assert with_questions.keyword("reset", 3)[0].id == "password"  # "reset" is only in the question
    assert answers_only.keyword("reset", 3) == []
    passage = answers_only.keyword("forgotten", 1)[0]
    assert answers_only.passage_text(passage) == FAQS[0].answer
    assert with_questions.passage_text(passage) == f"{FAQS[0].question}\n{FAQS[0].answer}"


def test_restart_loads_the_saved_index_without_embedding(
    sqlite_db: Database, encoder: Encoder, tmp_path: Path
) -> None:
    kb = KnowledgeBase.open(sqlite_db, encoder, tmp_path / "index")
    kb.upsert_faqs(FAQS)
    kb.put_document("guide", "Guide", GUIDE, "markdown")
    assert (tmp_path / "index" / INDEX_FILE).is_file() and (tmp_path / "index" / SIDECAR_FILE).is_file()

    again = KnowledgeBase(sqlite_db, encoder, tmp_path / "index")
    assert again.sync() == 0  # version and texts match: nothing embedded
    assert (again.version, len(again)) == (kb.version, len(kb))
    assert [(p.id, round(p.score, 5)) for p in again.dense("card", 6)] == [
        (p.id, round(p.score, 5)) for p in kb.dense("card", 6)
    ]
    assert again.sync() == 0  # a later sync with no change is a no-op too


def test_the_saved_index_can_be_read_by_a_service_running_as_another_user(
    sqlite_db: Database, encoder: Encoder, tmp_path: Path
) -> None:
    old = os.umask(0o022)
    try:
        KnowledgeBase.open(sqlite_db, encoder, tmp_path / "index").upsert_faqs(FAQS)
    finally:
        os.umask(old)
    for name in (INDEX_FILE, SIDECAR_FILE):  # a plain file's mode, not mkstemp's 0600
        assert stat.S_IMODE((tmp_path / "index" / name).stat().st_mode) == 0o644, name


def test_a_stale_index_is_brought_up_to_date(sqlite_db: Database, encoder: Encoder, tmp_path: Path) -> None:
    first = KnowledgeBase.open(sqlite_db, encoder, tmp_path / "first")
    first.upsert_faqs(FAQS)
    # another replica on the same database changes one FAQ and adds one
    other = KnowledgeBase.open(sqlite_db, encoder, tmp_path / "other")
    other.upsert_faqs(
        [FaqIn("card", "I lost my card", "Freeze it in the app.", "cards"), FaqIn("new", "q", "a")]
    )
    assert first.version == 1 and other.version == 2

    restarted = KnowledgeBase(sqlite_db, encoder, tmp_path / "first")
    assert restarted.sync() == 2  # only the changed and the new passage are embedded
    assert (restarted.version, len(restarted)) == (2, 4)
    assert restarted.keyword("freeze", 1)[0].id == "card"

    # the running one catches up on sync, with the vectors `restarted` saved for version 2 in its folder
    assert first.sync() == 0 and first.version == 2
    assert first.keyword("freeze", 1)[0].id == "card"
    other.delete(["new"])
    first.upsert_faqs([FaqIn("late", "q2", "a late answer")])  # its write notices the missed change
    assert first.version == 4
    assert sorted(_ids(first.dense("x", 10))) == ["card", "hours", "late", "password"]


def test_vectors_another_process_saved_for_this_version_are_adopted(
    sqlite_db: Database, encoder: Encoder, tmp_path: Path
) -> None:
    service = KnowledgeBase.open(sqlite_db, encoder, tmp_path / "index")
    service.upsert_faqs(FAQS)
    # the CLI ingests into the same database and index folder; it embeds and saves what it adds
    cli = KnowledgeBase.open(sqlite_db, encoder, tmp_path / "index")
    cli.upsert_faqs([FaqIn("new", "Do you sell pet insurance?", "Yes, for cats and dogs.", "insurance")])
    assert service.refresh() == 0  # the running service adopts the CLI's vectors: nothing embedded again
    assert service.version == cli.version and len(service) == 4
    assert service.keyword("pet insurance", 1)[0].id == "new"
    assert [(p.id, round(p.score, 5)) for p in service.dense("pets", 4)] == [
        (p.id, round(p.score, 5)) for p in cli.dense("pets", 4)
    ]
    # a change whose vectors were not saved for that version (another index folder) is embedded here
    KnowledgeBase.open(sqlite_db, encoder, tmp_path / "elsewhere").delete(["card"])
    KnowledgeBase.open(sqlite_db, encoder, tmp_path / "elsewhere").upsert_faqs([FaqIn("late", "q", "a")])
    assert service.refresh() == 1 and sorted(_ids(service.dense("x", 10))) == [
        "hours", "late", "new", "password"
    ]  # fmt: skip


@pytest.mark.parametrize("change", ["model", "questions", "corrupt"])
def test_an_unusable_saved_index_is_rebuilt(
    sqlite_db: Database, encoder: Encoder, tmp_path: Path, change: str
) -> None:
    KnowledgeBase.open(sqlite_db, encoder, tmp_path / "index").upsert_faqs(FAQS)
    options: dict[str, object] = {}
    if change == "model":
        options["fingerprint"] = "another-model"
    elif change == "questions":
        options["index_questions"] = False
    else:
        (tmp_path / "index" / INDEX_FILE).write_bytes(b"not an index")
    kb = KnowledgeBase(sqlite_db, encoder, tmp_path / "index", **options)  # type: ignore[arg-type]
    assert kb.sync() == 3
    assert KnowledgeBase(sqlite_db, encoder, tmp_path / "index", **options).sync() == 0  # type: ignore[arg-type]


def test_searches_run_while_a_writer_changes_the_base(
    sqlite_db: Database, encoder: Encoder, tmp_path: Path
) -> None:
    kb = KnowledgeBase.open(sqlite_db, encoder, tmp_path / "index")
    kb.upsert_faqs(FAQS)
    errors: list[BaseException] = []
    stop = threading.Event()

    def search() -> None:
        while not stop.is_set():
            try:
                assert len(kb.dense("card", 3)) >= 1
                assert kb.keyword("branches", 3)[0].id == "hours"
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
                return

    readers = [threading.Thread(target=search) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for i in range(8):
            kb.upsert_faqs([FaqIn(f"extra-{i}", f"question {i}", f"answer number {i}")])
            kb.delete([f"extra-{i - 1}"])
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert errors == []
    assert sorted(_ids(kb.dense("x", 10))) == ["card", "extra-7", "hours", "password"]
