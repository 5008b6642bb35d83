"""The `finance-sentiment` command in process (`typer.testing.CliRunner`): train, evaluate and run-once.

`train` runs on the tiny random BERT (one epoch), `evaluate` and `run-once` on the real fine-tuned MiniLM,
`run-once` against a feed served on loopback (the `Site` of test_ingest).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from finance_sentiment.cli import app
from tests.conftest import serve_app
from tests.finance_sentiment.test_ingest import RSS, STORIES, Page, Site, feed_of

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEMO = EXAMPLES / "finance_sentiment.csv"


def invoke(*args: object, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def last_json(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert isinstance(report, dict)
    return report


def one_error_line(result: Result) -> str:
    assert result.exit_code == 2, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_train_refuses_labels_the_monitor_does_not_score(tmp_path: Path) -> None:
    data = tmp_path / "market.csv"
    with data.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(
            [("text", "label"), ("Shares soar on record profit", "bullish"), ("Shares sink", "bearish")] * 4
        )
    line = one_error_line(invoke("train", "--data", data, "--output", tmp_path / "model"))
    assert "bearish" in line and "bullish" in line and "negative, neutral, positive" in line
    assert not (tmp_path / "model").exists()


def test_train_refuses_a_label_column_that_is_the_text_column(tmp_path: Path) -> None:
    data = tmp_path / "market.csv"
    with data.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("text", "label"), ("positive", "negative"), ("negative", "x")] * 4)
    args = ["--data", data, "--label-column", "text", "--output", tmp_path / "model"]
    line = one_error_line(invoke("train", *args))
    assert "--label-column 'text' is also the --text-column: the labels would be the texts themselves" in line
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize(
    ("rows", "columns", "expected"),
    [
        ([("text", "label"), ("Shares soar", "positive")], ("text", "stars"), "expected column(s) stars"),
        ([("text", "label")], ("text", "label"), "expected at least one data row; found none"),
    ],
)
def test_train_names_a_missing_label_column_or_an_empty_file(
    tmp_path: Path, rows: list[tuple[str, str]], columns: tuple[str, str], expected: str
) -> None:
    # The finance label check ran first and spoke of labels: "expected 'stars' labels among ...; found ['']"
    data = tmp_path / "market.csv"
    with data.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    text, label = columns
    args = ("--text-column", text, "--label-column", label, "--output", tmp_path / "model")
    line = one_error_line(invoke("train", "--data", data, *args))
    assert f"{data}: {expected}" in line
    assert not (tmp_path / "model").exists()


def test_train_on_the_demo_data_with_the_tiny_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    output = tmp_path / "model"
    result = invoke(
        "train", "--data", DEMO, "--output", output, "--base-model", tiny_model_dir,
        "--epochs", 1, "--batch-size", 16, "--device", "cpu",
    )  # fmt: skip
    report = last_json(result)
    assert report["output"] == str(output) and isinstance(report["validation"], dict)
    assert 0.0 <= report["validation"]["accuracy"] <= 1.0
    labels = json.loads((output / "labels.json").read_text())["labels"]
    assert sorted(labels) == ["negative", "neutral", "positive"]
    assert (output / "metadata.json").is_file() and (output / "head.safetensors").is_file()


def test_evaluate_the_fine_tuned_model(finance_model_dir: Path) -> None:
    report = last_json(invoke("evaluate", "--model", finance_model_dir, "--data", DEMO, "--device", "cpu"))
    with DEMO.open(encoding="utf-8") as handle:
        assert report["n"] == sum(1 for _ in csv.DictReader(handle))
    assert report["accuracy"] >= 0.9  # it was trained on these very sentences
    assert set(report["per_label"]) == {"negative", "neutral", "positive"}


def test_evaluate_help_speaks_of_the_sentiment_model_and_keeps_the_textcore_flags() -> None:
    import typer.core  # noqa: PLC0415
    import typer.main  # noqa: PLC0415

    from textcore.cli import app as core_app  # noqa: PLC0415

    def options(command: Any) -> list[tuple[tuple[str, ...], object]]:
        return [(tuple(p.opts), p.default) for p in command.params]

    core_cli, our_cli = typer.main.get_command(core_app), typer.main.get_command(app)
    assert isinstance(core_cli, typer.core.TyperGroup), "expected textcore's CLI to be a group of commands"
    assert isinstance(our_cli, typer.core.TyperGroup), "expected the finance CLI to be a group of commands"
    core, ours = core_cli.commands["evaluate"], our_cli.commands["evaluate"]
    assert options(ours) == options(core)
    result = CliRunner().invoke(app, ["evaluate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Score the sentiment model" in text
    assert "negative, neutral and positive" in text
    assert "finance-sentiment train" in text and "registry version folder" in text


@pytest.fixture
def feed() -> Iterator[tuple[Site, str]]:
    site = Site({"/feed.xml": Page(feed_of(STORIES), RSS)})
    with serve_app(site.app()) as base_url:
        yield site, base_url


def test_run_once_stores_a_feed_once(tmp_path: Path, finance_model_dir: Path, feed: tuple[Site, str]) -> None:
    site, base_url = feed
    config = tmp_path / "monitor.toml"
    config.write_text(f'[[sources]]\nname = "wire"\nurl = "{base_url}/feed.xml"\nkind = "rss"\n')
    database = f"sqlite:///{tmp_path / 'monitor.db'}"
    env = {
        "FIN_MODEL_PATH": str(finance_model_dir),
        "FIN_FETCH__ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "FIN_FETCH__MIN_HOST_INTERVAL_S": "0",
    }
    first = last_json(invoke("run-once", "--config", config, "--database-url", database, env=env))
    assert (first["sources"], first["stored"], first["failed"]) == (1, len(STORIES), 0)
    assert first["reports"][0]["status"] == "ok"

    second = last_json(invoke("run-once", "--config", config, "--database-url", database, env=env))
    assert (second["sources"], second["stored"], second["duplicates"]) == (1, 0, len(STORIES))
    assert site.hits("/feed.xml") == 2


def test_run_once_reports_a_bad_config_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    line = one_error_line(
        invoke("run-once", "--config", missing, "--database-url", f"sqlite:///{tmp_path / 'm.db'}")
    )
    assert str(missing) in line


@pytest.mark.parametrize("command", ["serve", "worker", "run-once"])
def test_a_bad_config_or_database_stops_every_command_in_one_line(tmp_path: Path, command: str) -> None:
    # Checked before anything starts: a config error once surfaced as a traceback from the worker, and from
    # serve only when the app was starting; a database that cannot be opened, from every command.
    config = tmp_path / "monitor.toml"
    config.write_text(
        '[[sources]]\nname = "wire"\nurl = "https://example.com/feed"\nkind = "rss"\nbogus = 1\n'
    )
    sqlite = f"sqlite:///{tmp_path / 'm.db'}"
    line = one_error_line(invoke(command, "--config", config, "--database-url", sqlite))
    assert "sources[0].bogus" in line
    line = one_error_line(invoke(command, "--database-url", "bogus://"))
    assert "installed SQLAlchemy dialect" in line and "'bogus://'" in line
    line = one_error_line(invoke(command, "--database-url", "postgresql://monitor:s3cret@127.0.0.1:1/x"))
    assert line.startswith("error: cannot open the database postgresql://monitor:***@127.0.0.1:1/x: ")
    assert "s3cret" not in line


@pytest.mark.parametrize("command", ["serve", "worker", "run-once"])
def test_a_config_url_the_address_guard_refuses_stops_every_command_in_one_line(
    tmp_path: Path, command: str
) -> None:
    # The API refuses such URLs; from the config file they were stored, and the webhook was refused only
    # when each notification was sent (the source at each run), so the operator learnt of it late or never.
    config = tmp_path / "monitor.toml"
    config.write_text(
        '[[sources]]\nname = "wire"\nurl = "http://127.0.0.1:8/feed.xml"\nkind = "rss"\n\n'
        '[[alert_rules]]\nname = "banks"\nwebhook_url = "http://10.0.0.7/hooks/risk"\n'
    )
    database = tmp_path / "m.db"
    env = {"FIN_FETCH__ALLOWED_NETWORKS": '["127.0.0.0/8"]'}  # the source's network only
    line = one_error_line(
        invoke(command, "--config", config, "--database-url", f"sqlite:///{database}", env=env)
    )
    assert line.startswith(
        f"error: config file '{config}': alert_rules[0].webhook_url of 'banks' is refused: "
    )
    assert "http://10.0.0.7/hooks/risk" in line and "private address 10.0.0.7" in line
    assert not database.exists()  # refused before anything was stored


def _unresolvable_hook_config(tmp_path: Path) -> Path:
    config = tmp_path / "monitor.toml"
    config.write_text('[[alert_rules]]\nname = "banks"\nwebhook_url = "http://hooks.invalid/risk"\n')
    return config


NOT_CHECKED = "alert_rules[0].webhook_url of 'banks' not checked"


def test_run_once_checks_the_config_file_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The command's own start-up checks (for one error line, exit 2) were then made again by the monitor:
    # every warning came twice, and the database was migrated twice.
    config = _unresolvable_hook_config(tmp_path)
    database = f"sqlite:///{tmp_path / 'm.db'}"
    with caplog.at_level(logging.WARNING, logger="finance_sentiment"):
        report = last_json(invoke("run-once", "--config", config, "--database-url", database))
    assert report["sources"] == 0
    assert sum(NOT_CHECKED in record.getMessage() for record in caplog.records) == 1, caplog.text


@pytest.mark.parametrize(("command", "started"), [("serve", "Application startup complete"),
                                                  ("worker", "Scheduler started")])  # fmt: skip
def test_serve_and_worker_check_the_config_file_once(tmp_path: Path, command: str, started: str) -> None:
    config = _unresolvable_hook_config(tmp_path)
    options = ["--port", "0", "--no-scheduler"] if command == "serve" else []
    args = [command, *options, "--config", config, "--database-url", f"sqlite:///{tmp_path / 'm.db'}"]
    env = os.environ | {"FIN_REGISTRY": str(tmp_path / "registry")}
    program = "from finance_sentiment.cli import main; main()"
    with subprocess.Popen(
        [sys.executable, "-c", program, *map(str, args)], stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        assert process.stderr is not None
        lines = []
        for line in process.stderr:  # until it has started (or stopped)
            lines.append(line)
            if started in line:
                break
        process.send_signal(signal.SIGINT)
        lines += process.communicate(timeout=60)[1].splitlines(keepends=True)
    assert any(started in line for line in lines), "".join(lines)
    assert sum(NOT_CHECKED in line for line in lines) == 1, "".join(lines)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("FIN_FETCH__MAX_RETRY_AFTER_S", "-1", "greater than or equal to 0"),
        ("FIN_FETCH__MAX_RETRY_AFTER_S", "soon", "valid number"),
        ("FIN_FETCH__ROBOTS_TTL_S", "0", "greater than or equal to 1"),
        ("FIN_FETCH__ROBOTS_TTL_S", "100000", "less than or equal to 86400"),
    ],
)
def test_a_bad_retry_after_cap_or_robots_ttl_is_one_error_line(
    tmp_path: Path, name: str, value: str, expected: str
) -> None:
    line = one_error_line(
        invoke("run-once", "--database-url", f"sqlite:///{tmp_path / 'm.db'}", env={name: value})
    )
    assert line.startswith(f"error: {name}: "), line  # as every other FIN_* setting's
    assert expected in line and not (tmp_path / "m.db").exists()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('["300.0.0.0/8"]', "error: FIN_FETCH__ALLOWED_NETWORKS: Value error, expected allowed_networks "),
        ('["10.0.0.1/8"]', "error: FIN_FETCH__ALLOWED_NETWORKS: Value error, expected allowed_networks "),
        ("127.0.0.0/8", """a list takes a JSON array, e.g. FIN_FETCH__ALLOWED_NETWORKS='["127.0.0.0/8"]'"""),
    ],
)
def test_a_bad_allowed_networks_setting_is_one_error_line(tmp_path: Path, value: str, expected: str) -> None:
    # A network that is none, or a CIDR written without the JSON array a list setting takes, ended the
    # command in a traceback (exit 1) rather than one line naming the setting.
    for command in ("run-once", "worker"):
        result = invoke(
            command,
            "--database-url",
            f"sqlite:///{tmp_path / 'm.db'}",
            env={"FIN_FETCH__ALLOWED_NETWORKS": value},
        )
        assert expected in one_error_line(result)
    assert not (tmp_path / "m.db").exists()


def test_a_config_files_unreadable_url_is_named_with_its_entry_and_masked(tmp_path: Path) -> None:
    # The address guard parsed every URL of the file before checking any: a malformed one ended the start
    # with a message naming neither the entry nor the file, and quoting the URL's password as written.
    config = tmp_path / "monitor.toml"
    url = "https://risk:pa55-Risk-Team@bad!host.example/feed.xml"
    config.write_text(f'[[sources]]\nname = "wire"\nurl = "{url}"\nkind = "rss"\n')
    line = one_error_line(
        invoke("run-once", "--config", config, "--database-url", f"sqlite:///{tmp_path / 'm.db'}")
    )
    assert f"config file {str(config)!r}: sources[0].url of 'wire' is refused: expected a URL with" in line
    assert "pa55-Risk-Team" not in line and "****" in line


def _feeds_config(tmp_path: Path, base_url: str, names: tuple[str, ...]) -> Path:
    config = tmp_path / "monitor.toml"
    config.write_text(
        "".join(f'[[sources]]\nname = "{n}"\nurl = "{base_url}/{n}.xml"\nkind = "rss"\n' for n in names)
    )
    return config


def test_run_once_exits_1_when_every_source_run_failed_even_with_one_held_back(tmp_path: Path) -> None:
    # A cron job whose sources all failed saw exit 0 once the schedule held one back (backoff, from its
    # third failure in a row): 'failed' then counted 1 of 2 sources, and the job never reported a failure.
    site = Site({})  # /wire.xml and /desk.xml answer 404
    database = f"sqlite:///{tmp_path / 'm.db'}"
    env = {"FIN_FETCH__ALLOWED_NETWORKS": '["127.0.0.0/8"]', "FIN_FETCH__MIN_HOST_INTERVAL_S": "0",
           "FIN_REGISTRY": str(tmp_path / "registry")}  # fmt: skip
    with serve_app(site.app()) as base_url:
        config = _feeds_config(tmp_path, base_url, ("wire",))
        runs = [invoke("run-once", "--config", config, "--database-url", database, env=env) for _ in range(3)]
        assert [(r.exit_code, json.loads(r.stdout.splitlines()[-1])["failed"]) for r in runs] == [(1, 1)] * 3
        config = _feeds_config(tmp_path, base_url, ("wire", "desk"))
        result = invoke("run-once", "--config", config, "--database-url", database, env=env)
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert [r["status"] for r in report["reports"]] == ["backoff", "failed"]
        assert (report["sources"], report["failed"]) == (2, 1)  # the JSON report is as it was
        assert result.exit_code == 1, result.stderr
        assert result.stderr.strip().splitlines() == [
            "error: 1 of 1 sources run failed, 1 held back after failing (backoff): every source run failed "
            "(see the reports)"
        ]
        assert (
            runs[0].stderr.strip()
            == "error: 1 of 1 sources run failed: every source run failed (see the reports)"
        )


def test_run_once_warns_of_a_failed_source_and_strict_exits_1(tmp_path: Path) -> None:
    # One of two sources failing: exit 0 with one warning line, as a partial outage; --strict exits 1.
    site = Site({"/ok.xml": Page(feed_of([]), RSS)})  # a feed with nothing new needs no model
    database = f"sqlite:///{tmp_path / 'm.db'}"
    env = {"FIN_FETCH__ALLOWED_NETWORKS": '["127.0.0.0/8"]', "FIN_FETCH__MIN_HOST_INTERVAL_S": "0",
           "FIN_REGISTRY": str(tmp_path / "registry")}  # fmt: skip
    with serve_app(site.app()) as base_url:
        config = _feeds_config(tmp_path, base_url, ("ok", "wire"))
        result = invoke("run-once", "--config", config, "--database-url", database, env=env)
        assert result.exit_code == 0, result.stderr
        assert result.stderr.strip().splitlines() == [
            "warning: 1 of 2 sources run failed (--strict exits 1 on any)"
        ]
        strict = invoke("run-once", "--strict", "--config", config, "--database-url", database, env=env)
        assert strict.exit_code == 1, strict.stderr
        assert strict.stderr.strip().splitlines() == ["error: 1 of 2 sources run failed (--strict)"]
        assert json.loads(strict.stdout.strip().splitlines()[-1])["failed"] == 1


def test_run_once_strict_exits_1_naming_a_source_that_went_gone(tmp_path: Path) -> None:
    # A source answering 410 Gone is disabled for good; the run counted it as no failure at all, so a cron
    # job run with --strict exited 0 without a word while the feed had disappeared.
    site = Site({"/ok.xml": Page(feed_of([]), RSS), "/wire.xml": Page(b"gone", status=410)})
    env = {"FIN_FETCH__ALLOWED_NETWORKS": '["127.0.0.0/8"]', "FIN_FETCH__MIN_HOST_INTERVAL_S": "0",
           "FIN_REGISTRY": str(tmp_path / "registry")}  # fmt: skip
    with serve_app(site.app()) as base_url:
        config = _feeds_config(tmp_path, base_url, ("ok", "wire"))
        strict_db, plain_db = f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 'p.db'}"
        strict = invoke("run-once", "--strict", "--config", config, "--database-url", strict_db, env=env)
        report = json.loads(strict.stdout.strip().splitlines()[-1])
        assert [r["status"] for r in report["reports"]] == ["ok", "gone"]
        assert report["failed"] == 0  # the JSON report is as it was
        assert strict.exit_code == 1, strict.stderr
        gone_id = report["reports"][1]["source_id"]
        named = f"source {gone_id}: {base_url}/wire.xml answered 410 Gone"
        assert strict.stderr.strip().splitlines() == [
            f"error: 0 of 2 sources run failed, 1 gone and disabled ({named}) (--strict)"
        ]
        # once disabled, it is no longer gone in a later run
        again = invoke("run-once", "--strict", "--config", config, "--database-url", strict_db, env=env)
        assert again.exit_code == 0 and not again.stderr.strip(), again.stderr
        # without --strict the exit stays 0, with a warning line naming it
        plain = invoke("run-once", "--config", config, "--database-url", plain_db, env=env)
        assert plain.exit_code == 0, plain.stderr
        assert plain.stderr.strip().splitlines() == [
            f"warning: 0 of 2 sources run failed, 1 gone and disabled ({named}) (--strict exits 1 on any)"
        ]
    help_text = invoke("run-once", "--help").stdout
    assert "410" in help_text  # --strict says it counts a source gone


def test_a_config_files_resolve_fraction_below_one_percent_is_one_error_line(tmp_path: Path) -> None:
    # 1e-300 was provisioned: the rule's alerts in effect never resolved.
    config = tmp_path / "monitor.toml"
    config.write_text(
        '[[alert_rules]]\nname = "banks"\nwebhook_url = "http://127.0.0.1:9/hook"\n'
        "resolve_fraction = 1e-300\n"
    )
    line = one_error_line(
        invoke("run-once", "--config", config, "--database-url", f"sqlite:///{tmp_path / 'm.db'}")
    )
    assert line == (
        f"error: config file {str(config)!r}: alert_rules[0].resolve_fraction: "
        "Input should be greater than or equal to 0.01"
    )
    assert not (tmp_path / "m.db").exists()
