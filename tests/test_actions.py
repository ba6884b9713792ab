"""The business rules alone: fake clock, seeded randomness, memory store."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta, timezone

import pytest
from globus_action_provider_tools.data_types import ActionRequest
from globus_action_provider_tools.flask.exceptions import (
    ActionConflict,
    ActionNotFound,
    BadActionRequest,
)

from app.actions import (
    ActionRules,
    ActionService,
    fingerprint,
    parse_duration,
    parse_utc_offset,
)
from app.store import MemoryStore

ALICE = "urn:globus:auth:identity:11111111-1111-4111-8111-111111111111"
BOB = "urn:globus:auth:identity:22222222-2222-4222-8222-222222222222"


class Caller:
    """Stands in for the library's AuthState: identities only, no groups."""

    def __init__(self, urn: str) -> None:
        self.effective_identity = urn
        self.identities = frozenset({urn})
        self.principals = self.identities
        self.groups: frozenset[str] = frozenset()

    def check_authorization(self, allowed, allow_public=False, allow_all_authenticated_users=False):
        return bool(set(allowed) & self.identities)


CONFIG = {
    "MIN_DELAY_SECONDS": 10,
    "MAX_DELAY_SECONDS": 10,
    "FAILURE_RATE": 0.0,
    "RELEASE_AFTER": "P30D",
    "MAX_RELEASE_AFTER": "P90D",
    "MAXIMUM_DEADLINE": "P30D",
}


def service(clock, **config):
    rules = ActionRules.from_config({**CONFIG, **config})
    return ActionService(MemoryStore(), rules, clock=clock, rng=random.Random(1))


def request(request_id="r", offset=1, **extra):
    return ActionRequest(request_id=request_id, body={"utc_offset": offset}, **extra)


@pytest.mark.parametrize(
    ("value", "minutes"),
    [
        (0, 0),
        (5.5, 330),
        (-3.75, -225),
        ("+05:30", 330),
        ("-3", -180),
        ("5.5", 330),
        ("-12:00", -720),
        (14, 840),
        (0.0083, 0),
        (1 / 60, 1),
    ],
)
def test_parse_utc_offset(value, minutes):
    assert parse_utc_offset(value) == timezone(timedelta(minutes=minutes))


def test_offset_out_of_range_after_rounding_is_400():
    with pytest.raises(BadActionRequest):
        parse_utc_offset(14.01)


def test_fingerprint_ignores_request_id_and_order_of_principals():
    a = request("one", monitor_by={ALICE, BOB})
    b = request("two", monitor_by={BOB, ALICE})
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(request("one", offset=2, monitor_by={ALICE, BOB}))
    assert fingerprint(request(label="x")) != fingerprint(request())


def test_action_ids_are_distinct_uuid4_text(clock):
    rules = service(clock)
    ids = [rules.run(request(f"r{n}"), Caller(ALICE))[0]["action_id"] for n in range(50)]
    assert len(set(ids)) == len(ids)
    assert all(str(uuid.UUID(text, version=4)) == text for text in ids)


def test_a_callers_actions_share_one_copy_of_its_identity(clock):
    """(Memory: the store keeps one copy of each identity's text.)"""
    rules = service(clock)
    ids = [rules.run(request(f"r{n}"), Caller("".join(["urn:", ALICE[4:]])))[0]["action_id"]
           for n in range(2)]
    first, second = (rules.store.get(i) for i in ids)
    assert first.creator_id == ALICE and first.monitor_by == first.manage_by == (ALICE,)
    assert second.creator_id is first.creator_id is second.monitor_by[0]


def test_zero_release_after_is_kept_not_replaced_by_the_default(clock):
    """PT0S (a falsy timedelta) means "release on completion", not P30D."""
    rules = service(clock)
    started, _ = rules.run(request(release_after="PT0S"), Caller(ALICE))
    assert started["release_after"] == "P0D"
    clock.advance(10 - 0.001)
    assert rules.status(started["action_id"], Caller(ALICE))["status"] == "ACTIVE"
    clock.advance(0.001)  # completed, and released at once
    with pytest.raises(ActionNotFound):
        rules.status(started["action_id"], Caller(ALICE))
    assert fingerprint(request(release_after="PT0S")) != fingerprint(request())


def test_result_is_computed_at_start_and_revealed_at_the_estimate(clock):
    rules = service(clock)
    started, created = rules.run(request(offset="+01:00"), Caller(ALICE))
    assert created and started["status"] == "ACTIVE"
    start = clock.now
    clock.advance(9.999)
    assert rules.status(started["action_id"], Caller(ALICE))["status"] == "ACTIVE"
    clock.advance(0.001)
    done = rules.status(started["action_id"], Caller(ALICE))
    assert done["details"] == {
        "whattimeisit": start.astimezone(timezone(timedelta(hours=1))).isoformat()
    }


def test_repeat_returns_existing_and_conflict_on_other_content(clock):
    rules = service(clock)
    first, _ = rules.run(request(), Caller(ALICE))
    again, created = rules.run(request(), Caller(ALICE))
    assert not created and again["action_id"] == first["action_id"]
    with pytest.raises(ActionConflict):
        rules.run(request(offset=2), Caller(ALICE))


def test_deadline_caps_the_estimate(clock):
    rules = service(clock, MIN_DELAY_SECONDS=100, MAX_DELAY_SECONDS=100)
    deadline = clock.now + timedelta(seconds=30)
    status, _ = rules.run(request(deadline=deadline), Caller(ALICE))
    assert status["details"]["estimated_completion_time"] == deadline.isoformat()


@pytest.mark.parametrize("offset", [timedelta(seconds=-1), timedelta(0), timedelta(days=31)])
def test_deadline_in_the_past_or_too_far_is_400(clock, offset):
    with pytest.raises(BadActionRequest):
        service(clock).run(request(deadline=clock.now + offset), Caller(ALICE))


def test_naive_deadline_is_400(clock):
    naive = (clock.now + timedelta(hours=1)).replace(tzinfo=None)
    with pytest.raises(BadActionRequest, match="offset"):
        service(clock).run(request(deadline=naive), Caller(ALICE))


def test_cancel_then_release_then_gone(clock):
    rules = service(clock)
    action_id = rules.run(request(), Caller(ALICE))[0]["action_id"]
    with pytest.raises(ActionConflict):
        rules.release(action_id, Caller(ALICE))
    cancelled = rules.cancel(action_id, Caller(ALICE))
    assert cancelled["details"]["error"] == "CANCELLED"
    with pytest.raises(ActionConflict):
        rules.cancel(action_id, Caller(ALICE))
    assert rules.release(action_id, Caller(ALICE)) == cancelled
    with pytest.raises(ActionNotFound):
        rules.status(action_id, Caller(ALICE))


def test_others_get_not_found(clock):
    rules = service(clock)
    action_id = rules.run(request(), Caller(ALICE))[0]["action_id"]
    for operation in (rules.status, rules.cancel, rules.release):
        with pytest.raises(ActionNotFound):
            operation(action_id, Caller(BOB))


def test_released_automatically_and_storage_reclaimed(clock):
    rules = service(clock, RELEASE_AFTER="PT1H")
    store = rules.store
    first = rules.run(request("a"), Caller(ALICE))[0]["action_id"]
    clock.advance(10 + 3600)
    with pytest.raises(ActionNotFound):
        rules.status(first, Caller(ALICE))
    rules.run(request("b"), Caller(ALICE))  # a run sweeps what is due
    assert store.get(first) is None and len(store) == 1


class CountingStore(MemoryStore):
    """The memory store, counting the sweeps the rules ask for."""

    sweeps = 0

    def sweep(self, now, limit):  # type: ignore[no-untyped-def]
        self.sweeps += 1
        return super().sweep(now, limit)


def test_sweeps_are_amortised_yet_storage_stays_bounded(clock):
    """At most one sweep a second while nothing is behind; a backlog (here
    everything falls due at once) is swept by the following runs until gone."""
    rules = service(clock, RELEASE_AFTER="PT0S")
    store = rules.store = CountingStore()
    for n in range(1_100):  # within one second of the clock: one sweep
        rules.run(request(f"burst-{n}"), Caller(ALICE))
        clock.advance(0.0005)
    assert store.sweeps == 1 and len(store) == 1_100
    clock.advance(3600)  # the whole burst falls due at once
    for n in range(5):
        rules.run(request(f"after-{n}"), Caller(ALICE))
    # 1,100 due, SWEEP_LIMIT (256) a sweep: five sweeps, the fifth not full.
    assert store.sweeps == 1 + 5 and len(store) == 5
    rules.run(request("calm"), Caller(ALICE))
    assert store.sweeps == 6  # caught up, and less than a second since the last


def test_expired_request_id_starts_a_new_action(clock):
    rules = service(clock, RELEASE_AFTER="PT1H")
    first = rules.run(request("same"), Caller(ALICE))[0]["action_id"]
    clock.advance(10 + 3600)
    again, created = rules.run(request("same"), Caller(ALICE))
    assert created and again["action_id"] != first


def test_settings_are_checked():
    with pytest.raises(ValueError):
        ActionRules.from_config({**CONFIG, "MIN_DELAY_SECONDS": 10, "MAX_DELAY_SECONDS": 5})
    with pytest.raises(ValueError):
        ActionRules.from_config({**CONFIG, "FAILURE_RATE": 1.5})
    # A default release_after beyond the maximum made every plain run a 400.
    with pytest.raises(ValueError, match="RELEASE_AFTER"):
        ActionRules.from_config({**CONFIG, "RELEASE_AFTER": "P30D", "MAX_RELEASE_AFTER": "P10D"})
    with pytest.raises(ValueError, match="RELEASE_AFTER"):
        ActionRules.from_config({**CONFIG, "RELEASE_AFTER": "-P1D"})
    with pytest.raises(ValueError, match="MAXIMUM_DEADLINE"):
        ActionRules.from_config({**CONFIG, "MAXIMUM_DEADLINE": "P0D"})
    ActionRules.from_config({**CONFIG, "RELEASE_AFTER": "P0D", "MAX_RELEASE_AFTER": "P0D"})
    with pytest.raises(ValueError):
        parse_duration("P1Y")


def test_the_resume_rule(clock):
    rules = service(clock, FAILURE_RATE=1.0)
    started, _ = rules.run(request(), Caller(ALICE))
    action_id = started["action_id"]
    assert rules.resume(action_id, Caller(ALICE)) == started
    with pytest.raises(ActionNotFound):
        rules.resume(action_id, Caller(BOB))
    clock.advance(10)
    assert rules.status(action_id, Caller(ALICE))["status"] == "FAILED"
    with pytest.raises(ActionConflict, match="already completed"):
        rules.resume(action_id, Caller(ALICE))
