"""Ingesting files: which id each document gets, and what an ingest reports when it replaces a document.

The library tests use the tiny random BERT (ids and reports do not depend on the vectors); the command-line
test runs `customer-service ingest` with its default encoder on a SQLite knowledge base.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from customer_service.cli import app as cli_app
from customer_service.database import Database
from customer_service.ingest import ingest_path
from customer_service.knowledge import KnowledgeBase
from tests.conftest import migrated
from textcore import Encoder, InvalidInput
from textcore.models import load_backbone


@pytest.fixture
def kb(sqlite_url: str, tiny_model_dir: Path, tmp_path: Path) -> Iterator[KnowledgeBase]:
    encoder = Encoder(load_backbone(tiny_model_dir), device="cpu", precision="fp32")
    with migrated(Database(sqlite_url)) as db:
        yield KnowledgeBase.open(db, encoder, tmp_path / "index")


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Two branches' faq.md (same file name, different pages) and a folder with guides/travel.md."""
    root = tmp_path / "files"
    for branch, text in (
        ("a", "Branch A opens at nine on weekdays."),
        ("b", "Call the hotline to block a card."),
    ):
        (root / branch).mkdir(parents=True)
        (root / branch / "faq.md").write_text(f"# Branch {branch.upper()}\n\n{text}\n")
    (root / "docs" / "guides").mkdir(parents=True)
    (root / "docs" / "guides" / "travel.md").write_text("# Travel\n\nTell us before you travel abroad.\n")
    return root


def _texts(kb: KnowledgeBase) -> dict[str, str]:
    return {e.document_id or e.id: e.text for e in kb.list(kind="chunk")}


def test_a_file_of_the_same_name_elsewhere_replaces_the_document_and_says_so(
    kb: KnowledgeBase, files: Path
) -> None:
    first = ingest_path(kb, files / "a" / "faq.md")
    assert (first.documents_added, first.documents_replaced, first.warnings) == (1, 0, [])
    again = ingest_path(kb, files / "a" / "faq.md")  # the same file again: an update, no warning
    assert (again.documents_added, again.documents_replaced, again.replaced, again.warnings) == (
        0, 1, ["faq.md"], [],
    )  # fmt: skip

    second = ingest_path(kb, files / "b" / "faq.md")
    assert (second.documents_added, second.documents_replaced, second.replaced) == (0, 1, ["faq.md"])
    [warning] = second.warnings
    assert str(files / "a" / "faq.md") in warning and str(files / "b" / "faq.md") in warning
    assert _texts(kb) == {"faq.md": "Call the hotline to block a card."}

    # an explicit id or prefix keeps both
    kept = ingest_path(kb, files / "a" / "faq.md", id_prefix="branch-a/")
    assert (kept.documents_added, kept.documents_replaced, kept.warnings) == (1, 0, [])
    named = ingest_path(kb, files / "b" / "faq.md", document_id="branch-b/faq.md")
    assert named.documents_added == 1
    assert sorted(_texts(kb)) == ["branch-a/faq.md", "branch-b/faq.md", "faq.md"]
    assert kb.document_sources()["branch-a/faq.md"] == str((files / "a" / "faq.md").resolve())


def test_a_file_stored_from_its_folder_and_again_alone_is_named_in_a_warning(
    kb: KnowledgeBase, files: Path
) -> None:
    folder = ingest_path(kb, files / "docs")
    assert folder.documents_added == 1 and sorted(_texts(kb)) == ["guides/travel.md"]
    alone = ingest_path(kb, files / "docs" / "guides" / "travel.md")
    [warning] = alone.warnings
    assert "stored already as document 'guides/travel.md'" in warning
    assert sorted(_texts(kb)) == ["guides/travel.md", "travel.md"]

    kb.delete(["travel.md"])
    updated = ingest_path(kb, files / "docs" / "guides" / "travel.md", document_id="guides/travel.md")
    assert (updated.documents_added, updated.replaced, updated.warnings) == (0, ["guides/travel.md"], [])
    assert sorted(_texts(kb)) == ["guides/travel.md"]


def test_an_faq_without_an_id_whose_answer_was_edited_replaces_the_stored_one(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    # A sheet without an id column: each FAQ's id is derived from its question and answer, so an edited
    # answer had a new id and was stored beside the old one (the bot then offered "the daily ATM limit" or
    # "the daily ATM limit", or answered with the old limit).
    atm, phone = "What is the daily ATM limit?", "Can I pay by phone?"
    sheet = tmp_path / "faqs.csv"
    sheet.write_text(f"question,answer\n{atm},500 euros a day.\n{phone},In the app.\n")
    ingest_path(kb, sheet)
    before = {e.question: e.id for e in kb.list()}
    sheet.write_text(f"question,answer\n{atm},1000 euros a day.\n{phone},In the app.\nAny branches?,Forty.\n")
    ingest_path(kb, sheet)
    entries = {e.question: (e.id, e.text) for e in kb.list()}
    assert len(entries) == kb.count() == 3
    assert entries[atm] == (before[atm], "1000 euros a day.")
    assert entries[phone] == (before[phone], "In the app.")
    hits = kb.keyword("daily ATM limit", 5)
    assert [h.text for h in hits if "euros a day" in h.text] == ["1000 euros a day."]


def test_a_document_id_is_for_one_document_file(kb: KnowledgeBase, files: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="one document file"):
        ingest_path(kb, files / "docs", document_id="x")
    table = tmp_path / "faqs.csv"
    table.write_text("question,answer\nWhen are you open?,Nine to five.\n")
    with pytest.raises(InvalidInput, match="one document file"):
        ingest_path(kb, table, document_id="x")
    assert kb.count() == 0


def test_the_ingest_command_reports_added_and_replaced_documents(files: Path, tmp_path: Path) -> None:
    where = ["--database-url", f"sqlite:///{tmp_path / 'kb.db'}", "--index-dir", str(tmp_path / "index")]
    runner = CliRunner()
    first = runner.invoke(cli_app, ["ingest", str(files / "a" / "faq.md"), *where])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout.splitlines()[-1])
    assert (report["documents_added"], report["documents_replaced"], report["entries"]) == (1, 0, 1)

    second = runner.invoke(cli_app, ["ingest", str(files / "b" / "faq.md"), *where])
    assert second.exit_code == 0, second.output
    report = json.loads(second.stdout.splitlines()[-1])
    assert (report["documents_added"], report["documents_replaced"], report["replaced"]) == (0, 1, ["faq.md"])
    assert "warning: document 'faq.md' from" in second.stderr and report["entries"] == 1

    kept = runner.invoke(cli_app, ["ingest", str(files / "a" / "faq.md"), "--id", "a/faq.md", *where])
    assert kept.exit_code == 0, kept.output
    report = json.loads(kept.stdout.splitlines()[-1])
    assert (report["documents_added"], report["entries"]) == (1, 2)

    refused = runner.invoke(cli_app, ["ingest", str(files / "docs"), "--id", "x", *where])
    assert refused.exit_code == 2 and "error: document id: expected one document file" in refused.output


def test_the_delete_command_names_the_ids_that_named_nothing(files: Path, tmp_path: Path) -> None:
    # It printed {"removed": 0, ...} for a mistyped id, exit 0, without naming it
    where = ["--database-url", f"sqlite:///{tmp_path / 'kb.db'}", "--index-dir", str(tmp_path / "index")]
    runner = CliRunner()
    ingested = runner.invoke(cli_app, ["ingest", str(files), *where])
    assert ingested.exit_code == 0, ingested.output
    assert json.loads(ingested.stdout.splitlines()[-1])["entries"] == 3

    deleted = runner.invoke(cli_app, ["delete", "a/faq.md", "docs/guides/travle.md", "b/faq.md", *where])
    assert deleted.exit_code == 0, deleted.output
    report = json.loads(deleted.stdout.splitlines()[-1])
    assert (report["removed"], report["not_found"], report["entries"]) == (2, ["docs/guides/travle.md"], 1)
    assert "warning: 1 of 3 ids named no FAQ, chunk or document" in deleted.stderr
    assert "'docs/guides/travle.md'" in deleted.stderr

    again = runner.invoke(cli_app, ["delete", "a/faq.md", *where])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout.splitlines()[-1])["not_found"] == ["a/faq.md"]


def test_delete_refuses_a_sqlite_path_that_holds_no_database_and_creates_none(tmp_path: Path) -> None:
    # A mistyped path made an empty knowledge base (and its folders), then warned that no id named anything
    typo = tmp_path / "missing" / "kb.db"
    where = ["--database-url", f"sqlite:///{typo}", "--index-dir", str(tmp_path / "index")]
    refused = CliRunner().invoke(cli_app, ["delete", "a/faq.md", *where])
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.splitlines() == [
        f"error: expected an existing SQLite database to delete from; found no file {typo}"
    ]
    assert not typo.parent.exists()


def test_a_bad_setting_is_one_error_line_naming_its_variable(tmp_path: Path) -> None:
    # It was a pydantic traceback and exit 1 (the recommender's and the monitor's commands said one line)
    database = tmp_path / "kb.db"
    where = ["--database-url", f"sqlite:///{database}"]
    runner = CliRunner()
    env = {"CS_SESSION_RETENTION_DAYS": "a week"}
    for args in (["export", str(tmp_path / "kb.csv"), *where], ["serve", "--port", "1", *where]):
        result = runner.invoke(cli_app, args, env=env)
        assert result.exit_code == 2, f"{args[0]}: exit {result.exit_code}\n{result.output}"
        assert result.stderr.strip().splitlines() == [
            "error: settings: CS_SESSION_RETENTION_DAYS: Input should be a valid integer, unable to parse "
            "string as an integer"
        ], result.stderr
        assert "a week" not in result.stderr
    assert not database.exists()  # refused before anything was opened


def test_a_json_lines_faq_whose_question_or_answer_is_no_string_is_refused_naming_the_line(
    tmp_path: Path,
) -> None:
    # {"answer": 5} was stored as the answer "5", and ["red", "blue"] as its JSON text, with no word; the API
    # refuses both (422), and a JSON Lines file now does too, in one line, storing nothing
    where = ["--database-url", f"sqlite:///{tmp_path / 'kb.db'}", "--index-dir", str(tmp_path / "index")]
    runner = CliRunner()
    good = '{"id": 7, "question": "When do you open?", "answer": "At nine.", "category": null}\n'
    for bad, found in (
        ('{"question": "How many branches?", "answer": 5}', "'answer' holds the number 5; expected a string"),
        ('{"question": 12, "answer": "Twelve."}', "'question' holds the number 12; expected a string"),
        ('{"question": "Colours?", "answer": ["red", "blue"]}', "'answer' holds a list; expected a string"),
        ('{"question": "Open?", "answer": true}', "'answer' holds true (a boolean); expected a string"),
    ):
        file = tmp_path / "faqs.jsonl"
        file.write_text(good + bad + "\n", encoding="utf-8")
        refused = runner.invoke(cli_app, ["ingest", str(file), *where])
        assert refused.exit_code == 2, refused.output
        assert refused.stderr.splitlines() == [f"error: {file}:2: {found}"], refused.stderr
    file.write_text(good, encoding="utf-8")  # a number as the id stays an id, null an empty category
    stored = runner.invoke(cli_app, ["ingest", str(file), *where])
    assert stored.exit_code == 0, stored.output
    assert json.loads(stored.stdout.splitlines()[-1])["entries"] == 1
