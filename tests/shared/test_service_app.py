"""Every service app through its real lifespan, in process and on a real loopback server."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from transformers import BertModel

import customer_service
import finance_sentiment
import recommender
from customer_service.settings import CustomerServiceSettings
from finance_sentiment.settings import FinanceSentimentSettings
from recommender.settings import RecommenderSettings
from tests.conftest import QueryPairs, Response, problem, serve_app
from textcore import TextClassifier
from textcore.models import load_tokenizer

PROBLEM = "application/problem+json"
AppFactory = Callable[..., FastAPI]
SERVICES: list[tuple[AppFactory, Any, str]] = [
    (customer_service.create_app, CustomerServiceSettings, "CS_"),
    (finance_sentiment.create_app, FinanceSentimentSettings, "FIN_"),
    (recommender.create_app, RecommenderSettings, "REC_"),
]
IDS = ["customer_service", "finance_sentiment", "recommender"]
each_service = pytest.mark.parametrize(("create_app", "settings_class", "prefix"), SERVICES, ids=IDS)


@pytest.fixture(scope="module")
def tiny_finance_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained three-label classifier on the tiny BERT: enough for the finance app to be ready."""
    folder = tmp_path_factory.mktemp("tiny-finance")
    encoder = BertModel.from_pretrained(str(tiny_model_dir))
    tokenizer = load_tokenizer(tiny_model_dir)
    TextClassifier(encoder, 3).save(folder, tokenizer, ["negative", "neutral", "positive"], multi_label=False)
    return folder


@pytest.fixture(autouse=True)
def _service_state_in_tmp(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_finance_model: Path, tiny_model_dir: Path
) -> None:
    """Services that keep state (databases, models, indexes) keep it in the test's folder, on tiny models."""
    monkeypatch.setenv("FIN_DATABASE_URL", f"sqlite:///{tmp_path / 'monitor.db'}")
    monkeypatch.setenv("FIN_REGISTRY", str(tmp_path / "registry"))
    monkeypatch.setenv("FIN_MODEL_PATH", str(tiny_finance_model))
    monkeypatch.setenv("REC_DATABASE_URL", f"sqlite:///{tmp_path / 'recommender.db'}")
    monkeypatch.setenv("REC_INDEX_PATH", str(tmp_path / "items.index.npz"))
    monkeypatch.setenv("REC_ENCODER__MODEL", str(tiny_model_dir))


@each_service
def test_health_and_readiness_through_lifespan(
    create_app: AppFactory, settings_class: Any, prefix: str
) -> None:
    with TestClient(create_app()) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        assert ready.json()["checks"]["workers"] == "0 of 2 busy"


@each_service
def test_not_ready_without_lifespan(create_app: AppFactory, settings_class: Any, prefix: str) -> None:
    client = TestClient(create_app())  # not entered: the lifespan has not run
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert client.get("/healthz").status_code == 200


@each_service
def test_settings_come_from_the_service_prefix(
    create_app: AppFactory, settings_class: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"{prefix}MAX_WORKERS", "3")
    monkeypatch.setenv(f"{prefix}ENCODER__PRECISION", "fp32")
    monkeypatch.setenv("OTHER_MAX_WORKERS", "9")
    app = create_app()
    with TestClient(app):
        assert app.state.limiter.max_workers == 3
        assert app.state.settings.encoder.precision == "fp32"
    assert not hasattr(app.state, "limiter")  # torn down with the lifespan


@each_service
def test_bad_setting_is_refused_with_its_name(
    create_app: AppFactory, settings_class: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"{prefix}ENCODER__PRECISION", "fp64")
    with pytest.raises(ValueError, match="precision"):
        create_app()


@each_service
def test_oversized_body_is_413_problem(create_app: AppFactory, settings_class: Any, prefix: str) -> None:
    with TestClient(create_app(settings_class(max_body_bytes=10))) as client:
        response = client.post("/healthz", content=b"x" * 11)
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    # the bound and the setting that raises it, for the operator the client shows it to
    detail = response.json()["detail"]
    assert (
        detail.startswith("expected a request body of at most 10 bytes")
        and f"{prefix}MAX_BODY_BYTES" in detail
    )


@each_service
def test_healthz_on_real_server(create_app: AppFactory, settings_class: Any, prefix: str) -> None:
    with (
        serve_app(create_app()) as base_url,
        httpx.Client(base_url=base_url, trust_env=False, timeout=10) as http,
    ):
        response = http.get("/healthz")
        openapi = http.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert openapi.json()["info"]["version"] == "0.1.0"


@each_service
def test_metrics_count_requests_by_route_template(
    create_app: AppFactory, settings_class: Any, prefix: str
) -> None:
    with TestClient(create_app()) as client:
        client.get("/healthz")
        client.get("/no/such/path")
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in response.text
    assert 'http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in response.text
    assert 'http_request_duration_seconds_count{method="GET",route="/healthz"} 1.0' in response.text


@each_service
def test_metrics_count_made_up_methods_under_one_label(
    create_app: AppFactory, settings_class: Any, prefix: str
) -> None:
    with TestClient(create_app()) as client:
        for method in ("FOO1", "FOO2", "BREW"):
            client.request(method, "/healthz")
        response = client.get("/metrics")
    assert 'http_requests_total{method="OTHER",route="/healthz",status="405"} 3.0' in response.text
    assert "FOO1" not in response.text


@each_service
def test_api_keys_or_origins_set_but_empty_are_refused(
    create_app: AppFactory, settings_class: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("API_KEYS", "CORS_ORIGINS"):
        for blank in ("", " , ", "[]", " [ ] "):
            monkeypatch.setenv(f"{prefix}{name}", blank)
            with pytest.raises(ValueError, match=r"expected at least one value; found none \(unset it"):
                create_app()
        monkeypatch.delenv(f"{prefix}{name}")


KEYS = ("first-key-0123456789", "second-key-0123456789")


@each_service
def test_api_keys_guard_every_route_but_probes_and_docs(
    create_app: AppFactory, settings_class: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"{prefix}API_KEYS", f" {KEYS[0]} ,{KEYS[1]}")  # rotation: two keys, both valid
    with (
        serve_app(create_app()) as base_url,
        httpx.Client(base_url=base_url, trust_env=False, timeout=10) as http,
    ):
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        openapi = http.get("/openapi.json")
        missing = http.get("/metrics")
        wrong = http.get("/metrics", headers={"Authorization": f"Bearer {KEYS[0]}x"})
        # A refused request's body is read and dropped: the client gets the 401, not a reset connection.
        refused_post = http.post("/metrics", content=b"x" * 200_000)
        bearer = http.get("/metrics", headers={"Authorization": f"bearer {KEYS[0]}"})
        header = http.get("/metrics", headers={"X-API-Key": KEYS[1]})
    assert problem(missing, 401)["detail"].endswith("found no key")
    assert missing.headers["www-authenticate"].startswith("Bearer realm=")
    assert len(missing.headers["x-request-id"]) == 32  # refused requests have an id too
    assert problem(wrong, 401)["detail"].endswith("found a key it does not know")
    assert KEYS[0] not in wrong.text
    assert problem(refused_post, 401)["instance"] == "/metrics"
    assert bearer.status_code == 200
    assert header.status_code == 200
    # Refused before routing: counted, under the route label of requests no route matched.
    assert 'http_requests_total{method="GET",route="unmatched",status="401"} 2.0' in header.text
    schema = openapi.json()
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKeyHeader"}
    assert schema["security"] == [{"bearer": []}, {"apiKeyHeader": []}]
    assert schema["paths"]["/healthz"]["get"]["security"] == []


@each_service
def test_every_response_carries_the_security_headers(
    create_app: AppFactory, settings_class: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Replies carry personal data (chat turns, sessions): no cache may keep them, and no browser may read one
    # as HTML. Errors answered by the middleware (401, 413) and by the router (404, 405) carry them too.
    monkeypatch.setenv(f"{prefix}API_KEYS", KEYS[0])
    monkeypatch.setenv(f"{prefix}MAX_BODY_BYTES", "10")
    with TestClient(create_app()) as client:
        answers = {
            "ok": client.get("/metrics", headers={"X-API-Key": KEYS[0]}),
            "probe": client.get("/healthz"),
            "docs": client.get("/docs"),
            "refused": client.get("/metrics"),
            "too large": client.post("/metrics", content=b"x" * 11, headers={"X-API-Key": KEYS[0]}),
            "unknown": client.get("/nowhere", headers={"X-API-Key": KEYS[0]}),
            "method": client.delete("/metrics", headers={"X-API-Key": KEYS[0]}),
        }
    assert [answer.status_code for answer in answers.values()] == [200, 200, 200, 401, 413, 404, 405]
    for what, answer in answers.items():
        assert answer.headers["x-content-type-options"] == "nosniff", what
        assert answer.headers["cache-control"] == "no-store", what
        assert answer.headers["x-frame-options"] == "DENY", what
        # The docs page has a policy of its own (test_api_docs_policy_allows_only_the_services_own_scripts).
        policy = answer.headers["content-security-policy"]
        expected = "; frame-ancestors 'none'" if what == "docs" else "frame-ancestors 'none'"
        assert policy.endswith(expected) if what == "docs" else policy == expected, what


@each_service
def test_no_api_keys_leaves_the_api_open(create_app: AppFactory, settings_class: Any, prefix: str) -> None:
    with TestClient(create_app()) as client:
        assert client.get("/metrics").status_code == 200
        assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


@each_service
def test_short_api_key_is_refused_without_echoing_it(
    create_app: AppFactory, settings_class: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"{prefix}API_KEYS", f'["{KEYS[0]}", "short-secret"]')  # a JSON list, as other lists
    with pytest.raises(ValueError, match="at least 16 characters; key 2 has 12") as refused:
        create_app()
    assert "short-secret" not in str(refused.value)
    monkeypatch.setenv(f"{prefix}API_KEYS", f'["{KEYS[0]}", ')
    with pytest.raises(ValueError, match="expected a JSON list or comma-separated values"):
        create_app()


@each_service
def test_allowed_hosts_refuse_a_forged_host_but_not_the_probes(
    create_app: AppFactory, settings_class: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A response may carry the request's host (the finance monitor's Link rel="next"): a forged Host header
    # would put another site there.
    monkeypatch.setenv(f"{prefix}ALLOWED_HOSTS", "api.example-bank.com, *.internal.example-bank.com")
    with TestClient(create_app(), base_url="http://api.example-bank.com") as client:
        named = client.get("/metrics")
        with_port = client.get("/metrics", headers={"Host": "API.example-bank.com:8443"})
        below = client.get("/metrics", headers={"Host": "cs.internal.example-bank.com"})
        forged = client.post("/metrics", headers={"Host": "evil.example"}, content=b"x" * 1000)
        lookalike = client.get("/metrics", headers={"Host": "api.example-bank.com.evil.example"})
        bare_suffix = client.get("/metrics", headers={"Host": "internal.example-bank.com"})
        probes = [client.get(path, headers={"Host": "10.0.0.7:8000"}) for path in ("/healthz", "/readyz")]
    assert [named.status_code, with_port.status_code, below.status_code] == [200, 200, 200]
    for refused in (forged, lookalike, bare_suffix):
        assert f"{prefix}ALLOWED_HOSTS" in problem(refused, 400)["detail"]
        assert "evil" not in refused.text  # the forged host is not echoed
    assert [probe.status_code for probe in probes] == [200, 200]
    for bad in ("https://api.example-bank.com", "api.example-bank.com:8443", "[]"):
        monkeypatch.setenv(f"{prefix}ALLOWED_HOSTS", bad)
        with pytest.raises(ValueError, match=f"{prefix}ALLOWED_HOSTS|allowed_hosts"):
            create_app()


SITE = "https://www.example-bank.com"


@each_service
def test_cors_lets_the_configured_sites_pages_call_the_api_with_a_key(
    create_app: AppFactory, settings_class: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"{prefix}API_KEYS", KEYS[0])
    monkeypatch.setenv(f"{prefix}CORS_ORIGINS", f"{SITE},http://localhost:3000")
    preflight = {"Origin": SITE, "Access-Control-Request-Method": "GET"}
    with TestClient(create_app()) as client:
        # a browser's preflight carries no key: answered before the key is checked
        allowed = client.options(
            "/metrics", headers=preflight | {"Access-Control-Request-Headers": "x-api-key"}
        )
        foreign = client.options("/metrics", headers=preflight | {"Origin": "https://evil.example"})
        refused = client.get("/metrics", headers={"Origin": SITE})  # no key: the page can read the 401
        keyed = client.get("/metrics", headers={"Origin": SITE, "X-API-Key": KEYS[0]})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == SITE
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    assert foreign.status_code == 400 and "access-control-allow-origin" not in foreign.headers
    assert problem(refused, 401) and refused.headers["access-control-allow-origin"] == SITE
    assert keyed.status_code == 200 and keyed.headers["access-control-allow-origin"] == SITE
    assert "x-request-id" in keyed.headers["access-control-expose-headers"].lower()


@each_service
def test_cors_lets_pages_send_and_read_the_services_own_headers(
    create_app: AppFactory, settings_class: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A chat widget retrying a message sends an Idempotency-Key (customer service); a dashboard paging alerts
    # reads the Link header (finance monitor). The preflight refused the first ("Disallowed CORS headers"),
    # and the second was not exposed, so the browser hid it from the page.
    monkeypatch.setenv(f"{prefix}CORS_ORIGINS", SITE)
    asked = "content-type, idempotency-key, x-request-id"
    preflight = {
        "Origin": SITE,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": asked,
    }
    with TestClient(create_app()) as client:
        allowed = client.options("/v1/chat", headers=preflight)
        answered = client.get("/healthz", headers={"Origin": SITE})
    assert allowed.status_code == 200, allowed.text
    allowed_headers = {
        name.strip().lower() for name in allowed.headers["access-control-allow-headers"].split(",")
    }
    assert {"content-type", "idempotency-key", "x-request-id"} <= allowed_headers
    exposed = {name.strip().lower() for name in answered.headers["access-control-expose-headers"].split(",")}
    assert {"x-request-id", "retry-after", "link"} <= exposed


@each_service
def test_without_cors_origins_no_page_may_call_the_api(
    create_app: AppFactory, settings_class: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestClient(create_app()) as client:
        response = client.get("/healthz", headers={"Origin": SITE})
    assert "access-control-allow-origin" not in response.headers
    monkeypatch.setenv(f"{prefix}CORS_ORIGINS", f'["{SITE}/chat"]')
    with pytest.raises(ValueError, match=r"scheme://host\[:port\] \(no path\) or '\*'; found"):
        create_app()


# What probes, scrapers and the API docs send: each is answered alike whatever its query holds.
ANY_QUERY: list[tuple[str, QueryPairs]] = [
    ("/healthz", [("probe", "1"), ("probe", "2")]),
    ("/readyz", [("_", "1733140000")]),
    ("/metrics", [("name[]", "http_requests_total"), ("name[]", "process_cpu_seconds_total")]),
    ("/docs", [("x", "1")]),
    ("/openapi.json", [("v", "2")]),
    ("/docs/oauth2-redirect", [("code", "c"), ("state", "s")]),
    ("/docs/static/swagger-ui.css", [("v", "5")]),
]


@each_service
def test_every_operation_takes_only_its_own_query_parameters_each_once(
    create_app: AppFactory, settings_class: Any, prefix: str
) -> None:
    """A query parameter an operation does not take was ignored without a word, and one sent twice served
    its last value, on every operation but the recommender's. Every operation the OpenAPI document lists
    (any method, any router) now answers either with a 422 naming the parameter, before it reads or writes
    anything; a list parameter may repeat. The probes, /metrics and the API docs take whatever they are
    sent."""
    with TestClient(create_app()) as client:
        paths = client.get("/openapi.json").json()["paths"]
        operations = [
            (method, re.sub(r"\{[^}]+\}", "x1", template), operation)
            for template, methods in paths.items()
            if template not in {"/healthz", "/readyz", "/metrics"}
            for method, operation in methods.items()
        ]
        assert len(operations) >= 9
        for method, path, operation in operations:
            errors = problem(client.request(method, path, params={"zz": "1"}), 422)["errors"]
            assert [(e["loc"], e["type"]) for e in errors] == [(["query", "zz"], "extra_forbidden")]
            for param in (p for p in operation.get("parameters", []) if p["in"] == "query"):
                name, listed = param["name"], "array" in json.dumps(param["schema"])
                once = [] if listed else [(["query", name], "expected one value, found 2")]
                assert repeated(client.request(method, path, params=[(name, "1")] * 2)) == once, (path, name)
        for path, params in ANY_QUERY:
            assert client.get(path, params=params).status_code == 200, path


def repeated(response: Response) -> list[tuple[list[str], str]]:
    """The (loc, msg) of each error of type "repeated" a response names."""
    errors = response.json().get("errors", []) if response.status_code == 422 else []
    return [(e["loc"], e["msg"]) for e in errors if e["type"] == "repeated"]


def docs_urls(html: str) -> list[tuple[str, str]]:
    """The (element, URL) of every script, stylesheet and icon a docs page names."""
    return re.findall(r'<(script|link)\b[^>]*?\b(?:src|href)="([^"]*)"', html)


def policy_of(response: Response) -> dict[str, list[str]]:
    """A Content-Security-Policy header as {directive: sources}."""
    directives = (part.split() for part in response.headers["content-security-policy"].split(";"))
    return {words[0]: words[1:] for words in directives if words}


@each_service
def test_api_docs_load_only_the_services_own_files(
    create_app: AppFactory, settings_class: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bank's network reaches no CDN: a docs page that names one is blank there. Every script, stylesheet and
    # icon is a path of the service, open without a key like the page, answered with its own media type.
    monkeypatch.setenv(f"{prefix}API_KEYS", KEYS[0])
    with TestClient(create_app()) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page)
            assert html.status_code == 200, page
            assert html.headers["content-type"].startswith("text/html")
            named = docs_urls(html.text)
            assert {element for element, _ in named} == {"script", "link"}, page
            assert not re.search(r"https?://|//cdn|googleapis", html.text), page
            for element, url in named:
                assert url.startswith("/docs/static/"), (page, url)
                asset = client.get(url)  # no key
                assert asset.status_code == 200, url
                assert len(asset.content) > 500, url
                expected = "text/javascript" if element == "script" else ("text/css", "image/png")
                assert asset.headers["content-type"].startswith(expected), url
                assert asset.headers["x-content-type-options"] == "nosniff"
            assert client.get("/openapi.json").status_code == 200
        swagger = client.get("/docs").text
        assert "/docs/static/swagger-ui-bundle.js" in swagger and "/docs/static/swagger-ui.css" in swagger
        assert "/docs/static/redoc.standalone.js" in client.get("/redoc").text
        # The open paths are exactly these files: a neighbour of theirs still needs the key.
        assert client.get("/docs/static/swagger-ui.js").status_code == 401
        assert client.get("/docs/static/").status_code == 401


@each_service
def test_api_docs_policy_allows_only_the_services_own_scripts(
    create_app: AppFactory, settings_class: Any, prefix: str
) -> None:
    # The pages' Content-Security-Policy: scripts, styles and requests from the service alone; the one inline
    # script of the Swagger UI page (which starts it) allowed by its hash, which the browser computes alike.
    with TestClient(create_app()) as client:
        docs, redirect, redoc = client.get("/docs"), client.get("/docs/oauth2-redirect"), client.get("/redoc")
    for page in (docs, redirect):
        policy = policy_of(page)
        inline = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
        assert len(inline) == 1
        digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
        assert policy["script-src"] == ["'self'", f"'sha256-{digest}'"]
        assert policy["default-src"] == ["'none'"]
        assert policy["style-src"] == ["'self'"]
        assert policy["connect-src"] == ["'self'"]
        assert policy["img-src"] == ["'self'", "data:"]  # the icons embedded in Swagger UI's stylesheet
        assert policy["frame-ancestors"] == ["'none'"]
    # ReDoc writes its styles as it renders and searches in a blob: worker; its scripts are the service's own.
    policy = policy_of(redoc)
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'none'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "<script>" not in redoc.text
