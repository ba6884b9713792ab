"""Typed configuration (app.settings): each value read by its key's type, in
layers config.py -> operator's file -> FLASK_* -> overrides; a bad value is
one line naming the key, the problem and the expected form."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import CONFIG_FILE_VARIABLE, ConfigError, load_settings

DEV = {"AUTH_MODE": "dev"}
ALICE_URN = "urn:globus:auth:identity:8a4c5f1e-0c1b-4d3e-9f7a-2b6c8d9e0f11"
GROUP_URN = "urn:globus:groups:id:0b9d7e1c-1f2a-4b3c-8d4e-5f6a7b8c9d0e"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_FILE_VARIABLE, raising=False)
    for name in [n for n in __import__("os").environ if n.startswith("FLASK_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("TRUE", True), ("Yes", True), ("on", True), ("1", True),
     ("false", False), ("False", False), ("NO", False), ("off", False), ("0", False)],
)
def test_booleans_in_any_case(monkeypatch: pytest.MonkeyPatch, text: str, expected: bool):
    monkeypatch.setenv("FLASK_METRICS_ENABLED", text)
    assert load_settings(DEV)["METRICS_ENABLED"] is expected


@pytest.mark.parametrize(
    "text",
    [ALICE_URN, f'["{ALICE_URN}"]', f"{ALICE_URN}, {GROUP_URN}", f'["{ALICE_URN}", "{GROUP_URN}"]'],
)
def test_lists_json_or_comma_separated(monkeypatch: pytest.MonkeyPatch, text: str):
    monkeypatch.setenv("FLASK_ADMINISTERED_BY", text)
    expected = [ALICE_URN, GROUP_URN] if GROUP_URN in text else [ALICE_URN]
    assert load_settings(DEV)["ADMINISTERED_BY"] == expected


def test_who_may_use_it_defaults_to_all_authenticated_users():
    config = load_settings(DEV)
    assert config["VISIBLE_TO"] == config["RUNNABLE_BY"] == ["all_authenticated_users"]


def test_who_may_use_it_takes_principals_and_the_spec_words(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FLASK_VISIBLE_TO", f"public, {GROUP_URN}")
    monkeypatch.setenv("FLASK_RUNNABLE_BY", f'["{ALICE_URN}", "all_authenticated_users"]')
    config = load_settings(DEV)
    assert config["VISIBLE_TO"] == ["public", GROUP_URN]
    assert config["RUNNABLE_BY"] == [ALICE_URN, "all_authenticated_users"]


def test_request_bounds_defaults():
    config = load_settings(DEV)
    assert (config["MAX_PRINCIPALS"], config["MAX_TAGS"], config["MAX_TAG_BYTES"]) == (64, 32, 256)


def test_numbers_and_durations_by_type(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FLASK_FAILURE_RATE", "0.25")
    monkeypatch.setenv("FLASK_MAX_CONTENT_LENGTH", "2048")
    monkeypatch.setenv("FLASK_RELEASE_AFTER", "PT12H")
    monkeypatch.setenv("FLASK_LOG_LEVEL", "debug")
    config = load_settings(DEV)
    assert config["FAILURE_RATE"] == 0.25 and config["MAX_CONTENT_LENGTH"] == 2048
    assert config["RELEASE_AFTER"] == "PT12H" and config["LOG_LEVEL"] == "DEBUG"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FLASK_FAILURE_RATE", "abc",
         "bad setting FLASK_FAILURE_RATE='abc': value is not a valid float; "
         "expected a number from 0 to 1"),
        ("FLASK_FAILURE_RATE", "1.5", "FLASK_FAILURE_RATE='1.5': ensure this value is less"),
        ("FLASK_RELEASE_AFTER", "30d",
         "bad setting FLASK_RELEASE_AFTER='30d': not an ISO 8601 duration; expected an "
         "ISO 8601 duration"),
        ("FLASK_MAXIMUM_DEADLINE", "P1M", "FLASK_MAXIMUM_DEADLINE='P1M': years and months"),
        ("FLASK_METRICS_ENABLED", "maybe", "FLASK_METRICS_ENABLED='maybe': value could not be "
         "parsed to a boolean; expected a boolean: true/false, yes/no, on/off, 1/0"),
        ("FLASK_ADMINISTERED_BY", "alice@example.org",
         "FLASK_ADMINISTERED_BY='alice@example.org': 'alice@example.org' is not a principal URN"),
        ("FLASK_ADMINISTERED_BY", "[oops", "FLASK_ADMINISTERED_BY='[oops': value is not a valid "
         "list"),
        ("FLASK_AUTH_TIMEOUT_SECONDS", "0", "FLASK_AUTH_TIMEOUT_SECONDS='0': ensure this value "
         "is greater than 0"),
        ("FLASK_INTROSPECT_CACHE_SIZE", "lots", "FLASK_INTROSPECT_CACHE_SIZE='lots': value is "
         "not a valid integer"),
        ("FLASK_GROUPS_CACHE_SIZE", "0", "FLASK_GROUPS_CACHE_SIZE='0': ensure this value is "
         "greater than or equal to 1"),
        ("FLASK_DEPENDENT_TOKENS_CACHE_TTL_SECONDS", "172800",
         "FLASK_DEPENDENT_TOKENS_CACHE_TTL_SECONDS='172800': ensure this value is less than or "
         "equal to 169200; expected a whole number of seconds from 0 to 169200"),
        ("FLASK_AUTH_MODE", "prod", "FLASK_AUTH_MODE='prod': unexpected value"),
        ("FLASK_LOG_FORMAT", "xml", "FLASK_LOG_FORMAT='xml': unexpected value"),
        ("FLASK_SCOPE", "action_all", "FLASK_SCOPE='action_all': not a full scope string"),
        ("FLASK_STORE_URL", "mysql://u:secret@db/x", "FLASK_STORE_URL: unsupported scheme"),
        ("FLASK_MIN_DELAY_SECONDS", "1000", "MIN_DELAY_SECONDS <= MAX_DELAY_SECONDS"),
        ("FLASK_RUNNABLE_BY", "public", "FLASK_RUNNABLE_BY='public': 'public' is for "
         "VISIBLE_TO only: a run needs a token; expected principal URNs or "
         '"all_authenticated_users"'),
        ("FLASK_RUNNABLE_BY", "", "FLASK_RUNNABLE_BY='': empty: no one could use the provider"),
        ("FLASK_VISIBLE_TO", "[]", "FLASK_VISIBLE_TO='[]': empty"),
        ("FLASK_VISIBLE_TO", "everyone", "FLASK_VISIBLE_TO='everyone': 'everyone' is not "
         "a principal URN or all_authenticated_users or public"),
        ("FLASK_VISIBLE_TO", f"public,{ALICE_URN},public", "'public' is listed twice"),
        ("FLASK_RUNNABLE_BY", ALICE_URN.upper(), "is not a principal URN"),
        ("FLASK_MAX_PRINCIPALS", "0", "FLASK_MAX_PRINCIPALS='0': ensure this value is greater "
         "than or equal to 1; expected a whole number from 1 to 1000"),
        ("FLASK_MAX_TAGS", "many", "FLASK_MAX_TAGS='many': value is not a valid integer"),
        ("FLASK_MAX_TAG_BYTES", "5000", "FLASK_MAX_TAG_BYTES='5000': ensure this value is less "
         "than or equal to 4096; expected a whole number of bytes from 1 to 4096"),
    ],
)
def test_a_bad_value_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings({} if name == "FLASK_AUTH_MODE" else DEV)
    text = str(raised.value)
    assert message in text and "\n" not in text
    assert "secret" not in text  # a URL's password is never echoed


def test_layers_defaults_file_environment_overrides(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    site = tmp_path / "site.py"
    site.write_text("FAILURE_RATE = 0.1\nMIN_DELAY_SECONDS = 1\nMAX_DELAY_SECONDS = 2\n")
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(site))
    monkeypatch.setenv("FLASK_MIN_DELAY_SECONDS", "0.5")
    config = load_settings({**DEV, "MAX_DELAY_SECONDS": 3, "TESTING": True})
    assert config["FAILURE_RATE"] == 0.1  # the file over config.py
    assert config["MIN_DELAY_SECONDS"] == 0.5  # the environment over the file
    assert config["MAX_DELAY_SECONDS"] == 3  # overrides over everything
    assert config["TESTING"] is True  # Flask's own keys pass through
    assert config["RELEASE_AFTER"] == "P30D"  # config.py


def test_operator_file_errors_name_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    site = tmp_path / "site.py"
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(site))
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(DEV)
    site.write_text("FAILURE_RATE = 'often'\n")
    with pytest.raises(ConfigError, match=r"bad setting FAILURE_RATE in .*site.py='often'"):
        load_settings(DEV)
    site.write_text("FAILURE_RATES = 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown setting FAILURE_RATES in .*site.py"):
        load_settings(DEV)
    site.write_text("FAILURE_RATE = (\n")
    with pytest.raises(ConfigError, match=r"site.py'?: SyntaxError"):
        load_settings(DEV)


def test_overrides_are_checked_too():
    with pytest.raises(ConfigError, match="bad setting FAILURE_RATE='2'"):
        load_settings({**DEV, "FAILURE_RATE": 2})


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("FLASK_FAILURE_RAT", "FLASK_FAILURE_RATE"), ("FLASK_failure_rate", "FLASK_FAILURE_RATE"),
     ("FLASK_STORE_URI", "FLASK_STORE_URL"), ("FLASK_LOGLEVEL", "FLASK_LOG_LEVEL")],
)
def test_an_unknown_flask_variable_is_refused_with_a_suggestion(
    monkeypatch: pytest.MonkeyPatch, name: str, suggestion: str
):
    monkeypatch.setenv(name, "1")
    with pytest.raises(ConfigError) as refused:
        load_settings(DEV)
    message = str(refused.value)
    assert "\n" not in message and name in message
    assert message.endswith(f"did you mean {suggestion}?")


def test_an_unknown_flask_variable_like_no_setting_points_to_config_py(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("FLASK_NONSENSE", "1")
    with pytest.raises(ConfigError, match=r"FLASK_NONSENSE .*config\.py"):
        load_settings(DEV)


@pytest.mark.parametrize(
    "name",
    ["FLASK_APP", "FLASK_DEBUG", "FLASK_ENV", "FLASK_ENV_FILE", "FLASK_SKIP_DOTENV",
     "FLASK_RUN_FROM_CLI", "FLASK_RUN_HOST", "FLASK_RUN_PORT", "FLASK_RUN_RELOAD",
     "FLASK_ROUTES_SORT"],
)
def test_flasks_own_variables_are_not_settings(monkeypatch: pytest.MonkeyPatch, name: str):
    monkeypatch.setenv(name, "1")
    assert load_settings(DEV)["AUTH_MODE"] == "dev"
