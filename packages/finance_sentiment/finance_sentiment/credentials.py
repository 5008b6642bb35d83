"""Credentials in URLs (``https://user:password@host/feed``): kept for fetching, never shown.

A source's URL is stored as given, password included, and the fetcher sends the user and password as HTTP
Basic credentials (never in the request line, so no client log shows them). Every output shows the password
as `MASK`: the API's source listings (URL, last error, why it was disabled), run reports, log lines and error
messages (`redact`); stories are stored under their link without any user or password
(`finance_sentiment.dedup.canonical_url`), so neither the documents nor the alert payloads citing them carry
one. A client that reads a source and sends its masked URL back keeps the stored password (`unmasked`);
the mask anywhere else is refused, as it is no password (`refuse_mask`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MASK = "****"
# `scheme://user:password@`; the password runs to the last `@` before the path, as urlsplit reads it.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s:@]*):(?P<password>[^/?#\s]*)@")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by `MASK` (the user name is kept)."""
    return _USERINFO.sub(lambda match: f"{match['head']}:{MASK}@", text)


def unmasked(sent: str, stored: str | None) -> str:
    """The URL to keep when a client sends ``sent`` for a source now at ``stored``.

    The masked form of the stored URL, as listed, stands for the stored URL itself (password included);
    any other URL is taken as sent.
    """
    if stored is not None and sent != stored and sent == redact(stored):
        return stored
    return sent


def refuse_mask(url: str) -> str:
    """``url`` unchanged unless its password is `MASK`, which is the listing's mask and no password.

    Raises:
        ValueError: The password is the mask.
    """
    try:
        password = urlsplit(url).password
    except ValueError:
        return url  # malformed: left to the URL's own check
    if password == MASK:
        raise ValueError(
            f"expected the password itself, found the masked password {MASK!r} in {url!r}; send the "
            "source's URL exactly as listed to keep its stored password, or the new password"
        )
    return url
