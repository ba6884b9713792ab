"""One log line a request: the app writes its request line straight to its
JSON stderr handler when that is the only place the line goes (the same
line logging would write), and gunicorn's access log stays silent about the
requests the app logged (the app's line carries all the access line had)."""

from __future__ import annotations

import json
import logging
import os
import sys
from contextlib import contextmanager
from datetime import timedelta
from types import SimpleNamespace

import pytest
import requests
from gunicorn.config import Config

from app.logs import (
    LOGGED_BY_APP,
    GunicornLogger,
    JsonFormatter,
    TextFormatter,
    _StderrHandler,
    json_line,
    json_stderr_handler,
)
from tests.helpers import DEV_ALICE
from tests.server import gunicorn_process

REQUEST_LOG = logging.getLogger("app.request")


@contextmanager
def only_handler(handler: logging.Handler | None = None):
    """The root logger with exactly ``handler`` (pytest's capture handlers
    and ours from create_app set aside), restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [] if handler is None else [handler]
    try:
        yield root
    finally:
        root.handlers[:] = saved


def ours(formatter: logging.Formatter | None = None) -> _StderrHandler:
    handler = _StderrHandler()
    handler.setFormatter(formatter or JsonFormatter())
    return handler


@pytest.mark.parametrize(
    "fields",
    [
        {"request_id": "a" * 32, "method": "GET", "path": "/", "route": "/", "status": 200,
         "latency_ms": 0.125, "caller": None, "bytes": 512},
        {"path": "/caf\u00e9", "user_agent": "curl/8 \u2603"},  # non-ASCII: escaped, as stdlib
        {"path": "/\udcff"},  # a lone surrogate (surrogateescape'd path): the stdlib decides
        {"path": 'quote " backslash \\ nul \x00', "status": 404},
    ],
)
def test_the_direct_line_is_the_formatters_line(fields):
    record = logging.LogRecord("app.request", logging.INFO, __file__, 1, "%s %s %s",
                               ("GET", "/", 200), None)
    record.fields = fields
    direct = json_line(record.created, "INFO", "app.request", "GET / 200", record.process,
                       fields, plain=True)
    assert direct == JsonFormatter().format(record)
    assert json.loads(direct)["path"] == fields["path"]


def test_direct_writing_only_when_our_json_handler_is_the_only_way_out():
    handler = ours()
    with only_handler(handler) as root:
        assert json_stderr_handler(REQUEST_LOG, logging.INFO) is handler
        assert json_stderr_handler(REQUEST_LOG, logging.DEBUG) is handler  # handler: NOTSET

        handler.setLevel(logging.WARNING)  # the handler would drop the line
        assert json_stderr_handler(REQUEST_LOG, logging.INFO) is None
        handler.setLevel(logging.NOTSET)

        handler.setFormatter(TextFormatter())  # text lines, not ours to write
        assert json_stderr_handler(REQUEST_LOG, logging.INFO) is None
        handler.setFormatter(JsonFormatter())

        extra = logging.NullHandler()  # a second destination
        root.addHandler(extra)
        assert json_stderr_handler(REQUEST_LOG, logging.INFO) is None
        root.removeHandler(extra)

        for node in (REQUEST_LOG, logging.getLogger("app"), root, handler):
            some_filter = logging.Filter("elsewhere")  # a filter could drop or change it
            node.addFilter(some_filter)
            assert json_stderr_handler(REQUEST_LOG, logging.INFO) is None
            node.removeFilter(some_filter)

        REQUEST_LOG.addHandler(extra)  # a handler of the logger itself
        assert json_stderr_handler(REQUEST_LOG, logging.INFO) is None
        REQUEST_LOG.removeHandler(extra)
        assert json_stderr_handler(REQUEST_LOG, logging.INFO) is handler
    with only_handler(None):
        assert json_stderr_handler(REQUEST_LOG, logging.INFO) is None  # nowhere to write


@pytest.fixture
def environs(app) -> list[dict]:
    """The WSGI environ of each request the app answers, as the server keeps it."""
    seen: list[dict] = []
    inner = app.wsgi_app

    def recording(environ, start_response):  # type: ignore[no-untyped-def]
        seen.append(environ)
        return inner(environ, start_response)

    app.wsgi_app = recording
    return seen


def test_a_request_is_one_line_written_directly(client, alice, environs, capsys):
    client.get("/", headers=alice.headers)  # warm: the app's start-up lines are out of the way
    capsys.readouterr()
    made: list[str] = []  # the names of the LogRecords made meanwhile
    factory = logging.getLogRecordFactory()

    def counting(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        made.append(name)
        return factory(name, *args, **kwargs)

    logging.setLogRecordFactory(counting)
    try:
        with only_handler(ours()):
            response = client.get("/", headers={**alice.headers, "User-Agent": "probe/1",
                                                "X-Request-ID": "one-line"})
    finally:
        logging.setLogRecordFactory(factory)
    assert "app.request" not in made  # written without a LogRecord
    (line,) = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert line["logger"] == "app.request" and line["message"] == "GET / 200"
    assert line["request_id"] == "one-line" and line["caller"] == alice.urn
    assert line["user_agent"] == "probe/1" and line["remote_addr"] == "127.0.0.1"
    assert line["bytes"] == len(response.data) and line["process"] == os.getpid()
    assert environs[-1][LOGGED_BY_APP] is True


def test_through_logging_the_line_has_the_same_fields(client, alice, environs, caplog):
    with caplog.at_level(logging.INFO, logger="app.request"):
        response = client.get("/", headers={**alice.headers, "X-Request-ID": "via-logging"})
    (record,) = [r for r in caplog.records if r.name == "app.request"]
    assert set(record.fields) == {"request_id", "method", "path", "route", "status",
                                  "latency_ms", "caller", "remote_addr", "user_agent", "bytes"}
    assert response.status_code == 200 and environs[-1][LOGGED_BY_APP] is True


def access_logger(tmp_path) -> tuple[GunicornLogger, object]:
    config = Config()
    path = tmp_path / "access.log"
    config.set("accesslog", str(path))
    config.set("errorlog", str(tmp_path / "error.log"))
    return GunicornLogger(config), path


def test_gunicorn_writes_no_access_line_for_a_request_the_app_logged(tmp_path):
    logger, path = access_logger(tmp_path)
    response = SimpleNamespace(status="200 OK", headers=[("X-Request-ID", "r1")], sent=12)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/healthz", "REMOTE_ADDR": "127.0.0.1"}
    logger.access(response, None, {**environ, LOGGED_BY_APP: True}, timedelta(milliseconds=1))
    logger.access(response, None, environ, timedelta(milliseconds=1))
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["path"] == "/healthz" and lines[0]["request_id"] == "r1"


@pytest.mark.e2e
def test_under_gunicorn_each_request_is_logged_once(dev_server):
    """On the shared dev server. One connection: gunicorn reads a request only
    once the one before is answered and logged (access line included), so
    after the last answer every line about the earlier requests is written."""
    url, headers = dev_server.url, DEV_ALICE
    with requests.Session() as session:
        assert session.get(url + "/", headers={**headers, "X-Request-ID": "root-1"},
                           timeout=5).status_code == 200
        assert session.get(url + "/healthz", headers={"X-Request-ID": "probe-1"},
                           timeout=5).status_code == 200
        assert session.get(url + "/metrics", headers={"X-Request-ID": "probe-2"},
                           timeout=5).status_code == 200
        assert session.get(url + "/nowhere", headers={**headers, "X-Request-ID": "lost-1"},
                           timeout=5).status_code == 404
        assert session.get(url + "/", headers={**headers, "X-Request-ID": "last-1"},
                           timeout=5).status_code == 200
    lines = dev_server.json_lines()

    def about(request_id: str) -> list[str]:
        return [x["logger"] for x in lines if x.get("request_id") == request_id]

    assert about("last-1") == ["app.request"]
    assert about("root-1") == ["app.request"]
    assert about("lost-1") == ["app.request"]
    # Probes are logged at DEBUG only, by the app: no INFO access line either.
    assert about("probe-1") == [] and about("probe-2") == []


@pytest.mark.e2e
def test_under_gunicorn_probes_are_logged_at_debug(tmp_path):
    output = tmp_path / "server.out"
    with gunicorn_process({"FLASK_LOG_LEVEL": "DEBUG"}, output_path=output) as (url, _process):
        assert requests.get(url + "/healthz", headers={"X-Request-ID": "probe-3"},
                            timeout=5).status_code == 200
    lines = [json.loads(x) for x in output.read_text().splitlines() if x.startswith("{")]
    probes = [(x["logger"], x["level"]) for x in lines if x.get("request_id") == "probe-3"]
    assert probes == [("app.request", "DEBUG")]


def test_the_stderr_handler_follows_sys_stderr(capsys):
    handler = ours()
    assert handler.stream is sys.stderr
