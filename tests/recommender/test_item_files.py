"""`recommender ingest-items` holds a catalog file to the API's limits: a title of at most 1,000
characters, a text of at most 20,000, at most 50 categories of at most 200 characters and metadata of at most
10,000 JSON characters; a bad row or an id repeated in the file is one error line naming the file and the
rows, exit 2, and nothing from the file is stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recommender import create_app
from recommender.database import Database
from tests.recommender.conftest import invoke, last_json, rec_settings
from tests.recommender.test_cli import counts, one_error_line, tiny_env

LIMIT_CASES = [
    ({"title": "t" * 1_001}, "row 2 column 'title': expected at most 1,000 characters; found 1,001"),
    ({"text": "x" * 20_001}, "row 2 column 'text': expected at most 20,000 characters; found 20,001"),
    ({"text": "x" * 12_000, "body": "y" * 8_000},
     "row 2 columns 'text', 'body': expected at most 20,000 characters; found 20,002"),
    ({"categories": "|".join(["c"] * 51)},
     "row 2 column 'categories': expected at most 50 categories; found 51"),
    ({"categories": "a|" + "c" * 201},
     "row 2 column 'categories': expected categories of at most 200 characters; found one of 201"),
    ({"brand": "b" * 10_000},
     "row 2: expected metadata (the other columns) of at most 10,000 JSON characters; found 10,013"),
]  # fmt: skip


@pytest.mark.parametrize(("row", "message"), LIMIT_CASES)
def test_an_item_file_beyond_the_api_limits_is_refused_in_one_line(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path, row: dict[str, str], message: str
) -> None:
    Database(sqlite_url).check()  # migrated
    path = tmp_path / "items.jsonl"
    good = {"item_id": "a", "title": "Alpha", "text": "first"}
    path.write_text(f"{json.dumps(good)}\n{json.dumps({'item_id': 'b', 'title': 'Beta', **row})}\n", "utf-8")
    args = ["ingest-items", path, "--database-url", sqlite_url, "--index-path", tmp_path / "index.npz"]
    texts = ["--text-column", "text", "--text-column", "body"] if "body" in row else []
    line = one_error_line(invoke(*args, *texts, env=tiny_env(tiny_model_dir)))
    assert f"{path}: {message}" in line
    assert counts(sqlite_url) == (0, 0)


def test_an_item_file_at_the_api_limits_is_stored(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path
) -> None:
    path = tmp_path / "items.jsonl"
    row = {"item_id": "a", "title": f" {'t' * 1_000} ", "text": "x" * 20_000, "categories": ["c" * 200] * 50}
    path.write_text(f"{json.dumps(row)}\n", "utf-8")
    args = ["ingest-items", path, "--database-url", sqlite_url, "--index-path", tmp_path / "index.npz"]
    assert last_json(invoke(*args, env=tiny_env(tiny_model_dir)))["created"] == 1


def test_repeated_ids_in_an_item_file_are_named_with_their_rows(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path
) -> None:
    Database(sqlite_url).check()  # migrated
    path = tmp_path / "twice.csv"
    path.write_text("item_id,title\na,Alpha\nb,Beta\n a ,Again\nb,Bis\nc,Gamma\na,Third\n", encoding="utf-8")
    args = ["ingest-items", path, "--database-url", sqlite_url, "--index-path", tmp_path / "index.npz"]
    line = one_error_line(invoke(*args, env=tiny_env(tiny_model_dir)))
    assert f"{path}: expected each item id once; found 'a' in rows 1, 3 and 6, 'b' in rows 2 and 4" in line
    assert counts(sqlite_url) == (0, 0)


def test_an_item_through_the_api_and_the_cli_is_stored_alike(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path
) -> None:
    # surrounding whitespace is stripped from a text as from a title and categories, by both paths: a text
    # at the limit once stripped is stored, and the same item is stored the same way
    texts = {"short": "  A 70 mm telescope.\n ", "long": f"  {'x' * 20_000}\t"}
    rows = [
        {"item_id": f"cli-{name}", "title": " Scope ", "text": text, "categories": [" astro "]}
        for name, text in texts.items()
    ]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(f"{json.dumps(row)}\n" for row in rows), "utf-8")
    settings = rec_settings(tmp_path, sqlite_url, tiny_model_dir)
    args = ["ingest-items", path, "--database-url", sqlite_url, "--index-path", settings.index_path]
    assert last_json(invoke(*args, env=tiny_env(tiny_model_dir)))["created"] == 2
    with TestClient(create_app(settings)) as client:
        for name, text in texts.items():
            body = {"title": " Scope ", "text": text, "categories": [" astro "]}
            response = client.put(f"/v1/items/api-{name}", json=body)
            assert response.status_code in (200, 201), response.text
            fields = ("title", "text", "categories")
            api, cli = (client.get(f"/v1/items/{way}-{name}").json() for way in ("api", "cli"))
            assert [api[f] for f in fields] == [cli[f] for f in fields] == ["Scope", text.strip(), ["astro"]]


def test_a_column_named_by_an_option_and_missing_from_the_file_is_refused(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path
) -> None:
    """Before, a text, categories, rating, type or event id column that the file lacks read as empty cells:
    `--text-column description` on a file whose text is in `text` replaced every stored item's text with
    nothing (the model then read titles alone), `--rating-column score` stored every rating as a click."""
    items = tmp_path / "items.csv"
    items.write_text("item_id,title,text,categories\na,Alpha,Refractor telescope,astro|optics\n", "utf-8")
    places = ["--database-url", sqlite_url, "--index-path", tmp_path / "index.npz"]
    env = tiny_env(tiny_model_dir)
    assert last_json(invoke("ingest-items", items, *places, env=env))["created"] == 1
    for options, named in (
        (["--text-column", "description"], "'description' (--text-column)"),
        (["--text-column", "text", "--text-column", "body", "--categories-column", "tags"],
         "'body' (--text-column), 'tags' (--categories-column)"),
    ):  # fmt: skip
        line = one_error_line(invoke("ingest-items", items, *places, *options, env=env))
        assert f"{items}: expected the column(s) named by the options, {named}; found 'item_id'" in line
    with TestClient(create_app(rec_settings(tmp_path, sqlite_url, tiny_model_dir))) as client:
        kept = client.get("/v1/items/a").json()  # as the first ingest stored it
    assert (kept["text"], kept["categories"]) == ("Refractor telescope", ["astro", "optics"])
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,timestamp,rating\nu1,a,1700000000,2\n", "utf-8")
    for option, column in (
        ("--rating-column", "score"),
        ("--type-column", "kind"),
        ("--event-id-column", "eid"),
    ):
        line = one_error_line(invoke("ingest-events", events, "--database-url", sqlite_url, option, column))
        assert f"'{column}' ({option}); found 'user_id', 'item_id', 'timestamp', 'rating'" in line
    assert counts(sqlite_url) == (1, 0)
    assert last_json(invoke("ingest-events", events, "--database-url", sqlite_url)) == {"stored": 1}
