"""Introspection (GET /): the provider's description, and CORS (any origin,
preflight without a token)."""

from __future__ import annotations

import json

from app.testing import SCOPE
from tests.spec import assert_conforms


def test_introspection_document(client, alice):
    response = client.get("/", headers=alice.headers)
    assert response.status_code == 200
    document = response.json
    assert document["title"] == "What Time Is It Right Now?"
    assert document["subtitle"].startswith("From the makers of Philbert")
    assert document["synchronous"] is False
    assert document["globus_auth_scope"] == SCOPE
    assert document["types"] == ["Action"]
    assert document["visible_to"] == ["all_authenticated_users"]
    assert document["runnable_by"] == ["all_authenticated_users"]
    assert document["keywords"] == ["time", "whattimeisitnow", "productivity"]
    with open("schema.json") as f:
        assert document["input_schema"] == json.load(f)
    assert None not in document.values()
    # Every field but visible_to (the sample's deliberate choice) meets the spec.
    assert_conforms({**document, "visible_to": []}, "ProviderDescription")


def test_introspection_says_log_is_supported(client, alice):
    document = client.get("/", headers=alice.headers).json
    assert document["log_supported"] is True
    assert_conforms({**document, "visible_to": []}, "ProviderDescription")


# --- CORS --------------------------------------------------------------------------------
def test_cors_preflight_needs_no_token(client, globus):
    response = client.options(
        "/", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    )
    assert response.status_code == 204 and response.data == b""
    assert response.headers["Access-Control-Allow-Methods"] == "GET, OPTIONS"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Expose-Headers"] == "*"
    assert globus.introspections == 0


def test_introspection_allows_any_origin(client, alice):
    response = client.get("/", headers=alice.headers)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
