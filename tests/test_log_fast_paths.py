"""The request log's speed-ups keep their promises: the orjson log line parses
to the document the stdlib wrote, the cached time prefix is datetime's own
text, the redaction pre-check misses no token. (The cached loopback check:
test_auth_and_dev_mode.py; cached metric children: test_observability.py.)"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import sys
import uuid
from datetime import UTC, datetime, timedelta
from enum import Enum

import pytest

from app.logs import JsonFormatter, dumps, iso_millis, redact


class Color(Enum):
    RED = "red"


class Text(str):
    pass


@pytest.mark.parametrize(
    "document",
    [
        {"request_id": uuid.uuid4().hex, "method": "GET", "path": "/x/status", "status": 200,
         "latency_ms": 0.123, "ok": True, "none": None},
        {"path": "/caf\u00e9/\U0001f600"},  # non-ASCII: the stdlib escapes it
        {"path": "/\ud800"},  # a lone surrogate (werkzeug decodes paths with surrogateescape)
        {"path": 'quote " backslash \\ newline \n tab \t nul \x00 del \x7f'},
        {"big": 2**63, "small": -(2**63) - 1, "edge": 2**63 - 1, "neg_edge": -(2**63)},
        {"nan": math.nan},
        {"inf": -math.inf},
        {"floats": 1e16, "tiny": 1e-7, "third": 1 / 3},
        {"when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "how_long": timedelta(days=1)},
        {"enum": Color.RED, "sub": Text("x"), "id": uuid.UUID(int=5)},
        {"nested": {"a": 1}, "list": [1, 2]},
        {1: "int key"},
    ],
)
def test_log_lines_parse_to_the_stdlib_document(document):
    line = dumps(document)
    expected = json.dumps(document, default=str)
    assert line.isascii() and "\n" not in line
    if any(isinstance(v, float) and not math.isfinite(v) for v in document.values()):
        assert line == expected  # NaN/Infinity: written as before
    else:
        assert json.loads(line) == json.loads(expected)


def test_random_plain_documents_parse_alike():
    rng = random.Random(6)
    alphabet = "aZ09 -_/\"\\\n\t\x01\u00e9\u2028\U0001f600"
    for _ in range(2000):
        document = {}
        for i in range(rng.randint(0, 6)):
            kind = rng.randrange(5)
            document[f"k{i}"] = (
                "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) if kind == 0
                else rng.randint(-(2**65), 2**65) if kind == 1
                else rng.uniform(-1e6, 1e6) if kind == 2
                else rng.choice([True, False, None]) if kind == 3
                else round(rng.random() * 100, 3)
            )
        assert json.loads(dumps(document)) == json.loads(json.dumps(document, default=str))


def test_time_text_is_datetimes():
    rng = random.Random(7)
    now = datetime.now(UTC).timestamp()
    stamps = [0.0, 0.9995, 0.9999995, 1.0000005, now, math.floor(now) + 0.9999996, -0.5]
    stamps += [rng.uniform(0, 4e9) for _ in range(20000)]
    stamps += [math.floor(now) + rng.randrange(1_000_000) / 1e6 for _ in range(20000)]
    stamps += [math.floor(now) + rng.randrange(1000) / 1e3 + 5e-7 for _ in range(5000)]
    for stamp in stamps:
        expected = datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds")
        assert iso_millis(stamp) == expected, stamp


@pytest.mark.parametrize(
    "text",
    ["GET / 200", "Authorization: Bearer abc.def", "BEARER   xyz", "bEaReR\ttok", "x bearer",
     "unbearer tok", "caf\u00e9 Bearer tok", "\u0130 bearer tok", "bearer\u00a0tok",
     "Be\u0430rer tok"],  # the last with a Cyrillic a: not "bearer"
)
def test_redaction_pre_check_misses_nothing(text):
    assert redact(text) == re.sub(r"(?i)\b(bearer\s+)\S+", r"\1[redacted]", text)


def test_json_formatter_line_keeps_every_field():
    record = logging.LogRecord("app.request", logging.INFO, __file__, 1, "%s %s", ("GET", 200),
                               None)
    record.fields = {"request_id": "r", "path": "/p", "status": 200, "latency_ms": 1.5}
    document = json.loads(JsonFormatter().format(record))
    assert document == {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": "INFO", "logger": "app.request", "message": "GET 200",
        "process": record.process, "request_id": "r", "path": "/p", "status": 200,
        "latency_ms": 1.5,
    }


def test_an_exception_is_logged_redacted():
    try:
        raise ValueError("Bearer secret-token-value")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    document = json.loads(JsonFormatter().format(record))
    assert "secret-token-value" not in document["exception"]
    assert "Bearer [redacted]" in document["exception"]
