"""What a customer's message says by its words alone, whatever the knowledge base holds: a greeting,
thanks or a goodbye, a request for a person or for help, a complaint, a report of an urgent incident, a
question whether the bot is a person, a reply that the last answer did not help. The dialogue policy
(`customer_service.policy`) decides what each means for the conversation.
"""

from __future__ import annotations

import re
import unicodedata

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


def says_not_helped(message: str) -> bool:
    """Whether the message only says the last answer did not help (`_NOT_HELPED`)."""
    text = re.sub(r"[’']s\b", " is", message)  # "that's wrong"
    return _NOT_HELPED.fullmatch(" ".join(text.split())) is not None


def says_nothing(message: str) -> bool:
    """Whether the message holds no letter or digit at all ("?", "...", "—", "🤔"): nothing to read."""
    return not any(unicodedata.category(ch)[0] in "LN" for ch in message)


def urgent_topic(message: str, topics: dict[str, tuple[str, ...]]) -> str | None:
    """The first of `topics` (`PolicySettings.urgent_topics`) one of whose patterns is found in the message
    (case-insensitive, curly apostrophes read as straight ones), or None."""
    text = " ".join(message.replace("’", "'").split())
    for topic, patterns in topics.items():
        if any(re.search(pattern, text, re.IGNORECASE) for pattern in patterns):
            return topic
    return None
