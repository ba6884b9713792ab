"""Shared fixtures: the project's own pytest plugin (app.testing.plugin: the
app with a fake clock, Globus faked over HTTP, users) and the store URLs."""

from tests.store_fixtures import postgres_server, postgres_url, sqlite_url  # noqa: F401

pytest_plugins = ["app.testing.plugin"]
