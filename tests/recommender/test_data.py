"""Reading interactions and catalogs; converting the public datasets (tiny fixtures and the real folders)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from recommender.data import (
    Catalog,
    Interactions,
    convert_amazon,
    convert_movielens,
    item_text,
    outside_catalog,
    read_catalog,
    read_interactions,
)
from recommender.ingest import read_events, read_items
from recommender.protocol import leave_last_out
from tests.conftest import shared_data
from textcore import InvalidInput


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _interactions(users: list[str], items: list[str], times: list[float]) -> Interactions:
    return Interactions(
        np.array(users, dtype=object),
        np.array(items, dtype=object),
        np.array(times, dtype=np.float64),
        np.full(len(users), math.nan),
    )


def test_sequences_are_in_time_order_with_ties_in_row_order() -> None:
    data = _interactions(
        ["u2", "u1", "u1", "u2", "u1", "u1"],
        ["x", "c", "a", "y", "b", "d"],
        [5.0, 30.0, 10.0, 1.0, 20.0, 20.0],
    )
    assert len(data) == 6
    assert data.sequences() == {"u1": ["a", "b", "d", "c"], "u2": ["y", "x"]}


def test_sequences_of_nothing_are_empty() -> None:
    assert _interactions([], [], []).sequences() == {}


def test_read_interactions_keeps_ratings_and_thresholds_them(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "events.csv",
        "user_id,item_id,timestamp,rating,extra\nu1,a,3,5,x\nu1,b,1,2,x\nu2,a,2,,x\nu2,c,4,4.5,x\n",
    )
    data = read_interactions(path)
    assert list(data.users) == ["u1", "u1", "u2", "u2"]
    assert list(data.times) == [3.0, 1.0, 2.0, 4.0]
    assert data.values[0] == 5.0 and math.isnan(data.values[2])
    kept = read_interactions(path, min_rating=4)
    # the 2-star row goes; the unrated row is an interaction without a rating and stays
    assert list(kept.items) == ["a", "a", "c"]
    assert kept.sequences() == {"u1": ["a"], "u2": ["a", "c"]}


def test_a_users_latest_rating_outweighs_their_clicks_in_interactions(tmp_path: Path) -> None:
    rows = [
        "u1,a,1,",  # a click on a, then a 1-star rating of a: a is no positive of u1
        "u1,a,2,1",
        "u1,b,3,",
        "u1,b,5,",  # a click after the low rating of b at time 4: still no positive
        "u1,b,4,2",
        "u1,c,6,2",  # c rated low, then well: the latest rating decides
        "u1,c,7,5",
        "u1,c,8,",
        "u1,d,9,5",  # d rated well, then low at the same time: row order breaks the tie
        "u1,d,9,1",
        "u2,a,1,",  # another user's click on a stays
    ]
    path = _write(tmp_path, "events.csv", "user_id,item_id,timestamp,rating\n" + "\n".join(rows) + "\n")
    assert read_interactions(path, min_rating=4).sequences() == {"u1": ["c", "c"], "u2": ["a"]}
    every = read_interactions(path).sequences()  # no threshold: every row, as before
    assert every["u1"] == ["a", "a", "b", "b", "b", "c", "c", "c", "d", "d"]


def test_the_number_of_a_click_or_purchase_is_no_rating_in_a_file_with_types(tmp_path: Path) -> None:
    """`ingest-events` reads a row's kind from the `type` column and keeps a purchase's number (a quantity,
    say) as its value, a like; training read every number in the rating column as a rating, so under
    --min-rating 4 the purchase of b was dropped, and the user's earlier click on it too."""
    rows = [
        "u1,a,1,rating,5",
        "u1,b,2,click,",
        "u1,b,3,purchase,1",  # one unit bought: no rating
        "u1,c,4,rating,2",  # rated low: not liked, nor its click before
        "u1,c,5,,",
        "u1,d,6,,5",  # no type, a number: a rating, as ingest-events reads it
    ]
    path = _write(tmp_path, "events.csv", "user_id,item_id,timestamp,type,rating\n" + "\n".join(rows) + "\n")
    assert read_interactions(path, min_rating=4).sequences() == {"u1": ["a", "b", "b", "d"]}
    assert math.isnan(read_interactions(path).values[2])


def test_a_row_of_type_rating_without_a_rating_is_refused_as_ingest_events_refuses_it(tmp_path: Path) -> None:
    """`ingest-events` refuses a row of type rating with an empty rating cell; training read it as a plain
    interaction, a like whatever the threshold, so a file it refused trained a model liking the item."""
    header = "user_id,item_id,timestamp,type,rating\n"
    path = _write(tmp_path, "events.csv", header + "u1,a,1,click,\nu1,b,2,rating,5\nu1,c,3, rating ,\n")
    expected = r"events.csv: row 3 column 'rating': expected a number, as the row is a rating; found none"
    for min_rating in (None, 4.0):
        with pytest.raises(InvalidInput, match=expected):
            read_interactions(path, min_rating=min_rating)
    # no rating column at all: a row of type rating has none either
    path = _write(tmp_path, "typed.csv", "user_id,item_id,timestamp,type\nu1,a,1,click\nu1,b,2,rating\n")
    with pytest.raises(InvalidInput, match=r"typed.csv: row 2 column 'rating': expected a number"):
        read_interactions(path)
    path = _write(tmp_path, "score.csv", "u,i,t,type,score\nu1,a,1,rating,\n")
    with pytest.raises(InvalidInput, match=r"score.csv: row 1 column 'score': expected a number"):
        read_interactions(path, user_column="u", item_column="i", time_column="t", rating_column="score")


def test_read_interactions_without_a_rating_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "events.csv", "user_id,item_id,timestamp\nu1,a,1\n")
    data = read_interactions(path)
    assert math.isnan(data.values[0])
    with pytest.raises(InvalidInput, match=r"min_rating 3.0 needs the rating column 'rating'"):
        read_interactions(path, min_rating=3.0)


def test_read_interactions_jsonl_iso_times_and_custom_columns(tmp_path: Path) -> None:
    rows = [
        {"who": "u1", "what": "b", "when": "2024-01-02T00:00:00"},
        {"who": "u1", "what": "a", "when": "2024-01-01T23:00:00-02:00"},
    ]
    path = _write(tmp_path, "events.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    data = read_interactions(path, user_column="who", item_column="what", time_column="when")
    # a datetime without an offset is UTC; 23:00 at -02:00 is 01:00 UTC on the 2nd, after midnight
    assert data.times[0] == datetime(2024, 1, 2, tzinfo=UTC).timestamp()
    assert data.times[1] == datetime(2024, 1, 2, 1, tzinfo=UTC).timestamp()
    assert data.sequences() == {"u1": ["b", "a"]}


def test_jsonl_rows_may_leave_out_optional_columns(tmp_path: Path) -> None:
    events = [
        {"user_id": "u1", "item_id": "a", "timestamp": 1, "rating": 4},
        {"user_id": "u1", "item_id": "b", "timestamp": 2},
    ]
    path = _write(tmp_path, "events.jsonl", "\n".join(json.dumps(r) for r in events) + "\n")
    data = read_interactions(path)
    assert data.values[0] == 4.0 and math.isnan(data.values[1])  # no rating: a plain interaction
    items = [{"item_id": "a", "title": "Red kettle", "text": "Boils water"}, {"item_id": "b", "title": "Mug"}]
    path = _write(tmp_path, "items.jsonl", "\n".join(json.dumps(r) for r in items) + "\n")
    assert read_catalog(path).texts == ["Red kettle. Boils water", "Mug"]


def test_an_optional_column_is_read_when_the_first_jsonl_row_leaves_it_out(tmp_path: Path) -> None:
    """Before, only the first row's keys counted: its leaving out the rating or text dropped the column from
    every row (ratings read as plain interactions, items as their titles alone)."""
    events = [
        {"user_id": "u1", "item_id": "a", "timestamp": 1},
        {"user_id": "u1", "item_id": "b", "timestamp": 2, "rating": 2},
    ]
    path = _write(tmp_path, "events.jsonl", "\n".join(json.dumps(r) for r in events) + "\n")
    assert read_interactions(path, min_rating=3.0).sequences() == {"u1": ["a"]}
    items = [{"item_id": "a", "title": "Mug"}, {"item_id": "b", "title": "Red kettle", "text": "Boils water"}]
    path = _write(tmp_path, "items.jsonl", "\n".join(json.dumps(r) for r in items) + "\n")
    assert read_catalog(path).texts == ["Mug", "Red kettle. Boils water"]


def test_read_interactions_tsv_in_row_order_without_times(tmp_path: Path) -> None:
    path = _write(tmp_path, "events.tsv", "user_id\titem_id\nu1\tb\nu1\ta\n")
    data = read_interactions(path, time_column=None)
    assert list(data.times) == [0.0, 1.0]
    assert data.sequences() == {"u1": ["b", "a"]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("user_id,item_id\nu1,a\n", r"events.csv: expected column\(s\) timestamp; found user_id, item_id"),
        ("user_id,item_id,timestamp\nu1,a,1\n ,b,2\n", r"events.csv: row 2 column 'user_id': expected an id"),
        ("user_id,item_id,timestamp\nu1,a,yesterday\n", r"row 1 column 'timestamp': .*found 'yesterday'"),
        ("user_id,item_id,timestamp\nu1,a,nan\n", r"row 1 column 'timestamp': expected a finite time"),
        ("user_id,item_id,timestamp,rating\nu1,a,1,4\nu1,b,2,good\n", r"row 2 column 'rating': .*'good'"),
        ("user_id,item_id,timestamp\n", r"expected at least one interaction row; found none"),
    ],
)
def test_read_interactions_refuses_bad_files(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path, "events.csv", body)
    with pytest.raises(InvalidInput, match=message):
        read_interactions(path)


def test_a_json_lines_list_or_object_where_an_id_or_title_goes_is_refused(tmp_path: Path) -> None:
    """It was read as its JSON text: a user '["u1"]', an item titled '{"en": "Sky"}'. A number is an id."""
    events = _write(tmp_path, "events.jsonl", '{"user_id": 7, "item_id": "a", "timestamp": 1}\n'
                    '{"user_id": ["u1"], "item_id": "a", "timestamp": 2}\n')  # fmt: skip
    items = _write(
        tmp_path,
        "items.jsonl",
        '{"item_id": 5, "title": "Stars"}\n{"item_id": "b", "title": {"en": "Sky"}}\n',
    )
    refused = r"{}:2: '{}' holds (a list|an object); expected a text"
    for read in (read_interactions, read_events):
        with pytest.raises(InvalidInput, match=refused.format("events.jsonl", "user_id")):
            read(events)
    for read_item_file in (read_catalog, read_items):
        with pytest.raises(InvalidInput, match=refused.format("items.jsonl", "title")):
            read_item_file(items)
    _write(tmp_path, "events.jsonl", '{"user_id": 7, "item_id": "a", "timestamp": 1}\n')
    assert read_interactions(events).sequences() == {"7": ["a"]}
    assert [e.user_id for e in read_events(events)] == ["7"]
    _write(tmp_path, "items.jsonl", '{"item_id": 5, "title": "Stars"}\n')
    assert read_catalog(items).ids == ["5"] and [i.id for i in read_items(items)] == ["5"]


def test_read_catalog_builds_texts_from_title_and_fields(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "items.csv",
        "item_id,title,text,brand,price\n"
        "a,Red kettle,Boils water fast,Acme,10\n"
        "b,Blue mug,,Acme,3\n"
        "c,Green tea,Green tea. Loose leaf,,1\n"
        "d,,Only text here,,1\n",
    )
    catalog = read_catalog(path, text_columns=("text", "brand"))
    assert catalog.ids == ["a", "b", "c", "d"]
    assert catalog.index == {"a": 0, "b": 1, "c": 2, "d": 3}
    assert catalog.titles == ["Red kettle", "Blue mug", "Green tea", "Only text here"]
    # a text that already starts with its title does not repeat it
    assert catalog.texts == [
        "Red kettle. Boils water fast. Acme",
        "Blue mug. Acme",
        "Green tea. Loose leaf",
        "Only text here",
    ]
    assert len(catalog) == 4
    with pytest.raises(
        InvalidInput, match=r"named by the options, 'missing' \(--text-column\); found 'item_id'"
    ):
        read_catalog(path, text_columns=("text", "brand", "missing"))  # a typo: no longer left out unsaid
    untexted = _write(tmp_path, "untexted.csv", "item_id,title\na,Red kettle\n")
    assert read_catalog(untexted).texts == ["Red kettle"]  # `text` is optional under its default name


def test_ids_in_either_unicode_form_are_one_id_as_the_service_reads_them(tmp_path: Path) -> None:
    """Ids were read as written, so "café" composed in one row or file and decomposed (e + U+0301) in another
    were two users or items here, one for the API, ingest and the database: an interaction missed its catalog
    item, a user's rows and a low rating of theirs missed each other."""
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    events = _write(
        tmp_path,
        "events.csv",
        "user_id,item_id,timestamp,rating\n"
        f"jos\u00e9,{decomposed}-1,1,\n"  # a click, outweighed by the user's later low rating below
        f"jose\u0301,{composed}-2,2,5\n"
        f"jos\u00e9,{composed}-1,3,1\n"
        f"ana,{decomposed}-2,4,\n",
    )
    catalog = read_catalog(
        _write(tmp_path, "items.csv", f"item_id,title\n{decomposed}-1,Cup\n{composed}-2,Pot\n")
    )
    assert catalog.ids == [f"{composed}-1", f"{composed}-2"]
    data = read_interactions(events)
    assert data.sequences() == {
        "ana": [f"{composed}-2"],
        "jos\u00e9": [f"{composed}-1", f"{composed}-2", f"{composed}-1"],
    }
    assert outside_catalog(data, catalog) == (0, [])
    liked = read_interactions(events, min_rating=4)
    assert liked.sequences() == {"ana": [f"{composed}-2"], "jos\u00e9": [f"{composed}-2"]}
    both = _write(tmp_path, "both.csv", f"item_id,title\n{composed}-1,Cup\n{decomposed}-1,Mug\n")
    with pytest.raises(InvalidInput, match=rf"both.csv: expected unique item ids; '{composed}-1' appears"):
        read_catalog(both)


def test_item_text_joins_parts_once() -> None:
    assert item_text("Title", ["Body", "", "  Brand "]) == "Title. Body. Brand"
    assert item_text("Done!", ["Body."]) == "Done! Body."
    assert item_text("", []) == ""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "item_id,title\na,A\nb,B\na,C\n",
            r"items.csv: expected unique item ids; 'a' appears more",
        ),
        ("item_id,text\na,A\n", r"items.csv: expected column\(s\) title; found item_id, text"),
        ("item_id,title,text\na,,\n", r"items.csv: row 1 \(item 'a'\): expected a title or text"),
        ("item_id,title\na,A\n,B\n", r"items.csv: row 2 column 'item_id': expected an id"),
    ],
)
def test_read_catalog_refuses_bad_files(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path, "items.csv", body)
    with pytest.raises(InvalidInput, match=message):
        read_catalog(path)


def test_catalog_build_checks_its_lists() -> None:
    catalog = Catalog.build(["a", "b"], ["A", "B"], ["A.", "B."])
    assert catalog.index == {"a": 0, "b": 1}
    with pytest.raises(InvalidInput, match=r"expected as many titles and texts as ids \(2\); found 1 and 2"):
        Catalog.build(["a", "b"], ["A"], ["A.", "B."])


@pytest.fixture
def amazon_folder(tmp_path: Path) -> Path:
    """A two-user folder in the UniSRec layout: items.csv and valid.jsonl."""
    folder = tmp_path / "amazon"
    folder.mkdir()
    _write(
        folder,
        "items.csv",
        "item_index,asin,text\n"
        '0,A1,"Solder wire 60/40, 1 lb. Industrial & Scientific Soldering. Kester."\n'
        "1,A2,Flux pen. Industrial & Scientific. Kester.\n"
        "2,A3,No sentence break here\n",
    )
    rows = [
        {"user": "U1", "history": ["A1", "A2"], "target": "A3"},
        {"user": "U2", "history": ["A3"], "target": "A1"},
    ]
    _write(folder, "valid.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_convert_amazon_writes_sequences_and_items(amazon_folder: Path, tmp_path: Path) -> None:
    interactions_path, items_path = convert_amazon(amazon_folder, tmp_path / "out")
    assert interactions_path.read_text(encoding="utf-8").splitlines() == [
        "user_id,item_id,timestamp",
        "U1,A1,0",
        "U1,A2,1",
        "U1,A3,2",
        "U2,A3,0",
        "U2,A1,1",
    ]
    catalog = read_catalog(items_path)
    assert catalog.ids == ["A1", "A2", "A3"]
    assert catalog.titles == ["Solder wire 60/40, 1 lb", "Flux pen", "No sentence break here"]
    assert catalog.texts[0] == "Solder wire 60/40, 1 lb. Industrial & Scientific Soldering. Kester."
    split = leave_last_out(read_interactions(interactions_path).sequences())
    assert split.test == {"U1": "A3", "U2": "A1"}
    assert split.train == {"U1": ["A1", "A2"], "U2": ["A3"]}


def test_convert_amazon_refuses_a_bad_history(amazon_folder: Path, tmp_path: Path) -> None:
    _write(amazon_folder, "valid.jsonl", json.dumps({"user": "U1", "history": "A1", "target": "A2"}) + "\n")
    with pytest.raises(InvalidInput, match=r"valid.jsonl:1: expected 'history' to be a list of item ids"):
        convert_amazon(amazon_folder, tmp_path / "out")
    _write(amazon_folder, "valid.jsonl", json.dumps({"user": "U1", "target": "A2"}) + "\n")
    with pytest.raises(InvalidInput, match=r"expected column\(s\) history; found user, target"):
        convert_amazon(amazon_folder, tmp_path / "out")


def test_convert_movielens_keeps_ratings_and_adds_genres(tmp_path: Path) -> None:
    folder = tmp_path / "ml"
    folder.mkdir()
    _write(
        folder,
        "ratings.csv",
        "user_id,item_id,rating,timestamp,cv_fold_u1_to_u5\n7,1,4,900,1\n7,2,2,800,2\n8,1,5,700,1\n",
    )
    _write(
        folder,
        "items.csv",
        "item_id,title,release_date,genres\n"
        "1,Toy Story (1995),01-Jan-1995,Animation|Children's|Comedy\n"
        "2,unknown,,\n",
    )
    interactions_path, items_path = convert_movielens(folder, tmp_path / "out")
    data = read_interactions(interactions_path)
    assert list(data.values) == [4.0, 2.0, 5.0]
    assert data.sequences() == {"7": ["2", "1"], "8": ["1"]}
    assert read_interactions(interactions_path, min_rating=4).sequences() == {"7": ["1"], "8": ["1"]}
    catalog = read_catalog(items_path)
    assert catalog.titles == ["Toy Story (1995)", "unknown"]
    assert catalog.texts == ["Toy Story (1995). genres: Animation, Children's, Comedy", "unknown"]


def test_convert_real_amazon(tmp_path: Path) -> None:
    folder = shared_data("amazon_scientific/valid.jsonl").parent
    interactions_path, items_path = convert_amazon(folder, tmp_path)
    catalog = read_catalog(items_path)
    sequences = read_interactions(interactions_path).sequences()
    assert len(catalog) == 4385 and len(sequences) == 8442
    with (folder / "valid.jsonl").open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    assert all(sequences[r["user"]] == [*r["history"], r["target"]] for r in rows)
    assert all(item in catalog.index for items in sequences.values() for item in items)


def test_convert_real_movielens(tmp_path: Path) -> None:
    folder = shared_data("movielens_100k/ratings.csv").parent
    interactions_path, items_path = convert_movielens(folder, tmp_path)
    data = read_interactions(interactions_path)
    catalog = read_catalog(items_path)
    assert len(data) == 100_000 and len(data.sequences()) == 943 and len(catalog) == 1682
    assert int(np.sum(data.values >= 4)) == 34_174 + 21_201
    assert catalog.texts[0] == "Toy Story (1995). genres: Animation, Children's, Comedy"
