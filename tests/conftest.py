"""Shared test fixtures and helpers: a tiny random BERT built once per session, data paths, servers."""

from __future__ import annotations

import os

# A stray hub id must fail at once instead of trying the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
import torch
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from starlette.types import ASGIApp
from transformers import BertConfig, BertModel

from textcore.models import load_tokenizer, resolve_model
from textcore.sql import Database as SqlDatabase

# One intra-op thread for the tests and the commands they start, unless OMP_NUM_THREADS says otherwise. The
# tiny models' operations gain nothing from a second thread, and where the cores are shared with other work
# each parallel region waits for a descheduled thread: on a 2-core machine under load a 6-epoch tiny-BERT
# training took 16-44 s with two threads and 3 s with one, the real MiniLM fine-tuning 137-153 s and 27-29 s.
if "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data(relative: str) -> Path:
    """A file of the real datasets beside the checkout; skips the test with a clear reason when absent."""
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"real dataset {path} is not present (it lies beside the checkout in development and CI)")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT (2 layers, width 32) with MiniLM's tokenizer, saved as safetensors."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = load_tokenizer(resolve_model("minilm"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder


@contextmanager
def serve_app(app: ASGIApp, *, start_timeout: float = 10.0, root_path: str = "") -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a background thread.

    The socket is bound here and handed to uvicorn, so no other process can take the port in between.

    Args:
        app: The ASGI application to serve; its lifespan runs.
        start_timeout: Seconds to wait for the server to start.
        root_path: The prefix a proxy serves the app under (uvicorn's ``--root-path``).

    Yields:
        The base URL, for example ``http://127.0.0.1:54321``.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False, root_path=root_path)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"expected uvicorn to start within {start_timeout} s, it did not")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_schema_url() -> Iterator[str]:
    """A fresh schema in the `test` database for one test, dropped afterwards; skips without a server."""
    admin = create_engine(POSTGRES_SERVER, isolation_level="AUTOCOMMIT")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432 ({exc.orig})")
    try:
        yield f"{POSTGRES_SERVER}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file in the test's temporary folder."""
    return f"sqlite:///{tmp_path / 'monitor.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose search path is a schema of its own, dropped after the test."""
    yield from _postgres_schema_url()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'monitor.db'}"
    else:
        yield from _postgres_schema_url()


DB = TypeVar("DB", bound=SqlDatabase)


@contextmanager
def migrated(database: DB) -> Iterator[DB]:
    """A service's database migrated to its latest schema, disposed afterwards."""
    database.migrate()
    try:
        yield database
    finally:
        database.dispose()


PROBLEM = "application/problem+json"

# The query parameters httpx and the test client's httpx2 take (their own aliases are private): a mapping of
# names to a value or a list of values, or (name, value) pairs in which a name may repeat.
QueryValue = str | int | float | bool | None
Query = Mapping[str, QueryValue | Sequence[QueryValue]]
QueryPairs = list[tuple[str, QueryValue]]


class Response(Protocol):
    """What the tests read of an HTTP response, from httpx or from the test client's HTTP library."""

    status_code: int

    @property
    def text(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def json(self) -> Any: ...


def problem(response: Response, status: int) -> dict[str, Any]:
    """The RFC 9457 problem body of an error response, after checking its status and content type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    return body
