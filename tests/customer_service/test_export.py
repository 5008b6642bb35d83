"""`customer-service export`: the knowledge base out to a file that `ingest` reads back.

The round trip runs the real commands (CliRunner) with their default encoder on SQLite files, and edits the
knowledge base through the real API in between; the library tests use the tiny random BERT (what is written
does not depend on the vectors).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from customer_service import create_app
from customer_service.cli import app as cli_app
from customer_service.database import Database
from customer_service.export import export_knowledge
from customer_service.ingest import ingest_path
from customer_service.knowledge import FaqIn, KnowledgeBase
from customer_service.settings import CustomerServiceSettings
from customer_service.tables import KnowledgeEntry
from tests.conftest import migrated
from textcore import Conflict, Encoder, InvalidInput
from textcore.models import load_backbone

# Commas, quotes, line breaks (LF, CRLF, U+2028, which JSON Lines must not split at), tabs, non-ASCII
FAQ_CSV = (
    "id,question,answer,category\n"
    'hours,"When are you open, and where?","Weekdays 9-17, ""sharp"".\nSaturdays: 10-14.",contact\n'
    'café-1,Où est le café ?,"Rue de l\'Église 3 — 東京駅 ✓\r\nplus tard\u2028encore",général\n'
    "card,How do I block my card?,Block it in the app\tor call us.,cards\n"
    'fees,"Any ""hidden"" fees?","None; see the price list, page 2.",\n'
)
DATABASE_FILES = ("monitor.db", "monitor.db-wal", "monitor.db-shm")  # the SQLite `database_url`'s
GUIDE = "# Travel\n\n## Abroad\n\nTell us before you travel abroad.\n\n## Currency\n\nOne percent more.\n"


def _cli(*args: str) -> Any:
    result = CliRunner().invoke(cli_app, list(args))
    assert result.exit_code == 0, result.output
    return result


def _where(folder: Path) -> list[str]:
    return ["--database-url", f"sqlite:///{folder / 'kb.db'}", "--index-dir", str(folder / "index")]


def _stored(folder: Path) -> list[tuple[Any, ...]]:
    """Every stored entry, every column but the times."""
    entry = KnowledgeEntry
    columns = (entry.id, entry.kind, entry.title, entry.question, entry.text, entry.category,
               entry.document_id, entry.position, entry.source)  # fmt: skip
    db = Database(f"sqlite:///{folder / 'kb.db'}")
    try:
        with db.session() as session:
            return [tuple(row) for row in session.execute(select(*columns).order_by(entry.id))]
    finally:
        db.dispose()


def test_an_export_ingested_into_an_empty_knowledge_base_gives_back_every_entry(tmp_path: Path) -> None:
    source, files = tmp_path / "source", tmp_path / "files"
    files.mkdir()
    (files / "faqs.csv").write_bytes(FAQ_CSV.encode())
    (files / "guide.md").write_text(GUIDE)
    _cli("ingest", str(files), *_where(source))

    settings = CustomerServiceSettings(
        database_url=f"sqlite:///{source / 'kb.db'}", index_dir=source / "index"
    )
    with TestClient(create_app(settings)) as client:
        for path, body in (
            ("faqs/pets", {"question": "Pet insurance?", "answer": "Yes, «cats» & dogs", "category": "pets"}),
            ("faqs/hours", {"question": "Opening hours?", "answer": "8-18,\n\"daily\".", "category": "x"}),
            ("documents/help/loans.html", {"title": "Loans", "text": "<h1>Loans</h1><p>From 1,000 €.</p>",
                                           "format": "html", "category": "loans", "source": "https://x.org/l"}),
        ):  # fmt: skip
            assert client.put(f"/v1/knowledge/{path}", json=body).status_code == 200
        assert client.delete("/v1/knowledge/card").status_code == 204
        assert client.delete("/v1/knowledge/guide.md%230").status_code == 204  # a document keeps chunk 1 only
    stored = _stored(source)
    assert "\r\nplus tard\u2028encore" in {row[0]: row[4] for row in stored}["café-1"]
    assert {row[0] for row in stored} == {
        "café-1",
        "fees",
        "guide.md#1",
        "help/loans.html#0",
        "hours",
        "pets",
    }

    everything, faqs = tmp_path / "kb.jsonl", tmp_path / "faqs.csv"
    exported = _cli("export", str(everything), "--database-url", f"sqlite:///{source / 'kb.db'}")
    assert json.loads(exported.stdout.splitlines()[-1])["faqs"] == 4
    assert exported.stderr.strip() == (
        f"exported 4 FAQs and 2 documents (2 chunks) to {everything} (knowledge base version 6)"
    )
    _cli("export", str(faqs), "--kind", "faq", "--database-url", f"sqlite:///{source / 'kb.db'}")
    assert faqs.read_text(encoding="utf-8").splitlines()[0] == "id,question,answer,category,source"

    restored, from_csv = tmp_path / "restored", tmp_path / "from_csv"
    _cli("ingest", str(everything), *_where(restored))
    _cli("ingest", str(faqs), *_where(from_csv))
    assert _stored(restored) == stored
    assert _stored(from_csv) == [row for row in stored if row[1] == "faq"]

    again = tmp_path / "again.jsonl"  # two environments holding the same entries export the same bytes
    _cli("export", str(again), "--database-url", f"sqlite:///{restored / 'kb.db'}")
    assert again.read_bytes() == everything.read_bytes()


def test_export_refuses_in_one_line_and_leaves_files_alone(tmp_path: Path, kb: KnowledgeBase) -> None:
    url = ["--database-url", kb.db.url]
    kb.upsert_faqs([FaqIn("hours", "When?", "Nine to five.")])
    kb.put_document("guide.md", "Guide", GUIDE, "markdown")
    existing = tmp_path / "kb.csv"
    existing.write_text("precious\n")
    runner = CliRunner()
    for args, expected in (
        (["export", str(tmp_path / "kb.xlsx"), *url], "expected a file name ending in .csv (FAQs) or .jsonl"),
        (["export", str(tmp_path / "kb"), *url], "found no suffix"),
        (["export", str(existing), "--kind", "faq", *url], "kb.csv: expected a new file; it exists (--force"),
        (["export", str(tmp_path / "new.csv"), *url], "the knowledge base holds 2 document chunks"),
        (["export", str(tmp_path / "new.csv"), "--kind", "document", *url], "a CSV file holds FAQs only"),
        (["export", str(tmp_path / "new.jsonl"), "--kind", "faqs", *url], "kind: expected one of faq,"),
        (["export", str(tmp_path / "no" / "new.jsonl"), *url], "expected an existing folder"),
        (["export", str(tmp_path / "new.jsonl"), "--database-url", f"sqlite:///{tmp_path / 'none.db'}"],
         "expected an existing SQLite database"),
    ):  # fmt: skip
        refused = runner.invoke(cli_app, args)
        assert refused.exit_code == 2, refused.output
        [line] = refused.stderr.splitlines()
        assert line.startswith("error: ") and expected in line, line
        assert refused.stdout == ""
    assert existing.read_text() == "precious\n"
    assert {p.name for p in tmp_path.iterdir()} <= {"index", "kb.csv", *DATABASE_FILES}  # nothing new

    replaced = runner.invoke(cli_app, ["export", str(existing), "--kind", "faq", "--force", *url])
    assert replaced.exit_code == 0, replaced.output
    assert existing.read_bytes() == b"id,question,answer,category,source\r\nhours,When?,Nine to five.,,\r\n"


@pytest.fixture
def kb(database_url: str, tiny_model_dir: Path, tmp_path: Path) -> Iterator[KnowledgeBase]:
    """On SQLite and PostgreSQL."""
    encoder = Encoder(load_backbone(tiny_model_dir), device="cpu", precision="fp32")
    with migrated(Database(database_url)) as db:
        yield KnowledgeBase.open(db, encoder, tmp_path / "index")


def test_a_csv_export_refused_for_one_chunk_says_one_chunk(tmp_path: Path, kb: KnowledgeBase) -> None:
    kb.put_document("note.txt", "Note", "Branches close at noon on Christmas Eve.", "text")
    refused = CliRunner().invoke(cli_app, ["export", str(tmp_path / "new.csv"), "--database-url", kb.db.url])
    assert refused.exit_code == 2, refused.output
    assert "the knowledge base holds 1 document chunk; expected a .jsonl file" in refused.stderr


def test_an_export_reads_pages_in_order_and_is_a_copy_of_one_version(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    kb.upsert_faqs([FaqIn(f"faq-{i}", f"Question {i}?", f"Answer {i}.") for i in range(5)])
    sections = "".join(f"## Part {i}\n\nSection number {i} of the terms.\n\n" for i in range(12))
    kb.put_document("terms.md", "Terms", f"# Terms\n\n{sections}", "markdown")  # chunks 0 to 11
    kb.put_document("guide.md", "Travel", GUIDE, "markdown")
    changes = iter([FaqIn("late", "Added meanwhile?", "Yes.")])

    def change_once(written: int) -> None:  # a writer comes in once the first page is written
        if (faq := next(changes, None)) is not None:
            kb.upsert_faqs([faq])

    output = tmp_path / "kb.jsonl"
    report = export_knowledge(kb.db, output, page_size=5, progress=change_once)
    assert (report.faqs, report.documents, report.chunks, report.version) == (6, 2, 14, kb.version)
    ids = [json.loads(line)["id"] for line in output.read_text().splitlines()]
    assert ids == [*(f"faq-{i}" for i in range(5)), "late", "guide.md#0", "guide.md#1",
                   *(f"terms.md#{i}" for i in range(12))]  # fmt: skip

    def change_always(written: int) -> None:
        kb.upsert_faqs([FaqIn("busy", "Changed again?", f"Yes, {written}.")])

    busy = tmp_path / "busy.jsonl"
    with pytest.raises(Conflict, match="changed during each of 3 reads"):
        export_knowledge(kb.db, busy, page_size=2, progress=change_always)
    assert {p.name for p in tmp_path.iterdir()} <= {"index", "kb.jsonl", *DATABASE_FILES}  # no busy.jsonl


def test_an_exported_document_replaces_the_stored_one_as_it_was(kb: KnowledgeBase, tmp_path: Path) -> None:
    kb.put_document("guide.md", "Guide", GUIDE, "markdown", "travel", "/docs/guide.md")
    export_knowledge(kb.db, tmp_path / "guide.jsonl", kind="document")
    before = [(e.id, e.title, e.text, e.category, e.source) for e in kb.list(kind="chunk")]
    kb.put_document("guide.md", "Guide", "# Guide\n\nOnly one short paragraph now.\n", "markdown")

    report = ingest_path(kb, tmp_path / "guide.jsonl", category="ignored")
    assert (report.documents, report.documents_replaced, report.chunks) == (1, 1, len(before))
    assert [(e.id, e.title, e.text, e.category, e.source) for e in kb.list(kind="chunk")] == before

    prefixed = ingest_path(kb, tmp_path / "guide.jsonl", id_prefix="copy/")
    assert prefixed.documents_added == 1 and kb.get("copy/guide.md#0").text == before[0][2]


def test_an_faqs_source_is_ingested_exported_and_given_back(kb: KnowledgeBase, tmp_path: Path) -> None:
    # an FAQ carried no source: its citation could link to no page, as a document's can
    url = "https://bank.example/help/fees"
    table = tmp_path / "faqs.csv"
    table.write_text(f"id,question,answer,source\nfees,Any fees?,None.,{url}\nhours,When?,Nine to five.,\n")
    ingest_path(kb, table)
    assert {e.id: e.source for e in kb.list(kind="faq")} == {"fees": url, "hours": ""}
    for name in ("kb.csv", "kb.jsonl"):
        export_knowledge(kb.db, tmp_path / name)
        kb.upsert_faqs([FaqIn("fees", "Any fees?", "None.")])  # replaced without one
        assert kb.get("fees").source == ""
        ingest_path(kb, tmp_path / name)
        assert {e.id: e.source for e in kb.list(kind="faq")} == {"fees": url, "hours": ""}, name
    lines = (tmp_path / "kb.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"id": "fees", "question": "Any fees?", "answer": "None.", "category": "",
                                    "source": url}  # fmt: skip
    with pytest.raises(InvalidInput, match="source"):
        kb.upsert_faqs([FaqIn("bell", "Ring?", "Ding.", source="https://bank.example/\x07")])


def test_an_faq_an_ingest_would_not_give_back_as_stored_is_named(kb: KnowledgeBase, tmp_path: Path) -> None:
    kb.upsert_faqs([FaqIn("padded", "Trailing space? ", "Yes."), FaqIn("plain", "Plain?", "Yes.")])
    report = export_knowledge(kb.db, tmp_path / "kb.csv")
    assert report.warnings == (
        "FAQs with leading or trailing white space in a field, which an ingest of this file strips: "
        "1 ('padded')",
    )


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{"kind": "chunk", "id": "a.md#1", "document_id": "a.md", "position": 0, "text": "x"}],
         "row 1: expected the chunk id a.md#0"),
        ([{"kind": "chunk", "document_id": "a.md", "position": "1st", "text": "x"}], "whole-number position"),
        ([{"kind": "chunk", "document_id": "a.md", "position": 0, "text": "\u0007"}], "row 1, column 'text'"),
        ([{"kind": "chunk", "document_id": "a.md", "position": 0, "text": " "}], "expected non-empty text"),
        ([{"id": "q1", "question": "Where?", "answer": "Here."}, {"id": "q2", "question": "When?"}],
         "row 2 has an empty 'answer'"),  # JSON Lines: a later row without the key
    ],
)  # fmt: skip
def test_a_bad_row_is_refused_naming_it(
    kb: KnowledgeBase, tmp_path: Path, rows: list[dict[str, Any]], expected: str
) -> None:
    file = tmp_path / "rows.jsonl"
    file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(InvalidInput, match=re.escape(expected)) as raised:
        ingest_path(kb, file)
    assert str(file) in str(raised.value)
    assert kb.count() == 0
