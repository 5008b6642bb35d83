"""The dialogue's plain-Python parts: follow-up rewriting, the policy's precedence, the phrase sentiment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from customer_service.clarification import chosen_option
from customer_service.followup import CARRIED_WORDS, is_follow_up, points_back_only, read_alone, rewrite
from customer_service.phrases import asks_about_bot, asks_for_person, says_not_helped
from customer_service.policy import COMPLAINED, decide, relevant_first
from customer_service.sentiment import PhraseSentiment
from customer_service.settings import PolicySettings

POLICY = PolicySettings(
    min_answer_score=0.5, min_similarity=0.45, clarify_margin=0.08, fallbacks_before_handoff=2
)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("and for business accounts?", True),
        ("What about joint accounts?", True),
        ("how about abroad", True),
        ("is it free?", True),
        ("How do I reset my online banking password?", False),
        ("What is the daily ATM withdrawal limit for debit cards?", False),
        ("Android app download", False),
    ],
)
def test_follow_ups_are_recognised(message: str, expected: bool) -> None:
    assert is_follow_up(message) is expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("is it free?", True),
        ("Is that mortgage rate fixed?", True),
        ("and for business accounts?", False),  # a connective leans on the previous turn for sure
        ("what about it?", False),
        ("How do I reset my online banking password?", False),
    ],
)
def test_follow_ups_by_a_pronoun_alone_are_told_apart(message: str, expected: bool) -> None:
    assert points_back_only(message) is expected


@pytest.mark.parametrize(
    ("message", "searched"),
    [
        ("So, how do I send money abroad?", "how do I send money abroad?"),
        ("Also,   how do I reset my password?", "how do I reset my password?"),
        ("And what are the fees for a wire?", "what are the fees for a wire?"),
        ("what about business accounts?", "business accounts?"),  # the longest connective goes whole
        ("ok, and how do I freeze my card?", "how do I freeze my card?"),
        ("ok how do I freeze my card?", "ok how do I freeze my card?"),  # no connective: as it is
        ("Android app download", "Android app download"),  # "and" only as a word of its own
        ("So?", "So?"),  # nothing else to search by
    ],
)
def test_a_message_read_alone_is_searched_without_its_opening_connective(message: str, searched: str) -> None:
    assert read_alone(message) == searched


def test_a_follow_up_is_read_with_the_previous_query() -> None:
    previous = ["How do I open a savings account?"]
    assert rewrite("and for business accounts?", previous) == (
        "How do I open a savings account, business accounts?"  # the longest connective goes whole
    )
    assert rewrite("is it free?", previous) == "How do I open a savings account, is it free?"
    # a question that stands on its own, or the first turn, is left alone (whitespace normalised)
    assert rewrite("How do I order a new   card?", previous) == "How do I order a new card?"
    assert rewrite("and for business accounts?", []) == "and for business accounts?"


def test_a_chain_of_follow_ups_stays_bounded() -> None:
    queries = ["How do I open a savings account for my daughter who is twelve years old this spring?"]
    for _ in range(20):
        queries.append(rewrite("and what about the interest on it?", queries))
    assert len(queries[-1].split()) <= CARRIED_WORDS + 4  # and the four words of the follow-up
    assert queries[-1].endswith(", the interest on it?")


@pytest.mark.parametrize(
    "message",
    [
        "Can I talk to a human?",
        "I want to speak with a real person",
        "agent please",
        "connect me to an agent",
        "transfer me to a representative",
        "I need a human",
        "I want a human",
        "get me a human",
        "representative please",
        "put me through to an agent",
        "let me talk to customer service",
        # these fell back ("Could you rephrase it?"): the customer had to fail twice to reach a person
        "I want a person",
        "I need a person",
        "give me a person",
        "agent",
        "Human?",
        "operator!!",
        "can I speak to a manager",
        # these fell back too: a call transfer to customer service, and requests to be called back
        "transfer me to customer service",
        "put me through to the customer support team",
        "connect me with customer care",
        "call me back please",
        "Can someone call me?",
        "I want an advisor to phone me",
        "I'd like a callback",
        "can I get a call back",
        "callback",
        "I want a real person",
        "are you a bot? I want a real person",
    ],
)
def test_explicit_requests_for_a_person(message: str) -> None:
    assert asks_for_person(message)


@pytest.mark.parametrize(
    "message",
    [
        "How do I add a person to my account?",
        "human resources contact",
        "I need a human resources contact",
        "Does the card need an agent to activate it?",
        "How do I transfer to someone abroad?",  # a payment, not a call transfer
        "Can I transfer to a person without their IBAN?",
        "Who is my relationship manager?",
        "agent banking",
        "Will you call me if my card is used abroad?",
        "How do I stop callbacks from the sales team?",
        "Who do I call back if I miss your call?",
        # a question whether the bot is a person asks for none: it is told what the bot is
        "Are you a real person or a bot?",
        "am I talking to a real person?",
        "is this a real human?",
    ],
)
def test_mentions_of_people_are_not_requests(message: str) -> None:
    assert not asks_for_person(message)


_ARGS: dict[str, object] = {
    "relevance": [0.9, 0.3],
    "entry_ids": ["a", "b"],
    "out_of_scope": False,
    "negativity": 0.0,
    "fallback_streak": 0,
    "reranked": True,
    "settings": POLICY,
}


@pytest.mark.parametrize(
    ("message", "complains"),
    [("I want to make a complaint", True), ("I'd like to file a formal complaint about my mortgage", True),
     ("I wish to complain about the fees", True), ("i would like to complain", True), ("Complaint!", True),
     ("I'm making an official complaint", True), ("I want to raise a complaint", True),
     ("How long does a complaint take to resolve?", False), ("Where is your complaints policy?", False),
     ("my complaint reference is 1234, any news?", False)],
)  # fmt: skip
def test_a_customer_who_wants_to_complain_goes_to_a_person(message: str, complains: bool) -> None:
    # "I want to make a complaint" fell back ("Could you rephrase it?"), and a second try went to a person
    # only as a failed question: a bank handles a complaint through a person
    decision = decide(message, **{**_ARGS, "relevance": [0.2], "entry_ids": ["a"]})  # type: ignore[arg-type]
    if complains:
        assert (decision.action, decision.reason) == ("handoff", COMPLAINED)
    else:
        assert decision.action == "fallback"


@pytest.mark.parametrize(
    ("message", "topic"),
    [("I want to report fraud", "possible fraud"), ("someone hacked my account", "account compromise"),
     ("there's a transaction I didn't make", "possible fraud"), ("my card was stolen", "stolen card"),
     ("You stole my money", "possible fraud"),
     ("I need to report a fraudulent transaction", "possible fraud"),
     ("There’s a payment I don't recognise on my account", "possible fraud"),
     ("my online banking account has been hacked!", "account compromise"),
     ("I've been scammed", "possible fraud"),
     ("I had my wallet stolen", "stolen card"),
     ("How do I report a lost card?", None), ("What is your fraud protection policy?", None),
     ("How do I report fraud?", None), ("What should I do if my card is stolen?", None),
     ("Whom should I contact if my card is lost or stolen", None), ("What if my card was stolen?", None),
     ("How do you protect my account from being hacked?", None), ("they charged my account twice", None),
     ("I lost my card", None)],
)  # fmt: skip
def test_a_report_of_fraud_or_a_compromised_account_goes_to_a_person_at_once(
    message: str, topic: str | None
) -> None:
    # "I want to report fraud" or "someone hacked my account" fell back ("Could you rephrase it?"): for a
    # bank these are urgent. A question about the topic, which an FAQ answers, is read as any other.
    decision = decide(message, **_ARGS)  # type: ignore[arg-type]
    if topic is None:
        assert decision.action == "answer", message
    else:
        assert (decision.action, decision.reason) == ("handoff", f"urgent: {topic}"), message


def test_the_urgent_topics_are_a_setting() -> None:
    own = POLICY.model_copy(update={"urgent_topics": {"sanctions": (r"\bfrozen by sanctions\b",)}})
    assert decide("My account was FROZEN by sanctions", **{**_ARGS, "settings": own}).reason == (  # type: ignore[arg-type]
        "urgent: sanctions"
    )
    assert decide("my card was stolen", **{**_ARGS, "settings": own}).action == "answer"  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="no regular expression"):
        PolicySettings(urgent_topics={"fraud": ("(unclosed",)})


def _decide(message: str = "how do I block my card", **changes: object) -> tuple[str, int]:
    args = {**_ARGS, **changes}
    decision = decide(message, **args)  # type: ignore[arg-type]
    return decision.action, decision.fallback_streak


OFFERED = ["How do I open a savings account?", "How do I open a business account?"]


@pytest.mark.parametrize(
    ("reply", "choice"),
    [("1", 0), ("[2]", 1), ("the second one", 1), ("The first one please.", 0), ("second", 1),
     ("option 2", 1), ("number one", 0), ("#2", 1), ("yes, the first", 0), ("no, the second one", 1),
     ("I meant the second", 1), ("the former", 0), ("the latter!", 1), ("2nd", 1),
     ("how do I open a business account", 1), ("How do I open a savings account?", 0)],
)  # fmt: skip
def test_a_reply_picks_an_offered_option(reply: str, choice: int) -> None:
    assert chosen_option(reply, OFFERED) == choice


@pytest.mark.parametrize(
    "reply",
    ["I have two accounts", "one more question: what are your fees?", "the first time I tried it failed",
     "neither", "business", "and for a joint account?", "I want to talk to a person", ""],
)  # fmt: skip
def test_other_replies_pick_nothing(reply: str) -> None:
    assert chosen_option(reply, OFFERED) is None


def test_policy_precedence() -> None:
    assert _decide() == ("answer", 0)
    assert _decide("let me talk to a person about my card") == ("handoff", 0)
    assert _decide(negativity=0.95) == ("handoff", 0)
    assert _decide(out_of_scope=True, relevance=[0.8, 0.3]) == ("fallback", 1)
    # the knowledge base may know what the intents do not: a strong match is answered anyway
    assert _decide(out_of_scope=True, relevance=[0.95, 0.3]) == ("answer", 0)
    assert _decide(out_of_scope=True, relevance=[0.8, 0.1], reranked=False) == ("answer", 0)
    assert _decide(relevance=[0.3, 0.2]) == ("fallback", 1)
    # nothing relevant, but the intent has its own template: that answers (the streak ends)
    assert _decide(relevance=[0.3, 0.2], intent_template=True, fallback_streak=1) == ("answer", 0)
    assert _decide(out_of_scope=True, relevance=[0.3], intent_template=True) == ("fallback", 1)
    assert _decide(relevance=[]) == ("fallback", 1)
    # close candidates from different entries: offer both; the same document's chunks: just answer
    assert _decide(relevance=[0.81, 0.78]) == ("clarify", 0)
    assert _decide(relevance=[0.81, 0.78], entry_ids=["doc", "doc"]) == ("answer", 0)
    # without a re-ranker the cosine threshold applies
    assert _decide(relevance=[0.47, 0.1], reranked=False) == ("answer", 0)
    assert _decide(relevance=[0.47, 0.1], reranked=True) == ("fallback", 1)


def test_a_much_more_relevant_second_passage_is_no_close_candidate() -> None:
    # without a re-ranker the passages come in the order of rank fusion: the second may be the more relevant
    # one, by far (a live bank FAQ turn read "two close candidates (0.51, 0.61)")
    assert _decide(relevance=[0.506, 0.607], reranked=False) == ("answer", 0)
    assert _decide(relevance=[0.505, 0.618], reranked=False) == ("answer", 0)
    # close either way round: both are offered
    assert _decide(relevance=[0.50, 0.55], reranked=False) == ("clarify", 0)
    assert _decide(relevance=[0.55, 0.50], reranked=False) == ("clarify", 0)


def test_a_fallback_names_the_most_relevant_passage_found() -> None:
    # passages come in the order of rank fusion, not of relevance: the reason agents and analytics read
    # names the best relevance among them, not the first passage's
    decision = decide(
        "how do I block my card",
        relevance=[0.2, 0.4, 0.1],
        entry_ids=["a", "b", "c"],
        out_of_scope=False,
        negativity=0.0,
        fallback_streak=0,
        reranked=False,
        settings=POLICY,
    )
    assert (decision.action, decision.reason) == ("fallback", "no relevant passage (best 0.40 < 0.45)")


def test_a_relevant_passage_leads_when_the_first_retrieved_is_not_relevant() -> None:
    assert relevant_first([0.4, 0.3, 0.5, 0.6], 0.45) == [3, 0, 1, 2]  # the most relevant, then as retrieved
    assert relevant_first([0.5, 0.3, 0.9], 0.45) == [0, 1, 2]  # the first is relevant: the order stands
    assert relevant_first([0.4, 0.3], 0.45) == [0, 1]  # none is: a fallback, as retrieved
    assert relevant_first([], 0.45) == []


def test_a_clearly_more_relevant_passage_leads_given_a_margin() -> None:
    # the bot passes its clarify_margin without a re-ranker: the fused order stands unless another passage is
    # more relevant than the first by more than the margin (bench/retrieval.py --lead: 28 leads won, 11 lost
    # on the bank FAQs); then the most relevant leads, and the two are no close candidates either
    assert relevant_first([0.506, 0.607, 0.4], 0.45, 0.08) == [1, 0, 2]
    assert relevant_first([0.5, 0.3, 0.9], 0.45, 0.08) == [2, 0, 1]
    assert relevant_first([0.47, 0.3, 0.51], 0.45, 0.08) == [0, 1, 2]  # within the margin: as retrieved
    assert relevant_first([0.4, 0.3, 0.44], 0.45, 0.08) == [0, 1, 2]  # none is relevant: a fallback
    assert relevant_first([0.4, 0.3, 0.46], 0.45, 0.08) == [2, 0, 1]  # the first is not relevant
    assert relevant_first([0.5, 0.3, 0.9], 0.45, None) == [0, 1, 2]  # no margin (a re-ranker's order)


def test_repeated_fallback_becomes_a_handoff() -> None:
    assert _decide(out_of_scope=True, relevance=[0.6], fallback_streak=0) == ("fallback", 1)
    assert _decide(out_of_scope=True, relevance=[0.6], fallback_streak=1) == ("handoff", 0)
    # an answer resets the streak
    assert _decide(fallback_streak=1) == ("answer", 0)


def test_phrase_sentiment_scores_only_unmistakable_anger() -> None:
    scores = PhraseSentiment().negativity(
        [
            "This is unacceptable, I am furious about these fees",
            "WHY IS MY CARD BLOCKED AGAIN!!",
            "Worst bank ever, I'm sick of your useless app",
            "I have a problem with my card",
            "What is the fee for a wire transfer?",
        ]
    )
    assert scores == [1.0, 1.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "message",
    [
        "How do I close my account?",
        "I'm closing my account and switching banks",
        "Can I switch banks and keep my direct debits?",
        "How do I make a complaint?",
        "I think I've been scammed, what should I do?",
        "Can the ombudsman look at my case?",
    ],
)
def test_phrase_sentiment_leaves_topics_alone(message: str) -> None:
    # closing an account, switching, complaints and scams are questions the knowledge base answers
    assert PhraseSentiment().negativity([message]) == [0.0]


@pytest.mark.parametrize(
    ("message", "not_helped"),
    [("it didn't work", True), ("that didn't help", True), ("still not working", True),
     ("this is not helpful", True), ("no, that's wrong", True), ("that does not answer my question", True),
     ("I tried that, it still doesn't work", True), ("the link doesn't work", True),
     ("not what I asked", True),
     ("My card doesn't work abroad", False), ("why doesn't my card work?", False),
     ("it didn't work, what else can I do?", False), ("what's wrong with my card?", False)],
)  # fmt: skip
def test_a_reply_saying_the_answer_did_not_help_is_told_apart(message: str, not_helped: bool) -> None:
    assert says_not_helped(message) is not_helped


@pytest.mark.parametrize(
    ("message", "asks"),
    [("are you a bot?", True), ("Am I talking to a human?", True), ("is anyone there??", True),
     ("hi, are you a real person?", True), ("is this automated?", True), ("who am I talking to?", True),
     ("are you open on Sundays?", False), ("are you a bank?", False),
     ("is there anyone who can help with my mortgage?", False), ("is this account free?", False)],
)  # fmt: skip
def test_a_question_whether_the_bot_is_a_person_is_told_apart(message: str, asks: bool) -> None:
    assert asks_about_bot(message) is asks
