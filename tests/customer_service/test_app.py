"""The customer service end to end through its real app and lifespan: the project's demo knowledge base,
the real MiniLM (retrieval zero-shot), a real SQLite database and faiss index on disk."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Route
from typer.testing import CliRunner

from customer_service import create_app
from customer_service.bot import DECLINED_OPTIONS, FALLBACK
from customer_service.cli import app as cli_app
from customer_service.conversations import Conversations, NewTurn
from customer_service.database import Database
from customer_service.intents import IntentModel
from customer_service.policy import NOT_HELPED
from customer_service.settings import CustomerServiceSettings, GeneratorSettings, PolicySettings
from tests.conftest import Query, QueryPairs, problem, serve_app
from tests.customer_service.test_chunking import XHTML
from tests.customer_service.test_generation import CITED, REPLIES, SEEN, completions
from tests.shared.test_frozen_view import topic_data
from tests.shared.test_training import tiny_config
from textcore.classifier import Classifier
from textcore.frozen_view import fit_frozen_view, replace_frozen_view
from textcore.models import load_tokenizer
from textcore.training import train_classifier

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "customer_service"


def cs_settings(tmp_path: Path, database_url: str, **more: Any) -> CustomerServiceSettings:
    given: dict[str, Any] = {
        "database_url": database_url,
        "index_dir": tmp_path / "index",
        "knowledge_file": EXAMPLES / "faqs.csv",
        "templates_file": EXAMPLES / "templates.toml",
    }
    return CustomerServiceSettings(**(given | more))


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> CustomerServiceSettings:
    return cs_settings(tmp_path, sqlite_url)


@pytest.fixture
def client(settings: CustomerServiceSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def chat(client: TestClient, message: str, session_id: str | None = None, **more: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message, **more}
    if session_id is not None:
        body["session_id"] = session_id
    response = client.post("/v1/chat", json=body)
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    return reply


def test_ask_and_get_the_answer_with_its_source(client: TestClient) -> None:
    reply = chat(client, "I forgot my password for online banking, how can I reset it?")
    assert reply["action"] == "answer"
    assert reply["sources"][0]["id"] == "reset-password"
    assert "Forgot password" in reply["answer"]
    assert reply["state"] == "open" and reply["turn_id"]
    assert set(reply["intent"]) == {"name", "confidence"}
    # the session keeps the turn, with the query and sources as answered
    session = client.get(f"/v1/sessions/{reply['session_id']}").json()
    assert [t["id"] for t in session["turns"]] == [reply["turn_id"]]
    assert session["turns"][0]["sources"][0]["id"] == "reset-password"
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready"


def test_readiness_waits_for_the_database_off_the_event_loop(settings: CustomerServiceSettings) -> None:
    # Another process (the CLI mid-ingest, a backup) holds SQLite's write lock: /readyz waits for it, and
    # every other request (/healthz here) is served meanwhile. The lock is let go only once /healthz has
    # answered, so a /readyz that blocked the event loop would keep /healthz from ever answering.
    with serve_app(create_app(settings)) as base_url:
        holder = sqlite3.connect(_sqlite_file(settings), isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        ready: list[httpx.Response] = []
        waiting = threading.Thread(target=lambda: ready.append(httpx.get(f"{base_url}/readyz", timeout=60)))
        try:
            waiting.start()
            time.sleep(0.5)  # /readyz is waiting for the lock by now
            assert httpx.get(f"{base_url}/healthz", timeout=20).status_code == 200
            assert waiting.is_alive()  # the lock is still held: /readyz still waits
        finally:
            holder.execute("COMMIT")
            waiting.join(timeout=60)
            holder.close()
    assert ready[0].status_code == 200 and ready[0].json()["status"] == "ready"


def test_a_failing_database_makes_readiness_a_503_problem(
    client: TestClient, settings: CustomerServiceSettings
) -> None:
    broken = sqlite3.connect(_sqlite_file(settings), isolation_level=None)
    broken.execute("DROP TABLE knowledge")
    broken.close()
    body = problem(client.get("/readyz"), 503)
    assert "database" in body["detail"] and "no such table: knowledge" in body["detail"]
    assert client.get("/healthz").status_code == 200


def _sqlite_file(settings: CustomerServiceSettings) -> str:
    return settings.database_url.removeprefix("sqlite:///")


def test_knowledge_edits_are_visible_to_the_next_request(client: TestClient) -> None:
    question = "What time do branches open on Saturday?"
    new_answer = "From 1 March branches open on Saturday from 10:00 to 14:00."
    changed = client.put(
        "/v1/knowledge/faqs/saturday-hours",
        json={
            "question": "When are branches open on Saturdays?",
            "answer": new_answer,
            "category": "contact",
        },
    )
    assert changed.status_code == 200, changed.text
    version = changed.json()["version"]
    assert client.get("/v1/knowledge/saturday-hours").json()["text"] == new_answer
    hits = client.get("/v1/knowledge/search", params={"q": question, "k": 3}).json()
    assert "saturday-hours" in [h["id"] for h in hits]

    assert client.delete("/v1/knowledge/saturday-hours").status_code == 204
    assert client.delete("/v1/knowledge/saturday-hours").status_code == 404
    problem(client.get("/v1/knowledge/saturday-hours"), 404)
    hits = client.get("/v1/knowledge/search", params={"q": question, "k": 5}).json()
    assert "saturday-hours" not in [h["id"] for h in hits]
    assert client.get("/v1/knowledge").json()["version"] > version


def test_an_faq_posted_again_without_an_id_and_a_new_answer_replaces_the_old(client: TestClient) -> None:
    question = "Can I bring my dog to a branch?"
    first = client.post("/v1/knowledge/faqs", json={"items": [{"question": question, "answer": "No."}]})
    total = client.get("/v1/knowledge").json()["total"]
    edited = {"items": [{"question": question, "answer": "Yes: dogs are welcome in every branch."}]}
    again = client.post("/v1/knowledge/faqs", json=edited)
    assert again.status_code == 200, again.text
    assert again.json()["ids"] == first.json()["ids"]  # the stored FAQ, not one beside it
    assert client.get("/v1/knowledge").json()["total"] == total
    reply = chat(client, "Can I bring my dog into a branch?")
    assert reply["action"] == "answer" and "dogs are welcome" in reply["answer"], reply


def test_knowledge_changes_from_the_cli_are_visible_to_the_next_request(
    client: TestClient, settings: CustomerServiceSettings, tmp_path: Path
) -> None:
    # The CLI is another process on the same database and index folder: the running service must serve
    # its changes from the next request on, with no restart.
    where = ["--database-url", settings.database_url, "--index-dir", str(settings.index_dir)]
    question = "How do I freeze or block my debit card?"
    assert chat(client, question)["sources"][0]["id"] == "lock-card"

    deleted = CliRunner().invoke(cli_app, ["delete", "lock-card", *where])
    assert deleted.exit_code == 0, deleted.output
    assert "lock-card" not in [s["id"] for s in chat(client, question)["sources"]]
    hits = client.get("/v1/knowledge/search", params={"q": question, "k": 5}).json()
    assert "lock-card" not in [h["id"] for h in hits]

    faqs = tmp_path / "new.csv"
    faqs.write_text(
        "id,question,answer,category\n"
        "pet-insurance,Do you sell pet insurance?,"
        "Yes: cover for cats and dogs from 8 weeks old; quote in the app under Insurance.,insurance\n"
    )
    added = CliRunner().invoke(cli_app, ["ingest", str(faqs), *where])
    assert added.exit_code == 0, added.output
    reply = chat(client, "Can I insure my dog with you?")
    assert reply["sources"][0]["id"] == "pet-insurance", reply
    cli_version = json.loads(added.output.splitlines()[-1])["version"]
    assert client.get("/v1/knowledge").json()["version"] == cli_version


def test_an_ingest_with_a_bad_file_stores_nothing_and_names_the_file(
    client: TestClient, settings: CustomerServiceSettings, tmp_path: Path
) -> None:
    where = ["--database-url", settings.database_url, "--index-dir", str(settings.index_dir)]
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "a.md").write_text("# Savings\n\nOur easy-access saver pays 3% a year.\n")
    (folder / "b.md").write_text("   \n")  # no text: refused
    (folder / "c.md").write_text("# Loans\n\nPersonal loans from 1,000 to 25,000 euros.\n")
    before = client.get("/v1/knowledge").json()
    failed = CliRunner().invoke(cli_app, ["ingest", str(folder), *where])
    assert failed.exit_code == 2, failed.output
    assert "'b.md' (markdown) has none" in failed.output and "nothing from" in failed.output
    assert client.get("/v1/knowledge").json() == before  # a.md was not stored ahead of the bad file

    (folder / "b.md").write_text("# Mortgages\n\nFixed rates for 2, 5 or 10 years.\n")
    stored = CliRunner().invoke(cli_app, ["ingest", str(folder), *where])
    assert stored.exit_code == 0, stored.output
    chunks = client.get("/v1/knowledge", params={"kind": "chunk"}).json()["items"]
    assert sorted({c["document_id"] for c in chunks}) == ["a.md", "b.md", "c.md"]


def test_serve_stops_in_one_line_on_a_database_it_cannot_open() -> None:
    refused = CliRunner().invoke(cli_app, ["serve", "--database-url", "postgresql://u:pw@127.0.0.1:1/x"])
    assert refused.exit_code == 2, refused.output
    assert refused.output.startswith("error: cannot open the database postgresql://u:***@127.0.0.1:1/x: ")
    assert "Traceback" not in refused.output


def test_documents_are_chunked_and_cited(client: TestClient) -> None:
    text = (EXAMPLES / "documents" / "travel-and-cards.md").read_text()
    stored = client.put(
        "/v1/knowledge/documents/travel",
        json={"title": "Using your card abroad", "text": text, "format": "markdown", "category": "cards"},
    )
    assert stored.status_code == 200, stored.text
    assert stored.json()["ids"][0] == "travel#0"
    reply = chat(client, "Should I pay in euros or the local currency when a shop abroad asks me?")
    assert reply["action"] == "answer"
    assert reply["sources"][0]["id"].startswith("travel#")
    chunks = client.get("/v1/knowledge", params={"kind": "chunk"}).json()
    assert chunks["total"] == len(stored.json()["ids"])
    # deleting the document removes all its chunks
    assert client.delete("/v1/knowledge/travel").status_code == 204
    assert client.get("/v1/knowledge", params={"kind": "chunk"}).json()["total"] == 0


MORTGAGE = (
    "# Mortgage guide\n\n## Fixed rates\n\nOur fixed-rate mortgages keep the same interest rate for two, "
    "five or ten years. You can overpay up to 10% a year without a fee.\n\n## Variable rates\n\n"
    "Variable-rate mortgages follow the base rate.\n"
)


def test_a_markdown_document_sent_without_its_format_is_read_as_markdown(client: TestClient) -> None:
    # The format defaulted to "text": the "#" markers were kept and answered ("# Mortgage guide ## Fixed
    # rates Our fixed-rate mortgages...")
    def chunks(document: str, body: dict[str, str]) -> list[tuple[str, str]]:
        stored = client.put(f"/v1/knowledge/documents/{document}", json={"title": "Mortgage guide", **body})
        assert stored.status_code == 200, stored.text
        listed = client.get("/v1/knowledge", params={"document": document}).json()["items"]
        return [(item["title"], item["text"]) for item in listed]

    read = chunks("mortgage", {"text": MORTGAGE})
    assert [title for title, _ in read] == ["Mortgage guide > Fixed rates", "Mortgage guide > Variable rates"]
    assert not any("#" in text for _, text in read)
    reply = chat(client, "Can I overpay my fixed-rate mortgage?")
    assert reply["sources"][0]["id"] == "mortgage#0" and not reply["answer"].startswith("#"), reply
    # plain text is read as it always was, and a format given is kept
    plain = "Call us on 0800 123 or write to #help on our forum.\n\nC# and F# developers: see the API page."
    assert chunks("plain", {"text": plain}) == chunks("plain", {"text": plain, "format": "text"})
    assert [text for _, text in chunks("plain", {"text": plain})] == [plain.replace("\n\n", "\n")]
    assert chunks("as-text", {"text": MORTGAGE, "format": "text"})[0][1].startswith(
        "# Mortgage guide\n## Fixed"
    )


SAVINGS_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Savings</title><style>p { color: red }</style></head><body>"
    "<h1>Savings accounts</h1><h2>Interest</h2><p>Our easy-access saver pays 3.1% a year, paid "
    "monthly.</p><h2>Withdrawals</h2><p>You can withdraw up to <b>four</b> times a year without notice.</p>"
    "</body></html>"
)


def test_an_html_document_sent_without_its_format_is_read_as_html(client: TestClient) -> None:
    # Read as plain text, the tags (and the style sheet) were stored in the passages and answered as words
    def chunks(document: str, text: str) -> list[tuple[str, str]]:
        stored = client.put(f"/v1/knowledge/documents/{document}", json={"title": "Savings", "text": text})
        assert stored.status_code == 200, stored.text
        listed = client.get("/v1/knowledge", params={"document": document}).json()["items"]
        return [(item["title"], item["text"]) for item in listed]

    explicit = client.put(
        "/v1/knowledge/documents/explicit",
        json={"title": "Savings", "text": SAVINGS_PAGE, "format": "html"},
    )
    assert explicit.status_code == 200, explicit.text
    as_html = client.get("/v1/knowledge", params={"document": "explicit"}).json()["items"]
    read = chunks("savings", SAVINGS_PAGE)
    assert read == [(item["title"], item["text"]) for item in as_html]
    assert [title for title, _ in read] == [
        "Savings > Savings accounts > Interest",
        "Savings > Savings accounts > Withdrawals",
    ]
    assert not any("<" in text or "color" in text for _, text in read)
    fragment = "<h2>Overdrafts</h2>\n<p>An arranged overdraft costs 39.9% EAR.</p>"
    assert chunks("fragment", fragment) == [
        ("Savings > Overdrafts", "An arranged overdraft costs 39.9% EAR.")
    ]
    # text that merely names a tag, and Markdown with inline HTML, are read as before
    plain = "To start a paragraph, type <p> in the editor.\n\nThen write 2 < 3 > 1."
    assert [text for _, text in chunks("plain", plain)] == [plain.replace("\n\n", "\n")]
    markdown = "# Cards\n\n## Limits\n\nThe daily limit is <b>500</b> euros.\n"
    assert [title for title, _ in chunks("cards", markdown)] == ["Savings > Cards > Limits"]


def test_a_documents_chunks_are_listed_by_its_id_and_its_id_alone_names_them(client: TestClient) -> None:
    text = (EXAMPLES / "documents" / "travel-and-cards.md").read_text()
    body = {"title": "Using your card abroad", "text": text, "format": "markdown"}
    ids = client.put("/v1/knowledge/documents/guides/travel.md", json=body).json()["ids"]
    other = client.put("/v1/knowledge/documents/guides/other.md", json=body).json()["ids"]
    assert len(ids) > 1 and len(other) == len(ids)
    listed = client.get("/v1/knowledge", params={"document": "guides/travel.md"}).json()
    assert [e["id"] for e in listed["items"]] == ids and listed["total"] == len(ids)
    params: Query = {"document": "guides/travel.md", "offset": 1, "limit": 1}
    page = client.get("/v1/knowledge", params=params).json()
    assert [e["id"] for e in page["items"]] == ids[1:2] and page["total"] == len(ids)
    assert client.get("/v1/knowledge", params={"document": "nothing"}).json() == {
        "items": [],
        "total": 0,
        "version": listed["version"],
    }
    problem(client.get("/v1/knowledge", params={"document": ""}), 422)
    # the document's own id is no entry: the 404 says what it is and how to read it
    detail = problem(client.get("/v1/knowledge/guides/travel.md"), 404)["detail"]
    assert f"document of {len(ids)} chunk(s)" in detail and "?document=" in detail
    assert "no entry" in problem(client.get("/v1/knowledge/guides/none.md"), 404)["detail"]


def test_an_xhtml_page_is_answered_from_its_text_not_its_markup(client: TestClient) -> None:
    # an XML declaration once kept the whole page, script and nav included, as the chunk: the bot's answer
    stored = client.put(
        "/v1/knowledge/documents/boxes.html",
        json={"title": "Safe deposit boxes", "text": XHTML, "format": "html"},
    )
    assert stored.status_code == 200, stored.text
    assert (
        client.get("/v1/knowledge/boxes.html%230").json()["text"]
        == "A safe deposit box costs 80 euros a year."
    )
    reply = chat(client, "How much does a safe deposit box cost?")
    assert reply["sources"][0]["id"] == "boxes.html#0"
    assert reply["answer"] == "A safe deposit box costs 80 euros a year. [1]"


def test_document_ids_with_slashes_are_reachable(client: TestClient) -> None:
    # Files ingested from a folder keep their relative path as id ("guides/travel.md").
    text = (EXAMPLES / "documents" / "travel-and-cards.md").read_text()
    body = {"title": "Using your card abroad", "text": text, "format": "markdown"}
    stored = client.put("/v1/knowledge/documents/guides/travel.md", json=body)
    assert stored.status_code == 200, stored.text
    first = stored.json()["ids"][0]
    assert first == "guides/travel.md#0"
    assert client.get("/v1/knowledge/guides/travel.md%230").json()["id"] == first
    assert client.get("/v1/knowledge/guides%2Ftravel.md%230").json()["id"] == first  # encoded "/" too
    assert client.delete("/v1/knowledge/guides/travel.md").status_code == 204
    problem(client.get("/v1/knowledge/guides/travel.md%230"), 404)
    # an id that GET /v1/knowledge/<id> could never reach is refused when it is written
    refused = problem(client.put("/v1/knowledge/faqs/search", json={"question": "q?", "answer": "a"}), 422)
    assert "reserved" in refused["detail"]
    for offset in (10_000_001, 2**63, 10**20):  # a listing offset no database integer holds: 422, not 500
        problem(client.get("/v1/knowledge", params={"offset": offset}), 422)


def test_handoff_flow(client: TestClient) -> None:
    first = chat(client, "How do I open a savings account?")
    sid = first["session_id"]
    asked = chat(client, "this is useless, I want to talk to a real person", sid)
    assert asked["action"] == "handoff" and asked["state"] == "waiting_for_agent"
    assert asked["sources"] == []
    waiting = chat(client, "hello? anyone there?", sid)
    assert waiting["action"] == "handoff" and waiting["state"] == "waiting_for_agent"
    session = client.get(f"/v1/sessions/{sid}").json()
    assert session["state"] == "waiting_for_agent"
    assert session["handoff_reason"] == "customer asked for a person"
    assert [t["action"] for t in session["turns"]] == ["answer", "handoff", "handoff"]
    # the agent sees why the bot acted, and which messages came while the customer waited
    assert session["turns"][1]["reason"] == "customer asked for a person"
    assert [t["awaiting_agent"] for t in session["turns"]] == [False, False, True]
    figures = client.get("/v1/analytics").json()
    assert figures["turns"] == 3 and figures["awaiting_agent"] == 1
    assert figures["actions"]["handoff"] == 1 and figures["rates"]["handoff"] == 0.5
    assert "hello? anyone there?" not in {u["question"] for u in figures["top_unanswered"]}
    # the agents find it in their queue, with what the customer said last
    queue = client.get("/v1/sessions", params={"state": "waiting_for_agent"}).json()
    assert queue["total"] == 1 and queue["items"][0]["id"] == sid
    assert queue["items"][0]["last_message"] == "hello? anyone there?" and queue["items"][0]["turns"] == 3
    assert queue["items"][0]["handed_off_at"] == session["handed_off_at"] is not None
    problem(client.get("/v1/sessions", params={"state": "lost"}), 422)
    problem(client.get("/v1/sessions", params={"limit": 501}), 422)

    resolved = client.post(f"/v1/sessions/{sid}/resolve")
    assert resolved.json()["state"] == "closed"
    assert client.get("/v1/sessions", params={"state": "waiting_for_agent"}).json()["items"] == []
    assert [t["action"] for t in resolved.json()["turns"]] == ["answer", "handoff", "handoff"]
    again = chat(client, "How do I cancel a direct debit?", sid)  # the customer comes back
    assert again["action"] == "answer" and again["state"] == "open"

    # an agent can take a session over from the console
    taken = client.post(f"/v1/sessions/{sid}/handoff", json={"reason": "VIP customer"})
    assert taken.json()["state"] == "waiting_for_agent"
    assert len(taken.json()["turns"]) == 4  # the agent sees the conversation so far
    problem(client.post("/v1/sessions/no-such-session/handoff"), 404)


def test_a_long_sessions_turns_come_a_page_at_a_time(
    client: TestClient, settings: CustomerServiceSettings
) -> None:
    # An agent console reads a session, and polls it: the body stays bounded however long the session
    # grows. It shows the latest turns first; next_cursor reads back through older ones, `after` what came
    # since the last turn seen.
    sid = chat(client, "How do I open a savings account?")["session_id"]
    db = Database(settings.database_url)  # 149 more turns, stored as the bot stores them
    try:
        for n in range(1, 150):
            turn = NewTurn(message=f"message {n}", query=f"message {n}", answer="ok", action="answer")
            Conversations(db).record(sid, turn, state="open", fallback_streak=0, handoff_reason=None)
    finally:
        db.dispose()
    url = f"/v1/sessions/{sid}"

    def positions(page: dict[str, Any]) -> list[int]:
        return [t["position"] for t in page["turns"]]

    latest = client.get(url).json()
    assert positions(latest) == list(range(50, 150)) and latest["turn_count"] == 150  # oldest first
    older = client.get(url, params={"cursor": latest["next_cursor"], "limit": 30}).json()
    assert positions(older) == list(range(20, 50)) and older["turn_count"] == 150
    first = client.get(url, params={"cursor": older["next_cursor"], "limit": 30}).json()
    assert positions(first) == list(range(20)) and first["next_cursor"] is None
    assert first["turns"][0]["message"] == "How do I open a savings account?"

    assert client.get(url, params={"after": 149}).json()["turns"] == []  # nothing new yet
    chat(client, "And what interest does it pay?", sid)
    since = client.get(url, params={"after": 149}).json()
    assert [t["message"] for t in since["turns"]] == ["And what interest does it pay?"]
    assert since["next_cursor"] is None
    ahead = client.get(url, params={"after": 139, "limit": 6}).json()
    assert positions(ahead) == list(range(140, 146))
    rest = client.get(url, params={"cursor": ahead["next_cursor"], "limit": 6}).json()
    assert positions(rest) == list(range(146, 151)) and rest["next_cursor"] is None

    taken = client.post(f"{url}/handoff").json()  # the console's actions answer with the latest page too
    assert positions(taken) == list(range(51, 151)) and taken["turn_count"] == 151
    assert positions(client.get(url, params={"limit": 500}).json()) == list(range(151))
    for bad in (
        {"limit": 0},
        {"limit": 501},
        {"after": -1},
        {"cursor": "yesterday"},
        {"cursor": "before:99999999999"},
        {"cursor": latest["next_cursor"], "after": 3},
    ):
        problem(client.get(url, params=bad), 422)
    problem(client.get("/v1/sessions/no-such-session", params={"limit": 5}), 404)


def test_banking_questions_about_leaving_complaining_or_paying_someone_stay_with_the_bot(
    client: TestClient,
) -> None:
    # Topics are not anger, and a payment to someone is no request for a person: the knowledge base answers
    # (or the bot asks to rephrase); the customer is not queued for an agent.
    closing = chat(client, "How do I close my account?")
    assert (closing["action"], closing["sources"][0]["id"]) == ("answer", "close-account"), closing
    for message in [
        "Can I switch banks and keep my direct debits?",
        "How do I make a complaint?",
        "How do I transfer to someone abroad?",
        "Can I transfer to a person without their IBAN?",
    ]:
        reply = chat(client, message)
        assert reply["action"] != "handoff" and reply["state"] == "open", (message, reply)
    assert client.get("/v1/analytics").json()["actions"]["handoff"] == 0


def test_out_of_scope_gets_fallback_then_a_person(client: TestClient) -> None:
    first = chat(client, "Who won the football world cup in 1998?")
    assert first["action"] == "fallback" and first["sources"] == []
    assert "rephrase" in first["answer"]
    second = chat(client, "What is the best recipe for banana bread?", first["session_id"])
    assert second["action"] == "handoff"  # two fallbacks in a row
    analytics = client.get("/v1/analytics").json()
    assert analytics["actions"]["fallback"] == 1 and analytics["actions"]["handoff"] == 1
    assert {u["question"] for u in analytics["top_unanswered"]} == {
        "who won the football world cup in 1998?",
        "what is the best recipe for banana bread?",
    }


def test_requests_for_a_person_and_angry_messages_are_not_unanswered_questions(client: TestClient) -> None:
    # "Top unanswered" is what the knowledge base is missing: the messages the bot could not answer. A
    # customer asking for a person, or handed to one for their anger, asked the bot nothing it failed at.
    assert chat(client, "Can I talk to a real person please?")["action"] == "handoff"
    assert chat(client, "Worst bank ever, I'm sick of your useless app")["action"] == "handoff"
    first = chat(client, "Who won the football world cup in 1998?")
    again = chat(client, "What is the best recipe for banana bread?", first["session_id"])
    assert again["action"] == "handoff"  # two fallbacks in a row: this one counts
    analytics = client.get("/v1/analytics").json()
    assert analytics["actions"]["handoff"] == 3 and analytics["actions"]["fallback"] == 1
    assert [(u["question"], u["count"]) for u in analytics["top_unanswered"]] == [
        ("what is the best recipe for banana bread?", 1),
        ("who won the football world cup in 1998?", 1),
    ]


def test_a_reply_that_the_answer_did_not_help_is_no_unanswered_question(client: TestClient) -> None:
    # the content team reads "top unanswered" for FAQs to write: "it didn't work" names none
    sid = chat(client, "How do I reset my online banking password?")["session_id"]
    assert chat(client, "it didn't work", sid)["action"] == "fallback"
    assert chat(client, "What is the best recipe for banana bread?")["action"] == "fallback"
    analytics = client.get("/v1/analytics").json()
    assert analytics["actions"]["fallback"] == 2  # still a fallback
    assert [u["question"] for u in analytics["top_unanswered"]] == [
        "what is the best recipe for banana bread?"
    ]


def test_a_clarifying_question_is_answered_by_choosing(client: TestClient) -> None:
    asked = chat(client, "How do I open an account?")
    assert asked["action"] == "clarify", asked
    offered = [s["id"] for s in asked["sources"]]
    assert set(offered) == {"open-savings", "open-business"}
    sid = asked["session_id"]
    chosen = chat(client, "the second one", sid)
    assert (chosen["action"], chosen["sources"][0]["id"]) == ("answer", offered[1]), chosen
    turn = client.get(f"/v1/sessions/{sid}").json()["turns"][1]
    assert turn["query"] == asked["sources"][1]["title"]  # what the customer meant
    assert turn["reason"] == f"chosen from the clarifying question: {offered[1]}"
    # a chat widget's quick-reply button sends the option's title back
    again = chat(client, "How do I open an account?")
    assert chat(client, again["sources"][0]["title"], again["session_id"])["sources"][0]["id"] == offered[0]
    # a new question after a clarifying one is read as it is
    moved_on = chat(
        client,
        "Are there fees for international transfers?",
        chat(client, "How do I open an account?")["session_id"],
    )
    assert (moved_on["action"], moved_on["sources"][0]["id"]) == ("answer", "transfer-fees")


def test_declining_both_options_of_a_clarifying_question_asks_for_more(client: TestClient) -> None:
    # "none of them" was read as a follow-up of "How do I open an account?" and answered with the first
    # option the customer had just declined; "no" closed the conversation ("Alright! If anything else...")
    for reply in ("none of them", "Neither of those.", "no", "nope, something else"):
        asked = chat(client, "How do I open an account?")
        assert asked["action"] == "clarify", asked
        declined = chat(client, reply, asked["session_id"])
        assert (declined["action"], declined["answer"], declined["sources"]) == ("fallback", FALLBACK, []), (
            reply
        )
        session = client.get(f"/v1/sessions/{asked['session_id']}").json()
        assert session["turns"][-1]["reason"] == DECLINED_OPTIONS and session["fallback_streak"] == 1
    # declined again: repeated fallback goes to a person
    assert chat(client, "neither", asked["session_id"])["action"] == "handoff"
    # a choice, a new question and a thanks are read as before
    asked = chat(client, "How do I open an account?")
    assert (
        chat(client, "no, the second one", asked["session_id"])["sources"][0]["id"]
        == asked["sources"][1]["id"]
    )
    asked = chat(client, "How do I open an account?")
    assert chat(client, "no thanks", asked["session_id"])["action"] == "answer"


def test_saying_an_answer_did_not_help_is_no_follow_up_answered_again(client: TestClient) -> None:
    # "it didn't work" and "that didn't help" were read as follow-ups of the question before ("How do I reset
    # my online banking password, it didn't work") and answered again with the answer they said did not help
    sid = chat(client, "How do I reset my online banking password?")["session_id"]
    for reply in ("it didn't work", "thanks, but that's not what I asked"):
        declined = chat(client, reply, sid)
        assert (declined["action"], declined["answer"], declined["sources"]) == ("fallback", FALLBACK, []), (
            reply
        )
        assert client.get(f"/v1/sessions/{sid}").json()["turns"][-1]["reason"] == NOT_HELPED
        assert chat(client, "How do I reset my online banking password?", sid)["action"] == "answer"
    assert chat(client, "that didn't help", sid)["action"] == "fallback"
    assert chat(client, "still not working", sid)["action"] == "handoff"  # twice in a row: to a person
    # a question of its own, or a request for a person, is read as before
    sid = chat(client, "How do I reset my online banking password?")["session_id"]
    chat(client, "My card doesn't work abroad", sid)
    assert client.get(f"/v1/sessions/{sid}").json()["turns"][-1]["reason"] != NOT_HELPED
    assert chat(client, "it didn't work, I want to talk to a person", sid)["action"] == "handoff"


def test_follow_up_questions_use_the_previous_turn(client: TestClient) -> None:
    first = chat(client, "What are the fees for international transfers?")
    assert first["sources"][0]["id"] == "transfer-fees"
    follow = chat(client, "and for business accounts?", first["session_id"])
    turn = client.get(f"/v1/sessions/{first['session_id']}").json()["turns"][1]
    assert turn["query"] == "What are the fees for international transfers, business accounts?"
    # the rewritten query finds both fee FAQs about equally; the follow-up's own words pick one
    assert (follow["action"], follow["sources"][0]["id"]) == ("answer", "business-fees")
    assert follow["answer"].startswith("Business accounts cost")
    savings = chat(client, "How do I open a savings account?")
    assert savings["sources"][0]["id"] == "open-savings"
    business = chat(client, "and for business accounts?", savings["session_id"])
    assert (business["action"], business["sources"][0]["id"]) == ("answer", "open-business")


def test_a_follow_up_after_an_ok_or_a_thanks_still_uses_the_previous_turn(client: TestClient) -> None:
    # "thanks! and for business accounts?" and "ok and how do I unfreeze it?" were read alone: the connective
    # was no longer first, and "ok" made the pronoun question longer than a short one
    savings = chat(client, "How do I open a savings account?")
    business = chat(client, "thanks! and for business accounts?", savings["session_id"])
    assert (business["action"], business["sources"][0]["id"]) == ("answer", "open-business")
    sid = chat(client, "How do I freeze or block my debit card?")["session_id"]
    chat(client, "ok and how do I unfreeze it then?", sid)
    turn = client.get(f"/v1/sessions/{sid}").json()["turns"][-1]
    assert turn["query"] == "How do I freeze or block my debit card, how do I unfreeze it then?"
    assert turn["sources"][0]["id"] == "lock-card"


def test_a_short_question_with_a_pronoun_and_a_topic_of_its_own_is_not_answered_as_the_old_one(
    client: TestClient,
) -> None:
    # "that" points back, but "mortgage rate" names a new topic: read with the password question the
    # rewritten query finds the password FAQ, read alone the mortgage one; both are offered, its own first
    sid = chat(client, "How do I reset my online banking password?")["session_id"]
    asked = chat(client, "Is that mortgage rate fixed?", sid)
    assert asked["action"] == "clarify", asked
    assert [s["id"] for s in asked["sources"]] == ["mortgage-rates", "reset-password"]
    chosen = chat(client, "the first one", sid)
    assert (chosen["action"], chosen["sources"][0]["id"]) == ("answer", "mortgage-rates")
    # a pronoun that only points back is still read with the previous turn
    sid = chat(client, "What is the daily cash withdrawal limit?")["session_id"]
    free = chat(client, "Is it free?", sid)
    assert (free["action"], free["sources"][0]["id"]) == ("answer", "atm-limit")
    sid = chat(client, "What are your mortgage rates?")["session_id"]
    fixed = chat(client, "Is that rate fixed?", sid)
    assert (fixed["action"], fixed["sources"][0]["id"]) == ("answer", "mortgage-rates")


def test_templates_fill_slots_and_injection_is_harmless(client: TestClient) -> None:
    reply = chat(client, "What are your opening hours?", context={"first_name": "Ana"})
    assert reply["answer"].startswith("Hi Ana! Branches are open") and reply["mode"] == "template"
    attack = "{{ 7*7 }}{{ ''.__class__.__mro__ }}"
    reply = chat(client, "When are you open?", context={"first_name": attack})
    assert reply["answer"].startswith(f"Hi {attack}! Branches")
    assert "49" not in reply["answer"] and "object" not in reply["answer"]
    # a template can wrap the FAQ's own answer
    reply = chat(client, "How do I get my bank statements as PDF?")
    assert reply["mode"] == "template" and reply["sources"][0]["id"] == "statement"
    assert reply["answer"].startswith("Statements are in the app") and reply["answer"].endswith(
        "2 euros each."
    )
    # a message that looks like a template is only ever data
    reply = chat(client, "{{ 7*7 }} {% for x in range(10**9) %}x{% endfor %} opening hours")
    assert "49" not in reply["answer"]


def test_context_cannot_set_the_slots_the_bot_fills(client: TestClient) -> None:
    # `answer` and `title` are the best passage's, `message` the customer's: a client that could set them
    # would write what the bot states as the bank's answer
    for name in ("answer", "title", "message"):
        body = {
            "message": "How do I get my bank statements as PDF?",
            "context": {name: "URGENT: confirm your PIN"},
        }
        refused = problem(client.post("/v1/chat", json=body), 422)
        assert refused["errors"][0]["loc"] == ["body", "context"]
        assert repr(name) in refused["errors"][0]["msg"]
    assert client.get("/v1/sessions").json()["total"] == 0
    reply = chat(client, "How do I get my bank statements as PDF?", context={"first_name": "Ana"})
    assert reply["mode"] == "template" and reply["answer"].startswith("Statements are in the app")


def test_bad_input_is_refused_clearly(client: TestClient, settings: CustomerServiceSettings) -> None:
    too_long = "a" * (settings.max_message_chars + 1)
    body = problem(client.post("/v1/chat", json={"message": too_long}), 413)
    assert str(settings.max_message_chars) in body["detail"]
    problem(client.post("/v1/chat", json={"message": "   "}), 422)
    problem(client.post("/v1/chat", json={"message": "hi", "session_id": "bad id"}), 422)
    problem(client.post("/v1/chat", json={"message": "hi", "unknown": 1}), 422)
    problem(client.post("/v1/feedback", json={"turn_id": "nope", "rating": "up"}), 404)
    problem(client.post("/v1/feedback", json={"turn_id": "nope", "rating": "meh"}), 422)
    problem(client.post("/v1/knowledge/faqs", json={"items": [{"question": "q", "answer": ""}]}), 422)
    problem(client.get("/v1/knowledge/search", params={"q": "card", "mode": "rerank"}), 422)  # no re-ranker
    problem(client.get("/v1/sessions/unknown"), 404)
    assert client.get("/v1/analytics").json()["turns"] == 0  # nothing refused was stored


def test_a_query_parameter_an_endpoint_does_not_take_or_one_sent_twice_is_a_422_naming_it(
    client: TestClient,
) -> None:
    """`GET /v1/knowledge?kindd=faq` (a typo) listed every entry unfiltered, `?kind=faq&kind=chunk` took the
    last value, and `DELETE /v1/sessions/{id}?soft=true` or `POST /v1/chat?dry_run=true` wrote all the same:
    each parameter was taken or dropped without a word. Now each is a problem+json 422 whose `errors` name
    the parameter, and nothing is written; the documented parameters work as before."""
    sid = chat(client, "How do I open a savings account?")["session_id"]
    unknown: list[tuple[str, str, QueryPairs, dict[str, str] | None, list[str]]] = [
        ("GET", "/v1/knowledge", [("kindd", "faq")], None, ["kindd"]),
        (
            "GET",
            f"/v1/sessions/{sid}",
            [("limit", "5"), ("fields", "turns"), ("sort", "desc")],
            None,
            ["fields", "sort"],
        ),
        ("DELETE", f"/v1/sessions/{sid}", [("soft", "true")], None, ["soft"]),
        (
            "POST",
            "/v1/chat",
            [("dry_run", "true")],
            {"message": "And what interest does it pay?"},
            ["dry_run"],
        ),
    ]
    for method, path, params, body, names in unknown:
        errors = problem(client.request(method, path, params=params, json=body), 422)["errors"]
        assert [(e["loc"], e["type"]) for e in errors] == [(["query", n], "extra_forbidden") for n in names]
    assert (
        "expected one of category, document, kind, limit, offset"
        in problem(client.get("/v1/knowledge", params={"kindd": "faq"}), 422)["errors"][0]["msg"]
    )
    twice: list[tuple[str, QueryPairs, dict[str, int]]] = [
        ("/v1/knowledge", [("kind", "faq"), ("kind", "chunk")], {"kind": 2}),
        ("/v1/knowledge/search", [("q", "savings"), ("k", "1"), ("k", "50"), ("k", "2")], {"k": 3}),
        (
            "/v1/sessions",
            [("state", "open"), ("state", "closed"), ("limit", "1"), ("limit", "1")],
            {"state": 2, "limit": 2},
        ),
    ]
    for path, params, counts in twice:
        errors = problem(client.get(path, params=params), 422)["errors"]
        assert [(e["loc"], e["msg"], e["type"]) for e in errors] == [
            (["query", name], f"expected one value, found {n}", "repeated") for name, n in counts.items()
        ]
    session = client.get(f"/v1/sessions/{sid}", params={"limit": 5}).json()
    assert [t["message"] for t in session["turns"]] == ["How do I open a savings account?"]
    faqs = client.get("/v1/knowledge", params={"kind": "faq", "limit": 2})
    assert faqs.status_code == 200 and [e["kind"] for e in faqs.json()["items"]] == ["faq", "faq"]
    found = client.get("/v1/knowledge/search", params={"q": "savings account", "k": 2})
    assert found.status_code == 200 and len(found.json()) == 2
    assert client.delete(f"/v1/sessions/{sid}").status_code == 204


def test_session_ids_a_url_path_cannot_carry_are_refused_everywhere(client: TestClient) -> None:
    # "." and ".." are dot segments: /v1/sessions/.. is /v1 to every client, so such a session could be
    # neither read, resolved nor erased. They are refused wherever a session id comes in, naming the rule;
    # other ids of those characters (dots among others included) stay valid.
    for bad in (".", ".."):
        for stream in ("/v1/chat", "/v1/chat/stream"):
            body = problem(client.post(stream, json={"message": "hi", "session_id": bad}), 422)
            assert body["errors"][0]["loc"] == ["body", "session_id"]
            assert "other than '.' or '..'" in body["errors"][0]["msg"]
        encoded = bad.replace(".", "%2E")  # how a client that does not normalise the path could send it
        for method, path in (
            ("GET", f"/v1/sessions/{encoded}"),
            ("DELETE", f"/v1/sessions/{encoded}"),
            ("POST", f"/v1/sessions/{encoded}/handoff"),
            ("POST", f"/v1/sessions/{encoded}/resolve"),
        ):
            body = problem(client.request(method, path), 422)
            assert body["errors"][0]["loc"] == ["path", "session_id"], (method, path)
    assert client.get("/v1/analytics").json()["turns"] == 0  # nothing refused was stored
    for good in ("...", "a.b", "widget-42:abc", "_x-1."):
        assert chat(client, "How do I block my debit card?", good)["session_id"] == good
        assert client.get(f"/v1/sessions/{good}").json()["id"] == good


def test_knowledge_ids_a_url_path_cannot_carry_are_refused(client: TestClient) -> None:
    # An entry stored as ".." or "guides/../x" could be neither read nor deleted: every client resolves
    # /v1/knowledge/.. to /v1 and /v1/knowledge/guides/../x to /v1/knowledge/x.
    version = client.get("/v1/knowledge").json()["version"]
    for bad in (".", "..", "guides/../x"):
        faq = {"id": bad, "question": "Can I bring my dog?", "answer": "Guide dogs are welcome."}
        body = problem(client.post("/v1/knowledge/faqs", json={"items": [faq]}), 422)
        assert "'.' or '..' between slashes" in body["detail"] and repr(bad) in body["detail"]
    encoded = "guides/%2E%2E/x"  # as a client that does not resolve the path would send it
    problem(client.put(f"/v1/knowledge/documents/{encoded}", json={"title": "t", "text": "Some text."}), 422)
    problem(client.put("/v1/knowledge/faqs/%2E%2E", json={"question": "q?", "answer": "a."}), 422)
    assert client.get("/v1/knowledge").json()["version"] == version  # nothing was stored
    for good in ("...", "v1.2", "guides/cards.md"):  # dots within a part are ordinary
        faq = {"id": good, "question": "Can I bring my dog?", "answer": "Guide dogs are welcome."}
        assert client.post("/v1/knowledge/faqs", json={"items": [faq]}).status_code == 200
        assert client.get(f"/v1/knowledge/{good}").json()["id"] == good
        edited = {"question": "Can I bring my dog?", "answer": "Pets are welcome."}
        put = client.put(f"/v1/knowledge/faqs/{good}", json=edited)  # "guides/cards.md" was a 405
        assert put.status_code == 200 and put.json()["ids"] == [good], put.text
        assert client.get(f"/v1/knowledge/{good}").json()["text"] == "Pets are welcome."
        assert client.delete(f"/v1/knowledge/{good}").status_code == 204
    problem(client.put("/v1/knowledge/faqs/guides/%2E%2E/x", json={"question": "q?", "answer": "a."}), 422)


def test_an_faq_id_in_the_path_is_stripped_as_one_in_a_body_is(client: TestClient) -> None:
    # POST /v1/knowledge/faqs strips the ids in its body; PUT stored "%20sp%20" as " sp ", an id no POST
    # could write again and that GET /v1/knowledge/sp did not reach.
    faq = {"question": "Do you open on Sundays?", "answer": "No, we are closed on Sundays."}
    put = client.put("/v1/knowledge/faqs/%20sp%20", json=faq)
    assert put.status_code == 200 and put.json()["ids"] == ["sp"]
    assert client.get("/v1/knowledge/sp").json()["id"] == "sp"
    problem(client.get("/v1/knowledge/%20sp%20"), 404)
    posted = client.post("/v1/knowledge/faqs", json={"items": [{**faq, "id": " sp "}]})
    assert posted.json()["ids"] == ["sp"]
    listed = client.get("/v1/knowledge", params={"kind": "faq", "limit": 500}).json()
    ids = [entry["id"] for entry in listed["items"]]
    assert listed["total"] == len(ids) and ids.count("sp") == 1 and " sp " not in ids
    version = client.get("/v1/knowledge").json()["version"]
    problem(client.put("/v1/knowledge/faqs/%20%20", json=faq), 422)  # nothing but spaces: no id
    assert client.get("/v1/knowledge").json()["version"] == version


def test_a_feedback_comment_of_whitespace_alone_is_no_comment(
    client: TestClient, settings: CustomerServiceSettings
) -> None:
    # Other stored free text (messages, reasons, titles) is stripped; a blank comment was stored as sent.
    turns = [chat(client, "How long does a replacement card take?")["turn_id"] for _ in range(2)]
    for turn_id, comment in zip(turns, (" \n\t ", "  thanks  "), strict=True):
        sent = {"turn_id": turn_id, "rating": "up", "comment": comment}
        assert client.post("/v1/feedback", json=sent).status_code == 204
    with sqlite3.connect(_sqlite_file(settings)) as db:
        stored = dict(db.execute("SELECT turn_id, comment FROM feedback").fetchall())
    assert stored == {turns[0]: None, turns[1]: "thanks"}


def test_control_characters_in_stored_text_are_refused_at_the_schema(client: TestClient) -> None:
    # PostgreSQL cannot store NUL, and a stream is under way when its turn is stored: text that is kept
    # (message, template slots, feedback comment, hand-off reason) is refused with a 422 naming the field.
    for path in ("/v1/chat", "/v1/chat/stream"):
        body = problem(client.post(path, json={"message": "How do I reset my password?\u0000"}), 422)
        assert body["errors"][0]["loc"] == ["body", "message"] and "U+0000 (NUL)" in body["errors"][0]["msg"]
    slot = {"message": "opening hours", "context": {"first_name": "Ana\x1b[2J"}}
    body = problem(client.post("/v1/chat", json=slot), 422)
    assert body["errors"][0]["loc"] == ["body", "context", "first_name"]
    assert client.get("/v1/sessions").json()["total"] == 0  # nothing refused opened a session
    # tab, newline and carriage return are ordinary text
    reply = chat(client, "How do I reset\tmy password?\r\nI forgot it.")
    assert reply["action"] == "answer"
    comment = {"turn_id": reply["turn_id"], "rating": "down", "comment": "bad\x00"}
    assert problem(client.post("/v1/feedback", json=comment), 422)["errors"][0]["loc"] == ["body", "comment"]
    handoff = client.post(f"/v1/sessions/{reply['session_id']}/handoff", json={"reason": "VIP\x07"})
    assert problem(handoff, 422)["errors"][0]["loc"] == ["body", "reason"]
    assert client.get("/v1/analytics").json()["feedback"] == {"up": 0, "down": 0}


def test_control_characters_in_knowledge_entries_are_refused_naming_where(
    client: TestClient, settings: CustomerServiceSettings, tmp_path: Path
) -> None:
    # An FAQ or document is stored and shown to customers and agents: a control character other than tab,
    # newline and carriage return is refused, never cleaned away, with the field and its place (API) or the
    # file and its row or line (ingest), and nothing is stored.
    before = client.get("/v1/knowledge").json()
    put = client.put("/v1/knowledge/faqs/hours", json={"question": "When?", "answer": "At nine.\x00"})
    error = problem(put, 422)["errors"][0]
    assert error["loc"] == ["body", "answer"] and "U+0000 (NUL) at character 9" in error["msg"]
    bulk = [{"question": "Open?", "answer": "Yes."}, {"question": "\x0bOpen today?", "answer": "Yes."}]
    error = problem(client.post("/v1/knowledge/faqs", json={"items": bulk}), 422)["errors"][0]
    assert error["loc"] == ["body", "items", 1, "question"]  # checked as sent: not stripped away
    assert "U+000B at character 1" in error["msg"]
    bulk = [{"question": "Open?", "answer": "Yes.", "category": "hours\x7f"}]
    error = problem(client.post("/v1/knowledge/faqs", json={"items": bulk}), 422)["errors"][0]
    assert error["loc"] == ["body", "items", 0, "category"] and "U+007F at character 6" in error["msg"]
    document = {"title": "Travel", "text": "# Travel\n\nTell us\x1b[31m before you travel.\n"}
    error = problem(client.put("/v1/knowledge/documents/travel.md", json=document), 422)["errors"][0]
    assert error["loc"] == ["body", "text"] and "U+001B at character 18 (line 3, column 8)" in error["msg"]
    title = {"title": "Travel\x08", "text": "Tell us before you travel."}
    error = problem(client.put("/v1/knowledge/documents/travel.md", json=title), 422)["errors"][0]
    assert error["loc"] == ["body", "title"]
    # the id in the path is checked by the knowledge base itself
    body = problem(client.put("/v1/knowledge/faqs/hours%01", json={"question": "Q?", "answer": "A."}), 422)
    assert body["detail"].startswith("id of FAQ 'hours\\x01': ") and "U+0001 at character 6" in body["detail"]
    assert client.get("/v1/knowledge").json() == before  # nothing refused was stored

    # tab, newline and carriage return are ordinary text
    fees = {"title": "Fees", "text": "Fee\tAmount\r\nTransfer\t1 EUR\r\n"}
    assert client.put("/v1/knowledge/documents/fees.txt", json=fees).status_code == 200
    stored = client.get("/v1/knowledge").json()

    where = ["--database-url", settings.database_url, "--index-dir", str(settings.index_dir)]
    table = tmp_path / "faqs.csv"
    table.write_text("id,question,answer\nopen,Are you open?,Yes.\nbell,Ring?,Ding\x07 dong\n")
    failed = CliRunner().invoke(cli_app, ["ingest", str(table), *where])
    assert failed.exit_code == 2, failed.output
    assert failed.output.startswith(f"error: {table}: row 2, column 'answer': expected text without")
    assert failed.output.endswith("found U+0007 at character 5\n")
    folder = tmp_path / "guides"
    folder.mkdir()
    (folder / "a.md").write_text("# Savings\n\nOur saver pays 3% a year.\n")
    (folder / "b.md").write_text("# Guide\n\nPage one.\n\x0cPage two.\n")  # a form feed: a page break
    failed = CliRunner().invoke(cli_app, ["ingest", str(folder), *where])
    assert failed.exit_code == 2, failed.output
    assert failed.output.startswith(f"error: {folder / 'b.md'}: expected text without control characters")
    assert failed.output.endswith("found U+000C at character 20 (line 4, column 1)\n")
    assert client.get("/v1/knowledge").json() == stored  # not even a.md


@pytest.mark.postgres
def test_text_postgresql_cannot_store_is_refused_clearly(tmp_path: Path, postgres_url: str) -> None:
    # PostgreSQL text holds no NUL character: the caller gets a 422 problem, and the service goes on.
    with TestClient(create_app(cs_settings(tmp_path, postgres_url))) as client:
        for path in ("/v1/chat", "/v1/chat/stream"):  # the stream, too, before it begins
            body = problem(client.post(path, json={"message": "card\u0000 declined"}), 422)
            assert body["errors"][0]["loc"] == ["body", "message"] and "NUL" in body["errors"][0]["msg"]
        problem(client.get("/v1/knowledge", params={"category": "a\x00b"}), 422)
        faq = {"question": "Do you lend?", "answer": "Yes\x00"}  # named, not a 422 from the database
        assert problem(client.put("/v1/knowledge/faqs/nul", json=faq), 422)["errors"][0]["loc"] == [
            "body", "answer",
        ]  # fmt: skip
        assert client.get("/v1/sessions").json()["total"] == 0  # no session was opened for them
        assert chat(client, "Why was my card declined?")["action"] == "answer"


def test_an_intent_models_frozen_view_reads_the_retrieval_embeddings(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path
) -> None:
    """An intent model whose frozen view is the retrieval encoder (MiniLM here) reuses the message's
    retrieval embedding, and predicts what the model folder predicts on its own."""
    data = topic_data(60)
    folder = tmp_path / "intents"
    train_classifier(data, tiny_config(tiny_model_dir, epochs=1), folder, progress=False)
    labels = Classifier.load(folder).labels
    view = fit_frozen_view("minilm", data.texts, data.labels, labels, load_tokenizer(folder), max_length=128)
    view.blend_weight = 0.5
    replace_frozen_view(folder, view)

    message = "my card payment failed in a shop"
    alone = IntentModel.load(folder, max_length=64).predict([message])[0]
    with TestClient(create_app(cs_settings(tmp_path, sqlite_url, intent_model_path=folder))) as client:
        checks = client.get("/readyz").json()["checks"]
        assert checks["intents"] == "trained model (its frozen view reads the retrieval embeddings)"
        reply = chat(client, message)
    assert reply["intent"]["name"] == alone.name
    assert reply["intent"]["confidence"] == pytest.approx(alone.confidence, abs=1e-4)


def test_an_intents_template_answers_when_no_passage_is_relevant(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path
) -> None:
    folder = tmp_path / "intents"
    train_classifier(topic_data(150), tiny_config(tiny_model_dir, epochs=6), folder, progress=False)
    asked, other = "repay my loan early", "my card was declined"
    intent, other_intent = (r.name for r in IntentModel.load(folder).predict([asked, other]))
    assert intent != other_intent, "the tiny model tells these topics apart"
    templates = tmp_path / "templates.toml"
    templates.write_text(
        f'{intent} = "Our {intent} desk will help you: {{{{ message }}}}"\n'
        f'{other_intent} = "Our {other_intent} page explains it [1]."\n'  # cites a source
    )
    # No passage of the knowledge base counts as relevant here, and any in-scope intent is confident enough.
    policy = PolicySettings(min_similarity=0.99, strong_similarity=0.999, template_intent_confidence=0.0)
    settings = cs_settings(
        tmp_path, sqlite_url, intent_model_path=folder, templates_file=templates, policy=policy
    )
    with TestClient(create_app(settings)) as client:
        reply = chat(client, asked)
        assert (reply["action"], reply["mode"], reply["sources"]) == ("answer", "template", [])
        assert reply["answer"] == f"Our {intent} desk will help you: {asked}"
        # its intent's template cites [1], and no passage is relevant: a source it cannot show, so not used
        assert chat(client, other)["action"] == "fallback"


def test_an_intents_template_does_not_answer_over_a_passage_on_a_guess(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path
) -> None:
    # "How do I block my debit card?" finds its FAQ; an intent model guessing below
    # template_intent_confidence does not answer it with that intent's template instead (a bank's
    # "To activate your card ..." for a question on the card's validity). A confident one still does.
    folder = tmp_path / "intents"
    train_classifier(topic_data(60), tiny_config(tiny_model_dir, epochs=1), folder, progress=False)
    asked = "How do I block my debit card?"
    (guess,) = IntentModel.load(folder).predict([asked])
    assert guess.name is not None and guess.confidence < 0.99
    templates = tmp_path / "templates.toml"
    templates.write_text(f'{guess.name} = "Our {guess.name} desk will help you."\n')
    for least, mode in ((guess.confidence + 0.005, "extractive"), (guess.confidence - 0.005, "template")):
        policy = PolicySettings(template_intent_confidence=least)
        settings = cs_settings(
            tmp_path, sqlite_url, intent_model_path=folder, templates_file=templates, policy=policy
        )
        with TestClient(create_app(settings)) as client:
            reply = chat(client, asked)
        assert (reply["action"], reply["mode"]) == ("answer", mode), least
        assert reply["sources"][0]["id"] == "lock-card"
        if mode == "extractive":
            assert reply["answer"].startswith("Freeze the card instantly") and reply["answer"].endswith("[1]")


def test_feedback_is_stored_and_counted(client: TestClient) -> None:
    reply = chat(client, "How long does a replacement card take?")
    assert (
        client.post("/v1/feedback", json={"turn_id": reply["turn_id"], "rating": "down"}).status_code == 204
    )
    ok = client.post("/v1/feedback", json={"turn_id": reply["turn_id"], "rating": "up", "comment": "thanks"})
    assert ok.status_code == 204
    assert client.get("/v1/analytics").json()["feedback"] == {"up": 1, "down": 0}


def test_streaming_reply_as_server_sent_events(client: TestClient) -> None:
    with client.stream(
        "POST", "/v1/chat/stream", json={"message": "How do I block my debit card?"}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"  # a turn is personal data: no cache keeps it
        raw = "".join(response.iter_text())
    events = [
        (
            block.split("\n")[0].removeprefix("event: "),
            json.loads(block.split("\n")[1].removeprefix("data: ")),
        )
        for block in raw.strip().split("\n\n")
    ]
    names = [name for name, _ in events]
    assert names[0] == "meta" and names[-1] == "done" and "delta" in names
    meta, done = events[0][1], events[-1][1]
    assert meta["action"] == "answer" and meta["sources"][0]["id"] == "lock-card"
    text = "".join(data["text"] for name, data in events if name == "delta")
    assert done["answer"] == text.strip() and done["turn_id"]
    session = client.get(f"/v1/sessions/{done['session_id']}").json()
    assert session["turns"][0]["answer"] == done["answer"]


def test_a_stream_that_cannot_store_its_turn_ends_with_an_error_event(
    tmp_path: Path, sqlite_url: str, fake_llm: str
) -> None:
    # The status line and the first deltas are sent before the turn is stored: when storing fails (here
    # the session is deleted, as a retention job would, while the generator pauses), the client is told by
    # an `error` event carrying the problem document, not by a connection cut mid-stream.
    generator = GeneratorSettings(kind="openai", base_url=fake_llm, model="stall", timeout_s=5)
    settings = cs_settings(tmp_path, sqlite_url, generator=generator, templates_file=None)
    events: list[tuple[str, dict[str, Any]]] = []
    with serve_app(create_app(settings)) as base_url, httpx.Client(base_url=base_url, timeout=30) as http:
        message = {"message": "How can I freeze my debit card?"}
        with http.stream("POST", "/v1/chat/stream", json=message) as response:
            assert response.status_code == 200
            name = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    events.append((name, json.loads(line.removeprefix("data: "))))
                    if [n for n, _ in events] == ["meta", "delta"]:  # the generator pauses after this
                        _delete_session(settings, events[0][1]["session_id"])
    names = [n for n, _ in events]
    assert names[0] == "meta" and "delta" in names and "done" not in names
    assert names[-1] == "error", names
    error = events[-1][1]
    assert (error["status"], error["title"], error["instance"]) == (404, "Not found", "/v1/chat/stream")
    assert "no session" in error["detail"]


def _delete_session(settings: CustomerServiceSettings, session_id: str) -> None:
    connection = sqlite3.connect(_sqlite_file(settings), isolation_level=None)
    connection.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
    connection.close()


def test_the_index_survives_a_restart_and_stays_in_step(settings: CustomerServiceSettings) -> None:
    with TestClient(create_app(settings)) as client:
        pets = {"question": "Can I bring my dog to a branch?", "answer": "Guide dogs and pets are welcome."}
        client.put("/v1/knowledge/faqs/pets", json=pets)
        version = client.get("/v1/knowledge").json()["version"]
    with TestClient(create_app(settings)) as client:
        listing = client.get("/v1/knowledge").json()
        assert listing["version"] == version and listing["total"] == 25  # 24 FAQs from the file, 1 added
        hits = client.get("/v1/knowledge/search", params={"q": "dog in the branch", "k": 1}).json()
        assert hits[0]["id"] == "pets"


def test_a_knowledge_base_its_operator_emptied_is_not_seeded_again(
    settings: CustomerServiceSettings, tmp_path: Path
) -> None:
    # The knowledge file seeds a knowledge base never written to. Once the operator has deleted every entry
    # (to replace the demo FAQs with their own), neither a restart nor a CLI command brings them back.
    with TestClient(create_app(settings)) as client:
        for entry in client.get("/v1/knowledge", params={"limit": 500}).json()["items"]:
            assert client.delete(f"/v1/knowledge/{entry['id']}").status_code == 204
        assert client.get("/v1/knowledge").json()["total"] == 0
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/knowledge").json()["total"] == 0
        assert chat(client, "How do I reset my online banking password?")["sources"] == []

    where = ["--database-url", settings.database_url, "--index-dir", str(settings.index_dir)]
    faqs = tmp_path / "own.csv"
    faqs.write_text("id,question,answer,category\nhours,When are you open?,Nine to five.,branches\n")
    configured = {"CS_KNOWLEDGE_FILE": str(settings.knowledge_file)}  # as the service is configured
    added = CliRunner().invoke(cli_app, ["ingest", str(faqs), *where], env=configured)
    assert added.exit_code == 0, added.output
    assert json.loads(added.output.splitlines()[-1])["entries"] == 1


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[str]:
    """An OpenAI-compatible server on loopback (its replies are chosen by the requested model name)."""
    app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
    with serve_app(app) as url:
        yield url


@pytest.mark.parametrize(
    ("model", "mode"), [("cite", "generated"), ("fail", "extractive"), ("nocite", "extractive")]
)
def test_grounded_generation_through_an_openai_compatible_server(
    tmp_path: Path, sqlite_url: str, fake_llm: str, model: str, mode: str
) -> None:
    generator = GeneratorSettings(kind="openai", base_url=fake_llm, model=model, timeout_s=5)
    settings = cs_settings(tmp_path, sqlite_url, generator=generator, templates_file=None)
    SEEN.clear()
    with TestClient(create_app(settings)) as client:
        message = {"message": "How can I freeze my debit card?"}
        reply = client.post("/v1/chat", json=message, headers={"X-Request-ID": "widget-77"}).json()
        assert client.get("/readyz").json()["checks"]["generator"] == "openai"
    assert reply["action"] == "answer" and reply["mode"] == mode
    assert [seen["request_id"] for seen in SEEN] == ["widget-77"]  # the server's logs can name the chat
    assert reply["sources"][0]["id"] == "lock-card"
    if mode == "generated":
        assert reply["answer"] == CITED  # [1] and [2] cite sources[0] and sources[1]
        assert len(reply["sources"]) >= 2
    else:
        assert reply["answer"].startswith("Freeze the card instantly") and reply["answer"].endswith("[1]")


def test_a_streamed_generation_that_cites_nothing_is_completed_with_the_extract(
    tmp_path: Path, sqlite_url: str, fake_llm: str
) -> None:
    # /v1/chat answers an uncited generation with the extract; the stream used to end the reply with the
    # uncited text alone, stored as "generated", so the same question got a grounded answer in one API and
    # an ungrounded one in the other. The shown words stay; the cited extract follows and is stored with them.
    generator = GeneratorSettings(kind="openai", base_url=fake_llm, model="nocite", timeout_s=5)
    settings = cs_settings(tmp_path, sqlite_url, generator=generator, templates_file=None)
    with TestClient(create_app(settings)) as client:
        message = {"message": "How can I freeze my debit card?"}
        with client.stream("POST", "/v1/chat/stream", json=message) as response:
            lines = [line for line in response.iter_lines() if line.startswith("data: ")]
        done = json.loads(lines[-1].removeprefix("data: "))
        shown = "".join(json.loads(line.removeprefix("data: ")).get("text", "") for line in lines[1:-1])
        extract = " ".join(client.get("/v1/knowledge/lock-card").json()["text"].split())
        assert shown == f"{REPLIES['nocite']}\n\n{extract} [1]", shown
        assert (done["answer"], done["mode"], done["sources"][0]["id"]) == (shown, "extractive", "lock-card")
        stored = client.get(f"/v1/sessions/{done['session_id']}").json()["turns"]
        assert [t["answer"] for t in stored] == [shown]


def test_a_relevant_passage_behind_a_less_relevant_one_is_answered(client: TestClient) -> None:
    # Rank fusion puts the FAQ on freezing a card first for a card stolen abroad (its words match), but the
    # guide's section on a card lost abroad is the one close enough to answer (cosine 0.50, the FAQ 0.40,
    # threshold 0.45). The policy read the first passage as the best and fell back, "best 0.40 < 0.45",
    # with a relevant passage in hand. (Asked about the case: "My card was stolen" goes to a person at once.)
    text = (EXAMPLES / "documents" / "travel-and-cards.md").read_text()
    guide = {"title": "Using your card abroad", "text": text, "format": "markdown"}
    assert client.put("/v1/knowledge/documents/travel-and-cards.md", json=guide).status_code == 200
    reply = chat(client, "If my card is stolen in Spain, what now?")
    assert (reply["action"], reply["sources"][0]["id"]) == ("answer", "travel-and-cards.md#2"), reply
    assert reply["answer"].startswith("Freeze the card in the app first.")
    turn = client.get(f"/v1/sessions/{reply['session_id']}").json()["turns"][0]
    assert turn["reason"].startswith("relevance 0.5")


def test_each_source_carries_the_relevance_the_policy_judged_it_by(client: TestClient) -> None:
    # sources[].score is the rank-fusion score (about 0.03), while the reasons and thresholds speak of the
    # cosine relevance (0.45 answers): a front end had no figure to show or filter by that matched them.
    reply = chat(client, "I forgot my password for online banking, how can I reset it?")
    best = reply["sources"][0]
    reason = client.get(f"/v1/sessions/{reply['session_id']}").json()["turns"][0]["reason"]
    assert reason == f"relevance {best['relevance']:.2f}" and best["relevance"] >= 0.45
    assert best["score"] < 0.1  # the contract stays: the retrieval's score
    with client.stream(
        "POST", "/v1/chat/stream", json={"message": "How do I block my debit card?"}
    ) as response:
        meta = json.loads(next(line for line in response.iter_lines() if line.startswith("data: "))[6:])
    assert all(0.0 < source["relevance"] <= 1.0 for source in meta["sources"]), meta
    # a clarifying question offers two close candidates; the chosen one keeps the relevance it was offered
    asked = chat(client, "How do I open an account?")
    first, second = (s["relevance"] for s in asked["sources"])
    assert client.get(f"/v1/sessions/{asked['session_id']}").json()["turns"][0]["reason"] == (
        f"two close candidates ({first:.2f}, {second:.2f})"
    )
    chosen = chat(client, "the second one", asked["session_id"])
    assert chosen["sources"][0]["relevance"] == second
    described = client.get("/openapi.json").json()["components"]["schemas"]["SourceOut"]["properties"]
    assert "cosine similarity" in described["relevance"]["description"]
    assert "rank-fusion" in described["score"]["description"]


def test_a_citation_carries_its_documents_source(client: TestClient) -> None:
    # sources[] named a passage's id, title and snippet, but not the page it came from: a front end could not
    # link a citation to it. A document's source (its URL) now comes with each citation, in a stream's meta
    # and in the stored turn too; an FAQ has none.
    text = (EXAMPLES / "documents" / "travel-and-cards.md").read_text()
    url = "https://bank.example/help/travel-and-cards"
    guide = {"title": "Using your card abroad", "text": text, "format": "markdown", "source": url}
    assert client.put("/v1/knowledge/documents/travel-and-cards.md", json=guide).status_code == 200
    reply = chat(client, "If my card is stolen in Spain, what now?")
    linked = {s["id"]: s["source"] for s in reply["sources"]}
    assert linked["travel-and-cards.md#2"] == url and linked["lock-card"] is None, reply
    stored = client.get(f"/v1/sessions/{reply['session_id']}").json()["turns"][0]["sources"]
    assert {s["id"]: s["source"] for s in stored} == linked
    with client.stream(
        "POST", "/v1/chat/stream", json={"message": "If my card is stolen in Spain, what now?"}
    ) as response:
        meta = json.loads(next(line for line in response.iter_lines() if line.startswith("data: "))[6:])
    assert {s["id"]: s["source"] for s in meta["sources"]} == linked
    described = client.get("/openapi.json").json()["components"]["schemas"]["SourceOut"]["properties"]
    assert "URL" in described["source"]["description"]


def test_an_faq_given_a_source_is_cited_with_it(client: TestClient) -> None:
    # FAQs carried no source: a citation of one could link to no page, as a document's does
    url = "https://bank.example/help/cheques"
    answer = "Photograph both sides of the cheque in the app under Payments > Deposit a cheque."
    cheque = {"question": "How do I deposit a cheque?", "answer": answer, "source": url}
    posted = client.post("/v1/knowledge/faqs", json={"items": [{"id": "cheque", **cheque}]})
    assert posted.status_code == 200, posted.text
    assert client.get("/v1/knowledge/cheque").json()["source"] == url
    reply = chat(client, "How can I deposit a cheque?")
    assert (reply["sources"][0]["id"], reply["sources"][0]["source"]) == ("cheque", url), reply
    moved = f"{url}/new"
    assert client.put("/v1/knowledge/faqs/cheque", json=cheque | {"source": moved}).status_code == 200
    assert client.get("/v1/knowledge/cheque").json()["source"] == moved
    assert chat(client, "How can I deposit a cheque?")["sources"][0]["source"] == moved
    unlinked = {k: v for k, v in cheque.items() if k != "source"}  # replaced without one: none
    assert client.put("/v1/knowledge/faqs/cheque", json=unlinked).status_code == 200
    assert chat(client, "How can I deposit a cheque?")["sources"][0]["source"] is None
    problem(client.put("/v1/knowledge/faqs/cheque", json=cheque | {"source": "x" * 2_001}), 422)
    problem(
        client.put("/v1/knowledge/faqs/cheque", json=cheque | {"source": "https://a.example/\u0007"}), 422
    )
