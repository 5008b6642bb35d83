"""The fetcher on a real loopback server: validators, redirects, retries, bounds, robots, address guard."""

from __future__ import annotations

import asyncio
import gzip
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any, TypedDict

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from finance_sentiment import netguard
from finance_sentiment.connect_guard import GuardedNetworkBackend, guarded_transport
from finance_sentiment.fetching import (
    BlockedAddress,
    Fetcher,
    FetchError,
    FetchPolicy,
    FetchResult,
    RobotsDisallowed,
    TooManyRedirects,
    Validators,
)
from finance_sentiment.monitor import open_monitor
from finance_sentiment.settings import FinanceSentimentSettings
from tests.conftest import serve_app
from textcore.errors import InvalidInput
from textcore.http import HttpClientConfig, make_http_client

ETAG = '"v1"'
LAST_MODIFIED = "Wed, 01 Jan 2025 00:00:00 GMT"


@dataclass
class Recorder:
    """What the server saw, and how its robots.txt answers; reset before every test."""

    hits: list[tuple[str, float, dict[str, str]]] = field(default_factory=list)
    robots_status: int = 404
    robots_body: str = ""
    robots_hang: bool = False  # accept robots.txt requests and never answer them

    def record(self, request: Request) -> None:
        self.hits.append((request.url.path, time.monotonic(), dict(request.headers)))

    def count(self, path: str) -> int:
        return sum(1 for hit_path, _, _ in self.hits if hit_path == path)

    def times(self, path: str) -> list[float]:
        return [when for hit_path, when, _ in self.hits if hit_path == path]

    def headers(self, path: str) -> list[dict[str, str]]:
        return [headers for hit_path, _, headers in self.hits if hit_path == path]


def make_app(recorder: Recorder) -> Starlette:
    async def robots(request: Request) -> Response:
        if recorder.robots_hang:
            return await hang(request)
        recorder.record(request)
        return PlainTextResponse(recorder.robots_body, status_code=recorder.robots_status)

    async def page(request: Request) -> Response:
        recorder.record(request)
        headers = {"ETag": ETAG, "Last-Modified": LAST_MODIFIED}
        if request.headers.get("if-none-match") == ETAG:
            return Response(status_code=304, headers={"ETag": ETAG})
        return Response(b"<html>hello</html>", media_type="text/html", headers=headers)

    async def redirect(request: Request) -> Response:
        recorder.record(request)
        code, rest = int(request.path_params["code"]), request.path_params["rest"]
        return RedirectResponse(f"/{rest}", status_code=code)

    async def loop(request: Request) -> Response:
        recorder.record(request)
        other = "b" if request.path_params["name"] == "a" else "a"
        return RedirectResponse(f"/loop/{other}", status_code=302)

    async def hops(request: Request) -> Response:
        recorder.record(request)
        return RedirectResponse(f"{int(request.path_params['n']) + 1}", status_code=307)  # relative Location

    async def to_blocked(request: Request) -> Response:
        recorder.record(request)
        return RedirectResponse("http://169.254.169.254/latest/meta-data/", status_code=302)

    async def retry_after(request: Request) -> Response:
        recorder.record(request)
        if recorder.count(request.url.path) == 1:
            return Response(status_code=429, headers={"Retry-After": request.path_params["value"]})
        return PlainTextResponse("finally")

    async def retry_after_date(request: Request) -> Response:
        recorder.record(request)
        when = datetime.now(UTC) + timedelta(hours=1)
        return Response(status_code=503, headers={"Retry-After": format_datetime(when, usegmt=True)})

    async def status(request: Request) -> Response:
        recorder.record(request)
        return PlainTextResponse("status", status_code=int(request.path_params["code"]))

    async def big(request: Request) -> Response:
        recorder.record(request)
        return Response(b"x" * 10_000)

    async def big_chunked(request: Request) -> Response:
        recorder.record(request)

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"x" * 1_000

        return StreamingResponse(chunks())

    async def gzip_bomb(request: Request) -> Response:
        recorder.record(request)  # 20 KB on the wire, 20 MB once decompressed
        return Response(gzip.compress(b" " * 20_000_000), headers={"Content-Encoding": "gzip"})

    async def drip(request: Request) -> Response:
        recorder.record(request)

        async def slowly() -> AsyncIterator[bytes]:
            for _ in range(30):
                yield b"x"
                await asyncio.sleep(0.1)

        return StreamingResponse(slowly())

    async def hang(request: Request) -> Response:
        recorder.record(request)  # accepts the request, then never answers while the client waits
        while (await request.receive())["type"] != "http.disconnect":
            pass
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/robots.txt", robots),
            Route("/page", page),
            Route("/private/page", page),
            Route("/redirect/{code:int}/{rest:path}", redirect),
            Route("/loop/{name}", loop),
            Route("/hops/{n:int}", hops),
            Route("/to-blocked", to_blocked),
            Route("/retry-after/{value}", retry_after),
            Route("/retry-after-date", retry_after_date),
            Route("/status/{code:int}", status),
            Route("/big", big),
            Route("/big-chunked", big_chunked),
            Route("/gzip-bomb", gzip_bomb),
            Route("/drip", drip),
            Route("/hang", hang),
        ]
    )


@dataclass
class Site:
    base: str
    recorder: Recorder


@pytest.fixture(scope="module")
def server() -> Iterator[Site]:
    recorder = Recorder()
    with serve_app(make_app(recorder)) as base:
        yield Site(base, recorder)


@pytest.fixture
def site(server: Site) -> Site:
    server.recorder.hits.clear()
    server.recorder.robots_status, server.recorder.robots_body = 404, ""
    server.recorder.robots_hang = False
    return server


def policy(**overrides: Any) -> FetchPolicy:
    """A fast test policy: loopback allowed, tiny backoff and host interval."""
    settings: dict[str, Any] = {
        "allowed_networks": ("127.0.0.0/8",),
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "min_host_interval_s": 0.001,
        "max_retries": 2,
        "timeout_s": 5.0,
    }
    return FetchPolicy(**(settings | overrides))


@asynccontextmanager
async def fetcher(max_response_bytes: int = 1_000_000, **overrides: Any) -> AsyncIterator[Fetcher]:
    """A fetcher whose client checks addresses when it connects, as the monitor's does."""
    config, rules = HttpClientConfig(max_response_bytes=max_response_bytes), policy(**overrides)
    backend = GuardedNetworkBackend(netguard.parse_networks(rules.allowed_networks))
    async with make_http_client(config, transport=guarded_transport(backend, config.limits)) as client:
        yield Fetcher(client, rules)


async def test_200_captures_validators_and_sends_the_user_agent(site: Site) -> None:
    async with fetcher() as f:
        result = await f.fetch(f"{site.base}/page#fragment")
    assert result == FetchResult(
        status=200,
        url=f"{site.base}/page",
        content=b"<html>hello</html>",
        content_type="text/html; charset=utf-8",
        validators=Validators(etag=ETAG, last_modified=LAST_MODIFIED),
        permanent_url=None,
    )
    assert not result.not_modified and not result.gone
    assert site.recorder.headers("/page")[0]["user-agent"] == FetchPolicy().user_agent


async def test_second_request_with_validators_gets_304_with_empty_content(site: Site) -> None:
    async with fetcher() as f:
        first = await f.fetch(f"{site.base}/page")
        second = await f.fetch(f"{site.base}/page", first.validators)
    assert second.not_modified and second.status == 304
    assert second.content == b""
    assert second.validators == first.validators  # Last-Modified kept from the request, ETag from the 304
    sent = site.recorder.headers("/page")[1]
    assert sent["if-none-match"] == ETAG and sent["if-modified-since"] == LAST_MODIFIED


@pytest.mark.parametrize(
    ("path", "permanent"),
    [
        ("/redirect/301/page", "/page"),
        ("/redirect/308/page", "/page"),
        ("/redirect/302/page", None),
        ("/redirect/307/page", None),
        ("/redirect/301/redirect/302/page", "/redirect/302/page"),  # permanent only up to the first 302
        ("/redirect/302/redirect/301/page", None),
    ],
)
async def test_redirects_report_the_permanent_url_only_for_leading_permanent_hops(
    site: Site, path: str, permanent: str | None
) -> None:
    async with fetcher(max_redirects=2) as f:
        result = await f.fetch(site.base + path)
    assert result.status == 200 and result.url == f"{site.base}/page"
    assert result.content == b"<html>hello</html>"
    assert result.permanent_url == (None if permanent is None else site.base + permanent)


async def test_redirect_loop_raises_too_many_redirects(site: Site) -> None:
    async with fetcher() as f:
        with pytest.raises(TooManyRedirects, match="loop"):
            await f.fetch(f"{site.base}/loop/a")
    assert site.recorder.count("/loop/a") == 1 and site.recorder.count("/loop/b") == 1


async def test_more_hops_than_max_redirects_raises(site: Site) -> None:
    async with fetcher(max_redirects=2) as f:
        with pytest.raises(TooManyRedirects, match="at most 2 redirects"):
            await f.fetch(f"{site.base}/hops/0")
    assert [path for path, _, _ in site.recorder.hits] == ["/robots.txt", "/hops/0", "/hops/1", "/hops/2"]


async def test_429_with_retry_after_waits_then_succeeds(site: Site) -> None:
    async with fetcher() as f:
        result = await f.fetch(f"{site.base}/retry-after/1")
    assert result.content == b"finally"
    first, second = site.recorder.times("/retry-after/1")
    assert second - first >= 0.9


async def test_retry_after_beyond_the_cap_fails_at_once(site: Site) -> None:
    async with fetcher(max_retry_after_s=10.0) as f:
        with pytest.raises(FetchError, match="Retry-After of 3600 s"):
            await f.fetch(f"{site.base}/retry-after/3600")
    async with fetcher(max_retry_after_s=10.0) as f:
        with pytest.raises(FetchError, match="HTTP 503 with Retry-After"):  # an HTTP-date an hour ahead
            await f.fetch(f"{site.base}/retry-after-date")
    assert site.recorder.count("/retry-after/3600") == 1
    assert site.recorder.count("/retry-after-date") == 1


async def test_503_forever_fails_after_max_retries(site: Site) -> None:
    async with fetcher(max_retries=2) as f:
        with pytest.raises(FetchError, match=r"within 3 attempt\(s\), found HTTP 503"):
            await f.fetch(f"{site.base}/status/503")
    assert site.recorder.count("/status/503") == 3


async def test_transport_error_is_retried() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        if len(calls) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, content=b"ok", headers={"Content-Type": "text/plain"})

    transport = httpx.MockTransport(handler)
    async with make_http_client(transport=transport) as client:
        result = await Fetcher(client, policy(respect_robots=False)).fetch("http://127.0.0.1/feed")
    assert result.content == b"ok" and len(calls) == 2


@pytest.mark.parametrize("code", [404, 403, 400])
async def test_other_4xx_raise_naming_the_status_without_retry(site: Site, code: int) -> None:
    async with fetcher() as f:
        with pytest.raises(FetchError, match=f"HTTP {code}"):
            await f.fetch(f"{site.base}/status/{code}")
    assert site.recorder.count(f"/status/{code}") == 1


async def test_410_is_returned_as_gone(site: Site) -> None:
    async with fetcher() as f:
        result = await f.fetch(f"{site.base}/status/410")
    assert result.gone and result.status == 410
    assert site.recorder.count("/status/410") == 1


@pytest.mark.parametrize("path", ["/big", "/big-chunked", "/gzip-bomb"])
async def test_too_large_body_fails_without_retry(site: Site, path: str) -> None:
    async with fetcher(max_response_bytes=1_000 if path != "/gzip-bomb" else 100_000) as f:
        with pytest.raises(FetchError, match=r"too large.*at most (1000|100000) bytes"):
            await f.fetch(site.base + path)
    assert site.recorder.count(path) == 1


async def test_slow_drip_response_is_cut_off_by_the_deadline(site: Site) -> None:
    started = time.monotonic()
    async with fetcher(timeout_s=0.5, max_retries=0) as f:
        with pytest.raises(FetchError, match=r"no complete response within 0.5 s"):
            await f.fetch(f"{site.base}/drip")
    assert time.monotonic() - started < 2.5  # the drip alone would take 3 s


async def test_a_server_that_never_answers_is_given_up_at_the_fetch_deadline(site: Site) -> None:
    # Eleven tries of 0.4 s each would be allowed; the deadline ends the fetch before they run out.
    async with fetcher(timeout_s=0.4, deadline_s=1.0, max_retries=10, backoff_base_s=0.0) as f:
        with pytest.raises(FetchError) as caught:
            await f.fetch(f"{site.base}/hang")
    found = re.fullmatch(
        rf"gave up on {re.escape(site.base)}/hang after (\d+) tr(?:y|ies) within the 1 s fetch deadline "
        r"\(deadline_s\): no complete response .*",
        caught.value.message,
    )
    assert found is not None, caught.value.message
    assert 1 <= int(found[1]) < 11
    assert 1 <= site.recorder.count("/hang") <= int(found[1])


async def test_a_retry_after_past_the_fetch_deadline_is_not_waited_for(site: Site) -> None:
    # 120 s is within max_retry_after_s (300 s), so without a deadline the fetch would wait for it.
    async with fetcher(deadline_s=5.0, max_retries=3) as f:
        with pytest.raises(FetchError) as caught:
            await f.fetch(f"{site.base}/retry-after/120")
    assert caught.value.message.startswith(
        f"gave up on {site.base}/retry-after/120 after 1 try within the 5 s fetch deadline (deadline_s): "
        "HTTP 429 with Retry-After of 120 s, past the deadline"
    )
    assert caught.value.message.endswith("not waited for")
    assert site.recorder.count("/retry-after/120") == 1


class RetryLimits(TypedDict, total=False):
    """The fetch policy's limits on waiting for a Retry-After (the rest as `policy` sets them)."""

    max_retry_after_s: float
    deadline_s: float
    max_retries: int


@pytest.mark.parametrize(
    ("path", "options"),
    [
        ("/retry-after/3600", {"max_retry_after_s": 10.0}),  # over the cap
        ("/retry-after/120", {"deadline_s": 5.0}),  # past the fetch deadline
        ("/retry-after-date", {"max_retries": 0}),  # after the last try (an HTTP-date an hour ahead)
    ],
)
async def test_a_host_whose_retry_after_was_not_waited_for_is_left_alone_until_it_passes(
    site: Site, path: str, options: RetryLimits
) -> None:
    # The fetch failed and the host's wish was forgotten: the source's next run (every minute, say) and
    # every other source on the host asked again at once, however long the server had asked to be spared.
    async with fetcher(**options) as f:
        with pytest.raises(FetchError):
            await f.fetch(f"{site.base}{path}")
        with pytest.raises(FetchError) as caught:
            await f.fetch(f"{site.base}/page")
    assert caught.value.message.startswith("expected 127.0.0.1 to take requests, found it asked for none")
    assert "Retry-After of" in caught.value.message and "not fetched" in caught.value.message
    assert site.recorder.count(path) == 1
    assert site.recorder.count("/page") == 0


async def test_a_robots_txt_that_never_answers_takes_the_fetch_deadline_and_says_so(site: Site) -> None:
    # robots.txt is read within the page's deadline; unreachable, it disallows everything (RFC 9309).
    site.recorder.robots_hang = True
    async with fetcher(timeout_s=0.3, deadline_s=0.5, max_retries=5, backoff_base_s=0.0) as f:
        with pytest.raises(
            RobotsDisallowed,
            match=r"robots\.txt unreachable.*: gave up on .*/robots\.txt after \d+ tr(y|ies) within the 0\.5",
        ):
            await f.fetch(f"{site.base}/page")
    assert 1 <= site.recorder.count("/robots.txt") < 6
    assert site.recorder.count("/page") == 0


async def test_robots_disallow_is_honoured_and_cached(site: Site) -> None:
    site.recorder.robots_status, site.recorder.robots_body = 200, "User-agent: *\nDisallow: /private\n"
    async with fetcher() as f:
        with pytest.raises(RobotsDisallowed, match="/private/page"):
            await f.fetch(f"{site.base}/private/page")
        assert (await f.fetch(f"{site.base}/page")).status == 200
        assert (await f.fetch(f"{site.base}/page")).status == 200
    assert site.recorder.count("/robots.txt") == 1
    assert site.recorder.count("/private/page") == 0


@pytest.mark.parametrize("path", ["/private/page", "/page?sessionid=1", "/files/report.pdf"])
async def test_robots_rules_match_as_rfc_9309_says(site: Site, path: str) -> None:
    # The longest matching rule wins whatever its place in the file, and paths may use * and $.
    site.recorder.robots_status = 200
    site.recorder.robots_body = (
        "User-agent: *\nAllow: /\nDisallow: /private/\nDisallow: /*?sessionid=\nDisallow: /*.pdf$\n"
    )
    async with fetcher() as f:
        with pytest.raises(RobotsDisallowed):
            await f.fetch(f"{site.base}{path}")
        assert (await f.fetch(f"{site.base}/page?id=1")).status == 200


async def test_robots_rules_for_our_user_agent_apply_to_us_only(site: Site) -> None:
    site.recorder.robots_status = 200
    site.recorder.robots_body = "User-agent: finance-sentiment\nDisallow: /\n\nUser-agent: *\nAllow: /\n"
    async with fetcher() as f:
        with pytest.raises(RobotsDisallowed):
            await f.fetch(f"{site.base}/page")
    async with fetcher(user_agent="otherbot/1.0") as f:
        assert (await f.fetch(f"{site.base}/page")).status == 200


async def test_robots_server_error_disallows_everything(site: Site) -> None:
    site.recorder.robots_status = 500
    async with fetcher(max_retries=0) as f:
        with pytest.raises(RobotsDisallowed):
            await f.fetch(f"{site.base}/page")
    assert site.recorder.count("/page") == 0


async def test_robots_can_be_ignored_by_policy(site: Site) -> None:
    site.recorder.robots_status, site.recorder.robots_body = 200, "User-agent: *\nDisallow: /\n"
    async with fetcher(respect_robots=False) as f:
        assert (await f.fetch(f"{site.base}/page")).status == 200
    assert site.recorder.count("/robots.txt") == 0


async def test_requests_to_one_host_are_spaced_by_the_min_interval(site: Site) -> None:
    async with fetcher(min_host_interval_s=0.3, respect_robots=False) as f:
        await asyncio.gather(f.fetch(f"{site.base}/page"), f.fetch(f"{site.base}/page"))
    first, second = sorted(site.recorder.times("/page"))
    assert second - first >= 0.25


async def test_crawl_delay_raises_the_host_interval(site: Site) -> None:
    site.recorder.robots_status, site.recorder.robots_body = 200, "User-agent: *\nCrawl-delay: 1\n"
    async with fetcher() as f:
        await f.fetch(f"{site.base}/page")
        await f.fetch(f"{site.base}/page")
    first, second = site.recorder.times("/page")
    assert second - first >= 0.9


async def test_loopback_is_blocked_without_allowed_networks(site: Site) -> None:
    async with make_http_client() as client:
        with pytest.raises(BlockedAddress, match=r"loopback address 127.0.0.1"):
            await Fetcher(client, FetchPolicy()).fetch(f"{site.base}/page")
    assert site.recorder.hits == []


class Rebinding:
    """A name server that answers with a public address `honest` times, then with loopback."""

    def __init__(self, honest: int) -> None:
        self.honest, self.asked = honest, 0

    async def __call__(self, host: str, port: int) -> list[netguard.IPAddress]:
        self.asked += 1
        answer = "93.184.216.34" if self.asked <= self.honest else "127.0.0.1"
        return [netguard.ip_literal(answer)]  # type: ignore[list-item]


@pytest.mark.parametrize("robots", [False, True])
async def test_dns_rebinding_between_the_check_and_the_connection_is_refused(
    site: Site, robots: bool
) -> None:
    url = f"http://localhost:{httpx.URL(site.base).port}/page"  # localhost: loopback to the system resolver
    rules = policy(allowed_networks=(), respect_robots=robots)
    checks = 2 if robots else 1  # the page's URL, then robots.txt's, are checked before any connection
    # A plain client resolves the name again to connect: the checks saw a public address, the requests
    # reached loopback. This is the gap the connection guard closes.
    async with make_http_client() as client:
        assert (await Fetcher(client, rules, resolver=Rebinding(checks)).fetch(url)).status == 200
    assert [hit[0] for hit in site.recorder.hits] == ["/robots.txt", "/page"][0 if robots else 1 :]
    site.recorder.hits.clear()

    resolver = Rebinding(checks)
    transport = guarded_transport(GuardedNetworkBackend(resolver=resolver), httpx.Limits())
    async with make_http_client(transport=transport) as client:
        with pytest.raises(BlockedAddress, match=r"when connecting, found loopback address 127\.0\.0\.1"):
            await Fetcher(client, rules, resolver=resolver).fetch(url)
    assert resolver.asked == checks + 1 and site.recorder.hits == []  # checked, then refused when connecting


async def test_the_connection_guard_connects_to_the_address_it_checked(site: Site) -> None:
    async def resolve(host: str, port: int) -> list[netguard.IPAddress]:
        assert host == "feeds.example"  # a name no system resolver knows: only this answer can be used
        return [netguard.ip_literal("127.0.0.1")]  # type: ignore[list-item]

    allowed = netguard.parse_networks(["127.0.0.0/8"])
    transport = guarded_transport(GuardedNetworkBackend(allowed, resolver=resolve), httpx.Limits())
    async with make_http_client(transport=transport) as client:
        response = await client.get(f"http://feeds.example:{httpx.URL(site.base).port}/page")
    assert response.status_code == 200 and [hit[0] for hit in site.recorder.hits] == ["/page"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://100.64.0.1/",
        "http://2130706433/",  # 127.0.0.1 written as one number
        "http://localhost:8080/",
    ],
)
async def test_check_url_blocks_internal_addresses(url: str) -> None:
    async with make_http_client() as client:
        with pytest.raises(BlockedAddress, match=r"expected .* public addresses"):
            await Fetcher(client, FetchPolicy()).check_url(url)


async def test_check_url_allows_public_and_explicitly_allowed_addresses() -> None:
    async with make_http_client() as client:
        await Fetcher(client, FetchPolicy()).check_url("https://93.184.216.34/feed.xml")
        allowing = Fetcher(client, FetchPolicy(allowed_networks=("127.0.0.0/8",)))
        await allowing.check_url("http://127.0.0.1:8000/")
        with pytest.raises(BlockedAddress, match=r"private address 10.0.0.1"):
            await allowing.check_url("http://10.0.0.1/")


async def test_redirect_to_a_blocked_address_is_refused(site: Site) -> None:
    async with fetcher() as f:
        with pytest.raises(BlockedAddress, match=r"169.254.169.254"):
            await f.fetch(f"{site.base}/to-blocked")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x",
        "garbage",
        "http://",
        "http://a b/",
        "file:///etc/passwd",
        "http://example.com:99999/",
        "http://example.com:0/",
        f"http://{'a' * 64}.example.com/feed",  # a DNS label is at most 63 characters
        f"http://{'a.' * 127}com/feed",  # a DNS name at most 253
    ],
)
async def test_malformed_or_non_http_urls_are_invalid_input(url: str) -> None:
    async with make_http_client() as client:
        fetcher_ = Fetcher(client, FetchPolicy())
        with pytest.raises(InvalidInput, match="expected"):
            await fetcher_.check_url(url)
        with pytest.raises(InvalidInput):
            await fetcher_.fetch(url)


@pytest.mark.parametrize(
    "overrides",
    [
        {"timeout_s": 0},
        {"deadline_s": 0},
        {"max_retries": -1},
        {"max_redirects": -1},
        {"min_host_interval_s": -0.1},
        {"backoff_base_s": 2.0, "backoff_max_s": 1.0},
        {"robots_ttl_s": 0},
        {"user_agent": ""},
        {"user_agent": "bot\r\nX-Injected: 1"},
        {"allowed_networks": ("not-a-network",)},
        {"allowed_networks": ("127.0.0.1/8",)},  # host bits set
    ],
)
def test_policy_rejects_bad_values(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"expected .* found"):
        FetchPolicy(**overrides)


async def test_the_retry_after_cap_and_the_robots_ttl_are_fin_settings(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both were fixed (300 s, an hour): an operator could not shorten the wait a slow host asks for, nor
    # have a site's new robots.txt read sooner.
    env = {
        "FIN_DATABASE_URL": f"sqlite:///{tmp_path / 'monitor.db'}",
        "FIN_REGISTRY": str(tmp_path / "registry"),
        "FIN_SCHEDULER": "false",
        "FIN_FETCH__ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "FIN_FETCH__MIN_HOST_INTERVAL_S": "0",
        "FIN_FETCH__MAX_RETRY_AFTER_S": "2",
        "FIN_FETCH__ROBOTS_TTL_S": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    async with open_monitor(FinanceSentimentSettings()) as monitor:
        assert (await monitor.fetcher.fetch(f"{site.base}/page")).status == 200
        await asyncio.sleep(1.2)  # past the robots.txt TTL of 1 s (an hour by default)
        with pytest.raises(
            FetchError, match=r"to ask for a retry within 2\.0 s, found HTTP 429 with Retry-After"
        ):
            await monitor.fetcher.fetch(f"{site.base}/retry-after/3")  # waited for under the default 300 s
    assert site.recorder.count("/retry-after/3") == 1
    assert site.recorder.count("/robots.txt") == 2
