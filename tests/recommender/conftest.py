"""Fixtures of the recommender's tests: a migrated database on SQLite and PostgreSQL, a small themed catalog
with behaviour that stays within each theme, settings for the app, and a model trained by the CLI.

The database URL fixtures (`sqlite_url`, `postgres_url`, `database_url`) and `tiny_model_dir` come from
tests/conftest.py.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from recommender import events as events_module
from recommender.cli import app as cli_app
from recommender.database import Database
from recommender.events import EventRecord
from recommender.settings import RecommenderSettings
from recommender.tables import Item
from tests.conftest import migrated
from textcore import EncoderSettings

THEMES: dict[str, list[tuple[str, str]]] = {
    "astro": [
        ("Refractor telescope with glass lenses", "A 70 mm telescope for astronomy and stargazing."),
        ("Star chart of the northern sky", "Find constellations and planets for astronomy nights."),
        ("Telescope eyepiece 25 mm", "An eyepiece lens for a telescope."),
        ("Moon filter for telescopes", "Reduces glare when observing the moon."),
        ("Astronomy binoculars", "Wide-field binoculars for stargazing."),
    ],
    "lab": [
        ("Graduated pipette 10 ml", "A glass pipette for measuring liquids in the chemistry lab."),
        ("Glass beaker set", "Borosilicate beakers for chemistry experiments."),
        ("Benchtop centrifuge", "Spins sample tubes in the laboratory."),
        ("Nitrile lab gloves", "Disposable gloves for laboratory work."),
        ("Test tube rack", "Holds test tubes upright on the lab bench."),
    ],
    "garden": [
        ("Pruning shears", "Sharp shears for cutting branches in the garden."),
        ("Watering can 5 litres", "Waters flowers and vegetables in the garden."),
        ("Tomato seeds", "Heirloom tomato seeds for a vegetable garden."),
        ("Garden hose reel", "Keeps the garden hose tidy."),
        ("Compost bin", "Turns kitchen scraps into compost for the garden."),
    ],
    "kitchen": [
        ("Chef knife 20 cm", "A steel knife for cooking and chopping vegetables."),
        ("Cast iron skillet", "A heavy pan for frying and baking."),
        ("Wooden cutting board", "A board for chopping food in the kitchen."),
        ("Measuring cups set", "Cups for measuring flour and sugar when baking."),
        ("Stand mixer", "Mixes dough and batter in the kitchen."),
    ],
}
USERS_PER_THEME = 4


def item_id(theme: str, k: int) -> str:
    """The id of a theme's k-th item, e.g. ``astro-0``."""
    return f"{theme}-{k}"


def catalog_items() -> list[dict[str, Any]]:
    """The 20 catalog items as API bodies."""
    return [
        {"id": item_id(theme, k), "title": title, "text": text, "categories": [theme]}
        for theme, entries in THEMES.items()
        for k, (title, text) in enumerate(entries)
    ]


def theme_of(item: str) -> str:
    """The theme of an item id."""
    return item.rsplit("-", 1)[0]


def user_histories() -> dict[str, list[str]]:
    """16 users, 4 per theme; each clicks every item of their theme once, in a rotated order."""
    histories = {}
    for theme, entries in THEMES.items():
        for u in range(USERS_PER_THEME):
            order = [(u + step) % len(entries) for step in range(len(entries))]
            histories[f"{theme}-user-{u}"] = [item_id(theme, k) for k in order]
    return histories


def event_bodies(
    histories: dict[str, list[str]] | None = None, start: int = 1_700_000_000
) -> list[dict[str, Any]]:
    """Click events of the histories as API bodies, one minute apart (Unix-second timestamps)."""
    return [
        {"user_id": user, "item_id": item, "timestamp": start + 60 * step, "type": "click"}
        for user, items in (histories or user_histories()).items()
        for step, item in enumerate(items)
    ]


def write_catalog(path: Path) -> Path:
    """The catalog as a CSV file (item_id, title, text, categories, brand)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "title", "text", "categories", "brand"])
        for item in catalog_items():
            writer.writerow([item["id"], item["title"], item["text"], "|".join(item["categories"]), "Acme"])
    return path


def write_interactions(path: Path, histories: dict[str, list[str]] | None = None) -> Path:
    """The histories as an interactions CSV file (user_id, item_id, timestamp)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id", "timestamp"])
        for event in event_bodies(histories):
            writer.writerow([event["user_id"], event["item_id"], event["timestamp"]])
    return path


def rec_settings(tmp_path: Path, database_url: str, encoder: str | Path, **more: Any) -> RecommenderSettings:
    """Settings for a test app: CPU, fp32, the index in `tmp_path`."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "index_path": tmp_path / "index" / "items.index.npz",
        "encoder": EncoderSettings(model=str(encoder), device="cpu", precision="fp32"),
    }
    return RecommenderSettings(**(values | more))


def invoke(*args: object, env: dict[str, str] | None = None) -> Result:
    """Run the `recommender` command in process."""
    return CliRunner().invoke(cli_app, [str(a) for a in args], env=env)


def last_json(result: Result) -> dict[str, Any]:
    """The JSON object on the last stdout line of a successful command."""
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert isinstance(report, dict)
    return report


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A migrated database on each backend."""
    with migrated(Database(database_url)) as db:
        yield db


@pytest.fixture(scope="session")
def trained_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT fine-tuned on the themed behaviour by `recommender train` (a few seconds)."""
    folder = tmp_path_factory.mktemp("rec-train")
    result = invoke(
        "train", "--interactions", write_interactions(folder / "interactions.csv"),
        "--items", write_catalog(folder / "items.csv"), "--output", folder / "model",
        "--base-model", tiny_model_dir, "--epochs", 1, "--batch-size", 8, "--max-pairs", 64,
        "--learning-rate", 1e-3, "--max-length", 48, "--device", "cpu", "--precision", "fp32",
    )  # fmt: skip
    report = last_json(result)
    assert report["output"] == str(folder / "model")
    return folder / "model"


def store_unchecked(url: str, item_id: str, user_id: str) -> None:
    """Store an item and one event of a user under ids as an earlier version stored them, past the rules
    requests and files are held to now (the migrated database, written directly)."""
    db = Database(url)
    try:
        db.migrate()
        with db.session() as session:
            session.add(Item(id=item_id, title="Telescope mount"))
        moment = datetime(2026, 1, 1, tzinfo=UTC)
        events_module.ingest_events(db, [EventRecord(user_id, item_id, moment)])
    finally:
        db.dispose()
