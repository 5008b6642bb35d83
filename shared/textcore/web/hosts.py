"""Pure-ASGI middleware that answers only requests whose ``Host`` header names the service.

A response may carry the host a request named (the finance monitor's ``Link: <http://HOST/...>; rel="next"``
of a paged list), so a forged ``Host`` would put an attacker's site into it, for a cache or a careless client
to follow. With allowed hosts configured, a request naming another host (or none) is refused with 400
problem+json before any other work; the health probes answer whatever host they are sent to (an
orchestrator probes a pod by its address).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette._utils import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from textcore.web.body_limit import refuse

PROBE_PATHS = frozenset({"/healthz", "/readyz"})


class HostCheck:
    """Refuse HTTP requests whose ``Host`` matches none of ``hosts`` with 400, except on `PROBE_PATHS`.

    Args:
        app: The ASGI application to protect.
        hosts: Host names (any case, no port): ``api.example.com``, or ``*.example.com`` for any name below
            ``example.com``.
        setting: The setting that lists them (e.g. ``FIN_ALLOWED_HOSTS``), named in the 400's detail.

    Raises:
        ValueError: If no host is given.
    """

    def __init__(self, app: ASGIApp, hosts: Iterable[str], setting: str = "ALLOWED_HOSTS") -> None:
        self.app = app
        self.setting = setting
        names = [host.lower() for host in hosts]
        if not names:
            raise ValueError("expected at least one allowed host, found none")
        self._exact = frozenset(name for name in names if not name.startswith("*."))
        self._suffixes = tuple(name[1:] for name in names if name.startswith("*."))  # ".example.com"

    def allows(self, host: str) -> bool:
        """Whether `host` (a Host header's value, port included or not) names the service."""
        name = _without_port(host.strip().lower())
        return name in self._exact or (bool(name) and name.endswith(self._suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] not in ("http", "websocket") or get_route_path(scope) in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        host = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1")
        if self.allows(host):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":  # refused before the handshake is accepted (policy violation)
            await send({"type": "websocket.close", "code": 1008})
            return
        # The host is not echoed: it is what the client forged.
        detail = f"expected a Host header naming this service (its {self.setting} setting), found another"
        await refuse(scope, receive, send, 400, "Bad Request", detail)


def _without_port(host: str) -> str:
    if host.startswith("["):  # an IPv6 address: [::1]:8000
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if ":" in host else host
