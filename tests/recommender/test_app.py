"""The recommender app through its real lifespan, in process and on a real loopback server."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from recommender import create_app
from recommender.settings import RecommenderSettings
from tests.conftest import serve_app

PROBLEM = "application/problem+json"


def test_health_and_readiness_through_lifespan() -> None:
    with TestClient(create_app()) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"workers": "0 of 2 busy"}}


def test_not_ready_without_lifespan() -> None:
    client = TestClient(create_app())  # not entered: the lifespan has not run
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert client.get("/healthz").status_code == 200


def test_settings_come_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REC_MAX_WORKERS", "3")
    app = create_app()
    with TestClient(app):
        assert app.state.limiter.max_workers == 3
    assert not hasattr(app.state, "limiter")  # torn down with the lifespan


def test_oversized_body_is_413_problem() -> None:
    with TestClient(create_app(RecommenderSettings(max_body_bytes=10))) as client:
        response = client.post("/healthz", content=b"x" * 11)
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM


def test_healthz_on_real_server() -> None:
    with (
        serve_app(create_app()) as base_url,
        httpx.Client(base_url=base_url, trust_env=False, timeout=10) as http,
    ):
        response = http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
