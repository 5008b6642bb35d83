"""Conversations as a bank's customers hold them, through the real app and its lifespan: the project's demo
knowledge base and templates, the real MiniLM, a real SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from customer_service import create_app
from customer_service.bot import IDENTITY, WAITING, WAITING_GOODBYE
from customer_service.database import Database
from customer_service.policy import ABOUT_BOT
from customer_service.tables import Turn
from tests.customer_service.test_app import chat, cs_settings


@pytest.fixture
def client(tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(cs_settings(tmp_path, sqlite_url))) as test_client:
        yield test_client


def test_thanks_and_ok_are_acknowledged_not_handed_to_a_person(client: TestClient) -> None:
    # a satisfied customer says thanks, then ok: neither is a question the bot failed at, so neither asks
    # them to rephrase, nor do two of them put the customer in the agents' queue
    sid = chat(client, "How do I reset my online banking password?")["session_id"]
    replies = [chat(client, message, sid) for message in ("Thanks a lot!", "ok", "👍")]
    for reply in replies:
        assert (reply["action"], reply["state"], reply["sources"]) == ("answer", "open", []), reply
        assert reply["mode"] == "fixed" and "anything else" in reply["answer"]
    streamed = client.post("/v1/chat/stream", json={"session_id": sid, "message": "great, bye"}).text
    assert "anything else" in streamed and "event: done" in streamed
    assert client.get("/v1/sessions", params={"state": "waiting_for_agent"}).json()["total"] == 0
    # a fallback before still counts: an acknowledgement neither resets nor extends the streak
    other = chat(client, "Who won the football world cup in 1998?")
    assert chat(client, "ok thanks", other["session_id"])["action"] == "answer"
    again = chat(client, "What is the best recipe for banana bread?", other["session_id"])
    assert again["action"] == "handoff"
    # thanks followed by a question is a question
    asked = chat(client, "thanks, and how do I freeze my debit card?", sid)
    assert asked["sources"][0]["id"] == "lock-card"
    unanswered = {u["question"] for u in client.get("/v1/analytics").json()["top_unanswered"]}
    assert unanswered == {
        "who won the football world cup in 1998?",
        "what is the best recipe for banana bread?",
    }


def test_a_clarifying_question_quotes_its_options_as_written(client: TestClient) -> None:
    # the options are shown as the knowledge base holds them: an apostrophe, a quotation mark or a line break
    # in a question is no backslash escape in front of the customer
    savings = client.get("/v1/knowledge/open-savings").json()
    question = 'How do I open a "savings" account\nin the bank\'s app?'
    changed = client.put(
        "/v1/knowledge/faqs/open-savings",
        json={"question": question, "answer": savings["text"], "category": savings["category"]},
    )
    assert changed.status_code == 200, changed.text
    asked = chat(client, "How do I open an account?")
    assert asked["action"] == "clarify", asked
    assert asked["answer"] == (
        'Did you mean “How do I open a "savings" account in the bank\'s app?” [1] '
        "or “How do I open a business account?” [2]?"
    )
    # the quick-reply button sends the title back, and picks that option
    chosen = chat(client, asked["sources"][0]["title"], asked["session_id"])
    assert (chosen["action"], chosen["sources"][0]["id"]) == ("answer", "open-savings")


def test_two_close_answers_to_one_question_are_no_choice_to_offer(client: TestClient) -> None:
    # An FAQ file may hold one question twice, with an answer per product (the bank FAQs of the shared data
    # do). Offering both read "Did you mean “How do I open an account?” [1] or “How do I open an account?”
    # [2]?", a choice the customer cannot make: the first answers, the other is among its sources.
    for entry in ("open-savings", "open-business"):
        stored = client.get(f"/v1/knowledge/{entry}").json()
        changed = client.put(
            f"/v1/knowledge/faqs/{entry}",
            json={"question": "How do I open an account?", "answer": stored["text"]},
        )
        assert changed.status_code == 200, changed.text
    asked = chat(client, "How do I open an account?")
    assert (asked["action"], asked["mode"]) == ("answer", "extractive"), asked
    assert asked["answer"].endswith("[1]") and "Did you mean" not in asked["answer"]
    assert {s["id"] for s in asked["sources"][:2]} == {"open-savings", "open-business"}
    assert "of one question" in client.get(f"/v1/sessions/{asked['session_id']}").json()["turns"][0]["reason"]


def test_a_question_about_a_price_or_a_cost_finds_the_fees(client: TestClient) -> None:
    # "what's the price of a payment abroad?" was answered with how to send money abroad: "price" matched no
    # word of the fees FAQ, "payment" and "abroad" the transfer one
    for message, fees in [
        ("what's the price of a payment abroad?", "transfer-fees"),
        ("How much does an international transfer cost?", "transfer-fees"),
        ("What is the price of a business account?", "business-fees"),
    ]:
        reply = chat(client, message)
        assert (reply["action"], reply["sources"][0]["id"]) == ("answer", fees), (message, reply)


def test_a_session_resolved_by_an_agent_starts_afresh_with_the_bot(client: TestClient) -> None:
    # what the bot said before a hand-off is not the context of the customer's next message once an agent
    # has resolved the session: the conversation went on with the person in between
    asked = chat(client, "How do I open an account?")
    sid = asked["session_id"]
    assert asked["action"] == "clarify", asked
    assert client.post(f"/v1/sessions/{sid}/handoff", json={"reason": "VIP"}).status_code == 200
    assert client.post(f"/v1/sessions/{sid}/resolve").json()["state"] == "closed"
    back = chat(client, "2", sid)  # not an answer to the clarifying question of before the hand-off
    assert back["state"] == "open" and back["action"] == "fallback", back
    # nor is a message that reads as a follow-up glued to a question asked before a hand-off
    sid = chat(client, "How do I open a savings account?")["session_id"]
    assert chat(client, "I want to talk to a real person", sid)["state"] == "waiting_for_agent"
    client.post(f"/v1/sessions/{sid}/resolve")
    chat(client, "and for business accounts?", sid)
    after = chat(client, "is it free?", sid)  # the bot's context is again what it handled since
    turns = client.get(f"/v1/sessions/{sid}").json()["turns"]
    assert [t["query"] for t in turns[2:]] == [
        "business accounts?",  # read alone, without its connective
        "business accounts, is it free?",
    ]
    assert after["state"] == "open"


def test_a_follow_up_after_thanks_or_a_fallback_leans_on_the_last_topic(client: TestClient) -> None:
    # "thanks" and a message the bot could not read name no topic: a follow-up after them continues the
    # question before them, not "thanks"
    sid = chat(client, "How do I open a savings account?")["session_id"]
    assert chat(client, "Thanks a lot!", sid)["mode"] == "fixed"
    business = chat(client, "and for business accounts?", sid)
    assert (business["action"], business["sources"][0]["id"]) == ("answer", "open-business"), business
    sid = chat(client, "What are the fees for international transfers?")["session_id"]
    assert chat(client, "What is the best recipe for banana bread?", sid)["action"] == "fallback"
    assert chat(client, "ok", sid)["mode"] == "fixed"
    fees = chat(client, "and for business accounts?", sid)
    assert (fees["action"], fees["sources"][0]["id"]) == ("answer", "business-fees"), fees
    queries = [t["query"] for t in client.get(f"/v1/sessions/{sid}").json()["turns"]]
    assert queries[-1] == "What are the fees for international transfers, business accounts?"


def test_a_message_without_a_letter_or_digit_is_asked_what_it_needs(client: TestClient) -> None:
    # "?", "...", "—" ask nothing the bot could fail at: it asks what the customer needs, and none of them is
    # a fallback, a step towards a hand-off or an unanswered question; a friendly emoji is still thanked for
    sid = chat(client, "How do I open a savings account?")["session_id"]
    for message in ("?", "???", "...", " — ", "?!🤔"):
        reply = chat(client, message, sid)
        assert (reply["action"], reply["state"], reply["sources"]) == ("answer", "open", []), reply
        assert (reply["mode"], reply["answer"]) == ("fixed", "What can I help you with?"), reply
    streamed = client.post("/v1/chat/stream", json={"session_id": sid, "message": "…"}).text
    assert "What can I help you with?" in streamed and "event: done" in streamed
    assert "anything else" in chat(client, "👍", sid)["answer"]
    # nor does one name a topic: a follow-up after it continues the question before it
    sid = chat(client, "How do I open a savings account?")["session_id"]
    assert chat(client, "?", sid)["mode"] == "fixed"
    business = chat(client, "and for business accounts?", sid)
    assert (business["action"], business["sources"][0]["id"]) == ("answer", "open-business"), business
    assert client.get("/v1/sessions", params={"state": "waiting_for_agent"}).json()["total"] == 0
    # a fallback before still counts: the prompt neither resets nor extends the streak
    other = chat(client, "Who won the football world cup in 1998?")["session_id"]
    assert chat(client, "??", other)["action"] == "answer"
    assert chat(client, "What is the best recipe for banana bread?", other)["action"] == "handoff"
    unanswered = {u["question"] for u in client.get("/v1/analytics").json()["top_unanswered"]}
    assert unanswered == {
        "who won the football world cup in 1998?",
        "what is the best recipe for banana bread?",
    }


def test_a_follow_up_reaches_past_several_turns_without_a_topic(client: TestClient) -> None:
    # four prompts and thanks in a row (history_turns is 4) do not push the question out of reach: the
    # rewriting looks back over the last topical turns, not the last turns of any kind
    sid = chat(client, "How do I open a savings account?")["session_id"]
    for message in ("?", "thanks", "ok", "??"):
        assert chat(client, message, sid)["mode"] == "fixed"
    business = chat(client, "and for business accounts?", sid)
    assert (business["action"], business["sources"][0]["id"]) == ("answer", "open-business"), business
    queries = [t["query"] for t in client.get(f"/v1/sessions/{sid}").json()["turns"]]
    assert queries[-1] == "How do I open a savings account, business accounts?"


def test_a_chain_of_follow_ups_leans_on_the_question_not_on_the_follow_ups_before(client: TestClient) -> None:
    # each follow-up was read with the query the one before was read by: the query snowballed ("How do I send
    # money abroad, to the US, are there fees for that") and the transfer FAQ outweighed the fees one
    sid = chat(client, "How do I send money abroad?")["session_id"]
    assert chat(client, "and to the US?", sid)["sources"][0]["id"] == "international-transfer"
    fees = chat(client, "and are there fees for that?", sid)
    assert (fees["action"], fees["sources"][0]["id"]) == ("answer", "transfer-fees"), fees
    chat(client, "and how much does it cost?", sid)
    queries = [t["query"] for t in client.get(f"/v1/sessions/{sid}").json()["turns"]]
    assert queries == [
        "How do I send money abroad?",
        "How do I send money abroad, to the US?",
        "How do I send money abroad, are there fees for that?",
        "How do I send money abroad, how much does it cost?",
    ]


def test_a_first_question_opening_with_a_connective_is_the_topic_of_the_follow_ups(
    client: TestClient,
) -> None:
    # "Also, how do I send money abroad?" reads as a follow-up, but nothing came before it: it is read alone.
    # Its topic was cut out of its query as a follow-up's ("Also, <its own words>"), which left "Also": both
    # follow-ups were read as "Also, to the US?" and "Also, are there fees for that?", fell back, and the
    # second handed the customer to a person
    sid = chat(client, "Also, how do I send money abroad?")["session_id"]
    us = chat(client, "and to the US?", sid)
    assert (us["action"], [s["id"] for s in us["sources"]][:1]) == ("answer", ["international-transfer"]), us
    fees = chat(client, "and are there fees for that?", sid)
    assert (fees["action"], [s["id"] for s in fees["sources"]][:1]) == ("answer", ["transfer-fees"]), fees
    turns = client.get(f"/v1/sessions/{sid}").json()["turns"]
    assert turns[0]["message"] == "Also, how do I send money abroad?"  # stored as the customer wrote it
    assert [t["query"] for t in turns] == [
        "how do I send money abroad?",  # searched without its connective
        "how do I send money abroad, to the US?",
        "how do I send money abroad, are there fees for that?",
    ]


def test_a_question_read_alone_is_searched_without_its_opening_connective(client: TestClient) -> None:
    # a first question opening with a connective has nothing to follow, yet the connective was searched with
    # it: "And what are the fees for sending money abroad?" was offered the transfer FAQ before the fees one,
    # "So, how much can I take out at an ATM?" fell back
    for question in ("What are the fees for sending money abroad?", "How much can I take out at an ATM?"):
        alone = chat(client, question)
        assert alone["action"] == "answer", alone
        bare = question[0].lower() + question[1:]
        for message in (f"Also, {bare}", f"And {bare}", f"Then {bare}", f"ok, and {bare}", f"So, {bare}"):
            reply = chat(client, message)
            got = (reply["action"], [s["id"] for s in reply["sources"]])
            assert got == (alone["action"], [s["id"] for s in alone["sources"]]), (message, reply)
            turn = client.get(f"/v1/sessions/{reply['session_id']}").json()["turns"][0]
            assert (turn["message"], turn["query"]) == (message, bare)
    # after a greeting, a fallback or thanks for an answer, the question is read alone too
    sid = chat(client, "hi")["session_id"]
    assert chat(client, "So, how much can I take out at an ATM?", sid)["sources"][0]["id"] == "atm-limit"
    sid = chat(client, "How do I reset my online banking password?")["session_id"]
    asked = chat(client, "thanks, and what are the fees for sending money abroad?", sid)
    assert (asked["action"], asked["sources"][0]["id"]) == ("answer", "transfer-fees"), asked


def test_a_follow_up_leans_on_turns_stored_before_their_topics_were(
    tmp_path: Path, database_url: str
) -> None:
    # a session stored at revision 0007, whose turns hold no topic: the follow-up's is worked out from its
    # query as before, and the turns stored from now on hold theirs
    database = Database(database_url)
    config = Config()
    config.set_main_option("script_location", str(database.migrations))
    stored = [
        ("How do I send money abroad?", "How do I send money abroad?"),
        ("and to the US?", "How do I send money abroad, to the US?"),
    ]
    then = {"now": datetime(2026, 12, 1)}
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0007")
            connection.execute(text("INSERT INTO sessions (id, state, fallback_streak, created_at, "
                                    "updated_at) VALUES ('s', 'open', 0, :now, :now)"), then)  # fmt: skip
            for position, (message, query) in enumerate(stored):
                connection.execute(
                    text("INSERT INTO turns (id, session_id, position, message, query, answer, action, "
                         "awaiting_agent, sources, latency_ms, created_at) VALUES (:id, 's', :position, "
                         ":message, :query, 'a', 'answer', false, '[]', 0.0, :now)"),
                    {"id": f"t{position}", "position": position, "message": message, "query": query, **then},
                )  # fmt: skip
        with TestClient(create_app(cs_settings(tmp_path, database_url))) as client:
            fees = chat(client, "and are there fees for that?", "s")
            chat(client, "and how much does it cost?", "s")
        assert (fees["action"], [s["id"] for s in fees["sources"]][:1]) == ("answer", ["transfer-fees"]), fees
        with database.session() as s:
            turns = s.execute(select(Turn.query, Turn.topic).order_by(Turn.position)).all()
        assert [tuple(turn) for turn in turns] == [
            ("How do I send money abroad?", None),
            ("How do I send money abroad, to the US?", None),
            ("How do I send money abroad, are there fees for that?", "How do I send money abroad"),
            ("How do I send money abroad, how much does it cost?", "How do I send money abroad"),
        ]
    finally:
        database.dispose()


def test_a_report_of_fraud_goes_to_a_person_at_once(client: TestClient) -> None:
    # each fell back ("Could you rephrase it?"): one reporting fraud had to fail twice to reach a person
    for message, topic in [
        ("I want to report fraud", "possible fraud"),
        ("someone hacked my account", "account compromise"),
        ("there's a transaction I didn't make", "possible fraud"),
        ("my card was stolen", "stolen card"),
        ("You stole my money", "possible fraud"),
    ]:
        reply = chat(client, message)
        assert (reply["action"], reply["state"], reply["sources"]) == ("handoff", "waiting_for_agent", []), (
            message
        )
        session = client.get(f"/v1/sessions/{reply['session_id']}").json()
        assert session["handoff_reason"] == f"urgent: {topic}", session
    # a question about the topic is read as any other: the knowledge base answers it (or offers two answers)
    asked = chat(client, "How do I report a lost card?")
    assert asked["action"] in ("answer", "clarify") and asked["state"] == "open", asked
    assert "lock-card" in {source["id"] for source in asked["sources"]}


def test_the_urgent_topics_are_read_from_the_environment(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CS_POLICY__URGENT_TOPICS", '{"sanctions": ["\\\\bfrozen by sanctions\\\\b"]}')
    with TestClient(create_app(cs_settings(tmp_path, sqlite_url))) as test_client:
        reply = chat(test_client, "my account was frozen by sanctions")
        assert reply["action"] == "handoff"
        assert chat(test_client, "my card was stolen")["action"] != "handoff"


def test_a_greeting_before_a_question_is_passed_over(client: TestClient) -> None:
    # "Hi! 👋 I lost my card" fell back: the greeting's words were searched with the question's and diluted it
    alone = chat(client, "I lost my card")  # read as the question alone
    for message in (
        "Hi! 👋 I lost my card",
        "hello there, thanks! I lost my card",
        "Good morning, I lost my card",
    ):
        reply = chat(client, message)
        assert reply["action"] in ("answer", "clarify"), (message, reply)
        assert [s["id"] for s in reply["sources"]] == [s["id"] for s in alone["sources"]], message
        turn = client.get(f"/v1/sessions/{reply['session_id']}").json()["turns"][0]
        assert (turn["message"], turn["query"]) == (message, "I lost my card")
    # a greeting alone is still greeted, and thanks before a new question is still no follow-up
    assert chat(client, "hi there 👋")["answer"] == "Hello! What can I help you with?"
    sid = chat(client, "How do I reset my online banking password?")["session_id"]
    asked = chat(client, "thanks, and how do I freeze my debit card?", sid)
    assert asked["sources"][0]["id"] == "lock-card"


def test_a_customer_asking_whether_the_bot_is_a_person_is_told_and_offered_one(client: TestClient) -> None:
    # "are you a bot?" fell back ("I'm not sure I understood that"), and a second such question handed the
    # customer to a person as a failed one
    sid = chat(client, "How do I reset my online banking password?")["session_id"]
    for message in (
        "are you a bot?",
        "am I talking to a human?",
        "is anyone there?",
        "hi, who am I talking to?",
    ):
        reply = chat(client, message, sid)
        assert (reply["action"], reply["answer"], reply["sources"], reply["state"]) == (
            "answer", IDENTITY, [], "open",
        ), message  # fmt: skip
    session = client.get(f"/v1/sessions/{sid}").json()
    assert session["fallback_streak"] == 0 and {t["reason"] for t in session["turns"][1:]} == {ABOUT_BOT}
    # such a question names no topic a follow-up continues, and a question about the bank is read as one
    chat(client, "and what if I forgot my username too?", sid)
    assert "password" in client.get(f"/v1/sessions/{sid}").json()["turns"][-1]["query"]
    assert chat(client, "are you open on sundays?")["answer"] != IDENTITY


def test_asking_whether_the_bot_is_a_real_person_is_no_request_for_one(client: TestClient) -> None:
    # "real person" made it a request for a person: the customer was handed off instead of being told
    for message in ("Are you a real person or a bot?", "am I talking to a real person?"):
        reply = chat(client, message)
        assert (reply["action"], reply["answer"], reply["state"]) == ("answer", IDENTITY, "open"), message
    wants = chat(client, "I want a real person")
    assert (wants["action"], wants["state"]) == ("handoff", "waiting_for_agent")


def test_a_goodbye_while_waiting_for_an_agent_is_answered_as_one(client: TestClient) -> None:
    # "bye" sent while waiting for a person was answered "a person will be with you shortly"
    sid = chat(client, "I want to talk to a person")["session_id"]
    other = chat(client, "my card number ends in 1234", sid)
    assert (other["action"], other["answer"], other["state"]) == ("handoff", WAITING, "waiting_for_agent")
    for message in ("bye", "ok thanks, bye 👋"):
        reply = chat(client, message, sid)
        assert (reply["action"], reply["answer"], reply["state"]) == (
            "handoff", WAITING_GOODBYE, "waiting_for_agent",
        ), message  # fmt: skip
    streamed = client.post("/v1/chat/stream", json={"session_id": sid, "message": "goodbye"}).text
    assert "our team: a person will reply here if you come back" in streamed
    # the agent still sees every message
    messages = [t["message"] for t in client.get(f"/v1/sessions/{sid}").json()["turns"]]
    assert messages[-3:] == ["bye", "ok thanks, bye 👋", "goodbye"]
