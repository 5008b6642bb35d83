"""The `recommender` command in process (`typer.testing.CliRunner`): ingest a catalog and behaviour into the
database the app then serves, train on the tiny BERT (the `trained_model_dir` fixture), evaluate with the
leave-last-out protocol against the baselines, convert datasets; and every failure is one clear line."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import Result

from recommender import create_app
from recommender.database import Database
from recommender.tables import Event, Item
from tests.recommender.conftest import (
    catalog_items,
    event_bodies,
    invoke,
    last_json,
    rec_settings,
    store_unchecked,
    theme_of,
    user_histories,
    write_catalog,
    write_interactions,
)

METRICS = {"hr@10", "ndcg@10", "mrr"}
EVALUATED = {"model", "popularity", "item_knn", "n_users", "n_held_out_outside_catalog"}  # evaluate's JSON
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "recommender"


def one_error_line(result: Result) -> str:
    assert result.exit_code == 2, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def tiny_env(tiny_model_dir: Path) -> dict[str, str]:
    return {
        "REC_ENCODER__MODEL": str(tiny_model_dir),
        "REC_ENCODER__DEVICE": "cpu",
        "REC_ENCODER__PRECISION": "fp32",
    }


def counts(url: str) -> tuple[int, int]:
    db = Database(url)
    try:
        with db.session() as session:
            items = session.scalar(select(func.count()).select_from(Item))
            events = session.scalar(select(func.count()).select_from(Event))
            return int(items or 0), int(events or 0)
    finally:
        db.dispose()


def with_one_item(url: str) -> None:
    """A migrated database holding the item astro-0, for the event files the tests ingest."""
    db = Database(url)
    try:
        db.migrate()
        with db.session() as session:
            session.add(Item(id="astro-0", title="Telescope"))
    finally:
        db.dispose()


def test_ingest_files_then_serve_them(tmp_path: Path, sqlite_url: str, tiny_model_dir: Path) -> None:
    settings = rec_settings(tmp_path, sqlite_url, tiny_model_dir)
    places = ["--database-url", sqlite_url]
    env = tiny_env(tiny_model_dir)
    items = write_catalog(tmp_path / "items.csv")
    ingest_items = ["ingest-items", items, *places, "--index-path", settings.index_path]
    assert last_json(invoke(*ingest_items, env=env)) == {
        "items": 20,
        "created": 20,
        "updated": 0,
        "embedded": 20,
    }
    assert (
        last_json(invoke(*ingest_items, env=env))["embedded"] == 0
    )  # unchanged texts are not embedded again

    events = write_interactions(tmp_path / "events.csv")
    assert last_json(invoke("ingest-events", events, *places)) == {"stored": 80}
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("user_id,item_id,timestamp,rating\nu,astro-0,1,\nu,ghost-9,2,4\n", encoding="utf-8")
    line = one_error_line(invoke("ingest-events", unknown, *places))
    assert "'ghost-9'" in line and "nothing was stored" in line
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,timestamp\nu,astro-0,1\nu,astro-1,yesterday\n", encoding="utf-8")
    line = one_error_line(invoke("ingest-events", bad, *places))
    assert "row 2" in line and "'timestamp'" in line and "yesterday" in line
    # the same file again (a rerun after a crash, say) stores nothing twice
    assert last_json(invoke("ingest-events", events, *places)) == {"stored": 0}
    assert counts(sqlite_url) == (20, 80)

    saved = settings.index_path.stat().st_mtime_ns
    with TestClient(create_app(settings)) as client:
        stored = client.get("/v1/items/astro-0").json()
        assert stored["categories"] == ["astro"] and stored["metadata"] == {"brand": "Acme"}
        results = client.get("/v1/recommend", params={"user_id": "lab-user-0", "k": 3}).json()
        assert len(results) == 3 and all(
            theme_of(r["item_id"]) != "lab" for r in results
        )  # all lab items seen
    assert settings.index_path.stat().st_mtime_ns == saved  # the CLI's index was current: no rebuild


def test_a_running_service_serves_what_the_cli_ingests(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path
) -> None:
    settings = rec_settings(tmp_path, sqlite_url, tiny_model_dir, refresh_s=0)
    env = tiny_env(tiny_model_dir)
    items = ["ingest-items", write_catalog(tmp_path / "items.csv"), "--database-url", sqlite_url,
             "--index-path", settings.index_path]  # fmt: skip
    events = ["ingest-events", write_interactions(tmp_path / "events.csv"), "--database-url", sqlite_url]
    body = {"history": ["astro-0", "lab-1"], "items": [item["id"] for item in catalog_items()]}

    def scores(client: TestClient) -> dict[str, float]:
        response = client.post("/v1/score", json=body)
        assert response.status_code == 200, response.text
        return {r["item_id"]: r["score"] for r in response.json()}

    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json()["checks"]["items"] == "0"
        assert last_json(invoke(*items, env=env))["created"] == 20
        before_events = scores(client)  # the new items are served
        assert last_json(invoke(*events)) == {"stored": 80}
        served = scores(client)
    with TestClient(create_app(settings)) as restarted:
        assert served == pytest.approx(scores(restarted), rel=1e-5)  # as a fresh start counts the events
    assert served != pytest.approx(before_events, rel=1e-3)  # and they changed the scores


def test_the_demo_catalog_and_behaviour_ingest_and_serve(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path
) -> None:
    """The files `scripts/demo` feeds the recommender: every row is accepted, and the users' reading shows in
    their recommendations (the items co-read with theirs, never one they read)."""
    settings = rec_settings(tmp_path, sqlite_url, tiny_model_dir, refresh_s=0)
    env = tiny_env(tiny_model_dir)
    items = ["ingest-items", EXAMPLES / "items.csv", "--database-url", sqlite_url,
             "--index-path", settings.index_path]  # fmt: skip
    with (EXAMPLES / "items.csv").open(newline="", encoding="utf-8") as f:
        catalog = {row["item_id"]: row["categories"].split("|") for row in csv.DictReader(f)}
    with (EXAMPLES / "events.csv").open(newline="", encoding="utf-8") as f:
        events = list(csv.DictReader(f))
    assert last_json(invoke(*items, env=env))["created"] == len(catalog)
    stored = invoke("ingest-events", EXAMPLES / "events.csv", "--database-url", sqlite_url)
    assert last_json(stored) == {"stored": len(events)}

    read = {row["item_id"] for row in events if row["user_id"] == "u02"}
    with TestClient(create_app(settings)) as client:
        response = client.get("/v1/recommend", params={"user_id": "u02", "k": 3})
    assert response.status_code == 200, response.text
    picks = [r["item_id"] for r in response.json()]
    assert len(picks) == 3 and not read & set(picks)
    co_read = {row["item_id"] for row in events if row["user_id"] != "u02"} & {
        i for i, themes in catalog.items() if "home" in themes
    }
    assert picks[0] in co_read - read  # the tiny random model knows no words: the behaviour speaks


def test_ingest_items_without_a_model_embeds_with_the_model_the_index_was_built_with(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path, trained_model_dir: Path
) -> None:
    """Before, `ingest-items` without --model-path (nor REC_MODEL_PATH) embedded with the base encoder beside
    an index a trained model built: it discarded that index, embedded the whole catalog again with the base
    encoder and saved those vectors in its place, which the service then embedded again at its next start."""
    model = tmp_path / "model"
    shutil.copytree(trained_model_dir, model)
    settings = rec_settings(tmp_path, sqlite_url, tiny_model_dir, model_path=model)
    env = tiny_env(tiny_model_dir)
    places = ["--database-url", sqlite_url, "--index-path", settings.index_path]
    catalog = write_catalog(tmp_path / "items.csv")
    assert (
        last_json(invoke("ingest-items", catalog, *places, "--model-path", model, env=env))["embedded"] == 20
    )
    sidecar = settings.index_path.with_suffix(".json")
    built = json.loads(sidecar.read_text(encoding="utf-8"))["model"]
    assert built.startswith(f"trained:{model.resolve()}:")
    one = tmp_path / "one.csv"
    one.write_text("item_id,title,text\nastro-9,Solar filter,For watching the sun.\n", encoding="utf-8")
    result = invoke("ingest-items", one, *places, env=env)
    assert last_json(result) == {"items": 1, "created": 1, "updated": 0, "embedded": 1}
    assert json.loads(sidecar.read_text(encoding="utf-8"))["model"] == built  # not the base encoder's
    assert result.stderr.strip() == f"embedding with {model.resolve()}, the model the index was built with"

    saved = settings.index_path.stat().st_mtime_ns
    with TestClient(create_app(settings)) as client:  # the service on that model finds its index current
        assert client.get("/readyz").json()["checks"]["items"] == "21"
    assert settings.index_path.stat().st_mtime_ns == saved

    model.rename(tmp_path / "moved")  # the model is gone: refused, rather than embedded with another
    two = tmp_path / "two.csv"
    two.write_text("item_id,title\nastro-10,Red torch\n", encoding="utf-8")
    line = one_error_line(invoke("ingest-items", two, *places, env=env))
    assert f"holds the vectors of the trained model {model.resolve()}, which has no recommender.json" in line
    assert "--model-path" in line
    assert counts(sqlite_url) == (21, 0) and json.loads(sidecar.read_text(encoding="utf-8"))["model"] == built


def test_ingest_items_refuses_to_replace_an_index_of_another_base_encoder(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path
) -> None:
    """An index built zero-shot by one base encoder, and a command run with another (REC_ENCODER__MODEL set
    for the service, not for the command): it embedded the whole catalog again with the other encoder."""
    places = ["--database-url", sqlite_url, "--index-path", tmp_path / "index" / "items.npz"]
    assert last_json(invoke("ingest-items", write_catalog(tmp_path / "items.csv"), *places,
                            env=tiny_env(tiny_model_dir)))["embedded"] == 20  # fmt: skip
    other = tmp_path / "other-encoder"
    shutil.copytree(tiny_model_dir, other)
    one = tmp_path / "one.csv"
    one.write_text("item_id,title\nastro-9,Solar filter\n", encoding="utf-8")
    line = one_error_line(invoke("ingest-items", one, *places, env=tiny_env(other)))
    assert f"holds the vectors of the base encoder {str(tiny_model_dir)!r}, not of {str(other)!r}" in line
    assert counts(sqlite_url) == (20, 0)


def test_ingest_events_refuses_times_out_of_range_in_one_line(tmp_path: Path, sqlite_url: str) -> None:
    with_one_item(sqlite_url)
    for when in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00", "-62135596800"):
        events = tmp_path / "events.csv"
        events.write_text(f"user_id,item_id,timestamp\nu,astro-0,1700000000\nu,astro-0,{when}\n", "utf-8")
        line = one_error_line(invoke("ingest-events", events, "--database-url", sqlite_url))
        assert "row 2 column 'timestamp'" in line and "from 1900-01-01 to before 9000-01-01" in line
    assert counts(sqlite_url) == (1, 0)


def test_ingest_events_reads_numbers_as_unix_seconds_and_refuses_milliseconds(
    tmp_path: Path, sqlite_url: str
) -> None:
    # the API reads numbers as Unix seconds too; before, a file's 1e11 was stored as the year 5138
    with_one_item(sqlite_url)
    events = tmp_path / "events.csv"
    for when in ("1e11", "100000000000", "1767520121000", "7258118400", "inf"):
        events.write_text(f"user_id,item_id,timestamp\nu,astro-0,1700000000\nu,astro-0,{when}\n", "utf-8")
        line = one_error_line(invoke("ingest-events", events, "--database-url", sqlite_url))
        assert f"{events}: row 2 column 'timestamp': expected a timestamp in Unix seconds" in line
        assert when == "inf" or ("before 2200-01-01 (7,258,118,400)" in line and "milliseconds" in line)
    assert counts(sqlite_url) == (1, 0)
    times = ("1767520121", "1767520121.5", "2026-01-04T10:00:00+02:00", "2026-01-04 08:00:01", "1000000000")
    events.write_text("user_id,item_id,timestamp\n" + "".join(f"u,astro-0,{t}\n" for t in times), "utf-8")
    assert last_json(invoke("ingest-events", events, "--database-url", sqlite_url)) == {"stored": 5}
    db = Database(sqlite_url)
    try:
        with db.session() as session:
            stored = [t.astimezone(UTC) for t in session.scalars(select(Event.ts).order_by(Event.id))]
    finally:
        db.dispose()
    assert stored == [
        datetime(2026, 1, 4, 9, 48, 41, tzinfo=UTC),
        datetime(2026, 1, 4, 9, 48, 41, 500_000, tzinfo=UTC),
        datetime(2026, 1, 4, 8, 0, tzinfo=UTC),
        datetime(2026, 1, 4, 8, 0, 1, tzinfo=UTC),
        datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC),
    ]


def test_ingest_events_refuses_times_ahead_of_the_clock_in_one_line(tmp_path: Path, sqlite_url: str) -> None:
    # a row stamped years ahead (a wrong clock, a typo) would count as the newest event for good
    with_one_item(sqlite_url)
    events = tmp_path / "events.csv"
    now = datetime.now(UTC)
    for when in ((now + timedelta(days=1, minutes=5)).isoformat(), "2150-01-01", "4102444800"):
        events.write_text(f"user_id,item_id,timestamp\nu,astro-0,1700000000\nu,astro-0,{when}\n", "utf-8")
        line = one_error_line(invoke("ingest-events", events, "--database-url", sqlite_url))
        assert f"{events}: row 2 column 'timestamp': expected a time at most 86,400 seconds (1 day)" in line
        assert "after the server's time (" in line
    assert counts(sqlite_url) == (1, 0)
    # the tolerance is a setting; within it a row is stored
    hour = (now + timedelta(hours=1)).isoformat()
    events.write_text(f"user_id,item_id,timestamp\nu,astro-0,{hour}\n", "utf-8")
    strict = {"REC_EVENT_FUTURE_TOLERANCE_S": "60"}
    line = one_error_line(invoke("ingest-events", events, "--database-url", sqlite_url, env=strict))
    assert "row 1 column 'timestamp': expected a time at most 60 seconds after the server's time" in line
    assert last_json(invoke("ingest-events", events, "--database-url", sqlite_url)) == {"stored": 1}


CONTROL_CASES = [  # (file name, its text, the row and column named, the character found)
    ("items.csv", "item_id,title\na,Alpha\nb\x00,Beta\n", "row 2 column 'item_id'", "U+0000 (NUL)"),
    ("items.jsonl", '{"item_id": "a", "title": "Alpha"}\n{"item_id": "b", "title": "Be\\u0000ta"}\n',
     "row 2 column 'title'", "U+0000 (NUL) at character 3"),
    ("items.csv", "item_id,title,text\na,Alpha,ok\nb,Beta,bell\x07\n", "row 2 column 'text'", "U+0007"),
    ("items.csv", 'item_id,title,categories\na,Alpha,x\nb,Beta,"[""ok"", ""a\\u001bb""]"\n',
     "row 2 column 'categories'", "U+001B"),
    ("items.tsv", "item_id\ttitle\tcategories\na\tAlpha\tx|\x1c\n", "row 1 column 'categories'", "U+001C"),
    ("events.csv", "user_id,item_id,timestamp\nu,a,1\nu\x00v,a,2\n", "row 2 column 'user_id'", "U+0000"),
    ("events.jsonl", '{"user_id": "u", "item_id": "a\\u009b", "timestamp": 1}\n', "row 1 column 'item_id'",
     "U+009B"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "where", "found"), CONTROL_CASES)
def test_ingest_refuses_control_characters_as_the_api_does(
    tmp_path: Path, database: Database, tiny_model_dir: Path, name: str, text: str, where: str, found: str
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    places = ["--database-url", database.url]
    if name.startswith("items"):
        ingest = ["ingest-items", path, *places, "--index-path", tmp_path / "index.npz"]
    else:
        ingest = ["ingest-events", path, *places]
    line = one_error_line(invoke(*ingest, env=tiny_env(tiny_model_dir)))
    assert f"{path}: {where}: expected text without control characters" in line and found in line
    assert counts(database.url) == (0, 0)


def test_ingest_events_names_the_row_of_a_rating_without_one(tmp_path: Path, sqlite_url: str) -> None:
    with_one_item(sqlite_url)
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,timestamp,type,rating\nu,astro-0,1,click,\nu,astro-0,2,rating, \n")
    line = one_error_line(invoke("ingest-events", events, "--database-url", sqlite_url))
    assert f"{events}: row 2 column 'rating': expected a number, as the row is a rating; found none" in line
    assert counts(sqlite_url) == (1, 0)


def test_ingest_events_refuses_ratings_beyond_a_million(tmp_path: Path, sqlite_url: str) -> None:
    Database(sqlite_url).check()  # migrated
    events = tmp_path / "events.csv"
    for rating in ("1e30", "-1000001", "nan", "inf"):
        events.write_text(f"user_id,item_id,timestamp,rating\nu,a,1,5\nu,a,2,{rating}\n", encoding="utf-8")
        line = one_error_line(invoke("ingest-events", events, "--database-url", sqlite_url))
        assert (
            f"{events}: row 2 column 'rating': expected a finite number from -1,000,000 to 1,000,000" in line
        )
    assert counts(sqlite_url) == (0, 0)


def test_ids_in_files_and_arguments_are_one_id_whether_composed_or_decomposed(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path
) -> None:
    """An id written decomposed in a file ("e" + U+0301) was stored as such, so the API's composed "é" (or
    another file's) named another item or user. Files and arguments now bring ids to NFC, as the API does."""
    settings = rec_settings(tmp_path, sqlite_url, tiny_model_dir, refresh_s=0)
    places = ["--database-url", sqlite_url]
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\ncafe\u0301-1,Espresso cup\nastro-0,Telescope\n", encoding="utf-8")
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,timestamp\njose\u0301,caf\u00e9-1,1700000000\n", encoding="utf-8")
    ingest = ["ingest-items", items, *places, "--index-path", settings.index_path]
    assert last_json(invoke(*ingest, env=tiny_env(tiny_model_dir)))["created"] == 2
    assert last_json(invoke("ingest-events", events, *places)) == {"stored": 1}
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/items/caf\u00e9-1").json()["title"] == "Espresso cup"
        response = client.get("/v1/recommend", params={"user_id": "jos\u00e9", "exclude_seen": "false"})
        assert response.status_code == 200 and "caf\u00e9-1" in {r["item_id"] for r in response.json()}
    assert last_json(invoke("erase-user", "jos\u00e9", *places)) == {"user_id": "jos\u00e9", "deleted": 1}
    assert last_json(invoke("delete-items", "cafe\u0301-1", *places)) == {"deleted": 1}
    assert counts(sqlite_url) == (1, 0)


def test_ids_with_invisible_format_characters_are_refused_in_files_and_stored_ones_can_be_deleted(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path, trained_model_dir: Path
) -> None:
    """A zero-width space or a bidirectional control in an id made it look like another id (or display as a
    different one); ingest, train and evaluate files took such ids. They now refuse them in one line naming
    the file, row, column, character and position, as the API does; delete-items and erase-user still take
    an id stored before the rule."""
    places = ["--database-url", sqlite_url]
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\nastro-0,Telescope\nastro\u200b-0,Spoof\n", encoding="utf-8")
    ingest = ["ingest-items", items, *places, "--index-path", tmp_path / "index.npz"]
    line = one_error_line(invoke(*ingest, env=tiny_env(tiny_model_dir)))
    assert f"{items}: row 2 column 'item_id': expected an id without invisible format characters" in line
    assert "found U+200B (ZERO WIDTH SPACE) at character 6" in line
    with_one_item(sqlite_url)
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,timestamp\nu,astro-0,1\n\u202eu,astro-0,2\n", encoding="utf-8")
    line = one_error_line(invoke("ingest-events", events, *places))
    assert (
        f"{events}: row 2 column 'user_id'" in line
        and "U+202E (RIGHT-TO-LEFT OVERRIDE) at character 1" in line
    )
    assert counts(sqlite_url) == (1, 0)

    catalog = write_catalog(tmp_path / "catalog.csv")
    interactions = write_interactions(tmp_path / "interactions.csv")
    rows = interactions.read_text(encoding="utf-8").splitlines()
    rows[3] = "\ufeff" + rows[3]  # data row 3
    interactions.write_text("\n".join(rows) + "\n", encoding="utf-8")
    data = ["--interactions", interactions, "--items", catalog]
    for command in (
        ["train", *data, "--output", tmp_path / "m"],
        ["evaluate", "--model", trained_model_dir, *data],
    ):
        line = one_error_line(invoke(*command))
        assert (
            f"{interactions}: row 3 column 'user_id'" in line and "U+FEFF" in line and "character 1" in line
        )
    assert not (tmp_path / "m").exists()

    legacy_item, legacy_user = "legacy\u2060-1", "ann\u200d"
    store_unchecked(sqlite_url, legacy_item, legacy_user)
    assert last_json(invoke("erase-user", legacy_user, *places)) == {"user_id": legacy_user, "deleted": 1}
    assert last_json(invoke("delete-items", legacy_item, *places)) == {"deleted": 1}
    assert counts(sqlite_url) == (1, 0)


@pytest.mark.parametrize(
    ("control", "found"),
    [("\x00", "U+0000 (NUL)"), ("\x1b", "U+001B"), ("\x7f", "U+007F"), ("\x9b", "U+009B")],
)
def test_train_and_evaluate_refuse_ids_with_control_characters(
    control: str, found: str, tmp_path: Path, trained_model_dir: Path
) -> None:
    """Training and evaluation files took an id holding a NUL, an escape, a DEL or a C1 control, which the
    API and `ingest-items` / `ingest-events` refuse (`textcore.printable`): `train` learned an item or user
    no request can name. They now refuse it in one line naming the file, row and column, in the API's
    words, and exit 2; a tab inside an id is taken, as the API takes it."""
    catalog = write_catalog(tmp_path / "catalog.csv")
    interactions = write_interactions(tmp_path / "interactions.csv")
    clean = interactions.read_text(encoding="utf-8").splitlines()
    rows = list(clean)
    rows[3] = "ast" + control + rows[3]  # data row 3, its user id
    interactions.write_text("\n".join(rows) + "\n", encoding="utf-8")
    data = ["--interactions", interactions, "--items", catalog]
    for command in (
        ["train", *data, "--output", tmp_path / "m"],
        ["evaluate", "--model", trained_model_dir, *data],
    ):
        line = one_error_line(invoke(*command))
        assert line == (
            f"error: {interactions}: row 3 column 'user_id': expected text without control characters other "
            f"than tab, newline and carriage return; found {found} at character 4"
        )
    assert not (tmp_path / "m").exists()

    interactions.write_text("\n".join(clean) + "\n", encoding="utf-8")
    items = catalog.read_text(encoding="utf-8").splitlines()
    items[2] = control + items[2]  # data row 2, its item id
    catalog.write_text("\n".join(items) + "\n", encoding="utf-8")
    line = one_error_line(invoke("evaluate", "--model", trained_model_dir, *data))
    assert f"error: {catalog}: row 2 column 'item_id': expected text without control characters" in line
    assert line.endswith(f"found {found} at character 1")

    tabbed = tmp_path / "tabbed.csv"  # the first user id "x<TAB>y"
    tabbed.write_text("\n".join([clean[0], "x\ty," + clean[1].split(",", 1)[1], *clean[2:]]) + "\n")
    data = ["--interactions", tabbed, "--items", write_catalog(tmp_path / "clean.csv")]
    assert set(last_json(invoke("evaluate", "--model", trained_model_dir, *data))) == EVALUATED


def test_delete_and_erase_refuse_a_sqlite_path_that_holds_no_database_and_create_none(tmp_path: Path) -> None:
    # A mistyped path made an empty database (and its folders): delete-items then said no item was found, and
    # erase-user that the user had no events, as if the erasure had been done before
    typo = tmp_path / "missing" / "rec.db"
    places = ["--database-url", f"sqlite:///{typo}"]
    for args, doing in (
        (("delete-items", "astro-0"), "delete items from"),
        (("erase-user", "u1"), "erase a user from"),
    ):
        line = one_error_line(invoke(*args, *places))
        assert line == f"error: expected an existing SQLite database to {doing}; found no file {typo}"
    assert not typo.parent.exists()


def test_delete_items_by_id_or_file_while_serving(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path
) -> None:
    settings = rec_settings(tmp_path, sqlite_url, tiny_model_dir, refresh_s=0)
    places = ["--database-url", sqlite_url]
    catalog = write_catalog(tmp_path / "items.csv")
    ingest = ["ingest-items", catalog, *places, "--index-path", settings.index_path]
    assert last_json(invoke(*ingest, env=tiny_env(tiny_model_dir)))["created"] == 20
    doomed = tmp_path / "doomed.jsonl"
    doomed.write_text('{"item_id": "garden-0", "title": "x"}\n{"item_id": " garden-1"}\n', encoding="utf-8")
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/score", json={"interests": "sky", "items": ["astro-0"]}).status_code == 200
        assert last_json(invoke("delete-items", "astro-0", " lab-1 ", *places)) == {"deleted": 2}
        assert last_json(invoke("delete-items", "--file", doomed, *places)) == {"deleted": 2}
        line = one_error_line(invoke("delete-items", "astro-2", "ghost-1", *places))
        assert "'ghost-1'" in line and "'astro-2'" not in line and "nothing was deleted" in line
        assert "--file" in one_error_line(invoke("delete-items", *places))
        for gone in ("astro-0", "lab-1", "garden-0", "garden-1"):
            assert client.get(f"/v1/items/{gone}").status_code == 404
            assert client.post("/v1/score", json={"interests": "sky", "items": [gone]}).status_code == 404
        assert client.get("/readyz").json()["checks"]["items"] == "16"
    assert counts(sqlite_url) == (16, 0)


def test_ingest_items_errors_are_one_line(tmp_path: Path, sqlite_url: str, tiny_model_dir: Path) -> None:
    Database(sqlite_url).check()  # migrated: a repeated id is refused before the database is opened
    no_title = tmp_path / "items.csv"
    no_title.write_text("item_id,name\na,Alpha\n", encoding="utf-8")
    line = one_error_line(invoke("ingest-items", no_title, "--database-url", sqlite_url))
    assert "title" in line and "item_id, name" in line
    line = one_error_line(invoke("ingest-items", no_title, "--title-column", "name", "--id-column", "sku"))
    assert "sku" in line
    twice = tmp_path / "twice.csv"
    twice.write_text("item_id,title\na,Alpha\na,Again\n", encoding="utf-8")
    env = tiny_env(tiny_model_dir)
    index = ["--index-path", tmp_path / "index.npz"]
    assert "'a'" in one_error_line(
        invoke("ingest-items", twice, "--database-url", sqlite_url, *index, env=env)
    )
    assert counts(sqlite_url) == (0, 0)


def test_evaluate_a_model_trained_by_the_cli(trained_model_dir: Path, tmp_path: Path) -> None:
    interactions = write_interactions(tmp_path / "interactions.csv")
    items = write_catalog(tmp_path / "items.csv")
    result = invoke(
        "evaluate", "--protocol", "leave-last-out", "--model", trained_model_dir,
        "--interactions", interactions, "--items", items, "--device", "cpu", "--precision", "fp32",
    )  # fmt: skip
    report = last_json(result)
    assert set(report) == EVALUATED and report["n_users"] == 16
    assert report["n_held_out_outside_catalog"] == 0
    assert all(set(report[name]) == METRICS for name in ("model", "popularity", "item_knn"))
    # users stay within their theme, so co-occurrence beats popularity by far
    assert report["item_knn"]["ndcg@10"] > report["popularity"]["ndcg@10"]
    assert "warning" not in result.stderr
    trained = json.loads((trained_model_dir / "recommender.json").read_text(encoding="utf-8"))
    assert trained["meta"]["trained_on"]["held_out"] == "last"
    assert trained["meta"]["sources"]["interactions"].endswith("interactions.csv")


def test_evaluate_warns_when_the_model_saw_the_test_interactions(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    interactions = write_interactions(tmp_path / "interactions.csv")
    items = write_catalog(tmp_path / "items.csv")
    data = ["--interactions", interactions, "--items", items, "--device", "cpu", "--precision", "fp32"]
    trained = invoke("train", *data, "--output", tmp_path / "m", "--base-model", tiny_model_dir,
                     "--epochs", 0, "--no-hold-out-last", "--max-length", 48,
                     "--max-validation-users", 5)  # fmt: skip
    assert last_json(trained)["n_interactions"] == 80
    assert last_json(trained)["validation"]["n_users"] == 5  # of 16 users with a validation item
    result = invoke("evaluate", "--model", tmp_path / "m", *data)
    assert set(last_json(result)) == EVALUATED
    warning = result.stderr.strip()
    assert warning.startswith("warning:") and "16 of 16 tested users" in warning


def test_evaluate_and_train_errors_are_one_line(tmp_path: Path, trained_model_dir: Path) -> None:
    items = write_catalog(tmp_path / "items.csv")
    interactions = write_interactions(tmp_path / "interactions.csv")
    data = ["--interactions", interactions, "--items", items]
    line = one_error_line(
        invoke("evaluate", "--protocol", "random-split", "--model", trained_model_dir, *data)
    )
    assert "leave-last-out" in line and "random-split" in line
    line = one_error_line(invoke("evaluate", "--model", tmp_path / "nothing", *data))
    assert "recommender.json" in line
    line = one_error_line(invoke("train", *data, "--output", tmp_path / "m", "--time-column", "when"))
    assert "when" in line
    line = one_error_line(invoke("train", *data, "--output", tmp_path / "m", "--min-rating", 4))
    assert "rating" in line
    line = one_error_line(invoke("train", *data, "--output", tmp_path / "m", "--max-validation-users", 0))
    assert "max_validation_users: expected an integer >= 1; found 0" in line
    assert not (tmp_path / "m").exists()
    line = one_error_line(invoke("train-rescorer", "--model", tmp_path / "nothing", *data))
    assert "recommender.json" in line
    line = one_error_line(invoke("train-rescorer", "--model", trained_model_dir, *data, "--negatives", 0))
    assert "negatives: expected an integer >= 1; found 0" in line
    assert not (trained_model_dir / "rescorer").exists()


def test_train_and_evaluate_refuse_a_column_named_by_an_option_and_missing_from_the_file(
    tmp_path: Path, trained_model_dir: Path
) -> None:
    """Before, `--text-column description` on an items file whose text is in `text` trained and evaluated on
    the titles alone, and a `--rating-column` the file lacks read every rating as a plain interaction (a
    model's --min-rating then left out nothing), without a word. Under their default names both stay
    optional: the interactions here have no `rating` column."""
    items = write_catalog(tmp_path / "items.csv")
    interactions = write_interactions(tmp_path / "interactions.csv")
    data = ["--interactions", interactions, "--items", items]
    expected = "expected the column(s) named by the options,"
    found_items = "found 'item_id', 'title', 'text', 'categories', 'brand'"
    found_events = "found 'user_id', 'item_id', 'timestamp'"
    for command in (
        ["train", "--output", tmp_path / "m"],
        ["evaluate", "--model", trained_model_dir],
        ["train-rescorer", "--model", trained_model_dir],
    ):
        line = one_error_line(invoke(*command, *data, "--text-column", "description"))
        assert line == f"error: {items}: {expected} 'description' (--text-column); {found_items}"
        line = one_error_line(invoke(*command, *data, "--text-column", "text", "--text-column", "body"))
        assert line == f"error: {items}: {expected} 'body' (--text-column); {found_items}"
        line = one_error_line(invoke(*command, *data, "--rating-column", "score"))
        assert line == f"error: {interactions}: {expected} 'score' (--rating-column); {found_events}"
    assert not (tmp_path / "m").exists() and not (trained_model_dir / "rescorer").exists()


def test_interactions_whose_items_are_not_in_the_items_file_are_counted_then_refused_when_all(
    tmp_path: Path, tiny_model_dir: Path, trained_model_dir: Path
) -> None:
    """Before, such rows were left out without a word: interactions naming SKUs beside a catalog of internal
    ids trained a model on what little matched, or on nothing."""
    items = write_catalog(tmp_path / "items.csv")
    skus = {"shopper-0": ["SKU-1", "SKU-2", "SKU-3", "SKU-4", "SKU-1"]}  # 5 rows, 4 distinct ids
    some = write_interactions(tmp_path / "some.csv", user_histories() | skus)
    options = ["--items", items, "--device", "cpu", "--precision", "fp32"]
    trained = invoke("train", "--interactions", some, *options, "--output", tmp_path / "m",
                     "--base-model", tiny_model_dir, "--epochs", 0, "--max-length", 48,
                     "--max-validation-users", 5)  # fmt: skip
    report = last_json(trained)
    assert report["n_interactions"] == 85 and report["n_interactions_outside_catalog"] == 5
    evaluated = invoke("evaluate", "--model", trained_model_dir, "--interactions", some, *options)
    assert set(last_json(evaluated)) == EVALUATED
    # shopper-0's held-out (last) item is SKU-1: not ranked, and counted apart from the 16 users ranked
    assert last_json(evaluated)["n_users"] == 16
    assert last_json(evaluated)["n_held_out_outside_catalog"] == 1
    for result in (trained, evaluated):
        (warning,) = result.stderr.strip().splitlines()
        assert warning.startswith(f"warning: left out 5 of 85 interaction rows of {some}: "), warning
        assert "4 distinct item ids ('SKU-1', 'SKU-2', 'SKU-3', ...)" in warning and str(items) in warning
    none = write_interactions(tmp_path / "none.csv", {"u": ["SKU-1", "SKU-2"], "v": ["SKU-3"]})
    for args in (
        ["train", "--output", tmp_path / "n", "--base-model", tiny_model_dir, "--epochs", 0],
        ["evaluate", "--model", trained_model_dir],
        ["train-rescorer", "--model", trained_model_dir],
    ):
        line = one_error_line(invoke(*args, "--interactions", none, *options))
        assert line.startswith(f"error: {none}: expected interactions with items in the items file"), line
        assert "all 3 rows name 3 distinct item ids ('SKU-1', 'SKU-2', 'SKU-3')" in line, line
    assert not (tmp_path / "n").exists() and not (trained_model_dir / "rescorer").exists()


def test_a_row_of_type_rating_without_a_rating_is_one_line_in_every_command_that_reads_it(
    tmp_path: Path, sqlite_url: str, trained_model_dir: Path
) -> None:
    """`ingest-events` refused a row of type rating with an empty rating; `train`, `evaluate` and
    `train-rescorer` read the same row as a plain interaction, a like whatever the threshold."""
    good = write_interactions(tmp_path / "good.csv").read_text(encoding="utf-8").splitlines()
    events = tmp_path / "events.csv"
    rows = [line + ",click," for line in good[1:]]
    rows.insert(4, good[1] + ",rating,")  # data row 5: rated, with no rating
    events.write_text("\n".join([good[0] + ",type,rating", *rows]) + "\n", encoding="utf-8")
    items = write_catalog(tmp_path / "items.csv")
    data = ["--interactions", events, "--items", items, "--device", "cpu", "--precision", "fp32"]
    expected = (
        f"error: {events}: row 5 column 'rating': expected a number, as the row is a rating; found none"
    )
    for args in (
        ["ingest-events", events, "--database-url", sqlite_url],
        ["train", *data, "--output", tmp_path / "m", "--epochs", 0, "--min-rating", 4],
        ["train", *data, "--output", tmp_path / "m", "--epochs", 0],
        ["evaluate", "--model", trained_model_dir, *data],
        ["train-rescorer", "--model", trained_model_dir, *data],
    ):
        assert one_error_line(invoke(*args)) == expected, args[0]
    assert not (tmp_path / "m").exists() and not (trained_model_dir / "rescorer").exists()


def test_a_row_missing_a_column_is_one_line_naming_file_row_and_column(
    tmp_path: Path, sqlite_url: str, trained_model_dir: Path
) -> None:
    items, events = tmp_path / "items.jsonl", tmp_path / "events.jsonl"
    items.write_text('{"item_id": "a", "title": "Alpha"}\n{"item_id": "b", "text": "No title"}\n', "utf-8")
    events.write_text(
        '{"user_id": "u", "item_id": "a", "timestamp": 1}\n{"user_id": "u", "item_id": "b"}\n', "utf-8"
    )
    good_items = write_catalog(tmp_path / "items.csv")
    good_events = write_interactions(tmp_path / "events.csv")
    amazon = tmp_path / "amazon"
    amazon.mkdir()
    (amazon / "items.csv").write_text("asin,text\nA1,Alpha. The first\n", encoding="utf-8")
    (amazon / "valid.jsonl").write_text(
        '{"user": "u", "history": [], "target": "A1"}\n{"user": "v", "history": []}\n', "utf-8"
    )
    model, train = ["--model", trained_model_dir], ["train", "--output", tmp_path / "m"]
    cases = [
        (events, "timestamp", ["ingest-events", events, "--database-url", sqlite_url]),
        (items, "title", ["ingest-items", items, "--database-url", sqlite_url]),
        (events, "timestamp", [*train, "--interactions", events, "--items", good_items]),
        (items, "title", [*train, "--interactions", good_events, "--items", items]),
        (events, "timestamp", ["evaluate", *model, "--interactions", events, "--items", good_items]),
        (items, "title", ["train-rescorer", *model, "--interactions", good_events, "--items", items]),
        (amazon / "valid.jsonl", "target", ["convert", "amazon", amazon, "--output", tmp_path / "out"]),
    ]
    for path, column, args in cases:
        line = one_error_line(invoke(*args))
        assert f"{path}: row 2 has no {column!r}" in line, (args[0], line)
    assert not (tmp_path / "m").exists()


def test_serve_and_train_misconfigurations_are_one_line(tmp_path: Path) -> None:
    line = one_error_line(invoke("serve", "--port", 0, env={"REC_CANDIDATES": "0"}))
    assert "REC_CANDIDATES: Input should be greater than or equal to 1" in line
    line = one_error_line(invoke("serve", "--port", 0, "--database-url", "notaurl"))
    assert "REC_DATABASE_URL: Value error, expected a SQLAlchemy URL" in line
    assert "notaurl" not in line  # a settings error never echoes the value: a URL may hold a password
    line = one_error_line(invoke("serve", "--port", 0, "--model-path", tmp_path / "nothing"))
    assert "found no recommender.json" in line
    line = one_error_line(invoke("serve", "--port", 0, "--database-url", "postgresql://u:pw@127.0.0.1:1/x"))
    assert line.startswith("error: cannot open the database postgresql://u:***@127.0.0.1:1/x: ")
    afile = tmp_path / "afile"
    afile.write_text("", encoding="utf-8")
    data = ["--interactions", write_interactions(tmp_path / "events.csv"), "--items",
            write_catalog(tmp_path / "items.csv"), "--epochs", 0]  # fmt: skip
    for output in (afile, afile / "model"):
        line = one_error_line(invoke("train", *data, "--output", output))
        assert f"--output {output}: expected a folder for the model; {afile} is a file" in line


def test_train_without_fine_tuning_into_a_fine_tuned_models_folder_leaves_no_run_of_it(
    tmp_path: Path, tiny_model_dir: Path, trained_model_dir: Path
) -> None:
    """Before, `train --epochs 0` into the folder of a fine-tuned model left that run's `training/` folder
    (metrics, curves, report) beside the new model, which was never fine-tuned."""
    model = tmp_path / "model"
    shutil.copytree(trained_model_dir, model)
    assert (model / "training").is_dir()
    data = ["--interactions", write_interactions(tmp_path / "events.csv"), "--items",
            write_catalog(tmp_path / "items.csv"), "--device", "cpu", "--precision", "fp32"]  # fmt: skip
    report = last_json(invoke("train", *data, "--output", model, "--base-model", tiny_model_dir,
                              "--epochs", 0, "--max-length", 48, "--max-validation-users", 5))  # fmt: skip
    assert report["encoder"] == {"trained": False}
    assert not (model / "training").exists()
    assert json.loads((model / "metadata.json").read_text(encoding="utf-8"))["training"] is None
    # a folder no model was trained into keeps a `training/` folder of its own: it is refused
    mine = tmp_path / "mine"
    (mine / "training").mkdir(parents=True)
    (mine / "training" / "notes.txt").write_text("mine", encoding="utf-8")
    line = one_error_line(invoke("train", *data, "--output", mine, "--base-model", tiny_model_dir,
                                 "--epochs", 0, "--max-length", 48, "--max-validation-users", 5))  # fmt: skip
    assert (
        f"--output {mine}: expected a new or empty folder, or an earlier model's; it holds training" in line
    )
    assert [p.relative_to(mine) for p in mine.rglob("*")] == [Path("training"), Path("training/notes.txt")]
    assert (mine / "training" / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_train_refuses_a_folder_of_the_operators_own_and_replaces_an_earlier_model_whole(
    tmp_path: Path, tiny_model_dir: Path, trained_model_dir: Path
) -> None:
    """Before, `train` copied the model into any --output folder: files of the operator's own got model files
    beside them, and an earlier model's folder kept the files the new base model does not have (a tokenizer's
    merges, a rescorer), so the folder mixed two models. Now, as `textcore train`: a folder holding files no
    training run wrote is one error line, exit 2, before anything is read or written; an earlier model's
    folder (or a run cut short) is emptied before the new model is written."""
    data = ["--interactions", write_interactions(tmp_path / "events.csv"), "--items",
            write_catalog(tmp_path / "items.csv"), "--device", "cpu", "--precision", "fp32",
            "--base-model", tiny_model_dir, "--max-length", 48, "--max-validation-users", 5]  # fmt: skip
    mine = tmp_path / "reports"
    mine.mkdir()
    (mine / "q3.csv").write_text("a,b\n", encoding="utf-8")
    (mine / "notes.txt").write_text("mine", encoding="utf-8")
    for epochs in (0, 1):
        line = one_error_line(invoke("train", *data, "--output", mine, "--epochs", epochs))
        assert line == (
            f"error: --output {mine}: expected a new or empty folder, or an earlier model's; it holds "
            "notes.txt, q3.csv, which no training run wrote. Choose another folder"
        )
        assert sorted(p.name for p in mine.iterdir()) == ["notes.txt", "q3.csv"]

    stale = ("merges.txt", "spiece.model", "rescorer/rescorer.json")
    for epochs in (0, 1):
        model = tmp_path / f"model-{epochs}"
        shutil.copytree(trained_model_dir, model)
        for name in stale:  # an earlier model of another base (another tokenizer), with a rescorer
            (model / name).parent.mkdir(exist_ok=True)
            (model / name).write_text("{}", encoding="utf-8")
        result = invoke("train", *data, "--output", model, "--epochs", epochs, "--batch-size", 8)
        assert last_json(result)["encoder"]["trained"] is (epochs == 1)
        assert f"replacing the earlier model in {model}" in result.stderr
        assert not any((model / name).exists() for name in stale), epochs
        assert not (model / "rescorer").exists()
        assert (model / "training").is_dir() is (epochs == 1)
        fresh = tmp_path / f"fresh-{epochs}"
        last_json(invoke("train", *data, "--output", fresh, "--epochs", epochs, "--batch-size", 8))
        assert sorted(p.name for p in model.iterdir()) == sorted(p.name for p in fresh.iterdir())

    cut_short = tmp_path / "cut-short"  # a fine-tuning run stopped before it saved a model
    (cut_short / "training").mkdir(parents=True)
    (cut_short / "training" / "metrics.jsonl").write_text("{}\n", encoding="utf-8")
    last_json(invoke("train", *data, "--output", cut_short, "--epochs", 0))
    assert not (cut_short / "training").exists() and (cut_short / "recommender.json").is_file()


def test_train_without_fine_tuning_into_its_own_base_model_is_one_line_and_changes_nothing(
    tmp_path: Path, trained_model_dir: Path
) -> None:
    """Before, `--base-model M --output M --epochs 0` (fit the blend again on a model's own encoder) copied
    the folder onto itself: a traceback (shutil.Error, exit 1) after the model's rescorer was removed."""
    model = tmp_path / "model"
    shutil.copytree(trained_model_dir, model)
    (model / "rescorer").mkdir()
    (model / "rescorer" / "rescorer.json").write_text("{}", encoding="utf-8")
    before = {p.relative_to(model): p.read_bytes() for p in model.rglob("*") if p.is_file()}
    data = ["--interactions", write_interactions(tmp_path / "events.csv"), "--items",
            write_catalog(tmp_path / "items.csv"), "--device", "cpu", "--precision", "fp32"]  # fmt: skip
    line = one_error_line(invoke("train", *data, "--output", model, "--base-model", model, "--epochs", 0,
                                 "--max-length", 48))  # fmt: skip
    assert f"--base-model {model}: expected a model folder other than --output {model}" in line
    assert {p.relative_to(model): p.read_bytes() for p in model.rglob("*") if p.is_file()} == before


def test_a_failed_train_leaves_the_earlier_model_in_its_output(
    tmp_path: Path, tiny_model_dir: Path, trained_model_dir: Path
) -> None:
    """The earlier model in --output was emptied out once the data was read, and a run failing after that
    (here: too few behaviour pairs to fine-tune on; as well a stopped run) left an empty folder, the model the
    service was serving gone. It is now set aside until the run succeeds and put back when it fails."""
    model = tmp_path / "model"
    shutil.copytree(trained_model_dir, model)
    before = {p.relative_to(model): p.read_bytes() for p in model.rglob("*") if p.is_file()}
    few = {"u1": ["astro-0", "astro-1", "astro-2"], "u2": ["lab-0", "lab-1", "lab-2"]}
    result = invoke("train", "--interactions", write_interactions(tmp_path / "events.csv", few), "--items",
                    write_catalog(tmp_path / "items.csv"), "--device", "cpu", "--precision", "fp32",
                    "--base-model", tiny_model_dir, "--epochs", 1, "--output", model)  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "expected at least 4 behaviour pairs" in result.stderr.strip().splitlines()[-1]
    assert f"the earlier model is back in {model}" in result.stderr
    assert {p.relative_to(model): p.read_bytes() for p in model.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".model.earlier")] == []


def test_a_min_rating_that_is_no_rating_is_refused(tmp_path: Path, trained_model_dir: Path) -> None:
    """--min-rating nan (or inf, or beyond a million, where REC_MIN_RATING and an event's value stop) was
    taken: every rating was then below it, so the rated rows were left out without a word, and a file of
    ratings alone stopped on 'no interaction to train on'."""
    interactions = tmp_path / "interactions.csv"
    interactions.write_text(
        "user_id,item_id,timestamp,rating\nu1,astro-0,1,5\nu1,astro-1,2,\nu2,lab-0,1,4\nu2,lab-1,2,\n",
        encoding="utf-8",
    )
    data = ["--interactions", interactions, "--items", write_catalog(tmp_path / "items.csv")]
    for value in ("nan", "inf", "-inf", "2e6"):
        for command in (
            ["train", *data, "--output", tmp_path / "m", "--epochs", 0],
            ["evaluate", "--model", trained_model_dir, *data],
        ):
            line = one_error_line(invoke(*command, "--min-rating", value))
            assert "--min-rating: expected a number from -1000000 to 1000000" in line, line
    assert not (tmp_path / "m").exists()


def test_convert_datasets(tmp_path: Path) -> None:
    movielens = tmp_path / "ml"
    movielens.mkdir()
    (movielens / "ratings.csv").write_text(
        "user_id,item_id,rating,timestamp\n1,10,5,881250949\n", encoding="utf-8"
    )
    (movielens / "items.csv").write_text(
        "item_id,title,genres\n10,Toy Story (1995),Animation|Comedy\n", encoding="utf-8"
    )
    paths = last_json(invoke("convert", "movielens", movielens, "--output", tmp_path / "out"))
    with Path(paths["items"]).open(encoding="utf-8") as handle:
        assert list(csv.DictReader(handle)) == [
            {
                "item_id": "10",
                "title": "Toy Story (1995)",
                "text": "Toy Story (1995). genres: Animation, Comedy",
            }
        ]
    assert Path(paths["interactions"]).is_file()
    line = one_error_line(invoke("convert", "netflix", movielens, "--output", tmp_path / "out"))
    assert "amazon or movielens" in line


def test_convert_refuses_an_output_that_is_a_file_or_the_datasets_own_folder(tmp_path: Path) -> None:
    """An output naming a file was a traceback (FileExistsError, exit 1); the dataset's own folder had its
    items.csv overwritten by the converted one, the source's genres lost."""
    movielens = tmp_path / "ml"
    movielens.mkdir()
    (movielens / "ratings.csv").write_text("user_id,item_id,rating,timestamp\n1,10,5,1\n", encoding="utf-8")
    source = "item_id,title,genres\n10,Toy Story (1995),Animation|Comedy\n"
    (movielens / "items.csv").write_text(source, encoding="utf-8")
    taken = tmp_path / "taken.csv"
    taken.write_text("mine\n", encoding="utf-8")
    for output, expected in (
        (taken, "expected a folder for interactions.csv and items.csv; found a file"),
        (movielens, "expected a folder other than the dataset's"),
        (movielens / ".." / "ml", "expected a folder other than the dataset's"),
        (taken / "out", "cannot create the output folder: Not a directory"),
    ):
        result = invoke("convert", "movielens", movielens, "--output", output)
        assert result.exit_code == 2 and expected in one_error_line(result), result.output
    assert (movielens / "items.csv").read_text(encoding="utf-8") == source
    assert taken.read_text(encoding="utf-8") == "mine\n"
    assert sorted(p.name for p in movielens.iterdir()) == ["items.csv", "ratings.csv"]


def test_help_lists_every_command() -> None:  # and imports nothing heavy: tests/test_cli_startup.py
    result = invoke("--help")
    assert result.exit_code == 0
    assert all(
        name in result.stdout for name in ("ingest-items", "ingest-events", "serve", "train", "evaluate")
    )
    assert catalog_items()  # the fixtures' catalog is what the other tests ingest


def test_evaluate_and_train_rescorer_read_ratings_with_the_models_threshold(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """A model trained with --min-rating 4 is evaluated (and its rescorer trained) on the positives it learned
    from, without --min-rating given again: every user's newest rating, 1 star on another theme's item, is
    no held-out item to find."""
    ratings = tmp_path / "ratings.csv"
    with ratings.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id", "timestamp", "rating"])
        for event in event_bodies():
            writer.writerow([event["user_id"], event["item_id"], event["timestamp"], 5])
        for user in user_histories():
            disliked = {"astro": "lab-0", "lab": "garden-0", "garden": "kitchen-0", "kitchen": "astro-0"}
            writer.writerow([user, disliked[user.split("-")[0]], 1_800_000_000, 1])
    cpu = ["--device", "cpu", "--precision", "fp32"]
    data = ["--interactions", ratings, "--items", write_catalog(tmp_path / "items.csv")]
    model = tmp_path / "model"
    last_json(invoke(
        "train", *data, "--output", model, "--base-model", tiny_model_dir, "--epochs", 0, "--min-rating", 4,
        "--max-length", 48, *cpu,
    ))  # fmt: skip

    inherited = invoke("evaluate", "--model", model, *data, *cpu)
    given = last_json(invoke("evaluate", "--model", model, *data, "--min-rating", 4, *cpu))
    assert last_json(inherited) == given and given["model"]["hr@10"] == 1.0
    assert "trained with --min-rating 4" in inherited.stderr
    every = last_json(invoke("evaluate", "--model", model, *data, "--min-rating", 0, *cpu))
    assert every["model"]["hr@10"] == 0.0  # the 1-star items held out instead
    clicks = ["--interactions", write_interactions(tmp_path / "clicks.csv"), *data[2:]]
    assert last_json(invoke("evaluate", "--model", model, *clicks, *cpu))["n_users"] == 16  # no rating column

    report = last_json(invoke(
        "train-rescorer", "--model", model, *data, "--negatives", 2, "--candidates", 6, "--batch-size", 8,
        "--max-length", 64, *cpu,
    ))  # fmt: skip
    assert report["n_queries"] == 32  # 16 users of 5 liked items, as without the 1-star ratings
    meta = json.loads((model / "rescorer" / "rescoring.json").read_text(encoding="utf-8"))["meta"]
    assert meta["sources"]["min_rating"] == 4.0
