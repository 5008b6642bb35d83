"""Idempotency keys of chat messages: a client's retry of a message gets the turn its first try stored.

A front end sends the same `Idempotency-Key` header with every try of one message (a stream re-posted after
the connection dropped, a POST retried after a timeout). The key is stored with the turn, unique within its
session, so a try that finds it stored is answered with that turn (same turn_id, answer and sources) and
nothing is stored or answered again; a try with the same key and another message is refused (422); a try
while this process still answers the first is refused (409): the client tries again a moment later and gets
the stored turn. Two tries answered on two replicas at once both run; the later to be stored is refused (409
as well: `Conversations.record` looks for the key under the session's lock, and the key's unique index holds).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from textcore import Conflict, InvalidInput

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 128
KEY = re.compile(rf"^[A-Za-z0-9._:+/=-]{{1,{MAX_KEY_CHARS}}}$")  # UUIDs, ULIDs, base64 and base64url


def key_error(key: str) -> str | None:
    """Why a client's idempotency key is refused, or None."""
    if KEY.match(key):
        return None
    return (
        f"expected an {HEADER} of 1-{MAX_KEY_CHARS} letters, digits, '.', '_', ':', '+', '/', '=' or '-' "
        f"(a UUID, for instance); found {key!r:.160}"
    )


def needs_session(session_id: str | None, key: str | None) -> None:
    """A key is looked up within its session: a message with a key names its session.

    Raises:
        InvalidInput: If a key comes without a session id (a retry could not find its first try's session).
    """
    if key is not None and session_id is None:
        raise InvalidInput(
            f"expected a session_id with an {HEADER} (a new session's id may be chosen by the client): a "
            "key is looked up within its session, and a retry of a first message would start another one"
        )


def mismatch(key: str, stored: str) -> InvalidInput:
    """The error for a key sent again with another message than the one its turn stored."""
    return InvalidInput(
        f"expected the same message with the same {HEADER}; {key!r} was used in this session for another "
        f"message ({stored!r:.80}): use a new key for a new message"
    )


class Claims:
    """The (session, key) pairs whose messages this process is answering (touched on the event loop only)."""

    def __init__(self) -> None:
        self._held: set[tuple[str, str]] = set()

    @contextmanager
    def hold(self, session_id: str, key: str) -> Iterator[None]:
        """Answer one message with this key; released however that ends.

        Raises:
            Conflict: If a message with this key in this session is still being answered.
        """
        self.claim(session_id, key)
        try:
            yield
        finally:
            self.release(session_id, key)

    def claim(self, session_id: str, key: str) -> None:
        """As `hold`, released by `release` (a stream's claim lasts until its response ends).

        Raises:
            Conflict: If a message with this key in this session is still being answered.
        """
        if (session_id, key) in self._held:
            raise Conflict(
                f"expected one request at a time per {HEADER}; the message with {key!r} in session "
                f"{session_id!r} is still being answered: try again once it is, to get its reply"
            )
        self._held.add((session_id, key))

    def release(self, session_id: str, key: str) -> None:
        self._held.discard((session_id, key))
