"""Credentials in URLs: kept for fetching and posting, never shown.

A URL may carry a credential three ways: a user and password (``https://user:password@host/feed``), a user
name alone, which services use for an API token (``https://TOKEN@host/feed``), or a query parameter named
for one (``?token=``, ``?key=``, ``?sig=``, ``?api_key=``, ``?access_token=``, ``?signature=``, ...). A
source's URL and an alert rule's webhook URL are stored as given; the fetcher sends a source's user and
password as HTTP Basic credentials (never in the request line, so no client log shows them). Every output
shows the credential as `MASK` (`redact`): the API's source and alert-rule listings (URL, last error, why it
was disabled), run reports, log lines and error messages; stories are stored under their link without any
user or password (`finance_sentiment.dedup.canonical_url`), so neither the documents nor the alert payloads
citing them carry one. The HTTP client's own log lines (httpx writes each request's URL at INFO) pass through
`RedactingFilter` too, so a webhook URL's password or a token in a query string never reaches the log
(`protect_client_logs`). A client that reads a source or a rule and sends its masked URL back keeps the stored
credentials (`unmasked`); the mask anywhere else is refused, as it is no credential (`refuse_mask`).
"""

from __future__ import annotations

import logging
import re

MASK = "****"
# `scheme://userinfo@`; the userinfo runs to the last `@` before the path, as urlsplit reads it.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s]*)@")
# A query parameter whose name says it holds a credential: `token`, `access_token`, `key`, `apikey`,
# `sig`, `X-Amz-Signature`, `client_secret`, `password`, `auth` ... (not `monkey`); its value runs to the
# next `&` or `#`.
_SECRET_PARAM = re.compile(
    r"(?P<head>[?&](?:[A-Za-z0-9_.-]*[_.-]|api|access|auth|app|client)?"
    r"(?:token|key|sig|signature|secret|password|passwd|pwd|auth|credentials?)=)(?P<value>[^&#\s]*)",
    re.IGNORECASE,
)


def _masked_userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    # A user with a password keeps its name; a user name alone is the credential (an API token).
    return f"{match['head']}{user}:{MASK}@" if colon else f"{match['head']}{MASK}@"


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by `MASK`: the password (the user name
    is kept), a user name given without a password, and the value of a query parameter named for a
    credential."""
    text = _USERINFO.sub(_masked_userinfo, text)
    return _SECRET_PARAM.sub(lambda match: f"{match['head']}{MASK}" if match["value"] else match[0], text)


def unmasked(sent: str, stored: str | None) -> str:
    """The URL to keep when a client sends ``sent`` for a source now at ``stored``.

    The masked form of the stored URL, as listed, stands for the stored URL itself (password included);
    any other URL is taken as sent.
    """
    if stored is not None and sent != stored and sent == redact(stored):
        return stored
    return sent


def refuse_mask(url: str) -> str:
    """``url`` unchanged unless a credential in it (see `redact`) is `MASK`, which is the listings' mask
    and no credential.

    Raises:
        ValueError: A credential of the URL is the mask.
    """
    if MASK in _credentials(url):
        raise ValueError(
            f"expected the credential itself, found the masked one {MASK!r} in {redact(url)!r}; send the URL "
            "exactly as listed to keep its stored credentials, or the new ones"
        )
    return url


def _credentials(text: str) -> list[str]:
    """The credentials `redact` masks in ``text``."""
    found = []
    for match in _USERINFO.finditer(text):
        user, colon, password = match["userinfo"].partition(":")
        found.append(password if colon else user)
    return found + [match["value"] for match in _SECRET_PARAM.finditer(text)]


# the loggers of the HTTP client stack, which write request URLs as they are
CLIENT_LOGGERS = ("httpx", "httpcore")


class RedactingFilter(logging.Filter):
    """Masks the credentials of every URL in a log record's message (`redact`); drops no record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def protect_client_logs() -> None:
    """Puts a `RedactingFilter` on the HTTP client's loggers (once, however often called)."""
    for name in CLIENT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
