"""The address guard at the connection layer: the address checked is the address connected to.

`Fetcher` checks a URL's host before each request (a clear early refusal), but the HTTP client would then
resolve the name again to connect, and a name server that answers differently the second time (DNS
rebinding) could lead it to a loopback or private address. `GuardedNetworkBackend` closes that gap: every
connection the monitor's client opens resolves the name once, refuses it when any address falls in a blocked
class (`netguard.blocked_class`, outside ``allowed_networks``), and connects to those very addresses. TLS
still verifies the certificate against the name (httpcore passes the URL's host as the server name).

httpx has no public setting for the network backend of its pooled transport, so `guarded_transport` builds
the standard `httpx.AsyncHTTPTransport` and gives it a connection pool that uses this backend.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from finance_sentiment import netguard
from finance_sentiment.fetching import BlockedAddress


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to addresses the guard allows, resolving each name exactly once.

    Args:
        allowed: Networks the operator allowed explicitly (e.g. loopback for tests and the demo).
        resolver: Name to addresses; `netguard.resolve` (the event loop's resolver) by default.
        inner: The backend that opens the sockets; httpcore's AnyIO backend by default.
    """

    def __init__(
        self,
        allowed: Iterable[netguard.IPNetwork] = (),
        *,
        resolver: netguard.Resolver = netguard.resolve,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._allowed = tuple(allowed)
        self._resolve = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve `host`, refuse it if any address is blocked, else connect to its addresses in turn.

        Raises:
            BlockedAddress: If an address of `host` is in a blocked class and not allowed.
            httpcore.ConnectError: If the name does not resolve or no address accepts the connection.
        """
        try:
            addresses = await self._resolve(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host!r} does not resolve: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host!r} resolves to no address")
        if (found := netguard.first_blocked(addresses, self._allowed)) is not None:
            address, blocked = found
            raise BlockedAddress(
                f"expected {host} to resolve only to public addresses or allowed_networks when "
                f"connecting, found {blocked} address {address}"
            )
        failure = httpcore.ConnectError(f"no address of {host!r} accepted a connection")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options,
                )  # fmt: skip
            except httpcore.ConnectError as exc:  # try the next address, as a resolver-driven connect does
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Refused: the monitor only speaks to hosts by address."""
        raise httpcore.ConnectError(f"expected a TCP host, found a Unix socket path {path!r}")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(backend: GuardedNetworkBackend, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's pooled transport (certificate checks, HTTP/1.1, `limits`) connecting through `backend`."""
    transport = httpx.AsyncHTTPTransport(limits=limits)
    transport._pool = httpcore.AsyncConnectionPool(  # no public hook; see the module doc
        ssl_context=httpx.create_ssl_context(),  # what the transport itself would use
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=backend,
    )
    return transport
