"""Request ids, structured logs (and what they never hold), /healthz and
/metrics, in one process. The log line's fields and the server's own lines:
test_request_log_line.py; metrics across worker processes:
test_production_e2e.py; /healthz while draining: test_server_e2e.py."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.observability import Metrics
from tests.helpers import RESUME_PATHS, run, start


def log_lines(captured: str) -> list[dict]:
    """Every line the app wrote to stderr, each parsed as one JSON object."""
    return [json.loads(line) for line in captured.splitlines() if line.strip()]


def request_lines(captured: str) -> list[dict]:
    return [line for line in log_lines(captured) if line["logger"] == "app.request"]


def metric(client, name: str, **labels: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


# --- request ids ---------------------------------------------------------------
def test_a_valid_incoming_request_id_is_honoured(client, alice):
    response = client.get("/", headers={**alice.headers, "X-Request-ID": "flows-abc.123:x"})
    assert response.headers["X-Request-ID"] == "flows-abc.123:x"


@pytest.mark.parametrize(
    "incoming", [None, "", "x" * 129, "has space", "new\\nline", "<script>", "é"]
)
def test_a_missing_or_unsafe_request_id_is_replaced(client, alice, incoming):
    headers = dict(alice.headers)
    if incoming is not None:
        headers["X-Request-ID"] = incoming
    first = client.get("/", headers=headers).headers["X-Request-ID"]
    second = client.get("/", headers=headers).headers["X-Request-ID"]
    assert first != incoming and len(first) == 32 and int(first, 16) >= 0
    assert first != second


def test_errors_carry_a_request_id_too(client):
    response = client.get("/nowhere", headers={"X-Request-ID": "trace-1"})
    assert response.status_code == 401 or response.status_code == 404
    assert response.headers["X-Request-ID"] == "trace-1"


# --- structured logs -----------------------------------------------------------
def test_every_log_line_is_one_json_object_with_the_request_fields(client, alice, capsys):
    capsys.readouterr()
    started = run(client, alice)
    action_id = started.json["action_id"]
    client.get(f"/{action_id}/status", headers={**alice.headers, "X-Request-ID": "req-7"})
    client.get("/", headers={"Authorization": "Bearer not-a-token-anyone-has"})

    captured = capsys.readouterr().err
    lines = log_lines(captured)  # each line parses as JSON
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    run_line, status_line, refused_line = request_lines(captured)
    assert run_line["method"] == "POST" and run_line["path"] == "/run"
    assert run_line["status"] == 202 and run_line["action_id"] == action_id
    assert run_line["caller"] == alice.urn
    assert run_line["request_id"] == started.headers["X-Request-ID"]
    assert status_line["route"] == "/<action_id>/status" and status_line["status"] == 200
    assert status_line["request_id"] == "req-7" and status_line["action_id"] == action_id
    assert isinstance(status_line["latency_ms"], float) and status_line["latency_ms"] >= 0
    assert refused_line["status"] == 401 and "caller" not in refused_line


def test_no_token_secret_or_body_is_ever_logged(make_app, globus, alice, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_app(LOG_LEVEL="DEBUG").test_client()
    body_marker = "BODY-MARKER-7f3a"
    unknown_token = "TOKEN-MARKER-unknown-91c2"
    run(client, alice, label=body_marker)
    client.post("/run", headers=alice.headers, data=f'{{"request_id": "{body_marker}"')  # bad
    client.get("/?access_token=QUERY-MARKER", headers=alice.headers)
    client.get("/", headers={"Authorization": f"Bearer {unknown_token}"})
    client.get("/", headers={"Authorization": f"Basic {unknown_token}"})
    stderr = capsys.readouterr().err
    assert len(request_lines(stderr)) == 5  # every request was logged, and cleanly:
    captured = stderr + caplog.text
    for secret in (alice.token, unknown_token, body_marker, "QUERY-MARKER", "not-a-real-secret"):
        assert secret not in captured


def test_tokens_never_reach_the_logs(client, alice, caplog):
    caplog.set_level("DEBUG")
    run(client, alice)
    client.get("/", headers={"Authorization": "Bearer token-nobody-knows-about"})
    assert alice.token not in caplog.text
    assert "token-nobody-knows-about" not in caplog.text


def test_text_format_and_bad_format(make_app, alice, capsys):
    client = make_app(LOG_FORMAT="text").test_client()
    capsys.readouterr()
    client.get("/", headers=alice.headers)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert " INFO app.request GET / 200" in line and "request_id=" in line
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        make_app(LOG_FORMAT="xml")


# --- /healthz ----------------------------------------------------------------------
def test_healthz_needs_no_token_and_no_globus(client, globus):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}
    assert globus.calls_to("https://auth.globus.org/v2/oauth2/token/introspect") == 0


class DownStore:
    """A store whose database does not answer (a stand-in for an external DB)."""

    def __init__(self, error: bool) -> None:
        self.error = error

    def ping(self) -> bool:
        if self.error:
            raise ConnectionError("database unreachable")
        return False


@pytest.mark.parametrize("error", [False, True])
def test_healthz_is_503_json_when_the_store_does_not_answer(app, error):
    app.extensions["store"] = DownStore(error)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.is_json and set(response.json) == {"code", "description"}


# --- /metrics ---------------------------------------------------------------------
def test_metrics_count_requests_by_route_and_status(client, alice):
    action_ids = [run(client, alice).json["action_id"] for _ in range(3)]
    for action_id in action_ids:
        client.get(f"/{action_id}/status", headers=alice.headers)
    for _ in range(50):  # hostile paths must not create new label values
        client.get(f"/{uuid.uuid4()}/{uuid.uuid4()}", headers=alice.headers)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    assert metric(client, "http_requests_total", route="/run", status="202") == 3
    assert metric(client, "http_requests_total", route="/<action_id>/status", status="200") == 3
    assert metric(client, "http_requests_total", route="<unmatched>", status="404") == 50
    assert metric(
        client, "http_request_duration_seconds_count", route="/<action_id>/status", status="200"
    ) == 3
    routes = {
        sample.labels["route"]
        for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
        for sample in family.samples
        if "route" in sample.labels
    }
    assert routes <= {"/", "/run", "/<action_id>/status", "/metrics", "<unmatched>"}


def test_metrics_count_the_action_lifecycle(make_app, alice, clock):
    client = make_app(MIN_DELAY_SECONDS=10, MAX_DELAY_SECONDS=10).test_client()
    first, second, _ = (run(client, alice).json["action_id"] for _ in range(3))
    run_again = client.post(
        "/run", headers=alice.headers, json={"request_id": "same", "body": {"utc_offset": 1}}
    )
    repeat = client.post(
        "/run", headers=alice.headers, json={"request_id": "same", "body": {"utc_offset": 1}}
    )
    assert (run_again.status_code, repeat.status_code) == (202, 200)
    client.post(f"/{first}/cancel", headers=alice.headers)
    client.post(f"/{first}/cancel", headers=alice.headers)  # 409: not counted again
    client.post(f"/{second}/release", headers=alice.headers)  # 409: still running
    clock.advance(11)
    finals = [client.post(f"/{a}/release", headers=alice.headers).json for a in (first, second)]
    outcome = "succeeded" if finals[1]["status"] == "SUCCEEDED" else "failed"

    assert metric(client, "actions_started_total") == 4
    assert metric(client, "actions_cancelled_total") == 1
    assert metric(client, "actions_released_total", outcome="cancelled") == 1
    assert metric(client, "actions_released_total", outcome=outcome) == 1


def test_metrics_count_introspections_and_cache_hits(client, globus, alice, bob):
    for _ in range(3):
        client.get("/", headers=alice.headers)
    client.get("/", headers=bob.headers)
    assert globus.introspections == 2
    assert metric(client, "auth_introspections_total", outcome="ok") == 2
    assert metric(client, "auth_cache_lookups_total", cache="introspect", result="miss") == 2
    assert metric(client, "auth_cache_lookups_total", cache="introspect", result="hit") == 2
    # The name before the groups and dependent-token caches were counted: kept.
    assert metric(client, "auth_introspect_cache_lookups_total", result="miss") == 2
    assert metric(client, "auth_introspect_cache_lookups_total", result="hit") == 2


def test_metrics_count_group_and_dependent_token_cache_lookups(make_app, globus, alice, bob):
    client = make_app(GROUPS_CACHE_TTL_SECONDS=0).test_client()  # every group check misses
    group = globus.group(bob)
    action_id = start(client, alice, monitor_by=[group])
    for cache in ("groups", "dependent_tokens"):
        for result in ("hit", "miss"):
            assert metric(client, "auth_cache_lookups_total", cache=cache, result=result) == 0
    for _ in range(3):
        assert client.get(f"/{action_id}/status", headers=bob.headers).status_code == 200
    assert globus.group_lookups == 3
    assert metric(client, "auth_cache_lookups_total", cache="groups", result="miss") == 3
    assert metric(client, "auth_cache_lookups_total", cache="groups", result="hit") == 0
    # Groups is asked each time, with the dependent token granted the first time.
    assert metric(client, "auth_cache_lookups_total", cache="dependent_tokens", result="miss") == 1
    assert metric(client, "auth_cache_lookups_total", cache="dependent_tokens", result="hit") == 2


def test_resume_requests_are_counted_by_route(client, alice):
    action_id = start(client, alice)
    for path in RESUME_PATHS:
        client.post(path.format(action_id), headers=alice.headers)
    metrics = client.get("/metrics").get_data(as_text=True)
    for route in ("/<action_id>/resume", "/actions/<action_id>/resume"):
        line = f'http_requests_total{{method="POST",route="{route}",status="200"}} 1.0'
        assert line in metrics, route


def test_cached_metric_children_count_like_labels():
    metrics = Metrics()
    for status in (200, 200, 404, 200):
        metrics.observe_request("/<action_id>/status", "GET", status, 0.002)
    metrics.observe_request("/run", "POST", 202, 0.02)
    get = metrics.registry.get_sample_value
    assert get("http_requests_total", {"route": "/<action_id>/status", "method": "GET",
                                       "status": "200"}) == 3
    assert get("http_requests_total", {"route": "/<action_id>/status", "method": "GET",
                                       "status": "404"}) == 1
    assert get("http_request_duration_seconds_count", {"route": "/run", "method": "POST",
                                                       "status": "202"}) == 1
    assert get("http_request_duration_seconds_bucket", {"route": "/run", "method": "POST",
                                                        "status": "202", "le": "0.01"}) == 0
    assert get("http_request_duration_seconds_bucket", {"route": "/run", "method": "POST",
                                                        "status": "202", "le": "0.025"}) == 1


def test_metrics_disabled_is_404_not_found(make_app, alice):
    client = make_app(METRICS_ENABLED=False).test_client()
    response = client.get("/metrics")
    assert response.status_code == 404 and response.json["code"] == "NotFound"


@pytest.mark.parametrize("setting", [{"LOG_LEVEL": "WARNING"}, {"LOG_REQUESTS": False}])
def test_with_request_lines_off_ids_and_metrics_stay(make_app, alice, capsys, setting):
    client = make_app(**setting).test_client()
    capsys.readouterr()
    started = run(client, alice)
    status = client.get(f"/{started.json['action_id']}/status", headers=alice.headers)
    assert started.status_code == 202 and status.status_code == 200
    assert len(status.headers["X-Request-ID"]) == 32
    assert request_lines(capsys.readouterr().err) == []
    assert metric(client, "http_requests_total", route="/run", status="202") == 1
    assert metric(client, "actions_started_total") == 1


def test_a_repeated_run_logs_its_action_id(client, alice, capsys):
    document = {"request_id": "again", "body": {"utc_offset": 1}}
    first = client.post("/run", headers=alice.headers, json=document)
    repeat = client.post("/run", headers=alice.headers, json=document)
    assert (first.status_code, repeat.status_code) == (202, 200)
    lines = [line for line in request_lines(capsys.readouterr().err) if line["route"] == "/run"]
    assert [line["action_id"] for line in lines] == [first.json["action_id"]] * 2


def test_the_request_record_is_an_ordinary_log_record(client, alice, caplog):
    with caplog.at_level(logging.INFO, logger="app.request"):
        client.get("/", headers=alice.headers)
    (record,) = [r for r in caplog.records if r.name == "app.request"]
    assert (record.levelno, record.getMessage()) == (logging.INFO, "GET / 200")
    assert record.funcName == "_finish_request" and record.pathname.endswith("observability.py")
    assert record.route == "/" and record.status == 200  # type: ignore[attr-defined]
