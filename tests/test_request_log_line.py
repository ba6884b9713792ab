"""One log line a request, through ``logging`` and its JSON formatter, with
every documented field; granian's own lines in the same format; no access
log of granian's beside ours; tokens masked as a last guard."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from app.logs import JsonFormatter, StderrHandler, TextFormatter, redact
from tests.helpers import DEV_ALICE
from tests.loopback_auth import production_auth_env
from tests.server import serve_process

FIELDS = {"request_id", "method", "path", "route", "status", "latency_ms", "caller",
          "remote_addr", "user_agent", "bytes"}
LINE = {"time", "level", "logger", "message", "process"}


def record(message: str = "GET / 200", **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("app.request", logging.INFO, __file__, 1, message, (), None)
    made.__dict__.update(extra)
    return made


def test_a_request_line_has_every_documented_field(client, alice, capsys):
    client.get("/", headers=alice.headers)  # the app's start-up lines out of the way
    capsys.readouterr()
    response = client.get("/", headers={**alice.headers, "User-Agent": "probe/1",
                                        "X-Request-ID": "one-line"})
    (line,) = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert set(line) == LINE | FIELDS
    assert line["logger"] == "app.request" and line["message"] == "GET / 200"
    assert line["level"] == "INFO" and line["process"] == os.getpid()
    assert line["request_id"] == "one-line" and line["caller"] == alice.urn
    assert line["user_agent"] == "probe/1" and line["remote_addr"] == "127.0.0.1"
    assert line["bytes"] == len(response.data) and line["route"] == "/"
    assert line["time"].endswith("+00:00")


def test_an_actions_line_names_it(client, alice, capsys):
    started = client.post("/run", headers=alice.headers,
                          json={"request_id": "logged", "body": {"utc_offset": 1}})
    action_id = started.json["action_id"]
    client.get(f"/{action_id}/status", headers=alice.headers)
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    requests_ = [x for x in lines if x["logger"] == "app.request"]
    assert [x["action_id"] for x in requests_[-2:]] == [action_id, action_id]
    assert set(requests_[-1]) == LINE | FIELDS | {"action_id"}


@pytest.mark.parametrize(
    "path", ["/caf\u00e9", "/\udcff", 'quote " backslash \\ nul \x00', "/x\n{\"forged\": 1}"]
)
def test_odd_values_stay_one_valid_json_line(path):
    line = JsonFormatter().format(record(path=path, status=404))
    assert "\n" not in line and line.isascii()
    assert json.loads(line)["path"] == path


def test_json_formatter_line_keeps_every_field_and_masks_tokens():
    document = json.loads(JsonFormatter().format(
        record("Authorization: Bearer abc.def", request_id="r", status=200, latency_ms=1.5)))
    assert document["message"] == "Authorization: Bearer [redacted]"
    assert set(document) == LINE | {"request_id", "status", "latency_ms"}


def test_an_exception_is_logged_redacted():
    try:
        raise ValueError("Bearer secret-token-value")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    document = json.loads(JsonFormatter().format(failed))
    assert "secret-token-value" not in document["exception"]
    assert "Bearer [redacted]" in document["exception"]


def test_text_lines_carry_the_fields_too():
    line = TextFormatter().format(record(request_id="r-1", status=200))
    assert " INFO app.request GET / 200" in line
    assert line.endswith(' request_id="r-1" status=200')


@pytest.mark.parametrize(
    "text", ["Authorization: Bearer abc.def", "BEARER   xyz", "bEaReR\ttok", "x bearer tok"]
)
def test_redaction(text):
    assert redact(text).split()[-1] == "[redacted]"


def test_redaction_leaves_other_text():
    assert redact("GET / 200 unbearer-x") == "GET / 200 unbearer-x"


@pytest.mark.e2e
def test_under_the_server_each_request_is_logged_once(dev_server):
    """On the shared dev server: one line a request, the app's (granian's
    access log is off); probes at DEBUG only."""
    url, headers = dev_server.url, DEV_ALICE
    with requests.Session() as session:
        for path, request_id, token in (("/", "root-1", True), ("/healthz", "probe-1", False),
                                        ("/metrics", "probe-2", False),
                                        ("/nowhere", "lost-1", True), ("/", "last-1", True)):
            session.get(url + path, headers={**(headers if token else {}),
                                             "X-Request-ID": request_id}, timeout=5)

    def about(request_id: str) -> list[str]:
        return [x["logger"] for x in dev_server.json_lines() if x.get("request_id") == request_id]

    assert about("root-1") == about("lost-1") == about("last-1") == ["app.request"]
    assert about("probe-1") == [] and about("probe-2") == []


@pytest.mark.e2e
def test_probes_are_logged_at_debug(tmp_path: Path):
    output = tmp_path / "server.out"
    with serve_process({"FLASK_LOG_LEVEL": "DEBUG"}, output_path=output) as (url, _):
        assert requests.get(url + "/healthz", headers={"X-Request-ID": "probe-3"},
                            timeout=5).status_code == 200
    lines = [json.loads(x) for x in output.read_text().splitlines() if x.startswith("{")]
    probes = [(x["logger"], x["level"]) for x in lines if x.get("request_id") == "probe-3"]
    assert probes == [("app.request", "DEBUG")]


@pytest.mark.e2e
def test_every_line_the_server_writes_is_json(tmp_path: Path):
    """Out of dev mode (no banner): granian's lines as it starts and stops,
    the app's and the request lines, each one JSON object; no access line."""
    output = tmp_path / "server.out"
    env = production_auth_env("http://127.0.0.1:9/")  # never asked: no token is sent
    with serve_process(env, output_path=output) as (url, launcher):
        assert requests.get(url + "/", headers={"X-Request-ID": "anonymous"},
                            timeout=5).status_code == 401
        os.kill(launcher.pid, signal.SIGTERM)
        assert launcher.wait(timeout=30) == 0
    lines = [json.loads(x) for x in output.read_text().splitlines() if x.strip()]
    loggers = {x["logger"] for x in lines}
    assert {"_granian", "app.request"} <= loggers and "granian.access" not in loggers
    messages = [x["message"] for x in lines if x["logger"].startswith("_granian")]
    assert any(m.startswith("Listening at") for m in messages)
    assert any(m.startswith("Granian shutdown completed") for m in messages)
    assert all(set(x) >= LINE for x in lines)
    assert "anonymous" in [x["request_id"] for x in lines if x["logger"] == "app.request"]


def test_a_line_is_written_without_letting_go_of_the_interpreter_lock(tmp_path, monkeypatch):
    """While the handler writes, no other Python thread runs: a thread that
    lets go of the interpreter lock waits to get it back behind the others
    (bench/README.md#log-writes)."""
    ticks = 0
    stop = threading.Event()

    def tick() -> None:  # counts whenever it holds the interpreter lock
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0)  # lets go of it at once

    handler = StderrHandler()
    handler.setFormatter(JsonFormatter())
    line = record(request_id="r", status=200)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(30)  # no forced hand-over during the writes
    ticker = threading.Thread(target=tick)
    try:
        with open(tmp_path / "stderr", "w") as stderr:
            monkeypatch.setattr(sys, "stderr", stderr)
            ticker.start()
            while ticks < 10:
                time.sleep(0.001)
            before = ticks
            for _ in range(300):
                handler.emit(line)
            during = ticks - before
    finally:
        stop.set()
        sys.setswitchinterval(previous)
        ticker.join()
    lines = (tmp_path / "stderr").read_text().splitlines()
    assert len(lines) == 300 and all(json.loads(x)["request_id"] == "r" for x in lines)
    assert during == 0
