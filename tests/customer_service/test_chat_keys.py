"""Chat keys (`CS_CHAT_API_KEYS`): the key a chat widget ships in its page calls the chat endpoints and
nothing else, through the real app and lifespan (tiny model, SQLite, the demo knowledge base)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from customer_service import create_app
from customer_service.cli import app as cli_app
from customer_service.settings import CustomerServiceSettings
from tests.conftest import problem
from tests.customer_service.test_app import cs_settings
from textcore import EncoderSettings

OPERATOR = "operator-key-0123456789"
CHAT = "chat-widget-key-0123456789"
FAQ = {
    "items": [{"id": "new-faq", "question": "Open on Sundays?", "answer": "No, we are closed on Sundays."}]
}


def _settings(tmp_path: Path, tiny_model_dir: Path, **more: Any) -> CustomerServiceSettings:
    encoder = EncoderSettings(model=str(tiny_model_dir), device="cpu", precision="fp32")
    return cs_settings(tmp_path, f"sqlite:///{tmp_path / 'cs.db'}", encoder=encoder, **more)


def test_a_chat_key_may_chat_and_give_feedback_and_nothing_else(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = _settings(tmp_path, tiny_model_dir, api_keys=(OPERATOR,), chat_api_keys=(CHAT,))
    widget = {"X-API-Key": CHAT}
    with TestClient(create_app(settings)) as client:
        reply = client.post("/v1/chat", json={"message": "How do I reset my password?"}, headers=widget)
        assert reply.status_code == 200, reply.text
        sid, turn_id = reply.json()["session_id"], reply.json()["turn_id"]
        streamed = client.post(
            "/v1/chat/stream",
            json={"message": "And my card?", "session_id": sid},
            headers={"Authorization": f"Bearer {CHAT}"},
        )
        rated = client.post("/v1/feedback", json={"turn_id": turn_id, "rating": "up"}, headers=widget)
        refused = {
            "list sessions": client.get("/v1/sessions", headers=widget),
            "read a session": client.get(f"/v1/sessions/{sid}", headers=widget),
            "erase a session": client.delete(f"/v1/sessions/{sid}", headers=widget),
            "hand off": client.post(f"/v1/sessions/{sid}/handoff", headers=widget),
            "resolve": client.post(f"/v1/sessions/{sid}/resolve", headers=widget),
            "analytics": client.get("/v1/analytics", headers=widget),
            "read the knowledge": client.get("/v1/knowledge", headers=widget),
            "add an FAQ": client.post("/v1/knowledge/faqs", json=FAQ, headers=widget),
            "delete an FAQ": client.delete("/v1/knowledge/reset-password", headers=widget),
            "metrics": client.get("/metrics", headers=widget),
            "a chat path's other method": client.get("/v1/chat", headers=widget),
        }
        open_paths = [client.get(path, headers=widget).status_code for path in ("/healthz", "/readyz")]
        no_key = client.get("/v1/sessions")
        # Nothing a refused request asked for happened: the session is whole and open, the FAQ absent.
        kept = client.get(f"/v1/sessions/{sid}", headers={"X-API-Key": OPERATOR})
        absent = client.get("/v1/knowledge/new-faq", headers={"X-API-Key": OPERATOR})
    assert streamed.status_code == 200 and "event: done" in streamed.text
    assert rated.status_code == 204
    for what, answer in refused.items():
        detail = problem(answer, 403)["detail"]
        assert detail.startswith("this key may call the chat endpoints only"), what
        assert "www-authenticate" not in answer.headers, what
    assert open_paths == [200, 200]
    assert problem(no_key, 401)["detail"].endswith("found no key")
    assert kept.status_code == 200
    assert kept.json()["state"] == "open" and len(kept.json()["turns"]) == 2
    assert absent.status_code == 404


def test_an_api_key_keeps_full_access_beside_chat_keys(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = _settings(tmp_path, tiny_model_dir, api_keys=(OPERATOR,), chat_api_keys=(CHAT,))
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    with TestClient(create_app(settings)) as client:
        # The widget chats with its key; the agent console works on that session with the operator's.
        reply = client.post(
            "/v1/chat", json={"message": "How do I reset my password?"}, headers={"X-API-Key": CHAT}
        )
        assert reply.status_code == 200, reply.text
        sid = reply.json()["session_id"]
        answers = [
            client.post("/v1/chat", json={"message": "Thanks", "session_id": sid}, headers=operator),
            client.get("/v1/sessions", headers=operator),
            client.get(f"/v1/sessions/{sid}", headers=operator),
            client.post(f"/v1/sessions/{sid}/handoff", headers=operator),
            client.post(f"/v1/sessions/{sid}/resolve", headers=operator),
            client.get("/v1/analytics", headers=operator),
            client.post("/v1/knowledge/faqs", json=FAQ, headers=operator),
            client.delete("/v1/knowledge/new-faq", headers=operator),
            client.delete(f"/v1/sessions/{sid}", headers=operator),
            client.get("/metrics", headers=operator),
        ]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 200, 200, 200, 200, 204, 204, 200], [
        answer.text[:200] for answer in answers
    ]


def test_the_api_documentation_says_what_a_chat_key_may_call(tmp_path: Path, tiny_model_dir: Path) -> None:
    # A front end's developer read /docs (or /openapi.json) and could not tell which operations the widget's
    # chat key may call: every operation asked for "a key" alike
    settings = _settings(tmp_path, tiny_model_dir, api_keys=(OPERATOR,), chat_api_keys=(CHAT,))
    with TestClient(create_app(settings)) as client:
        schema = client.get("/openapi.json").json()
        docs = client.get("/docs")
    marked = {
        (method.upper(), path): operation
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "x-api-key-scopes" in operation
    }
    assert set(marked) == {("POST", "/v1/chat"), ("POST", "/v1/chat/stream"), ("POST", "/v1/feedback")}
    for operation in marked.values():
        assert operation["description"].endswith(
            "a chat key may call this operation, as may a key of full access."
        )
        assert operation["x-api-key-scopes"] == ["chat"]
    # their own descriptions stay, the line follows them
    assert marked["POST", "/v1/chat"]["description"].index("**API keys:**") > 0
    assert (
        "a chat key may call POST /v1/chat, POST /v1/chat/stream and POST /v1/feedback only"
        in schema["info"]["description"]
    )
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    # without chat keys there is nothing to mark
    with TestClient(create_app(_settings(tmp_path, tiny_model_dir, api_keys=(OPERATOR,)))) as client:
        plain = client.get("/openapi.json").json()
    assert "API keys" not in plain["info"]["description"]
    assert not any("x-api-key-scopes" in op for ops in plain["paths"].values() for op in ops.values())


def test_chat_keys_without_api_keys_are_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    # Chat keys alone would leave every other endpoint (sessions, knowledge, analytics) open to anyone.
    monkeypatch.setenv("CS_CHAT_API_KEYS", CHAT)
    with pytest.raises(ValueError, match="expected CS_API_KEYS to be set too") as refused:
        create_app()
    assert CHAT not in str(refused.value)
    served = CliRunner().invoke(cli_app, ["serve"])
    assert served.exit_code == 2
    assert "CS_CHAT_API_KEYS" in served.output and "expected CS_API_KEYS to be set too" in served.output
    assert CHAT not in served.output


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", r"expected at least one value; found none \(unset it"),
        (" [ ] ", r"expected at least one value; found none \(unset it"),
        (f'["{CHAT}", ', "expected a JSON list or comma-separated values"),
        (f'["{CHAT}", "short-secret"]', "at least 16 characters; key 2 has 12"),
        (f"{CHAT}, {OPERATOR}", "expected chat keys apart from CS_API_KEYS; key 2 is one of them"),
    ],
)
def test_chat_keys_are_checked_as_api_keys_are(
    monkeypatch: pytest.MonkeyPatch, given: str, expected: str
) -> None:
    monkeypatch.setenv("CS_API_KEYS", OPERATOR)
    monkeypatch.setenv("CS_CHAT_API_KEYS", given)
    with pytest.raises(ValueError, match=expected) as refused:
        create_app()
    assert "short-secret" not in str(refused.value) and OPERATOR not in str(refused.value)
