"""A soak of the production auth path: a real server process (production
settings, real Globus Auth mode), Globus Auth and Groups faked over HTTP by a
loopback server (tests/loopback_auth.py), an action shared with a group in
``monitor_by``, 500 tokens from 16 concurrent clients for longer than every
auth cache's TTL, with caches smaller than the tokens in use: entries expire
and are evicted all the time, while requests run side by side. Half of the
requests come from 50 busy tokens (cache hits, until their entries expire),
the others from any of the 500 (mostly misses, evicting others).

Every answer must be right (a member of the group sees the action, a
stranger gets 404 and does not see it listed) and none a 5xx; the server
logs no traceback and no Groups failure (a cache error in the Groups lookup
would be swallowed there as a denial).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.loopback_auth import AuthCounters, loopback_auth, production_auth_env
from tests.server import serve_process

pytestmark = pytest.mark.e2e
CLIENTS = 16
TOKENS = 500
SOAK_SECONDS = 8.0  # 8 introspection and groups TTLs, 4 dependent-token TTLs
BUSY_TOKENS = 50
CACHE_SIZE = 200  # fewer than the tokens: entries are evicted too
CACHES = ("introspect", "dependent_tokens", "groups")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, AuthCounters, Path]]:
    output = tmp_path / "server-output"
    with loopback_auth() as (auth_url, counters):
        env = {
            **production_auth_env(auth_url),
            "FLASK_MIN_DELAY_SECONDS": "3600", "FLASK_MAX_DELAY_SECONDS": "3600",
            "FLASK_LOG_LEVEL": "WARNING",
            "FLASK_INTROSPECT_CACHE_TTL_SECONDS": "1",
            "FLASK_GROUPS_CACHE_TTL_SECONDS": "1",
            "FLASK_DEPENDENT_TOKENS_CACHE_TTL_SECONDS": "2",
            "FLASK_INTROSPECT_CACHE_SIZE": str(CACHE_SIZE),
            "FLASK_GROUPS_CACHE_SIZE": str(CACHE_SIZE),
            "FLASK_DEPENDENT_TOKENS_CACHE_SIZE": str(CACHE_SIZE),
        }
        with serve_process(env, output_path=output) as (url, _process):
            yield url, counters, output


def cache_lookups(url: str) -> dict[tuple[str, str], float]:
    text = requests.get(url + "/metrics", timeout=10).text
    return {
        (s.labels["cache"], s.labels["result"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "auth_cache_lookups_total"
    }


def test_sixteen_clients_and_500_tokens_outlast_every_cache_ttl(served):
    url, auth, output = served
    group_id = str(uuid.uuid4())
    tokens = [f"soak-{n:03d}-{uuid.uuid4().hex}" for n in range(TOKENS)]
    members = set(tokens[::2])
    auth.groups.update({token: [group_id] for token in members})
    owner = f"owner-{uuid.uuid4().hex}"
    started = requests.post(
        url + "/run", timeout=30, headers={"Authorization": f"Bearer {owner}"},
        json={"request_id": "shared", "body": {"utc_offset": 2},
              "monitor_by": [f"urn:globus:groups:id:{group_id}"]},
    )
    assert started.status_code == 202, started.text
    action_id = started.json()["action_id"]

    statuses: Counter[int] = Counter()
    wrong: list[str] = []
    lock = threading.Lock()
    begin = time.monotonic()
    deadline = begin + SOAK_SECONDS

    def client(seed: int) -> None:
        rng = random.Random(seed)
        session = requests.Session()
        seen: Counter[int] = Counter()
        mistakes: list[str] = []
        while time.monotonic() < deadline:
            token = rng.choice(tokens[:BUSY_TOKENS] if rng.random() < 0.5 else tokens)
            member = token in members
            headers = {"Authorization": f"Bearer {token}"}
            if rng.random() < 0.75:
                answer = session.get(f"{url}/{action_id}/status", headers=headers, timeout=30)
                right = (answer.status_code == 200 and answer.json()["action_id"] == action_id
                         if member else answer.status_code == 404)
            else:
                answer = session.get(f"{url}/actions?roles=monitor_by", headers=headers,
                                     timeout=30)
                listed = [a["action_id"] for a in answer.json().get("actions", [])]
                right = answer.status_code == 200 and listed == ([action_id] if member else [])
            seen[answer.status_code] += 1
            if not right:
                mistakes.append(f"{'member' if member else 'stranger'} {answer.request.path_url}"
                                f" -> {answer.status_code} {answer.text[:200]}")
        with lock:
            statuses.update(seen)
            wrong.extend(mistakes)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - begin
    lookups = cache_lookups(url)
    requests_made = sum(statuses.values())
    print(f"\nsoak: {requests_made} requests in {elapsed:.1f} s by {CLIENTS} clients, "
          f"statuses {dict(statuses)}; Auth: {len(auth.introspections)} introspections, "
          f"{auth.dependent_grants.total()} dependent-token grants, "
          f"{auth.group_lookups.total()} Groups calls; cache lookups {lookups}")

    assert elapsed > SOAK_SECONDS
    assert not [s for s in statuses if s >= 500], statuses
    assert wrong == [], f"{len(wrong)} wrong answers of {requests_made}: {wrong[:5]}"
    assert set(statuses) == {200, 404}
    # Every cache was used, and entries expired or were evicted and were fetched again.
    for cache in CACHES:
        assert lookups[cache, "hit"] > 0 and lookups[cache, "miss"] > 0, (cache, lookups)
    assert max(Counter(prefix for prefix, _ in auth.introspections).values()) > 1
    assert max(auth.dependent_grants.values()) > 1
    assert max(auth.group_lookups.values()) > 1
    log = output.read_text(errors="replace")
    assert "Traceback" not in log
    assert "Groups unavailable" not in log
