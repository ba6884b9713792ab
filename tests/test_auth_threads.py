"""The library's token caches (introspections, dependent tokens, group
memberships) are shared by every thread of a worker process: many threads
using them at once get right answers and no exception, and the caches keep
working afterwards.

The library's own paths run (AuthState built by the app's builder, the
library's introspection, dependent-token grant and Groups lookup), Globus
faked over HTTP (app.testing; ``responses`` matches requests under a lock).
The caches are tiny (16 entries for 32 users, 1 s) so that entries are
evicted and expire all the time, and threads are switched every 10 µs
instead of 5 ms so that they interleave inside the caches' code often enough
for the test to see what production would see rarely but surely.
"""

from __future__ import annotations

import random
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from globus_action_provider_tools.authentication import AuthState

from app.auth import CACHES, ProviderAuthState, ThreadSafeTTLCache
from app.testing import GROUPS_SCOPE, FakeGlobus, User

THREADS = 16
TINY_CACHES = {
    "INTROSPECT_CACHE_SIZE": 16, "INTROSPECT_CACHE_TTL_SECONDS": 1,
    "DEPENDENT_TOKENS_CACHE_SIZE": 16, "DEPENDENT_TOKENS_CACHE_TTL_SECONDS": 1,
    "GROUPS_CACHE_SIZE": 16, "GROUPS_CACHE_TTL_SECONDS": 1,
}


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads every 10 µs for the test (the interpreter's default is 5 ms)."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(interval)


def in_threads(work: Callable[[random.Random], None]) -> list[str]:
    """Run ``work`` in THREADS threads at once (each with its own seeded
    randomness); the tracebacks of what they raised."""
    failures: list[str] = []
    start = threading.Barrier(THREADS)

    def run(seed: int) -> None:
        start.wait()
        try:
            work(random.Random(seed))
        except Exception:
            failures.append(traceback.format_exc())

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def installed_caches() -> list[Any]:
    return [getattr(AuthState, attribute) for attribute, _, _ in CACHES]


def test_many_threads_through_the_library_paths_get_right_answers(
    make_app: Callable[..., Flask], globus: FakeGlobus, busy_switching: None
):
    app = make_app(LOG_LEVEL="ERROR", **TINY_CACHES)
    builder = app.extensions["auth_state_builder"]
    users = [globus.user(f"user{n}") for n in range(32)]
    group = globus.group(*users[::2])
    wrong: list[str] = []

    def ask(rng: random.Random) -> None:
        for _ in range(150):
            user: User = rng.choice(users)
            state = builder.build(user.token)  # introspection
            if state.effective_identity != user.urn:
                wrong.append(f"{user.name} introspected as {state.effective_identity}")
            member = user in users[::2]
            for _ in range(4):  # dependent tokens and Groups, then cached memberships
                if state.check_authorization([group]) != member:
                    wrong.append(f"{user.name}: member {member}, authorized otherwise")
                if (group in state.principals) != member:
                    wrong.append(f"{user.name}: member {member}, principals otherwise")

    failures = in_threads(ask)

    assert not failures, f"{len(failures)} threads raised; the first:\n{failures[0]}"
    assert wrong == []
    # The caches were overrun (entries evicted or expired, then fetched again)...
    assert globus.introspections > len(users)
    assert globus.group_lookups > len(users) // 2
    # ...and still work.
    for cache in installed_caches():
        cache["after"] = frozenset({"x"})
        assert cache.get("after") == frozenset({"x"})


def test_the_caches_stay_whole_under_many_threads_using_them_as_the_library_does(
    make_app: Callable[..., Flask], busy_switching: None
):
    """The caches' own operations as the library calls them (``get``, store,
    ``del`` of a stale entry), from many threads, on keys that evict each other."""
    make_app(**TINY_CACHES)
    caches = installed_caches()
    keys = [f"token-hash-{n}" for n in range(32)]
    wrong: list[str] = []

    def use(rng: random.Random) -> None:
        for _ in range(3000):
            cache, key = rng.choice(caches), rng.choice(keys)
            value = cache.get(key)
            if value is None:
                cache[key] = f"value of {key}"
            elif value != f"value of {key}":
                wrong.append(f"{key}: {value}")
            elif rng.random() < 0.1:
                del cache[key]

    failures = in_threads(use)

    assert not failures, f"{len(failures)} threads raised; the first:\n{failures[0]}"
    assert wrong == []
    for cache in caches:  # not broken afterwards
        cache.clear()
        for key in keys:
            cache[key] = key
        assert sum(cache.get(key) == key for key in keys) == 16


def test_deleting_an_entry_that_expired_or_went_is_not_an_error(make_app):
    """The library deletes a dependent-token answer it found a moment before
    (``get_authorizer_for_scope``); it may be gone by then. cachetools raises
    KeyError for an expired entry even as it removes it (TTL 0: expired at once)."""
    make_app(DEPENDENT_TOKENS_CACHE_TTL_SECONDS=0, GROUPS_CACHE_TTL_SECONDS=0)
    for cache in (AuthState.dependent_tokens_cache, AuthState.group_membership_cache):
        cache["expired"] = frozenset()
        del cache["expired"]
        del cache["never there"]
        assert cache.get("expired") is None


def test_the_caches_are_thread_safe_and_the_override_still_applies(make_app):
    make_app()
    assert all(isinstance(cache, ThreadSafeTTLCache) for cache in installed_caches())
    # ProviderAuthState replaces the library's check-then-read of the
    # dependent-token cache: the library must still have the method it replaces.
    assert "_get_cached_dependent_tokens" in vars(AuthState)
    assert "_get_cached_dependent_tokens" in vars(ProviderAuthState)


def test_many_threads_asking_for_dependent_tokens_get_them(
    make_app: Callable[..., Flask], globus: FakeGlobus, busy_switching: None
):
    """The dependent-token path alone (``get_authorizer_for_scope``, which the
    Groups lookup calls): cached answers are found and then read while other
    threads' inserts evict entries."""
    app = make_app(LOG_LEVEL="ERROR", **TINY_CACHES)
    builder = app.extensions["auth_state_builder"]
    users = [globus.user(f"user{n}") for n in range(32)]
    states = {user.token: builder.build(user.token) for user in users}
    wrong: list[str] = []

    def ask(rng: random.Random) -> None:
        for _ in range(400):
            user: User = rng.choice(users)
            authorizer = states[user.token].get_authorizer_for_scope(GROUPS_SCOPE)
            if authorizer.access_token != f"groups-{user.token}":
                wrong.append(f"{user.name} got another's Groups token")

    failures = in_threads(ask)

    assert not failures, f"{len(failures)} threads raised; the first:\n{failures[0]}"
    assert wrong == []
