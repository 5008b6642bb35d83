"""A usage error on any command line (a value that is not an integer, a missing or unknown option, a missing
argument, a bad choice, a path that does not exist) ends with one stderr line and exit code 2, as the
project's own errors do: click's message on one line, not typer's boxed usage text; `--help` is unchanged.

The four installed console scripts run as real subprocesses (their entry points are what is tested);
`textcore.console.run_app` is also run in process on a small typer app for the kinds of option the
commands do not use yet.
"""

from __future__ import annotations

import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import pytest
import typer

from textcore.console import run_app

BIN = Path(sys.executable).parent

# (console script, arguments, what the one line says)
CASES = {
    "textcore-bad-int": (
        ["textcore", "train", "--data", "d.csv", "--output", "out", "--epochs", "abc"],
        "error: invalid value for '--epochs': ",
    ),
    "textcore-missing-option": (["textcore", "predict"], "error: missing option '--model'"),
    "textcore-registry-unknown-option": (
        ["textcore", "registry", "list", "--no-such-flag"],
        "error: no such option: --no-such-flag",
    ),
    "textcore-unknown-command": (["textcore", "trian"], "error: no such command 'trian'"),
    "customer-service-bad-int": (
        ["customer-service", "serve", "--port", "abc"],
        "error: invalid value for '--port': ",
    ),
    "customer-service-unknown-option": (
        ["customer-service", "serve", "--no-such-flag"],
        "error: no such option: --no-such-flag",
    ),
    "finance-sentiment-missing-value": (
        ["finance-sentiment", "run-once", "--config"],
        "error: option '--config' requires an argument",
    ),
    "finance-sentiment-bad-int": (
        ["finance-sentiment", "train", "--data", "d.csv", "--output", "out", "--seed", "x"],
        "error: invalid value for '--seed': ",
    ),
    # a port outside 0-65535 ended in uvicorn's OverflowError traceback (exit 1) once the app had started
    "customer-service-port-out-of-range": (
        ["customer-service", "serve", "--port", "-5"],
        "error: invalid value for '--port': ",
    ),
    "finance-sentiment-port-out-of-range": (
        ["finance-sentiment", "serve", "--port", "65536"],
        "error: invalid value for '--port': ",
    ),
    "recommender-port-out-of-range": (
        ["recommender", "serve", "--port", "99999999999999999999"],
        "error: invalid value for '--port': ",
    ),
    "recommender-missing-argument": (
        ["recommender", "convert", "amazon"],
        "error: missing argument 'folder'",
    ),
    "recommender-missing-option": (
        ["recommender", "convert", "amazon", "folder"],
        "error: missing option '--output'",
    ),
}


def run_script(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    script = BIN / args[0]
    assert script.is_file(), f"expected the console script at {script}; is the package installed?"
    return subprocess.run(
        [str(script), *args[1:]], capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )


def assert_one_error_line(code: int, stdout: str, stderr: str, expected: str) -> None:
    assert code == 2, f"exit {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    assert stdout == "", stdout
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr; found {len(lines)}:\n{stderr}"
    assert lines[0].startswith(expected), lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_a_usage_error_is_one_line_and_exit_2(case: str, tmp_path: Path) -> None:
    args, expected = CASES[case]
    result = run_script(args, tmp_path)
    assert_one_error_line(result.returncode, result.stdout, result.stderr, expected)
    assert list(tmp_path.iterdir()) == [], "a refused command line must not write anything"


@pytest.mark.parametrize("script", ["textcore", "customer-service", "finance-sentiment", "recommender"])
def test_help_and_no_arguments_are_as_typer_gives_them(script: str, tmp_path: Path) -> None:
    shown = run_script([script, "--help"], tmp_path)
    assert (shown.returncode, shown.stderr) == (0, ""), shown.stderr
    assert "Usage:" in shown.stdout and "train" in shown.stdout
    bare = run_script([script], tmp_path)  # no_args_is_help: the help on stdout, exit 2, nothing more
    assert (bare.returncode, bare.stderr, bare.stdout.strip()) == (2, "", shown.stdout.strip())


class Colour(StrEnum):
    red = "red"
    blue = "blue"


def small_app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)

    @app.command()
    def paint(
        colour: Annotated[Colour, typer.Option()],
        source: Annotated[Path, typer.Option(exists=True)],
        code: Annotated[int, typer.Option()] = 0,
    ) -> None:
        print(f"{colour.value} {source.name}")
        if code:
            raise typer.Exit(code)

    @app.command()
    def other() -> None:  # two commands, so that `paint` is a subcommand as in the real apps
        """Another command."""

    return app


def run_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        run_app(small_app(), list(args))
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def test_run_app_flattens_a_bad_choice_and_a_path_that_does_not_exist(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    absent = tmp_path / "absent.txt"
    code, out, err = run_in_process(capsys, "paint", "--colour", "green", "--source", str(absent))
    assert_one_error_line(code, out, err, "error: invalid value for '--colour': ")
    assert "'green'" in err
    code, out, err = run_in_process(capsys, "paint", "--colour", "red", "--source", str(absent))
    assert_one_error_line(code, out, err, "error: invalid value for '--source': ")
    assert str(absent) in err


def test_run_app_keeps_a_commands_output_and_exit_code(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = tmp_path / "here.txt"
    source.write_text("x")
    painted = run_in_process(capsys, "paint", "--colour", "red", "--source", str(source))
    assert painted == (0, "red here.txt\n", "")
    code, out, _ = run_in_process(capsys, "paint", "--colour", "blue", "--source", str(source), "--code", "3")
    assert (code, out) == (3, "blue here.txt\n")
