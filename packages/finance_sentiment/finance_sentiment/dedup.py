"""Duplicate detection keys: one canonical form per article URL, one hash per story text.

The same story reaches the monitor through several feeds and pages, with tracking parameters, fragments,
default ports and differently spelled hosts; `canonical_url` maps those spellings to one string, and
`content_hash` catches copies of a story published under different URLs. `url_key` stands for a canonical URL
where the URL itself is not kept (the dedup keys of the stories the retention deleted).
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from textcore.errors import InvalidInput

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Query parameters that identify a campaign, a click or a referrer, never the content.
TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "gclsrc", "dclid", "msclkid", "yclid", "twclid", "igshid", "mc_cid", "mc_eid",
        "ref", "ref_src", "ref_url", "referrer", "cmpid", "cmp", "campaign_id", "_hsenc", "_hsmi", "mkt_tok",
        "ocid", "ito", "spm", "smid", "soc_src", "soc_trk", "sr_share", "__twitter_impression", "at_medium",
        "at_campaign", "guccounter", "guce_referrer", "guce_referrer_sig",
    }
)  # fmt: skip
TRACKING_PREFIXES = ("utm_", "hsa_", "pk_", "mtm_")
_PERCENT_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
# Characters a path keeps as they are; anything else (non-ASCII, spaces) is percent-encoded as UTF-8, the
# way HTTP clients send it, so a link written "café" and one written "caf%C3%A9" are the same URL.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


def canonical_url(url: str) -> str:
    """The canonical spelling of an absolute URL, for spotting the same article under different links.

    Lowercases scheme and host, drops any user and password, a default port, the fragment and tracking
    query parameters (`utm_*`, `fbclid`, `gclid`, `ref`, ...), sorts the remaining parameters, resolves
    ``.``/``..`` path segments, percent-encodes characters outside the URL alphabet, uppercases percent
    escapes and removes a trailing slash except from the root path. Applying it twice gives the same result
    as applying it once.

    Args:
        url: An absolute URL.

    Returns:
        The canonical URL.

    Raises:
        InvalidInput: `url` has no scheme or host, or its port is not a number.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"expected an absolute URL; found {url!r} ({exc})") from exc
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname:
        raise InvalidInput(f"expected an absolute URL with a scheme and a host; found {url!r}")
    host = parts.hostname.rstrip(".")  # urlsplit already lowercases it
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    # No user or password: they do not name the article, and a story's link is shown to people and cited in
    # webhooks, where a feed's credentials (carried by links relative to it) must not appear.
    netloc = host
    path = _upper_escapes(quote(_remove_dot_segments(parts.path or "/"), safe=_PATH_SAFE))
    if path != "/":
        path = path.rstrip("/") or "/"
    return urlunsplit((scheme, netloc, path, _clean_query(parts.query), ""))


def _clean_query(query: str) -> str:
    """The query without tracking parameters and empty pieces, sorted; each kept piece keeps its encoding."""
    kept = []
    for piece in query.split("&"):
        if not piece:
            continue
        key = unquote(piece.partition("=")[0].replace("+", " ")).strip().lower()
        if key in TRACKING_PARAMS or key.startswith(TRACKING_PREFIXES):
            continue
        kept.append(_upper_escapes(piece))
    return "&".join(sorted(kept))


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: resolve ``.`` and ``..`` segments of an absolute path."""
    segments = path.split("/")
    output: list[str] = []
    for segment in segments[1:]:
        if segment == ".":
            continue
        if segment == "..":
            if output:
                output.pop()
            continue
        output.append(segment)
    # A path ending in "." or ".." names a directory: keep its trailing slash.
    if segments[-1] in {".", ".."}:
        output.append("")
    return "/" + "/".join(output)


def _upper_escapes(text: str) -> str:
    """Percent escapes in uppercase (``%2f`` -> ``%2F``), the spelling RFC 3986 calls normal."""
    return _PERCENT_ESCAPE.sub(lambda match: match.group(0).upper(), text)


def content_hash(title: str, text: str) -> str:
    """A fingerprint of a story's words, blind to case and whitespace.

    Args:
        title: The headline.
        text: The body.

    Returns:
        The SHA-256 hex digest of the casefolded, whitespace-normalised title and text joined by a newline.
    """
    normalised = " ".join(title.casefold().split()) + "\n" + " ".join(text.casefold().split())
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def url_key(canonical: str) -> str:
    """The SHA-256 hex digest of a canonical URL (`canonical_url`), to recognise it without storing it."""
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
