"""Every service app through its real lifespan, in process and on a real loopback server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import customer_service
import finance_sentiment
import recommender
from customer_service.settings import CustomerServiceSettings
from finance_sentiment.settings import FinanceSentimentSettings
from recommender.settings import RecommenderSettings
from tests.conftest import serve_app

PROBLEM = "application/problem+json"
AppFactory = Callable[..., FastAPI]
SERVICES: list[tuple[AppFactory, Any, str]] = [
    (customer_service.create_app, CustomerServiceSettings, "CS_"),
    (finance_sentiment.create_app, FinanceSentimentSettings, "FIN_"),
    (recommender.create_app, RecommenderSettings, "REC_"),
]
IDS = ["customer_service", "finance_sentiment", "recommender"]
each_service = pytest.mark.parametrize(("create_app", "settings_class", "prefix"), SERVICES, ids=IDS)


@each_service
def test_health_and_readiness_through_lifespan(
    create_app: AppFactory, settings_class: Any, prefix: str
) -> None:
    with TestClient(create_app()) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"workers": "0 of 2 busy"}}


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
