"""A document's `source` as clients see it: the file as the operator named it, never the server's path.

Ingest stored each document's absolute server path as its chunks' source, and `GET /v1/knowledge` showed it
to every client ("/srv/bank/kb/guides/travel.md"). The source is now the path relative to what was ingested
(the folder's, or the file's name); the server path is kept apart for ingest's own warnings. Knowledge bases
and exports written before keep loading, their paths cut the same way, as is a path given through the API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from customer_service import create_app
from customer_service.cli import app as cli_app
from customer_service.database import Database
from customer_service.ingest import ingest_path
from customer_service.knowledge import KnowledgeBase
from tests.conftest import migrated
from tests.customer_service.test_app import cs_settings
from textcore import Encoder
from textcore.models import load_backbone


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "server" / "kb"
    (root / "guides").mkdir(parents=True)
    (root / "guides" / "travel.md").write_text("# Travel\n\nCard payments abroad work straight away.\n")
    (root / "fees.md").write_text("# Fees\n\nA current account costs nothing a month.\n")
    return root


def test_the_api_shows_sources_relative_to_what_was_ingested(
    tmp_path: Path, sqlite_url: str, folder: Path
) -> None:
    settings = cs_settings(tmp_path, sqlite_url)
    where = ["--database-url", sqlite_url, "--index-dir", str(settings.index_dir)]
    single = tmp_path / "elsewhere" / "hours.txt"
    single.parent.mkdir()
    single.write_text("Our branches open at nine on weekdays.\n")
    with TestClient(create_app(settings)) as client:
        for path in (folder, single):
            ingested = CliRunner().invoke(cli_app, ["ingest", str(path), *where])
            assert ingested.exit_code == 0, ingested.output
        listed = client.get("/v1/knowledge", params={"kind": "chunk", "limit": 500})
        chunks = listed.json()["items"]
        assert {c["document_id"]: c["source"] for c in chunks} == {
            "fees.md": "fees.md",
            "guides/travel.md": "guides/travel.md",
            "hours.txt": "hours.txt",
        }
        one = client.get("/v1/knowledge/guides/travel.md%230")
        assert one.json()["source"] == "guides/travel.md"
        # a server path given through the API is cut alike; a URL is a source to show as it is
        for document_id, source in (("card.md", str(folder / "card.md")), ("web", "https://bank.example/x")):
            body = {"title": "Cards", "text": "Freeze a card in the app.", "source": source}
            assert client.put(f"/v1/knowledge/documents/{document_id}", json=body).status_code == 200
        given = client.get("/v1/knowledge", params={"kind": "chunk", "limit": 500}).json()["items"]
        assert {c["document_id"]: c["source"] for c in given if c["document_id"] in ("card.md", "web")} == {
            "card.md": "card.md",
            "web": "https://bank.example/x",
        }
        reply = client.post("/v1/chat", json={"message": "Can I pay with my card abroad?"})
        for answer in (listed.text, one.text, reply.text, json.dumps(given)):
            assert str(tmp_path) not in answer  # no server path reaches a client


def _kb(database: Database, tiny_model_dir: Path, tmp_path: Path) -> KnowledgeBase:
    encoder = Encoder(load_backbone(tiny_model_dir), device="cpu", precision="fp32")
    return KnowledgeBase.open(database, encoder, tmp_path / "index")


@pytest.fixture
def old_database(database_url: str, folder: Path) -> Iterator[Database]:
    """A knowledge base at revision 0006, whose chunks hold their absolute server paths as ingest stored
    them then: a folder's document, one given a prefix, and one put through the API with a URL."""
    database = Database(database_url)
    config = Config()
    config.set_main_option("script_location", str(database.migrations))
    rows = [
        ("guides/travel.md#0", "guides/travel.md", str(folder / "guides" / "travel.md")),
        ("branch-a/fees.md#0", "branch-a/fees.md", str(folder / "fees.md")),
        ("web#0", "web", "https://bank.example/fees"),
    ]
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0006")
            for entry_id, document_id, source in rows:
                connection.execute(
                    text("INSERT INTO knowledge VALUES (:id, 'chunk', 'T', NULL, 'Some text.', '', :doc, 0, "
                         ":source, '2026-12-01', '2026-12-01')"),
                    {"id": entry_id, "doc": document_id, "source": source},
                )  # fmt: skip
        database.migrate()
        yield database
    finally:
        database.dispose()


def test_a_knowledge_base_stored_before_loads_with_its_paths_cut(
    old_database: Database, tiny_model_dir: Path, tmp_path: Path, folder: Path
) -> None:
    kb = _kb(old_database, tiny_model_dir, tmp_path)
    assert {e.document_id: e.source for e in kb.list(kind="chunk")} == {
        "guides/travel.md": "guides/travel.md",
        "branch-a/fees.md": "fees.md",
        "web": "https://bank.example/fees",
    }
    # the server path is still known to ingest: the same file stored again under another id is named
    alone = ingest_path(kb, folder / "guides" / "travel.md")
    [warning] = alone.warnings
    assert "stored already as document 'guides/travel.md'" in warning
    assert {e.document_id: e.source for e in kb.list(kind="chunk")}["travel.md"] == "travel.md"


def test_an_export_written_before_is_ingested_with_its_paths_cut(
    sqlite_url: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    rows = [
        {"kind": "chunk", "id": "guides/travel.md#0", "document_id": "guides/travel.md", "position": "0",
         "title": "Travel", "text": "Card payments abroad work.", "category": "",
         "source": "/srv/bank/kb/guides/travel.md"},
        {"kind": "chunk", "id": "page#0", "document_id": "page", "position": "0", "title": "Page",
         "text": "Fees.", "category": "", "source": "https://bank.example/fees"},
    ]  # fmt: skip
    export = tmp_path / "old-export.jsonl"
    export.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with migrated(Database(sqlite_url)) as database:
        kb = _kb(database, tiny_model_dir, tmp_path)
        ingest_path(kb, export)
        assert {e.document_id: e.source for e in kb.list(kind="chunk")} == {
            "guides/travel.md": "guides/travel.md",
            "page": "https://bank.example/fees",
        }
        assert kb.document_sources()["guides/travel.md"] == "/srv/bank/kb/guides/travel.md"


def test_a_document_restored_from_an_export_is_replaced_from_its_folder_without_a_warning(
    sqlite_url: str, tiny_model_dir: Path, tmp_path: Path, folder: Path
) -> None:
    # An export now holds no server path: the restored document's file is unknown, not another file.
    with migrated(Database(sqlite_url)) as database:
        kb = _kb(database, tiny_model_dir, tmp_path)
        ingest_path(kb, folder)
        export = tmp_path / "kb.jsonl"
        exported = CliRunner().invoke(cli_app, ["export", str(export), "--database-url", sqlite_url])
        assert exported.exit_code == 0, exported.output
        assert str(folder) not in export.read_text()
        kb.delete(["fees.md", "guides/travel.md"])
        ingest_path(kb, export)
        again = ingest_path(kb, folder)
        assert (again.documents_replaced, again.warnings) == (2, [])
