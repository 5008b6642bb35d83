"""The stores behind the API: sources, rules, alerts, documents, and the config file, on both backends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, update

from finance_sentiment.config import MonitorConfig, apply_config, load_config
from finance_sentiment.database import Database
from finance_sentiment.documents import DocumentFilter, document_page, encode_cursor, list_documents
from finance_sentiment.rules import (
    alerts_out,
    create_rule,
    delete_rule,
    get_rule,
    list_alerts,
    list_rules,
    update_rule,
    upsert_rule,
)
from finance_sentiment.schemas import (
    AlertRuleIn,
    AlertRuleOut,
    AlertRulePatch,
    ClassifyIn,
    SourceIn,
    SourceOut,
    SourcePatch,
)
from finance_sentiment.sources import (
    create_source,
    delete_source,
    get_source,
    list_sources,
    update_source,
    upsert_source,
)
from finance_sentiment.tables import Alert, AlertRule, Document, DocumentTag, OutboxMessage, Source
from textcore.errors import Conflict, InvalidInput, NotFound

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "finance_monitor.toml"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FEED = "http://127.0.0.1:8765/feed.rss"
HOOK = "http://127.0.0.1:9000/hooks/risk"


# --- sources --------------------------------------------------------------------------------------


def test_source_crud_round_trip(database: Database) -> None:
    with database.session() as session:
        created = create_source(session, SourceIn(name=" wire ", url=FEED, kind="rss", topics=["earnings"]))
        source_id = created.id
    with database.session() as session:
        out = SourceOut.model_validate(get_source(session, source_id))
        assert (out.name, out.url, out.kind, out.topics) == ("wire", FEED, "rss", ["earnings"])
        assert (out.interval_seconds, out.cron, out.enabled, out.consecutive_failures) == (900, None, True, 0)
        assert [source.name for source in list_sources(session)] == ["wire"]
        update_source(session, source_id, SourcePatch(name="markets", entities=["Tesla"]))
    with database.session() as session:
        out = SourceOut.model_validate(get_source(session, source_id))
        assert (out.name, out.entities, out.topics, out.url) == ("markets", ["Tesla"], ["earnings"], FEED)
        delete_source(session, source_id)
    with database.session() as session:
        assert list_sources(session) == []


def test_schedule_switch_url_change_and_reenable_reset_state(database: Database) -> None:
    with database.session() as session:
        source_id = create_source(session, SourceIn(name="wire", url=FEED, kind="rss")).id
    with database.session() as session:
        source = get_source(session, source_id)
        source.etag, source.last_modified = '"v1"', "Mon, 02 Mar 2026 09:00:00 GMT"
        source.enabled, source.disabled_reason, source.consecutive_failures = False, "HTTP 410 Gone", 7
    with database.session() as session:
        update_source(session, source_id, SourcePatch(cron="*/5 * * * *"))
        source = get_source(session, source_id)
        assert (source.cron, source.interval_seconds, source.etag) == ("*/5 * * * *", None, '"v1"')
        assert (source.enabled, source.disabled_reason) == (False, "HTTP 410 Gone")
        update_source(session, source_id, SourcePatch(url="https://127.0.0.1/other.rss", interval_seconds=60))
        assert (source.cron, source.interval_seconds, source.etag, source.last_modified) == (
            None,
            60,
            None,
            None,
        )
        update_source(session, source_id, SourcePatch(enabled=True))
        assert (source.enabled, source.disabled_reason, source.consecutive_failures) == (True, None, 0)


def test_duplicate_source_names_conflict(database: Database) -> None:
    with database.session() as session:
        create_source(session, SourceIn(name="wire", url=FEED, kind="rss"))
        other = create_source(session, SourceIn(name="other", url=FEED, kind="rss"))
        with pytest.raises(Conflict, match="'wire' already used"):
            create_source(session, SourceIn(name="wire", url=FEED, kind="json"))
        with pytest.raises(Conflict, match="'wire' already used"):
            update_source(session, other.id, SourcePatch(name="wire"))


def test_unknown_ids_are_not_found(database: Database) -> None:
    with database.session() as session:
        for call in (
            lambda: get_source(session, 4242),
            lambda: update_source(session, 4242, SourcePatch(enabled=False)),
            lambda: delete_source(session, 4242),
            lambda: get_rule(session, 4242),
            lambda: update_rule(session, 4242, AlertRulePatch(enabled=False)),
            lambda: delete_rule(session, 4242),
        ):
            with pytest.raises(NotFound, match="4242"):
                call()


BASE_SOURCE: dict[str, Any] = {"name": "wire", "url": FEED, "kind": "rss"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"link_pattern": "/news/"}, "link_pattern only with kind 'html'"),
        ({"kind": "html", "json_fields": {}}, "json_fields only with kind 'json'"),
        ({"interval_seconds": 60, "cron": "* * * * *"}, "at most one of interval_seconds and cron"),
        ({"cron": "* * * *"}, "5-field crontab expression"),
        ({"cron": "61 * * * *"}, "5-field crontab expression"),
        ({"kind": "html", "link_pattern": "(unclosed"}, "expected a Python regular expression"),
        ({"url": "ftp://127.0.0.1/feed"}, "expected an http:// or https:// URL"),
        ({"url": "http:///no-host"}, "expected an http:// or https:// URL"),
        ({"topics": [f"t{i}" for i in range(51)]}, "at most 50 items"),
        ({"entities": ["x" * 201]}, "at most 200 characters"),
        ({"name": "   "}, "at least 1 character"),
        ({"interval_seconds": 0}, "greater than or equal to 1"),
        ({"kind": "atom"}, "'rss', 'html' or 'json'"),
        ({"kind": "json", "json_fields": {"items": "data..x"}}, "should match pattern"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_sources_are_refused_with_the_reason(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SourceIn.model_validate(BASE_SOURCE | changes)


def test_patches_are_checked_alone_and_against_the_stored_source(database: Database) -> None:
    with pytest.raises(ValidationError, match="at most one of interval_seconds and cron"):
        SourcePatch(interval_seconds=60, cron="* * * * *")
    with pytest.raises(ValidationError, match="expected a value for url, found null"):
        SourcePatch.model_validate({"url": None})
    with pytest.raises(ValidationError, match="expected a Python regular expression"):
        SourcePatch(link_pattern="[")
    with database.session() as session:
        rss = create_source(session, SourceIn(name="wire", url=FEED, kind="rss"))
        html = create_source(session, SourceIn(name="page", url=FEED, kind="html", link_pattern="/a/"))
        with pytest.raises(
            InvalidInput, match=r"source \d+ \('wire'\): source: .*link_pattern only with kind"
        ):
            update_source(session, rss.id, SourcePatch(link_pattern="/news/"))
        with pytest.raises(InvalidInput, match="link_pattern only with kind 'html', found kind 'rss'"):
            update_source(session, html.id, SourcePatch(kind="rss"))
        update_source(session, html.id, SourcePatch(kind="rss", link_pattern=None))  # cleared explicitly
        assert (html.kind, html.link_pattern) == ("rss", None)


# --- alert rules and alerts -----------------------------------------------------------------------


def test_rule_crud_keeps_the_secret_write_only(database: Database) -> None:
    with database.session() as session:
        rule = create_rule(session, AlertRuleIn(name="banks", match=["JPM"], webhook_url=HOOK, secret="s3"))
        rule_id = rule.id
    with database.session() as session:
        out = AlertRuleOut.model_validate(get_rule(session, rule_id))
        assert out.has_secret and "secret" not in out.model_dump()
        assert (out.group_by, out.window_seconds, out.method, out.receiver) == (
            "entity",
            3600,
            "ewma",
            "finance-sentiment",
        )
        update_rule(session, rule_id, AlertRulePatch(z_threshold=2.5, match=["JPM", "GS"]))
        assert get_rule(session, rule_id).secret == "s3"  # untouched when not sent
        update_rule(session, rule_id, AlertRulePatch.model_validate({"secret": None}))
    with database.session() as session:
        out = AlertRuleOut.model_validate(get_rule(session, rule_id))
        assert (out.has_secret, out.z_threshold, out.match) == (False, 2.5, ["JPM", "GS"])
        with pytest.raises(InvalidInput, match="empty match list when group_by is 'all'"):
            update_rule(session, rule_id, AlertRulePatch(group_by="all"))
        create_rule(session, AlertRuleIn(name="tech", webhook_url=HOOK))
        with pytest.raises(Conflict, match="'tech' already used"):
            update_rule(session, rule_id, AlertRulePatch(name="tech"))
        with pytest.raises(Conflict, match="'banks' already used"):
            create_rule(session, AlertRuleIn(name="banks", webhook_url=HOOK))
        delete_rule(session, rule_id)
        assert [rule.name for rule in list_rules(session)] == ["tech"]


def test_a_rules_sentiment_drop_is_optional_set_and_cleared(database: Database) -> None:
    with database.session() as session:
        rule_id = create_rule(session, AlertRuleIn(name="banks", webhook_url=HOOK)).id
        assert AlertRuleOut.model_validate(get_rule(session, rule_id)).min_sentiment_drop is None
        update_rule(session, rule_id, AlertRulePatch(min_sentiment_drop=0.3))
    with database.session() as session:
        assert AlertRuleOut.model_validate(get_rule(session, rule_id)).min_sentiment_drop == 0.3
        update_rule(session, rule_id, AlertRulePatch.model_validate({"min_sentiment_drop": None}))
        assert get_rule(session, rule_id).min_sentiment_drop is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"webhook_url": "ftp://127.0.0.1/x"}, "expected an http:// or https:// URL"),
        ({"min_negative_share": 1.5}, "less than or equal to 1"),
        ({"z_threshold": 0}, "greater than 0"),
        ({"min_sentiment_drop": 2.5}, "less than or equal to 2"),
        ({"method": "mean"}, "'ewma' or 'robust_z'"),
        ({"match": ["x"] * 101}, "at most 100 items"),
        ({"secret": "s" * 501}, "at most 500 characters"),
        ({"group_by": "all", "match": ["JPM"]}, "empty match list"),
    ],
)
def test_bad_rules_are_refused_with_the_reason(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AlertRuleIn.model_validate({"name": "r", "webhook_url": HOOK} | changes)


def test_classify_input_is_bounded() -> None:
    assert ClassifyIn(texts=["rates rise"]).texts == ["rates rise"]
    for texts, message in (
        ([], "at least 1 item"),
        (["x"] * 257, "at most 256"),
        (["x" * 10_001], "at most 10000"),
    ):
        with pytest.raises(ValidationError, match=message):
            ClassifyIn(texts=texts)


def test_alerts_are_listed_newest_first_with_rule_names_and_deliveries(database: Database) -> None:
    with database.session() as session:
        banks = create_rule(session, AlertRuleIn(name="banks", webhook_url=HOOK))
        tech = create_rule(session, AlertRuleIn(name="tech", webhook_url=HOOK))
        alerts = [
            Alert(rule_id=rule.id, fingerprint=f"f{i}", labels={"entity": f"e{i}"}, annotations={},
                  status=status, starts_at=T0 + timedelta(minutes=i))
            for i, (rule, status) in enumerate([(banks, "resolved"), (tech, "firing"), (banks, "firing")])
        ]  # fmt: skip
        session.add_all(alerts)
        session.flush()
        for key, delivered, expired in (
            ("a", True, False),
            ("b", False, False),
            ("c", False, True),
            ("d", True, False),
        ):
            session.add(
                OutboxMessage(alert_id=alerts[2].id, rule_id=banks.id, idempotency_key=key, url=HOOK,
                              payload={}, expires_at=T0 + timedelta(days=1), expired=expired,
                              delivered_at=T0 if delivered else None)
            )  # fmt: skip
    with database.session() as session:
        listed = list_alerts(session)
        assert [alert.fingerprint for alert in listed] == ["f2", "f1", "f0"]
        assert [a.fingerprint for a in list_alerts(session, status="firing", rule_id=banks.id)] == ["f2"]
        assert [a.fingerprint for a in list_alerts(session, limit=1)] == ["f2"]
        out = alerts_out(session, listed)
        assert [(a.rule, a.status) for a in out] == [
            ("banks", "firing"),
            ("tech", "firing"),
            ("banks", "resolved"),
        ]
        assert (out[0].deliveries.delivered, out[0].deliveries.pending, out[0].deliveries.expired) == (
            2,
            1,
            1,
        )
        assert out[1].deliveries.model_dump() == {
            "pending": 0,
            "delivered": 0,
            "expired": 0,
            "last_error": None,
        }
        with pytest.raises(InvalidInput, match="expected status 'firing' or 'resolved', found 'open'"):
            list_alerts(session, status="open")
        with pytest.raises(InvalidInput, match=r"limit in 1\.\.1000"):
            list_alerts(session, limit=0)


# --- documents ------------------------------------------------------------------------------------


def _seed_documents(database: Database) -> tuple[int, int]:
    """Seven documents from two sources; three share one seen_at so that the id breaks the tie."""
    with database.session() as session:
        wire = create_source(session, SourceIn(name="wire", url=FEED, kind="rss"))
        page = create_source(session, SourceIn(name="page", url=FEED, kind="html"))
        minutes = [0, 10, 10, 10, 20, 30, 40]
        for i, minute in enumerate(minutes):
            tags = [DocumentTag(kind="topic", name="earnings" if i % 2 else "layoffs")]
            if i in {1, 4, 5}:
                tags.append(DocumentTag(kind="entity", name="Tesla"))
            label = "negative" if i in {2, 5} else "neutral"
            session.add(
                Document(source_id=wire.id if i < 4 else page.id, url=f"http://127.0.0.1/{i}",
                         content_hash=f"h{i}", title=f"title {i}", text=f"text {i}", tags=tags, label=label,
                         seen_at=T0 + timedelta(minutes=minute), scores={"neutral": 1.0}, sentiment=0.0,
                         model_version="m1")
            )  # fmt: skip
        return wire.id, page.id


def _titles(database: Database, where: DocumentFilter) -> list[str]:
    with database.session() as session:
        documents, _ = list_documents(session, where)
        return [document.title for document in documents]


def test_documents_filter_by_source_tag_label_and_time(database: Database) -> None:
    wire, page = _seed_documents(database)
    assert _titles(database, DocumentFilter()) == [f"title {i}" for i in (6, 5, 4, 3, 2, 1, 0)]
    assert _titles(database, DocumentFilter(source_id=page)) == ["title 6", "title 5", "title 4"]
    assert _titles(database, DocumentFilter(topic="earnings")) == ["title 5", "title 3", "title 1"]
    assert _titles(database, DocumentFilter(entity="Tesla")) == ["title 5", "title 4", "title 1"]
    assert _titles(database, DocumentFilter(entity="Tesla", topic="earnings", source_id=wire)) == ["title 1"]
    assert _titles(database, DocumentFilter(label="negative")) == ["title 5", "title 2"]
    since, until = T0 + timedelta(minutes=10), T0 + timedelta(minutes=30)
    assert _titles(database, DocumentFilter(since=since, until=until)) == [f"title {i}" for i in (4, 3, 2, 1)]
    assert _titles(database, DocumentFilter(topic="unknown")) == []
    with database.session() as session:
        page_out = document_page(*list_documents(session, DocumentFilter(entity="Tesla", limit=1)))
    first = page_out.items[0]
    assert (first.title, first.topics, first.entities, page_out.next_cursor is not None) == (
        "title 5",
        ["earnings"],
        ["Tesla"],
        True,
    )


def test_a_misspelt_label_is_refused_rather_than_answered_with_no_stories(database: Database) -> None:
    # label=neg answered an empty page, which reads as "no negative stories"; a label no stored story has
    # and that is none of the finance labels is a 422 naming the field. A finance label no story has yet,
    # and a label a stored story has (a model with labels of its own), are answered as before.
    _seed_documents(database)
    with database.session() as session, pytest.raises(InvalidInput, match="expected label to be one of"):
        list_documents(session, DocumentFilter(label="neg"))
    assert _titles(database, DocumentFilter(label="Positive")) == []
    with database.session() as session:
        session.execute(update(Document).where(Document.title == "title 3").values(label="mixed"))
    assert _titles(database, DocumentFilter(label="MIXED")) == ["title 3"]


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_a_cursor_walk_returns_every_document_exactly_once(database: Database, limit: int) -> None:
    _seed_documents(database)
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        with database.session() as session:
            documents, cursor = list_documents(session, DocumentFilter(limit=limit, cursor=cursor))
        seen.extend(document.id for document in documents)
        pages += 1
        assert len(documents) <= limit and pages <= 10
        if cursor is None:
            break
    with database.session() as session:
        expected = session.scalars(
            select(Document.id).order_by(Document.seen_at.desc(), Document.id.desc())
        ).all()
        assert session.scalar(select(func.count()).select_from(Document)) == 7
    assert seen == list(expected)
    assert pages == -(-7 // limit)  # the last page is known to be last: no empty page after it


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64!",
        "e30",  # {}
        encode_cursor(T0, 1)[:-3],
        "WyJub3QgYSB0aW1lIiwxXQ",  # ["not a time",1]
        "WyIyMDI2LTAzLTAyVDA5OjAwOjAwIiwxXQ",  # naive time
        "WyIyMDI2LTAzLTAyVDA5OjAwOjAwKzAwOjAwIiwiMSJd",  # id as a string
        encode_cursor(T0, 2**70),  # an id no row can have
        encode_cursor(datetime(1, 1, 1, tzinfo=UTC), 1),  # a time no row can have
        "A" * 400,
    ],
)
def test_malformed_cursors_are_refused(database: Database, cursor: str) -> None:
    with (
        database.session() as session,
        pytest.raises(InvalidInput, match="expected a cursor returned as next_cursor"),
    ):
        list_documents(session, DocumentFilter(cursor=cursor))


def test_document_filters_check_themselves() -> None:
    with pytest.raises(InvalidInput, match=r"limit in 1\.\.500, found 501"):
        DocumentFilter(limit=501)
    with pytest.raises(InvalidInput, match="timezone-aware since"):
        DocumentFilter(since=datetime(2026, 1, 1))
    with pytest.raises(InvalidInput, match="expected since from 1900-01-01"):
        DocumentFilter(since=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))))
    with pytest.raises(InvalidInput, match=r"source_id in 1\.\."):
        DocumentFilter(source_id=2**63)
    assert DocumentFilter(
        since=datetime(2026, 1, 1, 5, tzinfo=timezone(timedelta(hours=5)))
    ).since == T0.replace(month=1, day=1, hour=0)  # kept in UTC
    with pytest.raises(InvalidInput, match="since before until"):
        DocumentFilter(since=T0, until=T0)


# --- config file ----------------------------------------------------------------------------------


def test_the_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert {source.kind for source in config.sources} == {"rss", "html", "json"}
    assert [topic.name for topic in config.topics] == ["earnings", "interest rates", "layoffs"]
    assert all(rule.webhook_url == "http://127.0.0.1:9000/hooks/risk" for rule in config.alert_rules)
    tesla = next(spec for spec in config.entity_specs() if spec.name == "Tesla")
    assert (tesla.ticker, tesla.aliases) == ("TSLA", ("Tesla Motors",))
    assert config.topic_specs()[0].keywords[0] == "earnings"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD_TOML = f"""
[[sources]]
name = "wire"
url = "{FEED}"
kind = "rss"
topics = ["earnings"]

[[alert_rules]]
name = "banks"
match = ["JPM"]
webhook_url = "{HOOK}"

[[entities]]
name = "JPMorgan Chase"
ticker = "JPM"
"""


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.toml", 'sources = [\n  { name = "wire" \n', r"bad\.toml.*expected valid UTF-8 TOML"),
        ("bad.json", '{"sources": [', r"bad\.json.*expected valid UTF-8 JSON"),
        ("list.json", "[]", "expected a JSON object at the top, found list"),
        (
            "url.toml",
            GOOD_TOML.replace(FEED, "ftp://127.0.0.1/x"),
            r"url\.toml.*sources\[0\]\.url: .*http://",
        ),
        ("extra.toml", GOOD_TOML + "\n[[widgets]]\nname = 'x'\n", r"widgets: Extra inputs are not permitted"),
        (
            "dup.toml",
            GOOD_TOML + GOOD_TOML.split("[[alert_rules]]", maxsplit=1)[0],
            "unique names in sources, found 'wire'",
        ),
        ("topic.toml", "[[topics]]\nname = 'rates'\n", r"topics\[0\]: .*keywords or a description"),
        ("ticker.toml", "[[entities]]\nname = 'X'\nticker = 'A B'\n", r"entities\[0\]: .*expected a ticker"),
        ("config.yaml", "sources: []", "ending in .toml or .json"),
    ],
)
def test_bad_config_files_name_the_file_and_the_field(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        load_config(_write(tmp_path, name, text))


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"cannot read config file .*absent\.toml"):
        load_config(tmp_path / "absent.toml")


def test_json_config_matches_toml(tmp_path: Path) -> None:
    from_toml = load_config(_write(tmp_path, "c.toml", GOOD_TOML))
    from_json = load_config(_write(tmp_path, "c.json", json.dumps(from_toml.model_dump(mode="json"))))
    assert from_json == from_toml


def test_apply_config_is_idempotent_and_upserts_by_name(database: Database) -> None:
    config = load_config(EXAMPLE)
    with database.session() as session:
        apply_config(session, config, EXAMPLE)
    with database.session() as session:
        before = {s.name: s.updated_at for s in list_sources(session)} | {
            r.name: r.updated_at for r in list_rules(session)
        }
        # The monitor disabled one source itself; re-applying the unchanged file must not resume it.
        wire = session.scalars(select(Source).where(Source.name == "markets wire")).one()
        wire.enabled, wire.disabled_reason = False, "HTTP 410 Gone"
    with database.session() as session:
        apply_config(session, config, EXAMPLE)
    with database.session() as session:
        after = {s.name: s.updated_at for s in list_sources(session)} | {
            r.name: r.updated_at for r in list_rules(session)
        }
        assert len(before) == 5
        assert {k: v for k, v in after.items() if k != "markets wire"} == {
            k: v for k, v in before.items() if k != "markets wire"
        }
        assert session.scalars(select(Source.enabled).where(Source.name == "markets wire")).one() is False
    changed = MonitorConfig.model_validate(
        config.model_dump()
        | {
            "sources": [config.sources[0].model_dump() | {"url": "http://127.0.0.1:8765/feeds/fixed.rss"}],
            "alert_rules": [config.alert_rules[0].model_dump() | {"min_count": 9}],
        }
    )
    with database.session() as session:
        apply_config(session, changed, EXAMPLE)
    with database.session() as session:
        wire = session.scalars(select(Source).where(Source.name == "markets wire")).one()
        assert (wire.url, wire.enabled, wire.disabled_reason) == (
            "http://127.0.0.1:8765/feeds/fixed.rss",
            True,
            None,
        )
        assert (
            session.scalars(select(AlertRule.min_count).where(AlertRule.name == "banks negative spike")).one()
            == 9
        )
        assert session.scalar(select(func.count()).select_from(Source)) == 3  # sources only in the DB stay


def test_upsert_creates_then_updates_in_place(database: Database) -> None:
    with database.session() as session:
        first = upsert_source(session, SourceIn(name="wire", url=FEED, kind="rss"), "monitor.toml")
        again = upsert_source(
            session, SourceIn(name="wire", url=FEED, kind="rss", cron="0 * * * *"), "monitor.toml"
        )
        rule = upsert_rule(session, AlertRuleIn(name="r", webhook_url=HOOK), "monitor.toml")
        rule_again = upsert_rule(
            session, AlertRuleIn(name="r", webhook_url=HOOK, method="robust_z"), "monitor.toml"
        )
        assert (first.id, again.cron, again.interval_seconds) == (again.id, "0 * * * *", None)
        assert (rule.id, rule_again.method) == (rule_again.id, "robust_z")
