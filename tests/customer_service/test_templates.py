"""Answer templates: loading TOML and JSON, slots, customer text kept as data, bad templates refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from customer_service.templates import TemplateStore
from textcore import InvalidInput

TOML = '''
greeting = "Hello! How can I help you today?"
track_order = "Order {{ order_id }} ships on {{ day }}."
optional = "Hi {{ name | default('there') }}{% if city is defined %} from {{ city }}{% endif %}."
"faq-3f2a9c01d4e5" = """
Cards are blocked at once from the app: Cards > Block.
"""
'''


@pytest.fixture
def store(tmp_path: Path) -> TemplateStore:
    path = tmp_path / "templates.toml"
    path.write_text(TOML, encoding="utf-8")
    return TemplateStore.load(path)


def test_toml_templates_render_with_slots(store: TemplateStore) -> None:
    assert len(store) == 4
    assert "greeting" in store
    assert list(store) == sorted(["greeting", "track_order", "optional", "faq-3f2a9c01d4e5"])
    assert store.render("greeting") == "Hello! How can I help you today?"
    assert store.render("track_order", {"order_id": "A-17", "day": "Monday"}) == "Order A-17 ships on Monday."
    assert store.render("faq-3f2a9c01d4e5") == "Cards are blocked at once from the app: Cards > Block."


def test_optional_slots_and_missing_ones(store: TemplateStore, caplog: pytest.LogCaptureFixture) -> None:
    assert store.render("optional") == "Hi there."
    assert store.render("optional", {"name": "Ada", "city": "Leeds"}) == "Hi Ada from Leeds."
    with caplog.at_level(logging.WARNING, logger="customer_service.templates"):
        assert store.render("track_order", {"order_id": "A-17"}) is None  # `day` missing: no hole in the text
    assert "day" in caplog.text
    assert store.render("no-such-key") is None


@pytest.mark.parametrize(
    "value",
    [
        "{{ 7*7 }}",
        "{{ ''.__class__.__mro__ }}",
        "{% for x in range(3) %}x{% endfor %}",
        "{{ config }}",
        "<b>bold</b> & {{",
    ],
)
def test_customer_text_in_a_slot_is_rendered_literally(store: TemplateStore, value: str) -> None:
    assert (
        store.render("track_order", {"order_id": value, "day": "Monday"}) == f"Order {value} ships on Monday."
    )


def test_the_sandbox_stops_a_template_reaching_python_internals() -> None:
    store = TemplateStore(
        {
            "escape": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "mutate": "{% set xs = [1] %}{{ xs.append(2) }}",
            "divide": "{{ 1 / 0 }}",
        }
    )
    assert store.render("escape") is None
    assert store.render("mutate") is None  # the immutable sandbox refuses to modify even template lists
    assert store.render("divide") is None


def test_json_templates(tmp_path: Path) -> None:
    path = tmp_path / "templates.json"
    path.write_text(json.dumps({"refund": "Refunds take {{ days }} days."}), encoding="utf-8")
    assert TemplateStore.load(path).render("refund", {"days": "5"}) == "Refunds take 5 days."


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.toml", 'broken = "Hello {{ name "\n', r"template 'broken' line 1: .*"),
        ("bad.toml", 'unclosed = "{% if x %}open"\n', r"template 'unclosed' line 1: .*endif"),
        ("nested.toml", '[faq]\n"1" = "x"\n', r"template 'faq': expected a string; found dict"),
        ("list.json", '["a", "b"]', r"expected a table of key -> template; found list"),
        ("number.json", '{"a": 3}', r"template 'a': expected a string; found int"),
        ("blank.json", '{" ": "x"}', r"expected template keys of 1 to 200 characters; found ' '"),
        ("syntax.toml", "a = ", r"expected UTF-8 TOML templates"),
        ("syntax.json", "{", r"expected UTF-8 JSON templates"),
        (
            "templates.yaml",
            "a: b",
            r"expected a template file ending in .toml or .json; found 'templates.yaml'",
        ),
    ],
)
def test_bad_template_files_are_refused_naming_the_problem(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidInput, match=message):
        TemplateStore.load(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="it does not exist"):
        TemplateStore.load(tmp_path / "absent.toml")
