"""The one way the core and the services build an outgoing HTTP client: bounded in time, connections and size.

No FastAPI or Starlette here; the client is plain httpx and is owned by the caller (a service's lifespan).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from textcore.errors import UpstreamError


@dataclass(frozen=True)
class HttpClientConfig:
    """Timeouts (seconds), pool limits and response-size bound for outgoing HTTP.

    Raises:
        ValueError: If a timeout or bound is not positive, or keep-alive exceeds the pool size.
    """

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    write_timeout: float = 30.0
    pool_timeout: float = 5.0
    max_connections: int = 20
    max_keepalive: int = 10
    user_agent: str = "textcore/0.1"
    max_response_bytes: int = 10_000_000

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "write_timeout", "pool_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"expected {name} > 0 seconds, found {getattr(self, name)}")
        for name in ("max_connections", "max_response_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"expected {name} >= 1, found {getattr(self, name)}")
        if not 0 <= self.max_keepalive <= self.max_connections:
            raise ValueError(
                f"expected 0 <= max_keepalive <= max_connections ({self.max_connections}), "
                f"found {self.max_keepalive}"
            )

    @property
    def timeout(self) -> httpx.Timeout:
        """The httpx timeout built from the four timeouts."""
        return httpx.Timeout(
            connect=self.connect_timeout,
            read=self.read_timeout,
            write=self.write_timeout,
            pool=self.pool_timeout,
        )

    @property
    def limits(self) -> httpx.Limits:
        """The httpx connection-pool limits."""
        return httpx.Limits(
            max_connections=self.max_connections, max_keepalive_connections=self.max_keepalive
        )


def make_http_client(
    config: HttpClientConfig | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """Build an `httpx.AsyncClient` with the configured timeouts, pool limits, user agent and size bound.

    Response bodies larger than ``config.max_response_bytes`` raise `UpstreamError` instead of filling memory.
    The bound counts decoded bytes: a compressed body is decompressed as it arrives and cut off at the bound,
    so a small gzip body that inflates to gigabytes is refused too.

    Args:
        config: Client settings; defaults to `HttpClientConfig()`.
        transport: Transport to send requests through, for example `httpx.MockTransport` in tests; by default
            a pooled `httpx.AsyncHTTPTransport` with ``config.limits``.

    Returns:
        A client the caller owns and must close (``async with`` or ``await client.aclose()``).
    """
    config = config or HttpClientConfig()
    inner = transport or httpx.AsyncHTTPTransport(limits=config.limits)
    return httpx.AsyncClient(
        transport=_BoundedTransport(inner, config.max_response_bytes),
        timeout=config.timeout,
        headers={"User-Agent": config.user_agent},
    )


class _BoundedTransport(httpx.AsyncBaseTransport):
    """Wraps a transport so every response body is cut off at ``max_bytes`` of decoded content.

    The returned response carries the decoded body, without ``Content-Encoding`` and ``Content-Length``
    headers that would describe the bytes on the wire instead.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, max_bytes: int) -> None:
        self._inner = inner
        self._max_bytes = max_bytes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            await response.aclose()
            raise UpstreamError(_too_large(request, self._max_bytes, f"{declared} bytes declared"))
        headers = response.headers.copy()
        if "Content-Encoding" in headers:  # decoded here as it arrives, so the bound counts what we keep
            del headers["Content-Encoding"]
            headers.pop("Content-Length", None)
        stream = _BoundedStream(response, request, self._max_bytes)
        return httpx.Response(
            response.status_code, headers=headers, stream=stream, extensions=response.extensions
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


class _BoundedStream(httpx.AsyncByteStream):
    """The inner response's decoded body (httpx's own decoders for its ``Content-Encoding``), bounded."""

    def __init__(self, inner: httpx.Response, request: httpx.Request, max_bytes: int) -> None:
        self._inner = inner
        self._request = request
        self._max_bytes = max_bytes

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in self._inner.aiter_bytes():
            size += len(chunk)
            if size > self._max_bytes:
                raise UpstreamError(
                    _too_large(self._request, self._max_bytes, f"more than {self._max_bytes} bytes")
                )
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def _too_large(request: httpx.Request, max_bytes: int, found: str) -> str:
    return f"expected a response of at most {max_bytes} bytes from {request.url}, found {found}"
