"""The dialogue policy: for each message, answer | clarify | fallback | hand-off, and why.

In order of precedence:
1. hand-off when the message reports an urgent incident (`urgent_topics`: by default possible fraud, a
   hacked account, a stolen card: "I want to report fraud", "someone hacked my account"), the customer asks
   for a person ("talk to a human", "an agent please", "call me back") or says they want to make a
   complaint, or the message is strongly negative (the sentiment score reaches `negative_sentiment`);
2. a short reply in kind when the message only thanks, agrees or says goodbye ("thanks!", "ok", "great, bye",
   "👍", "goodbye 👋"), declines more help ("no thanks", "nope", "that's all"), or only greets ("hi", "good
   morning", "hi, thanks"): it asks nothing, so it is no failed question (an intent's template answers it when
   one renders);
3. a short prompt (what can the bot help with?) when the message only asks for help or says yes, naming no
   topic ("help", "can you help me?", "yes please"), or holds no letter or digit at all ("?", "...", "—",
   "🤔") and is not such an emoji: there is nothing to answer yet, so it is no failed question either;
4. fallback when no passage is relevant enough (the best relevance is under the threshold), or the intent
   model calls the message out of scope and the best passage is not a strong match either (an intent model
   knows its training intents; the knowledge base may answer more than they cover);
5. clarify when the two best passages are both relevant, come from different entries and are closer than
   `clarify_margin`: the customer is offered both;
6. answer otherwise.
A fallback that makes `fallbacks_before_handoff` in a row becomes a hand-off: the customer is not asked to
rephrase forever. The streak is counted when the turn is stored (`recounted`, under the session's lock): two
messages of one session answered at once both read the streak before either is stored, and each would
otherwise count from the same number. Relevance is the re-ranker's probability when there is a re-ranker,
else the cosine similarity of the query and the passage (`min_answer_score` and `min_similarity` are their
thresholds).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from customer_service.settings import PolicySettings

_PERSON = (
    r"(?:a |an |the |some |your )?(?:real |live |actual )?"
    r"(?:person|human|agent|representative|rep|operator|someone|somebody|advisor|adviser|staff|manager|"
    r"supervisor)"
)
_SERVICE = r"(?:your |the )?customer (?:service|support|care)"
# A request for a person names one as the object of a talk/speak/connect verb: "talk to a person", "connect me
# with an agent". "transfer" and "put" route a call only with "me" ("transfer me to a representative", "put
# me through to customer service"): "How do I transfer to someone abroad?" is a question about payments. A
# request to be called back is one for a person too ("call me back", "can someone call me", "I'd like a
# callback"); "Will you call me if my card is used abroad?" asks about notifications.
HANDOFF_REQUEST = re.compile(
    r"\b(?:"
    rf"(?:talk|speak|chat) (?:to|with) {_PERSON}|"
    rf"connect(?: me)? (?:to|with) (?:{_PERSON}|{_SERVICE})|"
    rf"(?:transfer|put|pass) me (?:through |over |on )?(?:to|with) (?:{_PERSON}|{_SERVICE})|"
    r"(?:call|phone|ring) me back|"
    rf"(?:someone|somebody|{_PERSON}) (?:to |please |could |can )?(?:call|phone|ring) me|"
    r"(?:please|pls) (?:call|phone|ring) me|"
    r"(?:a|request|arrange|book|schedule) call[- ]?back|call[- ]?back (?:please|pls)|"
    r"(?:real|live|actual) (?:person|human|agent)|human (?:please|agent)|"
    r"(?:agent|representative|operator) please|"
    r"(?:i (?:need|want)|get me|give me) (?:a |an )?(?:human|agent|representative|operator|person)"
    r"(?! resources)|"
    r"(?:talk|speak|chat) (?:to|with) (?:your )?customer (?:service|support|care)|"
    r"customer (?:service|support) (?:representative|agent))\b",
    re.IGNORECASE,
)

# A message that only thanks, agrees or says goodbye: every word is one of these, with at most punctuation and
# friendly emoji around them ("Thanks a lot!", "ok, got it", "great, bye 👍", "🙏"). Any other word makes it a
# message to read ("thanks, and how do I close my account?").
_ACK_WORDS = frozenset(
    ["thanks", "thank", "thx", "ty", "cheers", "ta", "ok", "okay", "k", "kk", "great", "perfect", "cool",
     "nice", "good", "fine", "awesome", "excellent", "brilliant", "super", "lovely", "got", "understood",
     "noted", "alright", "sure", "helps", "helped", "helpful", "appreciated"]
)  # fmt: skip
# never an acknowledgement alone
_ACK_FILLERS = frozenset(
    ["you", "very", "much", "so", "a", "lot", "many", "it", "all", "right", "that", "mate", "guys"]
)
_ACK_EMOJI = "👍👌🙏🙂😊😀😃😄🤝✅❤♥\ufe0f\U0001f3fb\U0001f3fc\U0001f3fd\U0001f3fe\U0001f3ff"
# Other emoji and symbols around such words are read as punctuation ("goodbye 👋", "bye!! 😉", "thanks ✨"),
# except these, which make the message a complaint to read rather than a thanks ("ok 😡", "thanks 🙄")
# "thanks for nothing" is no thanks, nor a polite "nothing else": it was answered "Alright! If anything else
# comes up, just write here." After an answer it says the answer did not help (`says_not_helped`).
_SARCASM = re.compile(r"\b(?:thanks|thank you|thx|cheers) (?:a lot |very much )?for nothing\b")
_UNFRIENDLY_EMOJI = frozenset("👎😠😡🤬😤😒🙄💢😞😟😢😥😭😩😫☹🙁😕😑😐🤨🖕")
# A message that closes the conversation, the answer to "Is there anything else I can help you with?": "no
# thanks", "nope", "no, that's all", "nothing else". It fell back ("I'm not sure I understood that"), and a
# second one went to a person; "that's all" was even read as a follow-up and answered with the last answer.
_CLOSING_WORDS = frozenset(["no", "nope", "nah", "nothing"])
# A goodbye closes it too ("ok thanks, bye", "bye!"): asking "anything else?" of a customer who is leaving
# reads as if the bot had not heard them.
_GOODBYE_WORDS = frozenset(["bye", "goodbye", "byebye", "cya"])
_CLOSING_FILLERS = frozenset(["else", "for", "now", "s"])  # "s": of "that's", split at its apostrophe
_CLOSING_PHRASES = frozenset(["that s all", "thats all", "that s it", "thats it"])
# A message that only greets: "hi", "Hello there!", "good morning", "hey 👋". It opens most chats: no question
# yet, so no failed one either (two of them were two fallbacks in a row, and the customer went to a person).
_GREETING_WORDS = frozenset(
    ["hi", "hello", "hey", "heya", "hiya", "howdy", "hallo", "greetings", "morning", "afternoon", "evening"]
)
_GREETING_FILLERS = frozenset(
    ["there", "good", "all", "everyone", "anyone", "anybody", "again", "team", "folks"]
)
# A greeting with a thanks ("hi, thanks", "thanks, hello!") is greeted; with a goodbye ("hi, thanks, bye")
# it closes: either read as a question fell back, and two in a row went to a person.
# A message that only asks for help, or says yes to "Is there anything else I can help you with?", without
# naming a topic: "help", "I need help", "hey, can you help me?", "I have a question", "yes please". It fell
# back ("I'm not sure I understood that"), and a second one went to a person before the customer had said
# what they needed: the bot asks what that is instead. Any other word makes it a question to read ("I need
# help with my card").
_HELP_WORDS = frozenset(
    ["help", "assist", "assistance", "support", "question", "questions", "query", "problem"]
)
_YES_WORDS = frozenset(["yes", "yeah", "yep", "yup", "ya", "yea"])
_HELP_FILLERS = frozenset(
    ["i", "need", "want", "would", "like", "some", "please", "pls", "can", "could", "you", "u", "me", "a",
     "an", "have", "got", "with", "something", "ask", "quick", "small", "one", "more", "another", "do", "may",
     "to", "im", "m", "d", "there", "anyone", "someone", "is", "are", "still", "again", "thanks", "thank"]
)  # fmt: skip
ASKED_FOR_HELP = "a request for help naming no topic: asked what the customer needs"
ACKNOWLEDGED = "an acknowledgement (thanks, ok, bye): nothing to answer"
GREETED = "a greeting: nothing to answer yet, asked what the customer needs"
PROMPTED = "no letter or digit: nothing to read, asked what the customer needs"

# in the reason of a hand-off after repeated fallback, the one hand-off of a message the bot could not answer
# (analytics counts those among the unanswered questions, not a request for a person or an angry message)
REPEATED_FALLBACK = "fallbacks in a row"


OwnReply = Literal["acknowledgement", "closing", "greeting", "prompt", "identity"]
# how a turn moves the session's fallback streak: to 0, not at all, or one more (a question the bot failed)
StreakStep = Literal["reset", "keep", "count"]


@dataclass(frozen=True)
class Decision:
    """The policy's choice for one message; `reason` is shown to agents and analytics."""

    action: str  # answer | clarify | fallback | handoff
    reason: str
    fallback_streak: int  # fallbacks in a row after this turn
    template_only: bool = False  # answer with the intent's template alone: no passage was relevant
    # the bot's own reply instead of an answer: "acknowledgement" (the message only thanks or agrees: the bot
    # replies in kind) or "prompt" (it holds no letter or digit: the bot asks what the customer needs)
    own_reply: OwnReply | None = None
    # how the turn moves the streak, applied to the streak as stored when the turn is (`recounted`): "reset"
    # (an answer, a clarifying question, a hand-off), "keep" (an acknowledgement, a prompt, a message to the
    # agents' queue) or "count" (a fallback, or the hand-off it becomes: `failed` says why it failed)
    streak: StreakStep = "reset"
    failed: str | None = None


# A message that is only the word, as typed into a chat widget: "agent", "Human?", "operator!!", "callback"
PERSON_ALONE = re.compile(
    r"\W*(?:(?:an? |the )?(?:human|agent|person|representative|operator)s?|call[- ]?back)\W*", re.IGNORECASE
)
# A customer who says they want to complain goes to a person, as a bank's complaint handling asks: "I want to
# make a complaint", "I'd like to file a formal complaint", "I wish to complain about the fees", "complaint".
# A question about complaints ("how long does a complaint take?") is read as any other.
COMPLAINT = re.compile(
    r"\bi(?:['’]d| would| want| wish| need)(?: like| want)? to (?:make|file|raise|lodge|submit|log|register) "
    r"an? (?:formal |official )?complaint\b|"
    r"\bi(?:['’]d| would| want| wish| need)(?: like| want)? to complain\b|"
    r"\bi(?:['’]m| am) (?:making|filing|raising|lodging|submitting) an? (?:formal |official )?complaint\b|"
    r"^\W*(?:an? |formal |official )*complaint\W*$",
    re.IGNORECASE,
)
COMPLAINED = "customer wants to make a complaint"


def asks_for_person(message: str) -> bool:
    """Whether the customer explicitly asks for a human (or to be called back). A question whether the bot is
    one ("Are you a real person or a bot?", `asks_about_bot`) asks for none: it was handed off for its "real
    person", where "are you a bot?" is told what the bot is; "I want a real person" asks for one."""
    if asks_about_bot(message):
        return False
    return bool(HANDOFF_REQUEST.search(message) or PERSON_ALONE.fullmatch(message))


_ENDING_KNOWN = _ACK_WORDS | _ACK_FILLERS | _CLOSING_WORDS | _CLOSING_FILLERS | _GOODBYE_WORDS
_GREETING_KNOWN = _GREETING_WORDS | _GREETING_FILLERS
_KNOWN_WORDS = _ENDING_KNOWN | _GREETING_KNOWN
# A word typed with a letter held down ("hiii", "byeee", "thankss", "goood") is the known word it stretches:
# both read alike with each run of a letter as one ("good" and "goood" as "god"); a word without a repeated
# letter is taken as typed ("god" is no "good")
_REPEATS = re.compile(r"(.)\1+")
_STRETCHED = {_REPEATS.sub(r"\1", word): word for word in sorted(_KNOWN_WORDS) if _REPEATS.search(word)} | {
    word: word for word in _KNOWN_WORDS
}
# A farewell of more than one word is read as "bye": "see you later", "talk soon", "have a nice day", "good
# night", "take care" ("Thanks a lot, have a nice day" fell back)
_FAREWELL = re.compile(
    r"\b(?:see (?:you|ya|u)(?: (?:later|soon|tomorrow|around))?|"
    r"(?:talk|speak|chat) (?:to you )?(?:later|soon)|"
    r"(?:have|enjoy) (?:a |the |your )?(?:nice|good|great|lovely|wonderful) "
    r"(?:day|evening|weekend|night|afternoon|morning|one)|good ?night|take care)\b"
)


def acknowledges(message: str) -> bool:
    """Whether the message only thanks, agrees or says goodbye (`_ACK_WORDS`, friendly emoji), or closes the
    conversation (`closes`), with a greeting or not ("hi, thanks", "thanks, bye 👋"). Emoji and symbols other
    than unfriendly ones count as punctuation."""
    friendly, words = _ack_words(message)
    if not all(word in _ENDING_KNOWN or word in _GREETING_KNOWN for word in words):
        return False
    said = any(w in _ACK_WORDS or w in _CLOSING_WORDS or w in _GOODBYE_WORDS for w in words)
    return friendly or said or _closing_phrase(words)


def closes(message: str) -> bool:
    """Whether the message only declines more help or says goodbye: "no thanks", "nope", "no, that's all",
    "that's it", "ok thanks, bye"."""
    _, words = _ack_words(message)
    ending = any(w in _CLOSING_WORDS or w in _GOODBYE_WORDS for w in words)
    return acknowledges(message) and (ending or _closing_phrase(words))


def _ack_words(message: str) -> tuple[bool, list[str]]:
    """Whether the message holds a friendly emoji, and its words (split at punctuation, spaces, emoji and
    other symbols, "<3" among them; an unfriendly emoji stays, a word no acknowledgement holds)."""
    text = _SARCASM.sub(" 🙄 ", message.casefold().replace("<3", " ❤ "))  # no thanks: an unfriendly word
    friendly = any(ch in _ACK_EMOJI for ch in text)
    rest = "".join(" " if ch in _ACK_EMOJI or _punctuation(ch) else ch for ch in text)
    return friendly, _FAREWELL.sub("bye", " ".join(map(_spelled, rest.split()))).split()


def _spelled(word: str) -> str:
    """The word, or the known word it stretches ("hiii", "byeee", "thankss", "helloooo", "goood")."""
    if word in _KNOWN_WORDS or not _REPEATS.search(word):
        return word
    return _STRETCHED.get(_REPEATS.sub(r"\1", word), word)


def _punctuation(ch: str) -> bool:
    """Punctuation, a space, a symbol (an emoji) or an emoji's joiner or modifier, unless unfriendly."""
    category = unicodedata.category(ch)
    return category[0] in "PZ" or (
        category in ("So", "Sk", "Sm", "Sc", "Cf", "Mn") and ch not in _UNFRIENDLY_EMOJI
    )


def _closing_phrase(words: list[str]) -> bool:
    joined = " ".join(words)
    return any(phrase in joined for phrase in _CLOSING_PHRASES)


def greets(message: str) -> bool:
    """Whether the message only greets (`_GREETING_WORDS`, with punctuation, emoji and a few words around
    them: "hi there!", "good morning 👋"), or greets and thanks ("hi, thanks") without closing (`closes`)."""
    text = message.casefold()
    words = [
        _spelled(w)
        for w in "".join(" " if unicodedata.category(ch)[0] in "PZS" else ch for ch in text).split()
    ]
    if not any(word in _GREETING_WORDS for word in words):
        return False
    if all(word in _GREETING_KNOWN for word in words):
        return True
    return acknowledges(message) and not closes(message)


# A greeting or a thanks before a question ("Hi! 👋 I lost my card", "hello there, thanks: how do I close my
# account?") says nothing of its topic, yet its words were searched with the question's and diluted it: the
# message fell back. They are passed over to read the question (`without_opening`).
_OPENERS = _GREETING_WORDS | frozenset(["thanks", "thank", "thx", "ty", "cheers"])
_OPENING_FILLERS = _GREETING_FILLERS | frozenset(["you", "so", "very", "much", "a", "lot"])


def without_opening(message: str) -> str:
    """The message from its first word past a leading greeting or thanks (`_OPENERS`, with `_OPENING_FILLERS`
    among them: "hi there", "good morning", "thank you so much"), or the message as it is when it opens with
    none or holds nothing else (a greeting alone is `greets`)."""
    opened = False
    for word in re.finditer(r"\w+", message):
        spelled = _spelled(word.group().casefold())
        if spelled in _OPENERS:
            opened = True
        elif spelled not in _OPENING_FILLERS:
            return message[word.start() :] if opened else message
    return message


# A question whether the customer is talking to a person or a bot, or whether anyone is there: "are you a
# bot?", "am I talking to a human?", "is this automated?", "is anyone there?", "who am I talking to?". It fell
# back ("I'm not sure I understood that"), and a second one handed the customer to a person: the bot says it
# is an automated assistant and how to reach a person (`asks_about_bot`). A request for a person ("can I talk
# to a human?") goes to one as before.
_AGENT = (
    r"(?:a |an |the |some )?(?:real |live |actual )?(?:bot|robot|machine|ai|a\.i\.|human|human being|person|"
    r"computer|chat ?bot|automated|automatic|real|program|virtual assistant|assistant)"
)
_ABOUT_BOT = re.compile(
    r"\W*(?:(?:so|wait|hmm|ok|okay|sorry|just wondering|quick question)\W+)*(?:"
    rf"(?:are|r) (?:you|u) (?:really |actually |even )?{_AGENT}|"
    rf"am i (?:talking|speaking|chatting|writing) (?:to|with) (?:a |an )?{_AGENT}|"
    rf"is (?:this|that|it) (?:really |actually )?{_AGENT}"
    r"(?: (?:chat|service|response|reply|message|answer))?|"
    r"(?:is )?(?:there )?(?:any|some)(?: ?one| ?body) "
    r"(?:there|here|around|listening|real|human|available|online)|"
    r"(?:are you|r u|you) (?:there|still there|real|a real one|listening|human)|"
    r"who (?:am i|are you|is this|am i talking to|am i speaking to|am i chatting with|"
    r"is (?:this|that) talking)(?: (?:talking|speaking|chatting) (?:to|with))?"
    r")\W*(?:(?:or|or a|or an) \w+(?: \w+)?\W*)?",
    re.IGNORECASE,
)
ABOUT_BOT = "asked whether the bot is a person: told it is an automated assistant and how to reach a person"


def asks_about_bot(message: str) -> bool:
    """Whether the message only asks if the customer is talking to a bot or a person, or if anyone is there
    (`_ABOUT_BOT`), after a greeting or not ("hi, are you a bot?")."""
    return _ABOUT_BOT.fullmatch(" ".join(without_opening(message).split())) is not None


def asks_for_help(message: str) -> bool:
    """Whether the message only asks for help or says yes, naming no topic (`_HELP_WORDS`, `_YES_WORDS`)."""
    _, words = _ack_words(message)
    known = all(
        w in _HELP_WORDS or w in _YES_WORDS or w in _HELP_FILLERS or w in _GREETING_KNOWN for w in words
    )
    return known and any(w in _HELP_WORDS or w in _YES_WORDS for w in words)


# A reply that says the bot's last answer did not help: "it didn't work", "that didn't help", "this is not
# what I asked", "still not working", "thanks but that's wrong". "it" and "that" made it a follow-up of the
# question before, answered again with the answer the customer had just said did not help.
_NEG = r"(?:did|does|do|has|have|is|was|will|would|can|could)(?:n[’']?t| not)|won[’']?t|can[’']?t|cannot"
_NOT_HELPED = re.compile(
    r"(?:(?:thanks|thank you|ok|okay|sorry|but|hmm|no|nope|well|great|wow|unfortunately|i tried that|"
    r"tried that|i did that|already did that|i did)\W+)*"
    r"(?:(?:it|that|this|the answer|your answer|that answer|the link|the steps|nothing|you)\s+)?"
    r"(?:(?:still|just|really)\s+)?"
    r"(?:(?:is|was)\s+)?"
    rf"(?:(?:{_NEG}) (?:work|help|answer (?:my|the) question|solve (?:it|anything|my problem)|"
    r"fix (?:it|anything)|be right|right|helpful|working|what i (?:asked|meant|need|needed|wanted))|"
    r"(?:not|no) (?:working|helpful|help|use|right|what i (?:asked|meant|need|needed|wanted))|"
    r"wrong|useless|unhelpful|(?:thanks|thank you|thx|cheers) (?:a lot |very much )?for nothing)"
    r"(?:\W+(?:again|either|at all|for me|sorry|still|unfortunately|though))*\W*",
    re.IGNORECASE,
)
NOT_HELPED = "the customer said the last answer did not help"


def says_not_helped(message: str) -> bool:
    """Whether the message only says the last answer did not help (`_NOT_HELPED`)."""
    text = re.sub(r"[’']s\b", " is", message)  # "that's wrong"
    return _NOT_HELPED.fullmatch(" ".join(text.split())) is not None


def says_nothing(message: str) -> bool:
    """Whether the message holds no letter or digit at all ("?", "...", "—", "🤔"): nothing to read."""
    return not any(unicodedata.category(ch)[0] in "LN" for ch in message)


URGENT = "urgent"  # the reason of a hand-off on an urgent topic: "urgent: possible fraud"


def urgent_topic(message: str, topics: dict[str, tuple[str, ...]]) -> str | None:
    """The first of `topics` (`PolicySettings.urgent_topics`) one of whose patterns is found in the message
    (case-insensitive, curly apostrophes read as straight ones), or None."""
    text = " ".join(message.replace("’", "'").split())
    for topic, patterns in topics.items():
        if any(re.search(pattern, text, re.IGNORECASE) for pattern in patterns):
            return topic
    return None


def _urgent_handoff(message: str, negativity: float, settings: PolicySettings) -> str | None:
    """Why the message goes to a person at once (an urgent topic such as possible fraud, an explicit
    request, a complaint, strong negativity), or None."""
    if (topic := urgent_topic(message, settings.urgent_topics)) is not None:
        return f"{URGENT}: {topic}"
    if asks_for_person(message):
        return "customer asked for a person"
    if COMPLAINT.search(message):
        return COMPLAINED
    if negativity >= settings.negative_sentiment:
        return f"strongly negative message ({negativity:.2f})"
    return None


def by_its_words(
    message: str, negativity: float, fallback_streak: int, intent_template: bool, settings: PolicySettings
) -> Decision | None:
    """What the message's own words settle whatever the passages: a hand-off (`_urgent_handoff`), the reply
    to a greeting or an acknowledgement, or a prompt for a request for help naming no topic or a message
    without a letter or digit (none is a question the bot failed at: no fallback, no step towards a hand-off;
    the fallback streak stays as it was)."""
    if (urgent := _urgent_handoff(message, negativity, settings)) is not None:
        return Decision("handoff", urgent, 0)
    if greets(message):  # before an acknowledgement: "hi, thanks" asks what the customer needs
        return _in_kind(GREETED, "greeting", fallback_streak, intent_template)
    if (acknowledged := _acknowledgement(message, fallback_streak, intent_template)) is not None:
        return acknowledged
    return _prompted(message, fallback_streak, intent_template)


def _prompted(message: str, fallback_streak: int, intent_template: bool) -> Decision | None:
    """The bot's own reply to a question whether it is a person, a request for help naming no topic or a
    message without a letter or digit, or None."""
    if asks_about_bot(message):  # no intent's template: it would answer as if another question were asked
        return _in_kind(ABOUT_BOT, "identity", fallback_streak, intent_template=False)
    if asks_for_help(message):
        return _in_kind(ASKED_FOR_HELP, "prompt", fallback_streak, intent_template)
    if says_nothing(message):  # no intent's template either: there are no words it could have read
        return _in_kind(PROMPTED, "prompt", fallback_streak, intent_template=False)
    return None


def _in_kind(reason: str, own: OwnReply, fallback_streak: int, intent_template: bool) -> Decision:
    """The reply to a message that asks nothing yet: the intent's template when one renders, else the bot's
    own; the fallback streak stays as it was."""
    if intent_template:
        return Decision("answer", f"the intent's template ({reason})", 0, template_only=True)
    return Decision("answer", reason, fallback_streak, template_only=True, own_reply=own, streak="keep")


def _acknowledgement(message: str, fallback_streak: int, intent_template: bool) -> Decision | None:
    """When the message only thanks or agrees, the reply: the intent's template when one renders, else the
    bot's own; the fallback streak stays as it was (neither a failed question nor an answered one)."""
    if not acknowledges(message):
        return None
    if intent_template:
        return Decision("answer", f"the intent's template ({ACKNOWLEDGED})", 0, template_only=True)
    own: OwnReply = "closing" if closes(message) else "acknowledgement"
    return Decision("answer", ACKNOWLEDGED, fallback_streak, template_only=True, own_reply=own, streak="keep")


def relevant_first(relevance: Sequence[float], threshold: float, margin: float | None = None) -> list[int]:
    """The order in which `decide` reads the retrieved passages (indices): as retrieved, unless the first is
    less relevant than `threshold` while another passage reaches it, or (given `margin`) another passage is
    more relevant than the first by more than `margin`; then the most relevant one leads, the others
    following as retrieved.

    Without a re-ranker the passages come in the order of rank fusion, and their relevance is the cosine
    similarity: the first fused passage need not be the most relevant. `decide` reads the first as the best,
    so a relevant passage behind an irrelevant one would otherwise end in a fallback. The bot passes its
    `clarify_margin` as `margin` then: on the bank FAQs, a lead by a clear cosine margin answered more
    questions with the right passage, and the most relevant passage by any margin fewer
    (`bench/retrieval.py --lead`).
    """
    order = list(range(len(relevance)))
    if not relevance:
        return order
    best = max(order, key=lambda i: relevance[i])  # the first of equals
    if relevance[best] < threshold:
        return order
    clearly = margin is not None and relevance[best] - relevance[0] > margin
    if relevance[0] >= threshold and not clearly:
        return order
    return [best, *(i for i in order if i != best)]


def decide(
    message: str,
    *,
    relevance: Sequence[float],
    entry_ids: Sequence[str],
    out_of_scope: bool,
    negativity: float,
    fallback_streak: int,
    reranked: bool,
    settings: PolicySettings,
    intent_template: bool = False,
) -> Decision:
    """Choose the action for one message.

    Args:
        message: what the customer wrote.
        relevance: of the retrieved passages, in the order `relevant_first` gives (re-ranker probability
            or cosine similarity): the first is the one to answer with.
        entry_ids: the knowledge entries the passages belong to (a document's chunks share one), same order.
        out_of_scope: the intent model rejected the message.
        negativity: how negative the message is, in [0, 1].
        fallback_streak: fallbacks in a row before this message.
        reranked: whether `relevance` comes from the re-ranker (else cosine similarity).
        settings: the thresholds.
        intent_template: a confident in-scope intent has a template that renders for this message: it
            answers when no passage is relevant ("hello", "thanks", an order lookup the knowledge base
            does not hold).
    """
    settled = by_its_words(message, negativity, fallback_streak, intent_template, settings)
    if settled is not None:
        return settled
    threshold = settings.min_answer_score if reranked else settings.min_similarity
    strong = settings.strong_answer_score if reranked else settings.strong_similarity
    reason = ""
    if out_of_scope and not (relevance and relevance[0] >= strong):
        reason = "out of scope"
    elif not relevance or relevance[0] < threshold:
        best = f"{max(relevance):.2f}" if relevance else "none"  # the passages need not be in its order
        if intent_template:
            return Decision("answer", f"the intent's template (best passage {best})", 0, template_only=True)
        reason = f"no relevant passage (best {best} < {threshold:.2f})"
    if reason:
        return failed(reason, fallback_streak + 1, settings)
    if (
        len(relevance) > 1
        and relevance[1] >= threshold
        and entry_ids[0] != entry_ids[1]
        and abs(relevance[0] - relevance[1]) < settings.clarify_margin  # the second may be the more relevant
    ):
        return Decision("clarify", f"two close candidates ({relevance[0]:.2f}, {relevance[1]:.2f})", 0)
    return Decision("answer", f"relevance {relevance[0]:.2f}", 0)


def failed(reason: str, streak: int, settings: PolicySettings) -> Decision:
    """A message the bot could not answer (`reason`), the `streak`-th in a row: a fallback, or a hand-off once
    the streak reaches `fallbacks_before_handoff`."""
    if streak >= settings.fallbacks_before_handoff:
        handoff = f"{streak} {REPEATED_FALLBACK} ({reason})"
        return Decision("handoff", handoff, 0, streak="count", failed=reason)
    return Decision("fallback", reason, streak, streak="count", failed=reason)


def recounted(decision: Decision, stored_streak: int, settings: PolicySettings) -> Decision:
    """The decision with the session's fallback streak as it stands when the turn is stored (read under the
    session's lock, in the transaction that stores the turn): a fallback counts from there, and becomes a
    hand-off when that makes `fallbacks_before_handoff` in a row (or stays a fallback when an answer stored
    meanwhile started the streak again); a turn that keeps the streak keeps that one."""
    if decision.streak == "keep":
        return replace(decision, fallback_streak=stored_streak)
    if decision.streak == "count" and decision.failed is not None:
        return failed(decision.failed, stored_streak + 1, settings)
    return decision
