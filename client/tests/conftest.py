"""Fixtures of ap-client's own tests: a test provider on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.provider import Provider


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch, tmp_path) -> None:
    """Nothing from the developer's shell or ~/.config may leak into a test."""
    for name in ("ACTION_PROVIDER_URL", "ACTION_PROVIDER_TOKEN", "ACTION_PROVIDER_OTHER_TOKEN",
                 "ACTION_PROVIDER_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ACTION_PROVIDER_TOKEN_FILE", str(tmp_path / "tokens.json"))


@pytest.fixture
def provider() -> Provider:
    return Provider()


@pytest.fixture
def url(provider: Provider) -> Iterator[str]:
    with provider.serve() as base:
        yield base
