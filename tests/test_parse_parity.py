"""The orjson front of parse_json parses every body as the stdlib path does:
the same document (same types: 1 stays an int, 1.0 a float), or the same
refusal, worded by the stdlib path."""

from __future__ import annotations

import json

import pytest
from globus_action_provider_tools.flask.exceptions import BadActionRequest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import validation
from app.validation import parse_json, parse_json_stdlib


def outcome(parse, data: bytes) -> tuple[str, str]:
    """("ok", the document as typed JSON text) or ("refused", the message)."""
    try:
        document = parse(data)
    except BadActionRequest as error:
        return "refused", str(error.description)
    return "ok", json.dumps(document, sort_keys=True) + repr(type(document))


def assert_parity(data: bytes) -> None:
    assert outcome(parse_json, data) == outcome(parse_json_stdlib, data), data[:200]


TRICKY = [
    b'{"request_id": "r", "body": {"utc_offset": 5.5}}',
    b"NaN", b"[NaN]", b"Infinity", b"[-Infinity]", b"1e400", b"[-1e400]", b"1e-400",
    b"123456789012345678", b"1234567890123456789", b"18446744073709551616",
    b"-9223372036854775809", b"9223372036854775808", b"[1.0, 1, -0, -0.0, 1E5, 2e-3]",
    b'"\\ud800"', b'"\\udc00x"', b'"\\ud83d\\ude00"', b'"\xed\xa0\x80"', b'"\xff"',
    b'"\\u0000"', b'{"\\u0000": 1}', b'"\\\\u0000"', b'"a\x00"', b'"a\x01"',
    b'{"a": 1, "a": 2}', b"[" * 64 + b"]" * 64, b"[" * 65 + b"]" * 65,
    b"[" * 2000 + b"]" * 2000, b"[" * 990 + b"]" * 990, b"[" * 1020 + b"]" * 1020,
    b"\xef\xbb\xbf{}", '{"a": "é"}'.encode("utf-16"),
    b" {} ", b"\t\r\n[]\n", b'{"a":1}x', b"[1,]", b"{'a': 1}", b"", b" ", b"nul",
    b'{"label": "caf\xc3\xa9 \xf0\x9f\x98\x80"}', b'"\\u00e9"', b"1" * 20000,
    b'{"x": "' + b"y" * 17000 + b'"}', b"\xa0{}", b"{}\xa0", b"true", b"null",
]


@pytest.mark.parametrize("data", TRICKY, ids=lambda d: repr(d[:24]))
def test_tricky_bodies(data):
    assert_parity(data)


def test_the_orjson_front_is_taken_for_a_plain_body():
    body = b'{"request_id": "r", "body": {"utc_offset": 5.5}}'
    assert validation._LONG_DIGITS.search(body) is None and len(body) < validation._FAST_MAX_BYTES
    assert parse_json(body) == {"request_id": "r", "body": {"utc_offset": 5.5}}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.booleans())
def test_generated_bodies(value, ascii_only):
    assert_parity(json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_generated_bytes(data):
    assert_parity(data)
