"""Hostile requests against every operation of the three service apps, generated from their OpenAPI documents
(`tests.hostile_requests`), so that new routes are covered as soon as they appear.

Every answer must be below 500, and never a hang; an error must be an ``application/problem+json`` document
with its status and detail; a request that cannot be valid must be refused with a 4xx. The apps run through
their real lifespan on tiny models and SQLite in a temporary folder, in four steps: the valid requests that
store something (so that hostile events find an item, hostile patches a source), then the requests that can
only be refused (the collections must be unchanged after them), then those that may be valid, then every
read with valid parameters (what was stored must still be readable). Nothing stored may hold a NUL character:
PostgreSQL cannot store it, so SQLite must not either.

No request can reach beyond loopback: the only URLs the bodies carry are on 127.0.0.1 (port 9, where nothing
listens), the finance monitor runs as an API-only replica (no scheduler, so a source it stores is never
fetched) with only loopback let past its address guard, and its run endpoint only ever sees ids of sources
that do not exist.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from transformers import BertModel

import customer_service
import finance_sentiment
import recommender
from customer_service.settings import CustomerServiceSettings
from finance_sentiment.settings import FetchSettings, FinanceSentimentSettings
from recommender.settings import RecommenderSettings
from tests.conftest import PROBLEM, Response
from tests.hostile_requests import NUL, Case, Raw, Schemas, all_cases, dumps, field_values, read_backs
from textcore import EncoderSettings, TextClassifier
from textcore.models import load_tokenizer

HANG_SECONDS = 120.0  # a request still unanswered after this is reported as a hang (not a timing check)
# Collections whose listing must not change while requests that cannot be valid are refused.
COLLECTIONS = {
    "customer_service": ("/v1/sessions", "/v1/knowledge"),
    "finance_sentiment": ("/v1/sources", "/v1/alert-rules", "/v1/alerts", "/v1/documents"),
    "recommender": ("/v1/items",),
}


def send(client: TestClient, case: Case) -> Response:
    """Send one case; a request that is not answered within `HANG_SECONDS` fails the test as a hang."""
    headers = {"content-type": case.content_type} if case.content_type is not None else {}
    answer: list[Response | BaseException] = []

    def request() -> None:
        params = tuple(case.params) or None  # an empty list would drop a query written into the path
        try:
            answer.append(
                client.request(case.method, case.path, params=params, content=case.content, headers=headers)
            )
        except BaseException as exc:  # reported below, with the case
            answer.append(exc)

    worker = threading.Thread(target=request, daemon=True)
    worker.start()
    worker.join(HANG_SECONDS)
    if not answer:
        pytest.fail(f"{case.describe()}: no answer after {HANG_SECONDS:.0f} s (the app hangs)")
    if isinstance(answer[0], BaseException):
        pytest.fail(f"{case.describe()}: the client raised {answer[0]!r}")
    return answer[0]


def fault(case: Case, response: Response) -> str | None:
    """What is wrong with the answer to `case`, if anything."""
    status = response.status_code
    found = f"{status} {response.headers.get('content-type', '-')}: {response.text[:300]!r}"
    if status >= 500 or status < 200 or 300 <= status < 400:
        return found
    if status < 300:
        return None if case.may_succeed else f"accepted: {found}"
    if response.headers.get("content-type") != PROBLEM:
        return f"not a problem document: {found}"
    body = response.json()
    if body.get("status") != status or not isinstance(body.get("detail"), str):
        return f"problem without its status or detail: {found}"
    if "Traceback" in response.text:
        return f"traceback in the body: {found}"
    return None


def listings(client: TestClient, service: str) -> dict[str, Any]:
    snapshot = {}
    for path in COLLECTIONS[service]:
        response = client.get(path)
        assert response.status_code == 200, response.text
        snapshot[path] = response.json()
    return snapshot


def holding_nul(value: Any, where: str = "") -> Iterator[str]:
    """Where in a JSON value a string (or a key) holds a NUL character, e.g. ``/v1/items.items[0].id``."""
    if isinstance(value, str) and "\x00" in value:
        yield f"{where}={value!r}"
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from holding_nul(item, f"{where}[{position}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from holding_nul(key, f"{where} key")
            yield from holding_nul(item, f"{where}.{key}" if where else key)


def sweep(client: TestClient, cases: list[Case]) -> list[str]:
    faults = []
    for case in cases:
        problem = fault(case, send(client, case))
        if problem is not None:
            faults.append(f"{case.describe()}: {problem}")
    return faults


@pytest.fixture(scope="module")
def tiny_classifier(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained three-label classifier on the tiny BERT: enough for the finance app to be ready."""
    folder = tmp_path_factory.mktemp("tiny-finance")
    encoder = BertModel.from_pretrained(str(tiny_model_dir))
    TextClassifier(encoder, 3).save(
        folder, load_tokenizer(tiny_model_dir), ["negative", "neutral", "positive"], multi_label=False
    )
    return folder


def build_app(service: str, folder: Path, tiny_model: Path, classifier: Path) -> FastAPI:
    encoder = EncoderSettings(model=str(tiny_model), device="cpu", precision="fp32")
    if service == "customer_service":
        return customer_service.create_app(
            CustomerServiceSettings(
                database_url=f"sqlite:///{folder / 'cs.db'}", index_dir=folder / "index", encoder=encoder
            )
        )
    if service == "finance_sentiment":
        return finance_sentiment.create_app(
            FinanceSentimentSettings(
                database_url=f"sqlite:///{folder / 'monitor.db'}",
                registry=folder / "registry",
                model_path=classifier,
                encoder=encoder,
                config_file=None,
                scheduler=False,
                fetch=FetchSettings(allowed_networks=("127.0.0.0/8",)),
            )
        )
    return recommender.create_app(
        RecommenderSettings(
            database_url=f"sqlite:///{folder / 'rec.db'}",
            index_path=folder / "items.index.npz",
            encoder=encoder,
        )
    )


SERVICES = ["customer_service", "finance_sentiment", "recommender"]


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_refuses_hostile_input_with_a_problem(
    service: str, tmp_path: Path, tiny_model_dir: Path, tiny_classifier: Path
) -> None:
    app = build_app(service, tmp_path, tiny_model_dir, tiny_classifier)
    seeds, cases = all_cases(app.openapi())
    refused_only = [case for case in cases if not case.may_succeed]
    maybe_valid = [case for case in cases if case.may_succeed]
    assert len(refused_only) > 50 and maybe_valid  # the schema walk found the operations and their fields
    with TestClient(app, raise_server_exceptions=False) as client:
        faults = sweep(client, seeds)
        before = listings(client, service)
        assert any(before.values()), f"the valid requests stored nothing: {before}"
        faults += sweep(client, refused_only)
        after_refused = listings(client, service)
        faults += sweep(client, maybe_valid)
        faults += sweep(client, read_backs(app.openapi()))
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        stored = listings(client, service)
    assert not faults, f"{len(faults)} of {len(cases)} hostile requests were mishandled:\n" + "\n".join(
        faults
    )
    assert after_refused == before, "refused requests changed what is stored"
    assert not (nul := list(holding_nul(stored))), f"NUL characters were stored: {nul}"


def test_the_case_generator_corrupts_one_field_at_a_time() -> None:
    document = FastAPI().openapi() | {
        "components": {
            "schemas": {
                "In": {
                    "type": "object",
                    "required": ["name", "tags"],
                    "properties": {
                        "name": {"type": "string", "maxLength": 5},
                        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                        "webhook_url": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                    },
                }
            }
        }
    }
    schemas = Schemas(document)
    schema = {"$ref": "#/components/schemas/In"}
    base = schemas.baseline(schema)
    assert base == {"name": "probe", "tags": ["probe"]}
    assert [path for path, _ in schemas.fields(schema)] == [
        ("name",),
        ("tags",),
        ("tags", "[]"),
        ("webhook_url",),
    ]
    assert schemas.put(schema, base, ("webhook_url",), 1) == {**base, "webhook_url": 1}
    assert schemas.put(schema, base, ("tags", "[]"), NUL) == {"name": "probe", "tags": [NUL]}
    assert schemas.baseline({"type": "string"}, "webhook_url").startswith("http://127.0.0.1:")
    assert dumps({"a": Raw("NaN"), "b": [Raw("1e309")]}) == b'{"a": NaN, "b": [1e309]}'
    long_string = next(
        v for w, v, _ in field_values(schemas, {"type": "string", "maxLength": 200_000}) if "chars" in w
    )
    assert len(long_string) == 200_001  # past the declared bound, so never a valid value
