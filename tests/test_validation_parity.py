"""The compiled (fastjsonschema) front of run validation changes nothing:
on tricky and generated inputs, the validator with it and the validator
without it (jsonschema alone) accept the same requests and reject the others
with the same messages; and the compiled validator never accepts what
jsonschema rejects (the property the front relies on)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.validation import RunRequestValidator

FAST = RunRequestValidator()
FULL = RunRequestValidator(compiled=False)
URN = f"urn:globus:auth:identity:{uuid.UUID(int=7)}"
GROUP = f"urn:globus:groups:id:{uuid.UUID(int=8)}"

TRICKY_OFFSETS: list[Any] = [
    True, False, None, [], {}, [5], 0, -0.0, 1, 1.0, -12, 14, 14.0, 14.0000001, -12.0000001,
    -12.5, 15, 1e300, -1e300, 2**70, "5", "5\n", "\n5", "5 ", " 5", "5\t", "+14:00", "+14:01",
    "14.", "14.0", "14.00", "14.1", "-12:00", "-12:01", "-12.0", "+05:30", "05:60", "5:30",
    "5.5", "-0", "+-5", "0x5", "", "+", "-", "\u0665", "1_0", "\u066b5", "14\n", "-12\n",
    "+05:30\n",
]
TRICKY_FIELDS: dict[str, list[Any]] = {
    "request_id": ["", "x", "x" * 256, "x" * 257, "é" * 256, "\U0001f600" * 256,
                   "\U0001f600" * 257, 5, None, ["x"], "a\nb"],
    "label": ["", "x", "x" * 64, "x" * 65, None, 5, "é" * 64],
    "monitor_by": [[], [URN], [URN, URN], [URN.upper()], [GROUP], [URN + "\n"], ["bob"], "x",
                   [1], [None], [URN, GROUP], None],
    "manage_by": [[], [URN], [URN, URN], [URN + "\n"], [GROUP], ["bob"], "x", [1],
                  [f"urn:globus:auth:identity:{uuid.UUID(int=i)}" for i in range(64)],
                  [f"urn:globus:auth:identity:{uuid.UUID(int=i)}" for i in range(65)],
                  [URN] * 65],
    "allowed_clients": [[], ["public"], ["globus"], ["creator"], ["x"], ["xy"], ["\n"],
                        ["public\n"], "public", [1]],
    "deadline": ["tomorrow", "2099-01-01T00:00:00Z", "2099-01-01T00:00:00", "2099-01-01",
                 "2099-01-01T00:00:00+05:30", "2099-01-01T00:00:00Z\n", 5, None],
    "release_after": ["P", "PT", "P1D", "PT1H", "P1D\n", "P\n", "P1.5D", "P1W", "P1Y",
                      "PT1.5S", "soon", 5, None, "P0D", "PT0S"],
    "tags": [[], ["a"], [1], "a", None, ["x" * 256], ["x" * 257], ["é" * 128], ["é" * 129],
             ["\U0001f600" * 64], ["\U0001f600" * 65], ["a"] * 32, ["a"] * 33, [1] * 33],
    "unknown": [1],
}


def outcome(validator: RunRequestValidator, document: Any) -> tuple[str, Any]:
    try:
        return "accepted", validator.validate(document)
    except Exception as error:
        return type(error).__name__, str(error)


def assert_parity(document: Any) -> None:
    assert outcome(FAST, document) == outcome(FULL, document)
    for checker, instance in ((FAST._request, document), (FAST._body, _body(document))):
        if instance is not _MISSING and _fast_accepts(checker, instance):
            assert checker.validator.is_valid(instance), instance


_MISSING = object()


def _body(document: Any) -> Any:
    return document.get("body", _MISSING) if isinstance(document, dict) else _MISSING


def _fast_accepts(checker: Any, instance: Any) -> bool:
    try:
        checker._fast(instance)
    except Exception:
        return False
    return True


def test_the_compiled_front_is_in_use():
    assert FAST._request._fast is not None and FAST._body._fast is not None
    assert FULL._request._fast is None and FULL._body._fast is None


@pytest.mark.parametrize("offset", TRICKY_OFFSETS, ids=repr)
def test_tricky_offsets(offset):
    assert_parity({"request_id": "r", "body": {"utc_offset": offset}})


@pytest.mark.parametrize(
    ("field", "value"),
    [(f, v) for f, values in TRICKY_FIELDS.items() for v in values],
    ids=repr,
)
def test_tricky_request_fields(field, value):
    assert_parity({"request_id": "r", "body": {"utc_offset": 1}, field: value})


@pytest.mark.parametrize(
    "document",
    [None, [], "x", 5, {}, {"request_id": "r"}, {"body": {"utc_offset": 1}},
     {"request_id": "r", "body": []}, {"request_id": "r", "body": {}},
     {"request_id": "r", "body": {"utc_offset": 1, "extra": 2}},
     {"request_id": 5, "body": {"utc_offset": "banana"}, "label": "", "monitor_by": ["bob"]}],
    ids=repr,
)
def test_tricky_documents(document):
    assert_parity(document)


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                   max_size=3),
    max_leaves=6,
)
field_values = {
    name: st.one_of(st.sampled_from(values), json_values)
    for name, values in TRICKY_FIELDS.items()
}
documents = st.fixed_dictionaries(
    {},
    optional={
        **field_values,
        "body": st.one_of(
            st.fixed_dictionaries(
                {"utc_offset": st.one_of(st.sampled_from(TRICKY_OFFSETS), json_scalars,
                                         st.from_regex(r"[+-]?[0-9]{1,2}([:.][0-9]{1,2})?\s?"))},
                optional={"extra": json_values},
            ),
            json_values,
        ),
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_generated_requests(document):
    assert_parity(document)
