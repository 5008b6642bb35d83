"""The address guard of the fetcher: which URLs may be fetched at all, and which hosts they may resolve to.

A source URL is typed in by an operator or reached through a redirect, so without this guard the monitor could
be pointed at the cloud metadata service (169.254.169.254), the database on loopback or anything else on the
private network (server-side request forgery). The guard refuses a host when ANY address it resolves to falls
in a blocked class, unless the operator allowed that address's network explicitly.

The fetcher checks a URL before each request; the monitor's HTTP client checks again when it connects,
with the addresses it then connects to (`connect_guard`), so a name server that answers differently the
second time (DNS rebinding) cannot slip past.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable

import httpx

from finance_sentiment.credentials import redact
from textcore.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]  # (host, port) -> every address

# DNS limits too (RFC 1035): labels of 1 to 63 characters, 253 in all; the resolver's IDNA codec raised
# UnicodeError on a longer label, a 500 from the API and a traceback at start from a config file.
_HOSTNAME = re.compile(r"^(?=.{1,253}\.?$)[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*\.?$")

# Order matters only for the message: the most specific class is named.
_BLOCKED_CLASSES: tuple[tuple[str, Callable[[IPAddress], bool]], ...] = (
    ("loopback", lambda a: a.is_loopback),
    ("link-local", lambda a: a.is_link_local),
    ("multicast", lambda a: a.is_multicast),
    ("unspecified", lambda a: a.is_unspecified),
    ("private", lambda a: a.is_private),
    ("reserved", lambda a: a.is_reserved),
    # Catches the rest of the special-purpose ranges, e.g. carrier-grade NAT 100.64.0.0/10.
    ("non-global", lambda a: not a.is_global),
)


def parse_http_url(url: str) -> httpx.URL:
    """Parse an absolute http(s) URL with a usable host.

    Args:
        url: The URL as given by the operator or a redirect.

    Returns:
        The parsed URL, without its fragment (never sent to a server).

    Raises:
        InvalidInput: If the URL is malformed, not http/https, or has no valid host or port.
    """
    shown = redact(url)  # the URL may carry a password or a token: the messages show it masked
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise InvalidInput(f"expected an absolute http(s) URL, found {shown!r} ({redact(str(exc))})") from exc
    if parsed.scheme not in {"http", "https"}:
        raise InvalidInput(f"expected an http or https URL, found {shown!r} (scheme {parsed.scheme!r})")
    host = host_of(parsed)
    if not host or (ip_literal(host) is None and not _HOSTNAME.match(host)):
        raise InvalidInput(f"expected a URL with a valid host name or IP address, found {shown!r}")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise InvalidInput(f"expected a URL with a port from 1 to 65535, found {shown!r}")
    return parsed.copy_with(fragment=None)


def host_of(url: httpx.URL) -> str:
    """The host of ``url`` as ASCII (IDNA-encoded names, IPv6 without brackets), lower case."""
    return url.raw_host.decode("ascii", errors="replace").lower()


def ip_literal(host: str) -> IPAddress | None:
    """The address when ``host`` is an IP literal, otherwise None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse CIDR strings such as ``"127.0.0.0/8"`` or ``"::1/128"``.

    Raises:
        ValueError: If an entry is not a network in CIDR notation without host bits set.
    """
    networks: list[IPNetwork] = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=True))
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"expected allowed_networks entries in CIDR notation such as '127.0.0.0/8', "
                f"found {cidr!r} ({exc})"
            ) from exc
    return tuple(networks)


def blocked_class(address: IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """The name of the blocked class ``address`` falls in, or None when it may be contacted.

    An address inside one of the ``allowed`` networks is never blocked. An IPv6 address that embeds an IPv4
    one (IPv4-mapped, 6to4, Teredo) is judged by the embedded address, since that is where packets end up.
    """
    allowed = tuple(allowed)
    if any(address in network for network in allowed):
        return None
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return blocked_class(embedded, allowed)
    for name, test in _BLOCKED_CLASSES:
        if test(address):
            return name
    return None


def first_blocked(
    addresses: Iterable[IPAddress], allowed: Iterable[IPNetwork] = ()
) -> tuple[IPAddress, str] | None:
    """The first of a host's addresses that may not be contacted, with its class; None when all may."""
    allowed = tuple(allowed)
    for address in addresses:
        blocked = blocked_class(address, allowed)
        if blocked is not None:
            return address, blocked
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, through the event loop's resolver (no blocking call).

    Raises:
        OSError: If the name does not resolve (``socket.gaierror``).
    """
    literal = ip_literal(host)
    if literal is not None:
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        # sockaddr[0] is the address text; IPv6 ones may carry a scope ("fe80::1%eth0").
        address = ipaddress.ip_address(str(sockaddr[0]))
        if address not in addresses:
            addresses.append(address)
    return addresses
