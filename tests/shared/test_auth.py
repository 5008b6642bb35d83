"""The API-key middleware on a real loopback server: which paths are open, and how other spellings fare."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.testclient import TestClient

from tests.conftest import problem, serve_app
from textcore.settings import ServiceSettings
from textcore.web import KeyScope, service_app

KEY = "a-key-of-twenty-chars"
# Other spellings of open paths, and open paths leading elsewhere: none is open.
NOT_OPEN = (
    "/healthz/",
    "/HEALTHZ",
    "/healthz/../metrics",
    "/healthz%2F..%2Fmetrics",
    "/docs/../metrics",
    "/docs/static/../../metrics",
    "/docs/static/swagger-ui.css/../../../metrics",
)


def _app() -> FastAPI:
    return service_app(
        title="t", distribution="textcore", description="d", settings=ServiceSettings(api_keys=(KEY,))
    )


@pytest.mark.parametrize("root_path", ["", "/api"])
def test_probes_and_docs_are_open_under_a_root_path(root_path: str) -> None:
    # Behind a proxy that serves the app under /api and strips the prefix (uvicorn --root-path /api), the
    # server puts the prefix back into the request's path; a probe of /api/healthz, with no key, must
    # still get its 200, not a 401.
    with (
        serve_app(_app(), root_path=root_path) as base_url,
        httpx.Client(base_url=base_url, trust_env=False, timeout=10) as http,
    ):
        health = http.get("/healthz")
        schema = http.get("/openapi.json")
        metrics = http.get("/metrics")
        with_key = http.get("/metrics", headers={"X-API-Key": KEY})
        # Sent as they are (httpx would resolve the dot segments itself).
        other_spellings = {
            path: http.get("/", extensions={"target": path.encode()}).status_code for path in NOT_OPEN
        }
        percent_encoded = http.get("/heal%74hz")  # the same path as the router sees it: open, and health
        # The docs page names its files below the prefix, as a browser must fetch them through the proxy.
        docs = http.get("/docs").text
        stylesheet = http.get("/docs/static/swagger-ui.css")
    assert health.status_code == 200
    assert f'href="{root_path}/docs/static/swagger-ui.css"' in docs
    assert f'src="{root_path}/docs/static/swagger-ui-bundle.js"' in docs
    assert stylesheet.status_code == 200
    assert schema.status_code == 200
    assert metrics.status_code == 401
    assert with_key.status_code == 200
    assert other_spellings == dict.fromkeys(NOT_OPEN, 401)
    assert percent_encoded.json() == {"status": "ok"}


def test_a_prefix_named_like_an_open_path_opens_nothing_below_it() -> None:
    with (
        serve_app(_app(), root_path="/healthz") as base_url,
        httpx.Client(base_url=base_url, trust_env=False, timeout=10) as http,
    ):
        assert http.get("/").status_code == 401  # the server's path /healthz/, the router's /
        assert http.get("/metrics").status_code == 401  # /healthz/metrics, the router's /metrics
        assert http.get("/healthz").status_code == 200


def test_a_websocket_wants_a_key_too() -> None:
    # No service has a websocket route yet; one added later must not be open by default.
    app = _app()

    @app.websocket("/v1/live")
    async def live(socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_text("hello")
        await socket.close()

    with TestClient(app) as client:
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/v1/live"):
            pass
        assert refused.value.code == 1008
        with client.websocket_connect("/v1/live", headers={"X-API-Key": KEY}) as socket:
            assert socket.receive_text() == "hello"


SCOPED = "a-scoped-key-of-twenty"
ITEMS_ONLY = "this key may read items only"


def test_a_scoped_key_calls_its_routes_and_is_forbidden_the_others() -> None:
    scope = KeyScope((SCOPED,), (("GET", "/v1/items/{item_id}"),), ITEMS_ONLY)
    app = service_app(
        title="t",
        distribution="textcore",
        description="d",
        settings=ServiceSettings(api_keys=(KEY,)),
        key_scope=scope,
    )

    @app.get("/v1/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    @app.websocket("/v1/items/{item_id}")
    async def live(socket: WebSocket) -> None:
        await socket.accept()
        await socket.close()

    scoped = {"X-API-Key": SCOPED}
    with TestClient(app) as client:
        read = client.get("/v1/items/a1", headers=scoped)
        head = client.head("/v1/items/a1", headers=scoped)
        other_method = client.delete("/v1/items/a1", headers=scoped)
        below = client.get("/v1/items/a1/more", headers=scoped)
        metrics = client.get("/metrics", headers=scoped)
        full = client.get("/metrics", headers={"X-API-Key": KEY})
        unknown = client.get("/v1/items/a1", headers={"X-API-Key": SCOPED + "x"})
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            client.websocket_connect("/v1/items/a1", headers=scoped),
        ):
            pass
    assert read.json() == {"id": "a1"}
    assert head.status_code == 405  # let through with GET (FastAPI declares no HEAD route; Starlette would)
    for refused in (other_method, below, metrics):
        assert problem(refused, 403) == {
            "type": "about:blank",
            "title": "Forbidden",
            "status": 403,
            "detail": ITEMS_ONLY,
            "instance": refused.request.url.path,
        }
    assert full.status_code == 200
    assert problem(unknown, 401)["detail"].endswith("a key it does not know")
    assert closed.value.code == 1008


def test_scoped_keys_without_keys_of_full_access_are_refused() -> None:
    # Every route beyond the scope would be open to anyone.
    with pytest.raises(ValueError, match="expected API_KEYS as well as keys of a narrower scope"):
        service_app(
            title="t",
            distribution="textcore",
            description="d",
            settings=ServiceSettings(),
            key_scope=KeyScope((SCOPED,), (("GET", "/v1/items/{item_id}"),), ITEMS_ONLY),
        )
