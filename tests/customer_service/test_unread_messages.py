"""Messages the policy settles by their own words are answered without searching the knowledge base.

A "thanks", an "ok", a "?" or a request for a person is answered in kind (or handed off) whatever passages a
search finds, and shows none; the bot searched all the same (the message embedded, BM25 and the dense index
queried, each passage's similarity computed): work for nothing on the commonest messages of a chat. The
replies stay as they were. What the search embeds goes through the knowledge base's query cache, whose
counts tell whether a message was searched.

The real app on the demo FAQs and MiniLM, on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from customer_service import create_app
from customer_service.bot import ACKNOWLEDGEMENT, CLOSING, GREETING, HANDOFF, PROMPT
from customer_service.policy import ACKNOWLEDGED, ASKED_FOR_HELP, COMPLAINED, GREETED, NOT_HELPED, PROMPTED
from tests.customer_service.test_app import chat, cs_settings


@pytest.fixture
def client(tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(cs_settings(tmp_path, sqlite_url))) as test_client:
        yield test_client


def _queries_read(client: TestClient) -> int:
    """How many queries the knowledge base has been asked to embed (cached or not)."""
    info = client.app.state.service.kb._query_vector.cache_info()  # type: ignore[attr-defined]
    return int(info.hits + info.misses)


def _reply(client: TestClient, message: str, session_id: str) -> tuple[dict[str, Any], bool]:
    """The reply, and whether the message was searched."""
    before = _queries_read(client)
    reply = chat(client, message, session_id)
    return reply, _queries_read(client) != before


def test_thanks_prompts_and_requests_for_a_person_search_nothing(client: TestClient) -> None:
    session_id = chat(client, "How do I reset my online banking password?")["session_id"]
    for message, answer, reason in (
        ("thanks!", ACKNOWLEDGEMENT, ACKNOWLEDGED),
        (
            "ok, got it",
            ACKNOWLEDGEMENT,
            ACKNOWLEDGED,
        ),  # rewritten as a follow-up, it searched for the password
        ("👍", ACKNOWLEDGEMENT, ACKNOWLEDGED),
        ("?", PROMPT, PROMPTED),
        ("...", PROMPT, PROMPTED),
    ):
        reply, searched = _reply(client, message, session_id)
        assert (reply["action"], reply["answer"], reply["sources"]) == ("answer", answer, [])
        assert not searched, message
        assert client.get(f"/v1/sessions/{session_id}").json()["turns"][-1]["reason"] == reason

    reply, searched = _reply(client, "And what about the card limit?", session_id)  # a question is searched
    assert searched and reply["sources"]

    reply, searched = _reply(client, "I want to talk to a real person", session_id)
    assert (reply["action"], reply["answer"], reply["sources"], reply["state"]) == (
        "handoff", HANDOFF, [], "waiting_for_agent",
    )  # fmt: skip
    assert not searched


def test_greetings_are_greeted_not_failed_questions(client: TestClient) -> None:
    # "hello" fell back ("I'm not sure I understood that"), and a "hi" after it made two fallbacks in a row:
    # the customer went to the agents' queue before asking anything, and both counted as unanswered.
    session_id = "greeted"
    for message in ("hello", "hi", "Good morning!", "hey there 👋"):
        reply, searched = _reply(client, message, session_id)
        assert (reply["action"], reply["answer"], reply["sources"], reply["state"]) == (
            "answer", GREETING, [], "open",
        ), message  # fmt: skip
        assert not searched
    session = client.get(f"/v1/sessions/{session_id}").json()
    assert {t["reason"] for t in session["turns"]} == {GREETED}
    assert session["fallback_streak"] == 0
    unanswered = client.get("/v1/analytics").json()["top_unanswered"]
    assert not {u["question"] for u in unanswered} & {"hello", "hi"}

    reply = chat(client, "hi, how do I reset my online banking password?", session_id)  # a question: read
    assert reply["action"] == "answer" and reply["sources"][0]["id"] == "reset-password"
    assert chat(client, "hello", session_id)["answer"] == GREETING
    follow_up = chat(client, "and what if I forgot my username too?", session_id)
    turn = client.get(f"/v1/sessions/{session_id}").json()["turns"][-1]
    assert turn["id"] == follow_up["turn_id"] and "password" in turn["query"]  # not read with "hello"


def test_declining_more_help_closes_and_is_no_failed_question(client: TestClient) -> None:
    # The bot asks "Is there anything else I can help you with?"; "no thanks" fell back ("I'm not sure I
    # understood that"), a "nope" after it handed the customer to a person, and "that's all" was read as a
    # follow-up of the last question and answered with its answer again.
    session_id = chat(client, "How do I reset my online banking password?")["session_id"]
    assert chat(client, "thanks!", session_id)["answer"] == ACKNOWLEDGEMENT
    for message in ("no thanks", "nope", "No, that’s all", "that's all", "nothing else, thanks!"):
        reply, searched = _reply(client, message, session_id)
        assert (reply["action"], reply["answer"], reply["sources"], reply["state"]) == (
            "answer", CLOSING, [], "open",
        ), message  # fmt: skip
        assert not searched
    session = client.get(f"/v1/sessions/{session_id}").json()
    assert session["fallback_streak"] == 0
    assert {t["reason"] for t in session["turns"][2:]} == {ACKNOWLEDGED}
    follow_up = chat(client, "and what if I forgot my username too?", session_id)  # still the password topic
    assert "password" in client.get(f"/v1/sessions/{session_id}").json()["turns"][-1]["query"]
    assert follow_up["action"] != "fallback"


def test_a_goodbye_closes_rather_than_asks_for_more(client: TestClient) -> None:
    # "ok thanks, bye" was answered "Glad to help! Is there anything else I can help you with?": a question
    # to a customer who had just said goodbye.
    session_id = chat(client, "How do I reset my online banking password?")["session_id"]
    for message in (
        "ok thanks, bye",
        "thanks, bye",
        "great, that's all, bye",
        "Bye!",
        "goodbye",
        "ok bye 👍",
    ):
        reply, searched = _reply(client, message, session_id)
        assert (reply["action"], reply["answer"], reply["sources"]) == ("answer", CLOSING, []), message
        assert not searched
    for message in ("thanks!", "ok, got it", "great 👍"):  # thanks alone still offer more help
        assert _reply(client, message, session_id)[0]["answer"] == ACKNOWLEDGEMENT, message
    assert client.get(f"/v1/sessions/{session_id}").json()["fallback_streak"] == 0


def test_a_goodbye_with_emoji_or_trailing_symbols_closes_as_a_plain_one_does(client: TestClient) -> None:
    # "goodbye 👋" fell back ("I'm not sure I understood that"): only a few emoji were read as punctuation
    session_id = chat(client, "How do I reset my online banking password?")["session_id"]
    for message in (
        "goodbye 👋",
        "bye!!",
        "thanks, bye 🙂",
        "Bye 👋🏽",
        "ok bye ✌️",
        "bye~",
        "thx, cya <3",
        "bye 😉",
    ):
        reply, searched = _reply(client, message, session_id)
        assert (reply["action"], reply["answer"], reply["sources"]) == ("answer", CLOSING, []), message
        assert not searched
    assert chat(client, "thanks ✨", session_id)["answer"] == ACKNOWLEDGEMENT
    assert client.get(f"/v1/sessions/{session_id}").json()["fallback_streak"] == 0
    # a question that holds such words is read, and an unfriendly emoji is no thanks
    for message in ("how do I say goodbye to my old card and close the account?", "ok 😡", "thanks 🙄"):
        reply, searched = _reply(client, message, session_id)
        assert reply["answer"] not in (CLOSING, ACKNOWLEDGEMENT, GREETING), message
        assert searched


def test_a_greeting_with_thanks_is_greeted_and_with_a_goodbye_closes(client: TestClient) -> None:
    # "hi, thanks" and "thanks, hello" fell back, and a second such message handed the customer to a person
    session_id = "mixed"
    for message in ("hi, thanks", "thanks, hello", "Hello, thank you! 🙂", "hey there, thanks a lot"):
        reply, searched = _reply(client, message, session_id)
        assert (reply["action"], reply["answer"], reply["sources"], reply["state"]) == (
            "answer", GREETING, [], "open",
        ), message  # fmt: skip
        assert not searched
    for message in ("hi, bye", "thanks, bye, good evening 👋"):
        assert _reply(client, message, session_id)[0]["answer"] == CLOSING, message
    session = client.get(f"/v1/sessions/{session_id}").json()
    assert session["fallback_streak"] == 0 and session["state"] == "open"
    assert {t["reason"] for t in session["turns"][:4]} == {GREETED}
    reply = chat(client, "hi, thanks, how do I reset my online banking password?", session_id)  # a question
    assert reply["action"] == "answer" and reply["sources"][0]["id"] == "reset-password"


def test_a_complaint_or_a_callback_request_goes_to_a_person(client: TestClient) -> None:
    # each fell back ("I'm not sure I understood that"): the customer reached a person only by failing twice
    for message, reason in (
        ("I want to make a complaint", COMPLAINED),
        ("transfer me to customer service", "customer asked for a person"),
        ("call me back please", "customer asked for a person"),
    ):
        reply, searched = _reply(client, message, message.replace(" ", "-"))
        assert (reply["action"], reply["answer"], reply["sources"], reply["state"]) == (
            "handoff", HANDOFF, [], "waiting_for_agent",
        ), message  # fmt: skip
        assert not searched
        assert client.get(f"/v1/sessions/{reply['session_id']}").json()["handoff_reason"] == reason
    assert chat(client, "How long does a complaint take to resolve?")["action"] != "handoff"


def test_farewells_and_stretched_words_are_answered_in_kind(client: TestClient) -> None:
    # "Thanks a lot, have a nice day", "see you later", "hiii" fell back ("I'm not sure I understood that"),
    # and a second such message handed the customer to a person
    session_id = chat(client, "How do I reset my online banking password?")["session_id"]
    for message, answer in (
        ("Thanks a lot, have a nice day", CLOSING),
        ("see you later!", CLOSING),
        ("good night 👋", CLOSING),
        ("talk soon", CLOSING),
        ("take care", CLOSING),
        ("byeee", CLOSING),
        ("cheers mate", ACKNOWLEDGEMENT),
        ("thankss", ACKNOWLEDGEMENT),
        ("hiii", GREETING),
        ("hellooo there", GREETING),
    ):
        reply, searched = _reply(client, message, session_id)
        assert (reply["action"], reply["answer"], reply["sources"]) == ("answer", answer, []), message
        assert not searched
    assert client.get(f"/v1/sessions/{session_id}").json()["fallback_streak"] == 0
    for message in ("Can I see you at the branch tomorrow?", "god"):  # read, as before
        assert _reply(client, message, session_id)[1], message


def test_a_request_for_help_naming_no_topic_is_asked_what_it_is(client: TestClient) -> None:
    # "help", "I need help" fell back ("I'm not sure I understood that"), and a second one handed the customer
    # to a person before they had said what they needed; "yes" to "anything else?" fell back too
    session_id = chat(client, "How do I reset my online banking password?")["session_id"]
    for message in ("help", "I need help!", "hey, can you help me?", "I have a question", "yes please"):
        reply, searched = _reply(client, message, session_id)
        assert (reply["action"], reply["answer"], reply["sources"], reply["state"]) == (
            "answer", PROMPT, [], "open",
        ), message  # fmt: skip
        assert not searched
    session = client.get(f"/v1/sessions/{session_id}").json()
    assert session["fallback_streak"] == 0
    assert {t["reason"] for t in session["turns"][1:]} == {ASKED_FOR_HELP}
    chat(client, "and what if I forgot my username too?", session_id)  # continues the question before them
    assert "password" in client.get(f"/v1/sessions/{session_id}").json()["turns"][-1]["query"]
    reply, searched = _reply(client, "I need help with my debit card, it was stolen", session_id)
    assert searched and reply["sources"]


def test_thanks_for_nothing_is_no_thanks(client: TestClient) -> None:
    # "thanks for nothing" was answered "Alright! If anything else comes up, just write here.", as a polite
    # "nothing else, thanks" is: after an answer it says the answer did not help
    for message in ("thanks for nothing", "great, thanks for nothing 🙄"):
        session_id = chat(client, "How do I reset my online banking password?")["session_id"]
        reply = chat(client, message, session_id)
        assert (reply["action"], reply["sources"]) == ("fallback", []), message
        assert client.get(f"/v1/sessions/{session_id}").json()["turns"][-1]["reason"] == NOT_HELPED
    assert chat(client, "nothing else, thanks", "polite")["answer"] == CLOSING
