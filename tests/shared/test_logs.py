"""textcore.logs: JSON log lines, and the services' logs through a real uvicorn server in a child process."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from customer_service.cli import app as customer_service_cli
from finance_sentiment.cli import app as finance_cli
from recommender.cli import app as recommender_cli
from textcore import InvalidInput
from textcore.logs import JsonFormatter, logging_config, request_id


def record(message: str, exc_info: bool = False) -> logging.LogRecord:
    try:
        raise ValueError("bad value")
    except ValueError:
        info = sys.exc_info() if exc_info else None
    return logging.LogRecord("probe", logging.WARNING, __file__, 1, message, ("x",), info)


def test_a_json_line_holds_the_record_its_request_and_its_traceback() -> None:
    token = request_id.set("req-1")
    try:
        line = JsonFormatter().format(record("odd %s\nsecond line", exc_info=True))
    finally:
        request_id.reset(token)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "probe"
    assert entry["message"] == "odd x\nsecond line"
    assert entry["request_id"] == "req-1"
    assert entry["exception"].startswith("Traceback") and "ValueError: bad value" in entry["exception"]
    assert entry["time"].endswith("+00:00")
    assert "request_id" not in json.loads(JsonFormatter().format(record("outside a request: %s")))


def test_a_bad_format_or_level_is_refused() -> None:
    with pytest.raises(InvalidInput, match="log format of text or json; found 'xml'"):
        logging_config("xml")
    assert logging_config("JSON") == logging_config("json")  # as the level, any case
    with pytest.raises(InvalidInput, match="log level of DEBUG, INFO, WARNING, ERROR; found 'loud'"):
        logging_config("json", "loud")


SERVER = textwrap.dedent(
    """
    import logging, socket, threading, time
    import httpx, uvicorn
    from textcore.logs import logging_config
    from textcore.settings import ServiceSettings
    from textcore.web import service_app

    app = service_app(title="t", distribution="textcore", description="d", settings=ServiceSettings())

    @app.get("/work")
    def work(q: str = "") -> dict[str, str]:  # a sync route: it runs in a worker thread
        logging.getLogger("service.work").info("working on it")
        return {"ok": "yes" if q else "no"}

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=logging_config("json")))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    while not server.started:
        time.sleep(0.01)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/work"
    params = {"q": "my card 4111 is lost"}  # a query may carry personal data: not logged at INFO
    response = httpx.get(url, params=params, headers={"X-Request-ID": "front-end-9"}, trust_env=False)
    print(response.headers["x-request-id"])
    server.should_exit = True
    thread.join()
    assert response.json() == {"ok": "yes"}, response.text  # the route read the query it declares
    """
)


def test_a_served_request_logs_json_lines_that_name_it() -> None:
    run = subprocess.run(
        [sys.executable, "-c", SERVER], capture_output=True, text=True, check=False, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "front-end-9"
    lines = [json.loads(line) for line in run.stderr.splitlines()]  # every line is JSON, uvicorn's too
    work = [entry for entry in lines if entry["logger"] == "service.work"]
    assert work == [{**work[0], "message": "working on it", "request_id": "front-end-9"}]
    access = [entry for entry in lines if entry["logger"] == "uvicorn.access"]
    assert len(access) == 1 and "GET /work?... HTTP/1.1" in access[0]["message"]
    assert "4111" not in access[0]["message"]
    assert any(entry["logger"] == "uvicorn.error" for entry in lines)  # start-up and shutdown lines


@pytest.mark.parametrize(
    ("cli", "command"),
    [
        (customer_service_cli, "serve"),
        (finance_cli, "serve"),
        (finance_cli, "worker"),
        (recommender_cli, "serve"),
    ],
)
def test_a_service_command_refuses_a_bad_log_format_in_one_line(cli: object, command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--log-format", "xml"])  # type: ignore[arg-type]
    assert result.exit_code == 2
    assert result.output == "error: expected a log format of text or json; found 'xml'\n"
