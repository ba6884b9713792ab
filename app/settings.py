"""The service's typed configuration, read in layers (later ones win):

1. config.py: the documented defaults (shipped in the package as app/defaults.py);
2. the operator's file, if ``WHATTIMEISITRIGHTNOW_CONFIG`` names one: a Python
   file like config.py with only the keys it changes;
3. ``FLASK_<KEY>`` environment variables, read by the key's type; any other
   ``FLASK_`` name is refused (a typo would be ignored otherwise), except
   Flask's and its command line's own (``FLASK_OWN``);
4. ``create_app(overrides)`` (tests).

A bad value is a ``ConfigError``: one line naming the key (as the operator
wrote it), the problem and the expected form.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import isodate
from pydantic import BaseSettings, Field, ValidationError, validator
from pydantic.env_settings import SettingsError, SettingsSourceCallable
from pydantic.fields import ModelField

CONFIG_FILE_VARIABLE = "WHATTIMEISITRIGHTNOW_CONFIG"
DEFAULTS_FILE = Path(__file__).with_name("defaults.py")  # a link to the top-level config.py
ENV_PREFIX = "FLASK_"
# Never echoed (a URL may hold a password).
SECRET_KEYS = frozenset({"CLIENT_SECRET", "STORE_URL", "RATE_LIMIT_STORAGE_URL"})
PRINCIPAL = re.compile(
    r"urn:globus:(auth:identity|groups:id):[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)
# Flask's and its command line's own variables (Flask 2.3: helpers.py, app.py,
# cli.py, where click names one FLASK_<COMMAND>_<OPTION> for each option of the
# run, routes and shell commands): not settings of ours.
FLASK_OWN = frozenset({"APP", "DEBUG", "ENV", "ENV_FILE", "SKIP_DOTENV", "RUN_FROM_CLI"})
FLASK_OWN_PREFIXES = ("RUN_", "ROUTES_", "SHELL_")
STORE_SCHEMES = ("memory:", "sqlite:", "postgresql:", "postgres:", "postgresql+psycopg:")
# Besides principal URNs: what VISIBLE_TO and RUNNABLE_BY may hold (the spec's words).
ACCESS_KEYWORDS = {
    "VISIBLE_TO": frozenset({"all_authenticated_users", "public"}),
    "RUNNABLE_BY": frozenset({"all_authenticated_users"}),
}
RATE_LIMIT_STORAGE_SCHEMES = ("memory://", "redis://", "rediss://", "redis+unix://")


class ConfigError(ValueError):
    """A setting is missing or malformed (the message is one line)."""


def _form(text: str, **constraints: Any) -> Any:
    """A required field (config.py gives every default) with its documented form."""
    return Field(..., form=text, **constraints)


class ServiceSettings(BaseSettings):
    """Every key of config.py, with its type (the README's table shows the forms)."""

    CLIENT_ID: str = _form("the confidential client's id (a UUID), or empty in dev mode")
    CLIENT_SECRET: str = _form("the confidential client's secret")
    SCOPE: str = _form("the full scope string, https://auth.globus.org/scopes/<client id>/<name>")
    AUTH_MODE: Literal["globus", "dev"] = _form("globus or dev")
    AUTH_TIMEOUT_SECONDS: float = _form("a number of seconds, more than 0 and at most 60",
                                        gt=0, le=60)
    INTROSPECT_CACHE_SIZE: int = _form("a whole number, at least 1", ge=1)
    INTROSPECT_CACHE_TTL_SECONDS: int = _form("a whole number of seconds, at least 0", ge=0)
    GROUPS_CACHE_SIZE: int = _form("a whole number, at least 1", ge=1)
    GROUPS_CACHE_TTL_SECONDS: int = _form("a whole number of seconds, at least 0", ge=0)
    DEPENDENT_TOKENS_CACHE_SIZE: int = _form("a whole number, at least 1", ge=1)
    DEPENDENT_TOKENS_CACHE_TTL_SECONDS: int = _form(
        "a whole number of seconds from 0 to 169200 (47 h: dependent tokens live 48 h)",
        ge=0, le=47 * 3600,
    )
    STORE_URL: str = _form("memory://, sqlite:///path/to/actions.db or postgresql://user@host/db")
    STORE_POOL_SIZE: int = _form("a whole number of connections from 1 to 1000", ge=1, le=1000)
    STORE_POOL_TIMEOUT_SECONDS: float = _form("a number of seconds, more than 0 and at most 300",
                                              gt=0, le=300)
    STORE_STATEMENT_TIMEOUT_SECONDS: float = _form(
        "a number of seconds, at least 0.001 and at most 3600", ge=0.001, le=3600
    )
    MEMORY_STORE_CAPACITY: int = _form("a whole number of actions, at least 1", ge=1)
    MAX_LIVE_ACTIONS: int = _form("a whole number of actions, at least 0 (0: no limit)", ge=0)
    MIN_DELAY_SECONDS: float = _form("a number of seconds, at least 0", ge=0)
    MAX_DELAY_SECONDS: float = _form("a number of seconds, at least MIN_DELAY_SECONDS", ge=0)
    FAILURE_RATE: float = _form("a number from 0 to 1", ge=0, le=1)
    RELEASE_AFTER: str = _form("an ISO 8601 duration in days and times, e.g. P30D or PT12H")
    MAX_RELEASE_AFTER: str = _form("an ISO 8601 duration in days and times, e.g. P90D")
    MAXIMUM_DEADLINE: str = _form("an ISO 8601 duration in days and times, e.g. P30D")
    MAX_REQUEST_ID_LENGTH: int = _form("a whole number from 1 to 4096", ge=1, le=4096)
    MAX_CONTENT_LENGTH: int = _form("a whole number of bytes, at least 1024", ge=1024)
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = _form(
        "DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)"
    )
    LOG_FORMAT: Literal["json", "text"] = _form("json or text")
    LOG_REQUESTS: bool = _form("a boolean: true/false, yes/no, on/off, 1/0 (any case)")
    METRICS_ENABLED: bool = _form("a boolean: true/false, yes/no, on/off, 1/0 (any case)")
    RUN_RATE_LIMIT: str = _form(
        'rates like "20/second;600/minute" (count/second, minute, hour or day), or "" for none'
    )
    GET_RATE_LIMIT: str = _form(
        'rates like "100/second;3000/minute" (count/second, minute, hour or day), or "" for none'
    )
    RATE_LIMIT_STORAGE_URL: str = _form(
        "memory://, redis://host:port/db, rediss://host:port/db or redis+unix:///path"
    )
    RATE_LIMIT_EXEMPT: list[str] = _form(
        "principal URNs (urn:globus:auth:identity:<uuid> or urn:globus:groups:id:<uuid>), "
        "as a JSON list or comma-separated"
    )
    ADMINISTERED_BY: list[str] = _form(
        "principal URNs (urn:globus:auth:identity:<uuid> or urn:globus:groups:id:<uuid>), "
        "as a JSON list or comma-separated"
    )
    VISIBLE_TO: list[str] = _form(
        'principal URNs, "all_authenticated_users" or "public", as a JSON list or '
        "comma-separated, at least one"
    )
    RUNNABLE_BY: list[str] = _form(
        'principal URNs or "all_authenticated_users", as a JSON list or comma-separated, '
        "at least one"
    )
    MAX_PRINCIPALS: int = _form("a whole number from 1 to 1000", ge=1, le=1000)
    MAX_TAGS: int = _form("a whole number from 0 to 1000", ge=0, le=1000)
    MAX_TAG_BYTES: int = _form("a whole number of bytes from 1 to 4096", ge=1, le=4096)
    TRUSTED_PROXIES: list[str] = _form(
        "IP addresses or networks (CIDR), as a JSON list or comma-separated"
    )

    class Config:
        env_prefix = ENV_PREFIX
        case_sensitive = True
        extra = "forbid"  # a misspelt key in the operator's file is an error, not ignored

        @classmethod
        def customise_sources(
            cls,
            init_settings: SettingsSourceCallable,
            env_settings: SettingsSourceCallable,
            file_secret_settings: SettingsSourceCallable,
        ) -> tuple[SettingsSourceCallable, ...]:
            # init_settings are the overrides; below the environment come the files.
            return init_settings, env_settings, _operator_file, _defaults

        @classmethod
        def parse_env_var(cls, field_name: str, raw_val: str) -> Any:
            """Lists (the one complex type): a JSON list, or comma-separated."""
            if raw_val.lstrip().startswith("["):
                try:
                    return json.loads(raw_val)
                except ValueError:
                    return raw_val  # reported as "not a valid list"
            return [item.strip() for item in raw_val.split(",") if item.strip()]

    @validator("AUTH_MODE", "LOG_FORMAT", pre=True)
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @validator("LOG_LEVEL", pre=True)
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @validator("SCOPE")
    def _full_scope(cls, value: str) -> str:
        if value and not value.startswith(("https://", "urn:globus:auth:scope:")):
            raise ValueError("not a full scope string")
        return value

    @validator("STORE_URL")
    def _store_scheme(cls, value: str) -> str:
        if not value.lower().startswith(STORE_SCHEMES):
            raise ValueError("unsupported scheme")
        return value

    @validator("RELEASE_AFTER", "MAX_RELEASE_AFTER", "MAXIMUM_DEADLINE")
    def _duration(cls, value: str) -> str:
        try:
            parsed = isodate.parse_duration(value)
        except (isodate.ISO8601Error, ValueError):
            raise ValueError("not an ISO 8601 duration") from None
        if not isinstance(parsed, timedelta):  # isodate.Duration: years or months
            raise ValueError("years and months have no fixed length")
        return value

    @validator("TRUSTED_PROXIES", each_item=True)
    def _address(cls, value: str) -> str:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"{value[:80]!r} is not an IP address or network") from None
        return value

    @validator("RUN_RATE_LIMIT", "GET_RATE_LIMIT")
    def _rates(cls, value: str) -> str:
        from app.ratelimit import parse_rates  # the limits library, only here

        parse_rates(value)  # ValueError: the reason
        return value

    @validator("RATE_LIMIT_STORAGE_URL")
    def _rate_storage_scheme(cls, value: str) -> str:
        if not value.lower().startswith(RATE_LIMIT_STORAGE_SCHEMES):
            raise ValueError("unsupported scheme")
        return value

    @validator("ADMINISTERED_BY", "RATE_LIMIT_EXEMPT", each_item=True)
    def _principal(cls, value: str) -> str:
        if not PRINCIPAL.fullmatch(value):
            raise ValueError(f"{value[:80]!r} is not a principal URN")
        return value


    @validator("VISIBLE_TO", "RUNNABLE_BY")
    def _access_list(cls, value: list[str], field: ModelField) -> list[str]:
        keywords = ACCESS_KEYWORDS[field.name]
        if not value:
            raise ValueError("empty: no one could use the provider (list its administrators)")
        for item in value:
            if item not in keywords and not PRINCIPAL.fullmatch(item):
                if item in ACCESS_KEYWORDS["VISIBLE_TO"]:
                    raise ValueError(f"{item!r} is for VISIBLE_TO only: a run needs a token")
                raise ValueError(
                    f"{item[:80]!r} is not a principal URN or {' or '.join(sorted(keywords))}"
                )
        repeated = next((item for item in value if value.count(item) > 1), None)
        if repeated is not None:
            raise ValueError(f"{repeated[:80]!r} is listed twice")
        return value


def load_settings(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The configuration as a dict of typed values (ConfigError if bad).
    Keys that are not settings (Flask's own, e.g. TESTING) pass through from
    ``overrides`` unchecked."""
    _refuse_unknown_environment_names()
    overrides = dict(overrides or {})
    known = {k: overrides.pop(k) for k in list(overrides) if k in ServiceSettings.__fields__}
    try:
        values = ServiceSettings(**known).dict()
    except ValidationError as error:
        raise ConfigError(_describe(error, known)) from None
    except SettingsError as error:  # pragma: no cover - parse_env_var does not raise
        raise ConfigError(str(error)) from None
    _check_together(values)
    return {**values, **overrides}


def _refuse_unknown_environment_names() -> None:
    """A ``FLASK_`` variable that names no setting (e.g. FLASK_FAILURE_RAT) is
    a ConfigError, with the setting it most looks like."""
    keys = list(ServiceSettings.__fields__)
    for name in sorted(os.environ):
        key = name.removeprefix(ENV_PREFIX)
        if key == name or key in keys or key in FLASK_OWN or key.startswith(FLASK_OWN_PREFIXES):
            continue
        close = difflib.get_close_matches(key.upper(), keys, n=1)
        hint = f"did you mean {ENV_PREFIX}{close[0]}?" if close else "see config.py for the keys"
        raise ConfigError(f"unknown setting {name} in the environment: {hint}")


def _check_together(values: dict[str, Any]) -> None:
    """Rules across keys, as the action rules enforce them (one place: app.actions)."""
    from app.actions import ActionRules  # the rules' own checks, with their messages

    try:
        ActionRules.from_config(values)
    except ValueError as error:
        raise ConfigError(f"bad settings: {error}") from None


def _describe(error: ValidationError, overrides: dict[str, Any]) -> str:
    first = error.errors()[0]
    key = str(first["loc"][0])
    field = ServiceSettings.__fields__.get(key)
    if field is None:  # extra = forbid: an unknown key in the operator's file
        return f"unknown setting {key} in {os.environ.get(CONFIG_FILE_VARIABLE)}"
    where, value = _source(key, overrides)
    shown = "" if key in SECRET_KEYS or value is _MISSING else f"={str(value)[:80]!r}"
    more = len(error.errors()) - 1
    tail = f" ({more} more bad setting{'s' * (more > 1)})" if more else ""
    return (
        f"bad setting {where}{shown}: {first['msg']}; "
        f"expected {field.field_info.extra['form']}{tail}"
    )


_MISSING = object()


def _source(key: str, overrides: dict[str, Any]) -> tuple[str, Any]:
    """Where the value of ``key`` came from, named as its author wrote it."""
    if key in overrides:
        return key, overrides[key]
    if ENV_PREFIX + key in os.environ:
        return ENV_PREFIX + key, os.environ[ENV_PREFIX + key]
    operator = _operator_file(None)
    if key in operator:
        return f"{key} in {os.environ[CONFIG_FILE_VARIABLE]}", operator[key]
    return f"{key} in config.py", _defaults(None).get(key, _MISSING)


def _read_python(path: Path) -> dict[str, Any]:
    """The UPPER_CASE names a config file defines (as Flask's from_pyfile reads them)."""
    namespace: dict[str, Any] = {"__file__": str(path)}
    exec(compile(path.read_bytes(), str(path), "exec"), namespace)  # noqa: S102 - operator's own file
    return {k: v for k, v in namespace.items() if k.isupper()}


def _defaults(_settings: BaseSettings | None) -> dict[str, Any]:
    return _read_python(DEFAULTS_FILE)


def _operator_file(_settings: BaseSettings | None) -> dict[str, Any]:
    name = os.environ.get(CONFIG_FILE_VARIABLE)
    if not name:
        return {}
    path = Path(name)
    if not path.is_file():
        raise ConfigError(f"{CONFIG_FILE_VARIABLE}={name!r}: no such file")
    try:
        return _read_python(path)
    except Exception as error:  # the operator's file failed to run: say where
        raise ConfigError(
            f"{CONFIG_FILE_VARIABLE}={name!r}: {type(error).__name__}: {error}".splitlines()[0]
        ) from None
