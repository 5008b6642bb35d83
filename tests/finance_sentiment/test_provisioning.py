"""The config file as the source of truth for the sources and rules it provisions, on both backends: one it
no longer declares is disabled (kept, with its documents and alerts), one it declares again follows it, and
the ones created through the API are never touched."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from finance_sentiment import create_app
from finance_sentiment.alerting import evaluate_rules
from finance_sentiment.config import MonitorConfig, apply_config
from finance_sentiment.database import Database
from finance_sentiment.rules import DROPPED_RULE, create_rule, list_rules, update_rule
from finance_sentiment.schemas import AlertRuleIn, AlertRulePatch, SourceIn, SourcePatch
from finance_sentiment.settings import FetchSettings, FinanceSentimentSettings
from finance_sentiment.sources import DROPPED_SOURCE, create_source, list_sources, update_source
from finance_sentiment.tables import AlertRule, Document, Source
from tests.finance_sentiment.test_alerting import MINUTE, NOW, fire

FEED = "http://127.0.0.1:8765/feed.rss"
HOOK = "http://127.0.0.1:9000/hooks/risk"


def _config(sources: dict[str, dict[str, Any]], rules: dict[str, dict[str, Any]]) -> MonitorConfig:
    return MonitorConfig(
        sources=[SourceIn(name=name, url=FEED, kind="rss", **more) for name, more in sources.items()],
        alert_rules=[AlertRuleIn(name=name, webhook_url=HOOK, **more) for name, more in rules.items()],
    )


def _apply(database: Database, config: MonitorConfig, file: str = "monitor.toml") -> None:
    with database.session() as session:
        apply_config(session, config, file)


def _sources(database: Database) -> dict[str, tuple[bool, str | None, str]]:
    with database.session() as session:
        return {s.name: (s.enabled, s.disabled_reason, s.managed_by) for s in list_sources(session)}


def _rules(database: Database) -> dict[str, tuple[bool, str | None, str]]:
    with database.session() as session:
        return {r.name: (r.enabled, r.disabled_reason, r.managed_by) for r in list_rules(session)}


def _stamps(session: Session) -> dict[str, datetime]:
    """When each source and alert rule was last changed, by name (a rule's stamp wins a shared name)."""
    sources = {row.name: row.updated_at for row in list_sources(session)}
    return sources | {row.name: row.updated_at for row in list_rules(session)}


def _document(source_id: int) -> Document:
    return Document(
        source_id=source_id,
        url="https://news.example/1",
        content_hash="0" * 64,
        title="t",
        text="t",
        label="neutral",
        scores={"neutral": 1.0},
        sentiment=0.0,
        model_version="m",
    )


def test_what_the_file_no_longer_declares_is_disabled_kept_and_logged(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    _apply(database, _config({"wire": {}, "desk": {}}, {"banks": {}, "tech": {}}))
    with database.session() as session:
        wire = session.scalars(select(Source).where(Source.name == "wire")).one()
        session.add(_document(wire.id))
        create_source(session, SourceIn(name="by hand", url=FEED, kind="rss"))
        create_rule(session, AlertRuleIn(name="by hand", webhook_url=HOOK))
    assert _sources(database) == {
        "wire": (True, None, "config"),
        "desk": (True, None, "config"),
        "by hand": (True, None, "api"),
    }
    with caplog.at_level(logging.WARNING, logger="finance_sentiment.config"):
        _apply(database, _config({"desk": {}}, {"tech": {}}))
    assert _sources(database) == {
        "wire": (False, DROPPED_SOURCE, "api"),
        "desk": (True, None, "config"),
        "by hand": (True, None, "api"),
    }
    assert _rules(database) == {
        "banks": (False, DROPPED_RULE, "api"),
        "tech": (True, None, "config"),
        "by hand": (True, None, "api"),
    }
    assert "source 'wire' (id 1) is no longer declared: disabled" in caplog.text
    assert "alert rule 'banks' (id 1) is no longer declared: it is disabled" in caplog.text
    assert "'by hand'" not in caplog.text and "'desk'" not in caplog.text
    with database.session() as session:  # kept, with its story
        assert session.scalars(select(Document.source_id)).all() == [wire.id]
        stamps = _stamps(session)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="finance_sentiment.config"):
        _apply(database, _config({"desk": {}}, {"tech": {}}))  # the next start: nothing changes
    assert caplog.text == ""
    with database.session() as session:
        assert _stamps(session) == stamps


def test_an_empty_file_disables_everything_it_provisioned(database: Database) -> None:
    _apply(database, _config({"wire": {}}, {"banks": {}}))
    _apply(database, MonitorConfig())
    assert _sources(database) == {"wire": (False, DROPPED_SOURCE, "api")}
    assert _rules(database) == {"banks": (False, DROPPED_RULE, "api")}


def test_what_the_file_declares_again_follows_the_file(database: Database) -> None:
    _apply(database, _config({"wire": {}, "desk": {}}, {"banks": {}, "tech": {}}))
    _apply(database, MonitorConfig())
    _apply(
        database, _config({"wire": {}, "desk": {"enabled": False}}, {"banks": {}, "tech": {"enabled": False}})
    )
    assert _sources(database) == {"wire": (True, None, "config"), "desk": (False, None, "config")}
    assert _rules(database) == {"banks": (True, None, "config"), "tech": (False, None, "config")}


def test_a_source_gone_for_good_stays_disabled_when_dropped_and_declared_again(database: Database) -> None:
    _apply(database, _config({"wire": {}, "desk": {"enabled": False}}, {}))
    with database.session() as session:  # as a 410 leaves it
        wire = session.scalars(select(Source).where(Source.name == "wire")).one()
        wire.enabled, wire.disabled_reason = False, "HTTP 410 Gone"
    _apply(database, MonitorConfig())
    # Disabled already: the 410 keeps its reason; one the file had disabled gets the file's.
    assert _sources(database) == {
        "wire": (False, "HTTP 410 Gone", "api"),
        "desk": (False, DROPPED_SOURCE, "api"),
    }
    _apply(database, _config({"wire": {}, "desk": {}}, {}))
    assert _sources(database) == {"wire": (False, "HTTP 410 Gone", "config"), "desk": (True, None, "config")}


def test_the_file_takes_over_an_api_source_or_rule_of_its_name(database: Database) -> None:
    with database.session() as session:
        create_source(session, SourceIn(name="wire", url=FEED, kind="rss", interval_seconds=60))
        create_rule(session, AlertRuleIn(name="banks", webhook_url=HOOK, min_count=2))
    _apply(database, _config({"wire": {"interval_seconds": 600}}, {"banks": {"min_count": 9}}))
    with database.session() as session:
        (source,), (rule,) = list_sources(session), list_rules(session)
        assert (source.interval_seconds, source.managed_by) == (600, "config")
        assert (rule.min_count, rule.managed_by) == (9, "config")
    _apply(database, MonitorConfig())
    assert _sources(database) == {"wire": (False, DROPPED_SOURCE, "api")}
    assert _rules(database) == {"banks": (False, DROPPED_RULE, "api")}


def test_an_api_change_keeps_the_file_in_charge_until_it_drops_the_row(database: Database) -> None:
    _apply(database, _config({"wire": {"interval_seconds": 600}}, {"banks": {}}))
    with database.session() as session:
        (source,), (rule,) = list_sources(session), list_rules(session)
        update_source(session, source.id, SourcePatch(interval_seconds=60))
        update_rule(session, rule.id, AlertRulePatch(enabled=False))
        assert (source.managed_by, rule.managed_by) == ("config", "config")
    _apply(database, _config({"wire": {"interval_seconds": 600}}, {"banks": {}}))  # the file wins
    with database.session() as session:
        (source,), (rule,) = list_sources(session), list_rules(session)
        assert (source.interval_seconds, rule.enabled) == (600, True)
    _apply(database, MonitorConfig())
    with database.session() as session:  # dropped, then kept through the API: the file leaves it alone
        (source,), (rule,) = list_sources(session), list_rules(session)
        update_source(session, source.id, SourcePatch(enabled=True))
        update_rule(session, rule.id, AlertRulePatch(enabled=True))
    _apply(database, MonitorConfig())
    assert _sources(database) == {"wire": (True, None, "api")}
    assert _rules(database) == {"banks": (True, None, "api")}


def test_a_provisioned_source_renamed_through_the_api_counts_as_removed_from_the_file(
    database: Database,
) -> None:
    _apply(database, _config({"wire": {}}, {}))
    with database.session() as session:
        (source,) = list_sources(session)
        update_source(session, source.id, SourcePatch(name="wire (old)"))
    _apply(database, _config({"wire": {}}, {}))
    assert _sources(database) == {
        "wire (old)": (False, DROPPED_SOURCE, "api"),
        "wire": (True, None, "config"),
    }


def test_a_dropped_rules_firing_alert_is_resolved_as_when_disabled_through_the_api(
    database: Database,
) -> None:
    old = fire(database)  # the rule "entity-spike", firing about Acme
    same = {
        "window_seconds": 3600,
        "baseline_windows": 6,
        "min_negative_share": 0.4,
        "repeat_interval_seconds": 600,
        "receiver": "risk-team",
    }
    _apply(database, _config({}, {"entity-spike": same}))
    assert evaluate_rules(database, now=NOW + MINUTE) == []  # claimed, unchanged: still firing
    _apply(database, MonitorConfig())
    transitions = evaluate_rules(database, now=NOW + 2 * MINUTE)
    assert [(t.alert_id, t.status) for t in transitions] == [(old.alert_id, "resolved")]
    assert evaluate_rules(database, now=NOW + 3 * MINUTE) == []
    with database.session() as session:
        assert session.scalars(select(AlertRule.enabled)).all() == [False]


def _settings(
    tmp_path: Path, database_url: str, config: str, name: str = "monitor.toml"
) -> FinanceSentimentSettings:
    path = tmp_path / name
    path.write_text(config)
    fetch = FetchSettings(allowed_networks=("127.0.0.0/8",))
    return FinanceSentimentSettings(
        database_url=database_url,
        config_file=path,
        scheduler=False,
        fetch=fetch,
        registry=tmp_path / "registry",
    )


BOTH = f"""
[[sources]]
name = "wire"
url = "{FEED}"
kind = "rss"

[[alert_rules]]
name = "banks"
webhook_url = "{HOOK}"
"""


def test_the_api_says_which_rows_the_file_manages_and_why_one_was_disabled(
    tmp_path: Path, database_url: str
) -> None:
    settings = _settings(tmp_path, database_url, BOTH)
    with TestClient(create_app(settings)) as client:
        client.post("/v1/sources", json={"name": "by hand", "url": FEED, "kind": "rss"}).raise_for_status()
        client.post("/v1/alert-rules", json={"name": "by hand", "webhook_url": HOOK}).raise_for_status()
        listed = client.get("/v1/sources").json()
        assert [(s["name"], s["managed_by"]) for s in listed] == [("wire", "config"), ("by hand", "api")]
        rules = client.get("/v1/alert-rules").json()
        assert [(r["name"], r["managed_by"], r["disabled_reason"]) for r in rules] == [
            ("banks", "config", None),
            ("by hand", "api", None),
        ]
    assert settings.config_file is not None
    settings.config_file.write_text("")  # the operator removes both from the file and restarts
    with TestClient(create_app(settings)) as client:
        wire = client.get("/v1/sources/1").json()
        assert (wire["enabled"], wire["managed_by"], wire["disabled_reason"]) == (
            False,
            "api",
            DROPPED_SOURCE,
        )
        banks = client.get("/v1/alert-rules/1").json()
        assert (banks["enabled"], banks["managed_by"], banks["disabled_reason"]) == (
            False,
            "api",
            DROPPED_RULE,
        )
        assert client.get("/v1/sources/2").json()["enabled"] is True
        assert client.get("/v1/alert-rules/2").json()["enabled"] is True
        # Kept through the API: enabled again, it forgets why it was disabled.
        again = client.patch("/v1/alert-rules/1", json={"enabled": True}).json()
        assert (again["enabled"], again["disabled_reason"], again["managed_by"]) == (True, None, "api")
        # Read-only: the file alone makes a row its own.
        refused = client.patch("/v1/sources/2", json={"managed_by": "config"})
        assert refused.status_code == 422 and "managed_by" in refused.text


def test_a_file_leaves_the_sources_and_rules_of_another_file_alone(database: Database) -> None:
    # Two desks' files (or two cron jobs) on one database: each start disabled what the other file declared.
    _apply(database, _config({"rates wire": {}}, {"rates": {}}), "/etc/monitor/rates.toml")
    _apply(database, _config({"equities wire": {}}, {"equities": {}}), "/etc/monitor/equities.toml")
    _apply(database, _config({"rates wire": {}}, {"rates": {}}), "/etc/monitor/rates.toml")
    assert _sources(database) == {
        "rates wire": (True, None, "config"),
        "equities wire": (True, None, "config"),
    }
    assert _rules(database) == {"rates": (True, None, "config"), "equities": (True, None, "config")}

    _apply(database, MonitorConfig(), "/etc/monitor/rates.toml")  # the rates desk empties its own file
    assert _sources(database) == {
        "rates wire": (False, DROPPED_SOURCE, "api"),
        "equities wire": (True, None, "config"),
    }
    assert _rules(database) == {"rates": (False, DROPPED_RULE, "api"), "equities": (True, None, "config")}


def test_a_file_is_known_by_its_absolute_path(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _apply(database, _config({"wire": {}}, {}), str(tmp_path / "monitor.toml"))
    monkeypatch.chdir(tmp_path)
    _apply(database, _config({}, {}), "monitor.toml")  # the same file, named from its folder
    assert _sources(database) == {"wire": (False, DROPPED_SOURCE, "api")}


def test_a_name_two_files_declare_follows_the_last_one_applied_with_a_warning(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    _apply(database, _config({"wire": {}}, {"banks": {}}), "/etc/monitor/a.toml")
    with caplog.at_level(logging.WARNING, logger="finance_sentiment.config"):
        _apply(database, _config({"wire": {"enabled": False}}, {"banks": {}}), "/etc/monitor/b.toml")
    claimed = [r.getMessage() for r in caplog.records if "takes over" in r.getMessage()]
    assert claimed == [
        "config file /etc/monitor/b.toml: takes over 1 source and 1 alert rule of config file "
        "/etc/monitor/a.toml ('wire', 'banks'), which it declares too, and manages them from now on "
        "(declare each name in one file only; a file is known by its path, so give every process the same "
        "one)"
    ]
    assert _sources(database) == {"wire": (False, None, "config")}
    _apply(database, MonitorConfig(), "/etc/monitor/a.toml")  # no longer a's: a does not drop it
    assert _rules(database) == {"banks": (True, None, "config")}


def test_a_file_moved_to_a_new_path_says_what_it_claims_in_one_line(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # One warning per row: a 50-source file moved (or mounted at two paths by two replicas) logged 55 lines
    # at each start.
    config = _config({f"wire {i}": {} for i in range(50)}, {f"rule {i}": {} for i in range(5)})
    _apply(database, config, "/etc/monitor/monitor.toml")
    for path in ("/srv/config/monitor.toml", "/etc/monitor/monitor.toml"):  # moved; another replica's mount
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="finance_sentiment.config"):
            _apply(database, config, path)
        other = "/srv/config/monitor.toml" if path.startswith("/etc") else "/etc/monitor/monitor.toml"
        assert [r.getMessage() for r in caplog.records] == [
            f"config file {path}: takes over 50 sources and 5 alert rules of config file {other} "
            "('wire 0', 'wire 1', 'wire 2', 'wire 3', 'wire 4' and 50 more), which it declares too, and "
            "manages them from now on (declare each name in one file only; a file is known by its path, so "
            "give every process the same one)"
        ]
    assert {managed for _, _, managed in _sources(database).values()} == {"config"}
    assert len(_rules(database)) == 5


def test_a_row_provisioned_before_its_file_was_recorded_counts_as_the_next_files(database: Database) -> None:
    _apply(database, _config({"wire": {}, "desk": {}}, {}))
    with database.session() as session:  # as stored before the file's path was recorded
        for source in list_sources(session):
            source.config_file = None
    _apply(database, _config({"desk": {}}, {}), "/etc/monitor/other.toml")
    assert _sources(database) == {"wire": (False, DROPPED_SOURCE, "api"), "desk": (True, None, "config")}


def test_a_second_service_started_with_another_file_keeps_the_first_files_sources(
    tmp_path: Path, database_url: str
) -> None:
    rates = _settings(tmp_path, database_url, BOTH, "rates.toml")
    equities = BOTH.replace('"wire"', '"equities wire"').replace('"banks"', '"equities"')
    with TestClient(create_app(rates)) as client:
        assert [s["name"] for s in client.get("/v1/sources").json()] == ["wire"]
    with TestClient(create_app(_settings(tmp_path, database_url, equities, "equities.toml"))) as client:
        listed = client.get("/v1/sources").json()
        assert [(s["name"], s["enabled"], s["managed_by"]) for s in listed] == [
            ("wire", True, "config"),
            ("equities wire", True, "config"),
        ]
        rules = client.get("/v1/alert-rules").json()
        assert [(r["name"], r["enabled"], r["disabled_reason"]) for r in rules] == [
            ("banks", True, None),
            ("equities", True, None),
        ]


def test_the_listings_name_the_file_that_owns_each_row(tmp_path: Path, database_url: str) -> None:
    # managed_by said "config" but not which file: a desk running several files could only tell from logs.
    equities = BOTH.replace('"wire"', '"equities wire"').replace('"banks"', '"equities"')
    with TestClient(create_app(_settings(tmp_path, database_url, BOTH, "rates.toml"))):
        pass
    with TestClient(create_app(_settings(tmp_path, database_url, equities, "equities.toml"))) as client:
        client.post("/v1/sources", json={"name": "by hand", "url": FEED, "kind": "rss"}).raise_for_status()
        client.post("/v1/alert-rules", json={"name": "by hand", "webhook_url": HOOK}).raise_for_status()
        rates, desk = str(tmp_path / "rates.toml"), str(tmp_path / "equities.toml")
        listed = client.get("/v1/sources").json()
        assert [(s["name"], s["managed_by"], s["config_file"]) for s in listed] == [
            ("wire", "config", rates),
            ("equities wire", "config", desk),
            ("by hand", "api", None),
        ]
        rules = client.get("/v1/alert-rules").json()
        assert [(r["name"], r["managed_by"], r["config_file"]) for r in rules] == [
            ("banks", "config", rates),
            ("equities", "config", desk),
            ("by hand", "api", None),
        ]
        assert client.get("/v1/sources/1").json()["config_file"] == rates
        assert client.get("/v1/alert-rules/2").json()["config_file"] == desk
        refused = client.patch("/v1/sources/3", json={"config_file": desk})  # read-only, as managed_by
        assert refused.status_code == 422 and "config_file" in refused.text


def test_processes_started_together_with_the_same_file_all_start(database: Database) -> None:
    # API replicas and the worker start at once with one config file. On PostgreSQL each looked the file's
    # new names up, found none, and inserted them: all but the first stopped their start with a Conflict
    # ("expected a new source name, found 's0-0' already used").
    failures: list[str] = []
    for round_ in range(3):  # each start adds names to the file
        config = _config(
            {f"s{k}-{i}": {} for k in range(round_ + 1) for i in range(20)},
            {f"r{k}-{i}": {} for k in range(round_ + 1) for i in range(5)},
        )
        barrier = threading.Barrier(4)

        def start(config: MonitorConfig = config, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                _apply(database, config)
            except Exception as exc:  # every failure is the finding
                failures.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=start) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    assert len(_sources(database)) == 60 and len(_rules(database)) == 15
    assert {managed for _, _, managed in _sources(database).values()} == {"config"}
    assert {managed for _, _, managed in _rules(database).values()} == {"config"}
