"""The polite, safe HTTP fetcher every source of the monitor goes through.

One injected `httpx.AsyncClient` (bounded in size by `textcore.http.make_http_client`) carries every request.
Around it the fetcher adds: the address guard of `finance_sentiment.netguard` before each hop, robots.txt
(RFC 9309) cached per origin, a per-host rate limit, conditional GET, manual redirects that report a permanent
move, retries with exponential backoff and jitter that honour Retry-After (one it does not wait for, longer
than ``max_retry_after_s``, past the deadline or after the last try, keeps every fetch from that host until
it has passed, so the next scheduled run does not ask again sooner), one deadline per request that
covers the body too (so a slow-drip server cannot hold a worker forever), and one deadline per fetch that
bounds its tries, backoff and Retry-After waits together (so a server that accepts and never answers costs a
run ``deadline_s``, not ``(max_retries + 1) * timeout_s`` plus the waits).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
from protego import Protego

from finance_sentiment import netguard
from textcore.errors import InvalidInput, UpstreamError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
PERMANENT_REDIRECTS = frozenset({301, 308})
# Longest a host's Retry-After keeps every fetch from it (a day: a longer one is more likely a mistake).
MAX_HOST_CLOSED_S = 86_400.0


@dataclass(frozen=True)
class FetchPolicy:
    """How politely and how safely to fetch. Times are in seconds.

    Raises:
        ValueError: If a bound is out of range or an allowed network is not valid CIDR.
    """

    user_agent: str = "finance-sentiment/0.1 (+https://github.com/textcore-suite)"
    timeout_s: float = 20.0
    deadline_s: float = 45.0  # one fetch: its tries and waits to retry (not its waits for the host's turn)
    max_redirects: int = 5
    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 300.0
    min_host_interval_s: float = 1.0
    respect_robots: bool = True
    robots_ttl_s: float = 3600.0
    allowed_networks: tuple[str, ...] = ()
    max_crawl_delay_s: float = (
        60.0  # a robots.txt Crawl-delay above this is clipped, so one host cannot stall us
    )

    def __post_init__(self) -> None:
        if not self.user_agent.strip() or any(c in self.user_agent for c in "\r\n"):
            raise ValueError(f"expected a non-empty one-line user_agent, found {self.user_agent!r}")
        for name in ("timeout_s", "deadline_s", "robots_ttl_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"expected {name} > 0, found {getattr(self, name)}")
        non_negative = ("max_redirects", "max_retries", "backoff_base_s", "max_retry_after_s")
        for name in (*non_negative, "min_host_interval_s", "max_crawl_delay_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"expected {name} >= 0, found {getattr(self, name)}")
        if not self.backoff_max_s >= self.backoff_base_s:
            raise ValueError(
                f"expected backoff_max_s >= backoff_base_s ({self.backoff_base_s}), "
                f"found {self.backoff_max_s}"
            )
        netguard.parse_networks(self.allowed_networks)


@dataclass(frozen=True)
class Validators:
    """Conditional GET state stored per source (from the ETag and Last-Modified response headers)."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class FetchResult:
    """The outcome of one fetch.

    ``permanent_url`` is set when the redirect chain starts with permanent moves (301/308): it is where the
    last of those leading permanent hops points, the URL the caller should store instead of the old one.
    """

    status: int
    url: str
    content: bytes
    content_type: str
    validators: Validators
    permanent_url: str | None = None

    @property
    def not_modified(self) -> bool:
        """True when the server answered 304: the stored copy is current."""
        return self.status == 304

    @property
    def gone(self) -> bool:
        """True when the server answered 410: the source is gone for good."""
        return self.status == 410


class FetchError(UpstreamError):
    """A fetch failed: unreachable, refused, too large, too slow, or an unusable status."""


class BlockedAddress(FetchError):
    """The address guard refused a host (private, loopback, link-local, ... and not explicitly allowed)."""


class RobotsDisallowed(FetchError):
    """The site's robots.txt does not allow our user agent to fetch the URL."""


class TooManyRedirects(FetchError):
    """More redirects than ``max_redirects``, or a redirect loop."""


async def guard_address(
    url: httpx.URL, allowed: tuple[netguard.IPNetwork, ...], resolve: netguard.Resolver = netguard.resolve
) -> None:
    """The address guard: refuse ``url`` when its host resolves to any blocked address outside ``allowed``.

    `Fetcher` applies it before every request (and so `Fetcher.check_url` to what the API is sent); the
    config file's URLs are checked with it at start (`config.admit_urls`).

    Raises:
        BlockedAddress: If the host resolves to a blocked address.
        FetchError: If the host does not resolve.
    """
    host = netguard.host_of(url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = await resolve(host, port)
    except OSError as exc:
        raise FetchError(f"expected host {host!r} of {url} to resolve, found {exc}") from exc
    if not addresses:
        raise FetchError(f"expected host {host!r} of {url} to resolve, found no addresses")
    if (found := netguard.first_blocked(addresses, allowed)) is not None:
        address, blocked = found
        raise BlockedAddress(
            f"expected {url} to resolve only to public addresses or allowed_networks, "
            f"found {blocked} address {address}"
        )


@dataclass(frozen=True)
class _Raw:
    status: int
    url: httpx.URL
    headers: httpx.Headers
    content: bytes


@dataclass
class _HostSlot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_start: float = 0.0  # time.monotonic() before which no request to the host may start
    interval: float = 0.0
    # A Retry-After the fetch did not wait for (over max_retry_after_s, past the deadline, after the last
    # try): time.monotonic() until which no fetch asks the host anything, and why (for the error).
    closed_until: float = 0.0
    closed_why: str = ""


@dataclass(frozen=True)
class _Robots:
    parser: Protego | None  # None: the verdict below applies to every path
    allow_all: bool
    expires_at: float
    why: str = ""  # why everything is disallowed, when robots.txt could not be read


def _basic_auth(url: httpx.URL) -> httpx.BasicAuth | None:
    """The URL's user and password as HTTP Basic credentials, sent apart from the URL so that no request
    line or client log holds them (`finance_sentiment.credentials`)."""
    return httpx.BasicAuth(url.username, url.password) if url.userinfo else None


class _Transient(Exception):
    """A failure worth retrying (transport error, timeout); carries the reason for the final message."""


@dataclass
class _Budget:
    """One fetch's time (``deadline_s``): what its requests and its waits to retry have spent, and its tries.

    Waiting for the host's turn (the rate limit, a robots.txt Crawl-delay) or for another fetch's robots.txt
    is politeness, not this fetch's trying, so it is not counted: a source that answers behaves as before.
    """

    seconds: float
    spent: float = 0.0
    tries: int = 0  # of the URL being fetched (the page, its robots.txt, a redirect's target)
    last_error: str = ""

    @property
    def left(self) -> float:
        return self.seconds - self.spent

    def give_up(self, url: httpx.URL, why: str | None = None) -> FetchError:
        tries = f"{self.tries} {'try' if self.tries == 1 else 'tries'}"
        return FetchError(
            f"gave up on {url} after {tries} within the {self.seconds:g} s fetch deadline (deadline_s): "
            f"{why or self.last_error}"
        )


class Fetcher:
    """Fetches URLs through one shared client, politely (robots, rate limit) and safely (address guard).

    Args:
        client: The client every request goes through; owned by the caller. The monitor's client checks
            addresses again when it connects (`connect_guard`).
        policy: Politeness and safety settings; defaults to `FetchPolicy()`.
        resolver: Host name to addresses for the address guard; `netguard.resolve` by default.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        policy: FetchPolicy | None = None,
        *,
        resolver: netguard.Resolver = netguard.resolve,
    ) -> None:
        self._client = client
        self._policy = policy or FetchPolicy()
        self._resolve = resolver
        self._allowed = netguard.parse_networks(self._policy.allowed_networks)
        self._hosts: dict[str, _HostSlot] = {}
        self._robots: dict[str, _Robots] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}

    async def check_url(self, url: str) -> None:
        """Check that ``url`` may be fetched at all: http(s), well formed, and on an allowed address.

        Raises:
            InvalidInput: If the URL is malformed or not http/https.
            BlockedAddress: If its host resolves to any blocked address outside ``allowed_networks``.
            FetchError: If its host does not resolve.
        """
        await self._guard(netguard.parse_http_url(url))

    async def fetch(self, url: str, validators: Validators | None = None) -> FetchResult:
        """GET ``url``, following redirects, with a conditional request when ``validators`` are given.

        Returns:
            The result for 2xx, 304 (empty content) and 410 (the caller disables the source).

        Raises:
            InvalidInput: If the URL is malformed or not http/https.
            BlockedAddress: If the URL or a redirect target is on a blocked address.
            RobotsDisallowed: If robots.txt forbids a URL in the chain.
            TooManyRedirects: On a redirect loop or more than ``max_redirects`` hops.
            FetchError: On any other status, a too-large body, a timeout or transport failure after the
                retries, a Retry-After longer than ``max_retry_after_s``, or when the fetch's ``deadline_s``
                runs out (at once when a wait to retry, a Retry-After included, would end past it).
        """
        validators = validators or Validators()
        headers: dict[str, str] = {}
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        budget = _Budget(self._policy.deadline_s)
        raw, permanent_url = await self._follow(netguard.parse_http_url(url), headers, budget, robots=True)
        if raw.status == 304:
            return FetchResult(
                304, str(raw.url), b"", "", _validators(raw.headers, validators), permanent_url
            )
        if 200 <= raw.status < 300 or raw.status == 410:
            content_type = raw.headers.get("Content-Type", "")
            return FetchResult(
                raw.status, str(raw.url), raw.content, content_type, _validators(raw.headers), permanent_url
            )
        raise FetchError(f"expected a 2xx, 304 or 410 response from {raw.url}, found HTTP {raw.status}")

    async def _guard(self, url: httpx.URL) -> None:
        await guard_address(url, self._allowed, self._resolve)

    async def _follow(
        self, url: httpx.URL, headers: dict[str, str], budget: _Budget, *, robots: bool
    ) -> tuple[_Raw, str | None]:
        """Send GETs along the redirect chain; returns the last response and the permanent URL, if any."""
        seen = {str(url)}
        permanent_url: str | None = None
        only_permanent = True
        for hop in range(self._policy.max_redirects + 1):
            self._require_open(url)
            await self._guard(url)
            if robots and self._policy.respect_robots:
                await self._check_robots(url, budget)
            raw = await self._send_with_retries(url, headers, budget)
            if raw.status not in REDIRECT_STATUSES:
                return raw, permanent_url
            target = _redirect_target(raw)
            only_permanent = only_permanent and raw.status in PERMANENT_REDIRECTS
            if only_permanent:
                permanent_url = str(target)
            if str(target) in seen:
                raise TooManyRedirects(f"expected redirects from {url} to end, found a loop back to {target}")
            if hop == self._policy.max_redirects:
                break
            seen.add(str(target))
            url = target
        raise TooManyRedirects(
            f"expected at most {self._policy.max_redirects} redirects, found more (last to {target})"
        )

    async def _send_with_retries(self, url: httpx.URL, headers: dict[str, str], budget: _Budget) -> _Raw:
        attempts = self._policy.max_retries + 1
        budget.tries, budget.last_error = 0, "no time left to try it"
        for attempt in range(attempts):
            if budget.left <= 0:
                raise budget.give_up(url)
            retry_after: float | None = None
            try:
                raw = await self._send_once(url, headers, budget)
            except _Transient as exc:
                reason = budget.last_error = str(exc)
            else:
                if raw.status not in RETRY_STATUSES:
                    return raw
                reason = budget.last_error = f"HTTP {raw.status}"
                retry_after = _parse_retry_after(raw.headers.get("Retry-After"))
            if attempt + 1 < attempts:
                await self._wait_before_retry(url, attempt, retry_after, reason, budget)
        if retry_after is not None:  # the last try was asked to wait: so is the next fetch of the host
            self._close_host(url, retry_after, reason)
        if budget.left <= 0:
            raise budget.give_up(url)
        raise FetchError(
            f"expected a usable response from {url} within {attempts} attempt(s), found {reason}"
        )

    async def _wait_before_retry(
        self, url: httpx.URL, attempt: int, retry_after: float | None, reason: str, budget: _Budget
    ) -> None:
        policy = self._policy
        if retry_after is not None and retry_after > policy.max_retry_after_s:
            self._close_host(url, retry_after, reason)
            raise FetchError(
                f"expected {url} to ask for a retry within {policy.max_retry_after_s} s, "
                f"found {reason} with Retry-After of {retry_after:.0f} s"
            )
        if retry_after is None:
            # Equal jitter: at least half the exponential step, so retries from many sources spread out.
            step = min(policy.backoff_max_s, policy.backoff_base_s * 2**attempt)
            delay = step / 2 + random.uniform(0, step / 2)  # noqa: S311  (jitter, not cryptography)
        else:
            delay = retry_after
        if delay >= budget.left:  # the next try could not start in time: end now, not after a pointless wait
            if retry_after is None:
                raise budget.give_up(url)
            self._close_host(url, retry_after, reason)
            raise budget.give_up(
                url,
                f"{reason} with Retry-After of {retry_after:.0f} s, past the deadline "
                f"({max(budget.left, 0):.0f} s left); not waited for",
            )
        budget.spent += delay
        # Push the host's next start too, so concurrent fetches to it honour the server's wish as well.
        slot = self._slot(netguard.host_of(url))
        slot.next_start = max(slot.next_start, time.monotonic() + delay)
        await asyncio.sleep(delay)

    async def _send_once(self, url: httpx.URL, headers: dict[str, str], budget: _Budget) -> _Raw:
        await self._wait_turn(netguard.host_of(url))
        # The per-request timeout, cut to what is left of the fetch's deadline.
        timeout = min(self._policy.timeout_s, budget.left)
        started = time.monotonic()
        budget.tries += 1
        try:
            async with asyncio.timeout(timeout):
                response = await self._client.get(
                    url.copy_with(userinfo=b""),
                    headers={**headers, "User-Agent": self._policy.user_agent},
                    auth=_basic_auth(url),
                )
        except TimeoutError as exc:
            if timeout < self._policy.timeout_s:
                raise _Transient(f"no complete response in the {timeout:.1f} s left of the deadline") from exc
            raise _Transient(f"no complete response within {self._policy.timeout_s} s") from exc
        except httpx.TransportError as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise FetchError(
                f"expected a readable response from {url}, found {type(exc).__name__}: {exc}"
            ) from exc
        except BlockedAddress:  # refused when connecting (`connect_guard`): not retried
            raise
        except UpstreamError as exc:
            # The client's size bound: not retried, a retry would only fetch the same bytes again.
            raise FetchError(f"response too large: {exc.message}") from exc
        finally:
            budget.spent += time.monotonic() - started
        return _Raw(response.status_code, url, response.headers, response.content)

    def _close_host(self, url: httpx.URL, retry_after: float, reason: str) -> None:
        """Leave the host alone for the Retry-After it sent (at most `MAX_HOST_CLOSED_S`) when the fetch does
        not wait for it: the next run of its sources, or another source on it, must not ask sooner."""
        seconds = min(retry_after, MAX_HOST_CLOSED_S)
        until = datetime.now(UTC) + timedelta(seconds=seconds)
        slot = self._slot(netguard.host_of(url))
        if time.monotonic() + seconds > slot.closed_until:
            slot.closed_until = time.monotonic() + seconds
            stamp = until.isoformat(timespec="seconds").replace("+00:00", "Z")
            slot.closed_why = (
                f"{reason} with Retry-After of {retry_after:.0f} s from {url}, so not before {stamp}"
            )

    def _require_open(self, url: httpx.URL) -> None:
        """Refuse, without a request, a URL of a host that asked to be left alone for now (`_close_host`).

        Raises:
            FetchError: The host's Retry-After has not passed.
        """
        slot = self._hosts.get(netguard.host_of(url))
        if slot is not None and slot.closed_until > time.monotonic():
            raise FetchError(
                f"expected {url.host} to take requests, found it asked for none for now ({slot.closed_why}): "
                "not fetched, tried again at a later run"
            )

    def _slot(self, host: str) -> _HostSlot:
        slot = self._hosts.get(host)
        if slot is None:
            slot = self._hosts[host] = _HostSlot(interval=self._policy.min_host_interval_s)
        return slot

    async def _wait_turn(self, host: str) -> None:
        """Wait until a request to ``host`` may start; the lock makes concurrent callers queue in turn."""
        slot = self._slot(host)
        async with slot.lock:
            delay = slot.next_start - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            slot.next_start = time.monotonic() + slot.interval

    async def _check_robots(self, url: httpx.URL, budget: _Budget) -> None:
        origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
        lock = self._robots_locks.setdefault(origin, asyncio.Lock())
        async with lock:  # one robots.txt fetch per origin even when many fetches start at once
            rules = self._robots.get(origin)
            if rules is None or rules.expires_at <= time.monotonic():
                rules = self._robots[origin] = await self._load_robots(origin, netguard.host_of(url), budget)
        allowed = (
            rules.allow_all
            if rules.parser is None
            else rules.parser.can_fetch(str(url), self._policy.user_agent)
        )
        if not allowed:
            why = f" ({rules.why})" if rules.why else ""
            raise RobotsDisallowed(
                f"expected robots.txt of {origin} to allow {url}, found it disallowed{why}"
            )

    async def _load_robots(self, origin: str, host: str, budget: _Budget) -> _Robots:
        expires_at = time.monotonic() + self._policy.robots_ttl_s
        try:
            raw, _ = await self._follow(httpx.URL(f"{origin}/robots.txt"), {}, budget, robots=False)
        except BlockedAddress:
            raise
        except FetchError as exc:  # unreachable (RFC 9309 2.3.1.4): assume complete disallow for now
            why = f"robots.txt unreachable, so all is disallowed for now: {exc.message}"
            return _Robots(None, allow_all=False, expires_at=expires_at, why=why)
        if 400 <= raw.status < 500:  # unavailable (RFC 9309 2.3.1.3): no restrictions
            return _Robots(None, allow_all=True, expires_at=expires_at)
        if not 200 <= raw.status < 300:
            return _Robots(None, allow_all=False, expires_at=expires_at)
        # RFC 9309 matching (the longest rule wins; `*` and `$` in paths), which urllib's parser lacks
        parser = Protego.parse(raw.content.decode("utf-8", errors="replace"))
        delay = parser.crawl_delay(self._policy.user_agent)
        if delay is not None:
            slot = self._slot(host)
            slot.interval = max(
                self._policy.min_host_interval_s, min(float(delay), self._policy.max_crawl_delay_s)
            )
        return _Robots(parser, allow_all=False, expires_at=expires_at)


def _validators(headers: httpx.Headers, fallback: Validators | None = None) -> Validators:
    fallback = fallback or Validators()
    return Validators(
        etag=headers.get("ETag") or fallback.etag,
        last_modified=headers.get("Last-Modified") or fallback.last_modified,
    )


def _redirect_target(raw: _Raw) -> httpx.URL:
    location = raw.headers.get("Location")
    if not location:
        raise FetchError(f"expected a Location header with HTTP {raw.status} from {raw.url}, found none")
    try:
        return netguard.parse_http_url(str(raw.url.join(location)))
    except (InvalidInput, httpx.InvalidURL) as exc:
        raise FetchError(f"expected {raw.url} to redirect to an http(s) URL, found {location!r}") from exc


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from Retry-After (delta-seconds or HTTP-date); None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" dates parse as naive; HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, math.ceil(seconds))
