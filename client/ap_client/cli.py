"""The ap-client commands (click). Thin: parse options, call api/tokens/waiting, print."""

from __future__ import annotations

import json
import re
import signal
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click
import globus_sdk

from ap_client import output, tokens
from ap_client.api import ActionProviderClient, ProtocolError
from ap_client.waiting import GaveUp, Waiter

DEFAULT_URL = "http://127.0.0.1:8000"  # python -m app's default bind
URL_ENV = "ACTION_PROVIDER_URL"
TOKEN_ENV = "ACTION_PROVIDER_TOKEN"  # noqa: S105 (a variable name)
MAX_PAGES = 1000

# Exit codes (documented in --help and the README).
EXIT_OK = 0
EXIT_FAILED = 1  # --wait: the action FAILED
EXIT_USAGE = 2  # bad options (click's own code)
EXIT_HTTP = 3  # the provider answered with an error (or not the Actions API)
EXIT_UNREACHABLE = 4  # the provider could not be reached
EXIT_INACTIVE = 5  # --wait: the action is INACTIVE and needs someone to act
EXIT_LOGIN = 6  # login/logout or stored tokens failed
EXIT_INTERRUPTED = 130  # Ctrl-C while waiting; the action was NOT cancelled

EXIT_CODES_HELP = f"""\b
Exit codes:
  {EXIT_OK}    success (--wait: the action SUCCEEDED)
  {EXIT_FAILED}    --wait: the action FAILED
  {EXIT_USAGE}    bad options
  {EXIT_HTTP}    the provider answered with an error
  {EXIT_UNREACHABLE}    the provider could not be reached
  {EXIT_INACTIVE}    --wait: the action is INACTIVE (needs someone to act)
  {EXIT_LOGIN}    login, logout or the stored tokens failed
  {EXIT_INTERRUPTED}  Ctrl-C while waiting (the action keeps running)
"""


@dataclass
class Session:
    url: str
    token: str | None
    json: bool
    timeout: float

    def client(self) -> ActionProviderClient:
        authorizer: globus_sdk.authorizers.GlobusAuthorizer | None
        if self.token:
            authorizer = globus_sdk.AccessTokenAuthorizer(self.token)
        else:
            try:
                authorizer = tokens.stored_authorizer(self.url)
            except (ValueError, OSError) as error:
                fail(f"cannot read stored tokens ({tokens.token_file()}): {error}", EXIT_LOGIN)
        return ActionProviderClient(self.url, authorizer=authorizer, timeout=self.timeout)

    def show(self, document: Any, render: Callable[[Any], str]) -> None:
        output.emit(output.as_json(document) if self.json else render(document))


def fail(message: str, code: int) -> NoReturn:
    output.note(f"Error: {message}")
    raise click.exceptions.Exit(code)


class _Group(click.Group):
    """Turns the errors every command can meet into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except globus_sdk.AuthAPIError as error:
            # Only token refreshes talk to Globus Auth outside login/logout.
            fail(
                f"Globus Auth refused to refresh the stored tokens "
                f"({error.http_status} {error.code}); run `ap-client login` again",
                EXIT_LOGIN,
            )
        except globus_sdk.GlobusAPIError as error:
            line = output.api_error_line(error)
            if error.http_status == 401:
                line += f" (pass --token, set {TOKEN_ENV}, or run `ap-client login`)"
            fail(line, EXIT_HTTP)
        except globus_sdk.NetworkError as error:
            fail(output.network_error_line(error, _session(ctx).url), EXIT_UNREACHABLE)
        except ProtocolError as error:
            fail(f"unexpected answer from {_session(ctx).url}: {error}", EXIT_HTTP)
        except tokens.LoginError as error:
            fail(str(error), EXIT_LOGIN)


def _session(ctx: click.Context) -> Session:
    return ctx.find_object(Session)  # type: ignore[return-value]


pass_session = click.make_pass_decorator(Session)


def provider_url(value: str) -> str:
    """--url as given, if it is an http(s) URL with a host (else a usage error naming it)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        hint = f"; did you mean http://{value}?" if "://" not in value else ""
        raise click.BadParameter(
            f"{value!r} is not an http:// or https:// URL with a host{hint}", param_hint="'--url'"
        )
    if parts.query or parts.fragment:
        raise click.BadParameter(
            f"{value!r}: a provider's base URL has no query or fragment", param_hint="'--url'"
        )
    return value


Callback = Callable[[click.Context, click.Parameter, Any], Any]


def _choices(allowed: tuple[str, ...]) -> Callback:
    """A callback for a repeatable option that also takes comma-separated values."""

    def split(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
        chosen = [v.strip().lower() for value in values for v in value.split(",") if v.strip()]
        wrong = [v for v in chosen if v not in allowed]
        if wrong:
            raise click.BadParameter(
                f"{', '.join(map(repr, wrong))} is not one of {', '.join(allowed)}", param=param
            )
        return list(dict.fromkeys(chosen))

    return split


# The spec's ISO8601_duration (ActionRequest.release_after).
ISO_DURATION = re.compile(
    r"^P(?!$)(\d+(?:\.\d+)?Y)?(\d+(?:\.\d+)?M)?(\d+(?:\.\d+)?W)?(\d+(?:\.\d+)?D)?"
    r"(T(?=\d)(\d+(?:\.\d+)?H)?(\d+(?:\.\d+)?M)?(\d+(?:\.\d+)?S)?)?$"
)


def _deadline(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time with an offset, e.g. 2030-01-02T03:04:05+00:00",
            param=param,
        )
    return value


def _release_after(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not ISO_DURATION.match(value):
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 duration, e.g. P30D or PT1H", param=param
        )
    return value


@click.group(
    cls=_Group,
    epilog=EXIT_CODES_HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--url", envvar=URL_ENV, default=DEFAULT_URL, show_default=True, show_envvar=True,
    callback=lambda _ctx, _param, value: provider_url(value),
    help="Base URL of the Action Provider (http:// or https://).",
)
@click.option(
    "--token", envvar=TOKEN_ENV, show_envvar=True,
    help="Bearer token to send (dev mode: dev-token-<name>). "
    "Without it, the tokens stored by `login` for --url are used.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the provider's JSON documents.")
@click.option(
    "--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
    help="Seconds to wait for each HTTP answer.",
)
@click.version_option(package_name="ap-client", prog_name="ap-client")
@click.pass_context
def cli(ctx: click.Context, url: str, token: str | None, as_json: bool, timeout: float) -> None:
    """ap-client: run, follow and manage actions of a Globus Action Provider.

    \b
    Try it against this project's dev mode (scripts/dev):
      export ACTION_PROVIDER_TOKEN=dev-token-alice
      ap-client run --utc-offset 5.5 --wait
    """
    ctx.obj = Session(url=url, token=token or None, json=as_json, timeout=timeout)


@cli.command()
@pass_session
def introspect(session: Session) -> None:
    """Describe the provider (GET /)."""
    session.show(session.client().introspect(), output.render_introspection)


def _parse_body(body: str | None, body_file: click.File | None, utc_offset: str | None) -> Any:
    given = [x for x in (body, body_file, utc_offset) if x is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --body, --body-file, --utc-offset")
    if utc_offset is not None:
        try:
            return {"utc_offset": json.loads(utc_offset)}
        except ValueError:
            return {"utc_offset": utc_offset}  # e.g. "+05:30": the provider validates it
    source = "--body" if body is not None else f"--body-file {body_file.name}"  # type: ignore[union-attr]
    text = body if body is not None else body_file.read()  # type: ignore[union-attr]
    try:
        document = json.loads(text)
    except ValueError as error:
        raise click.UsageError(f"{source} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise click.UsageError(f"{source} must be a JSON object, not {type(document).__name__}")
    return document


wait_option = click.option(
    "--wait", is_flag=True,
    help="Follow the action until it completes (progress on stderr), then print it. "
    "Ctrl-C stops waiting without cancelling.",
)


@cli.command()
@click.option("--body", help="The action's body, as JSON.")
@click.option(
    "--body-file", type=click.File("r"), help="Read the body (JSON) from a file ('-': stdin)."
)
@click.option(
    "--utc-offset", metavar="N",
    help="Shortcut for this project's provider: body {\"utc_offset\": N}, e.g. 5.5, -3, +05:30.",
)
@click.option(
    "--request-id", default=None,
    help="Idempotency key (default: a new uuid4, printed on stderr; pass it again to "
    "retry without starting a second action).",
)
@click.option("--label", help="A label for the action.")
@click.option("--monitor-by", multiple=True, help="Principal URN that may see it (repeatable).")
@click.option("--manage-by", multiple=True, help="Principal URN that may cancel it (repeatable).")
@click.option(
    "--deadline", callback=_deadline,
    help="ISO 8601 time (with offset) by which the action must complete.",
)
@click.option(
    "--release-after", callback=_release_after,
    help="ISO 8601 duration to keep the action after it completes, e.g. P30D.",
)
@click.option(
    "--allowed-clients", multiple=True, callback=_choices(("public", "globus", "creator")),
    help="Clients that may use the action: public, globus, creator (repeatable or a,b).",
)
@wait_option
@pass_session
def run(
    session: Session,
    body: str | None,
    body_file: click.File | None,
    utc_offset: str | None,
    request_id: str | None,
    label: str | None,
    monitor_by: tuple[str, ...],
    manage_by: tuple[str, ...],
    deadline: str | None,
    release_after: str | None,
    allowed_clients: list[str],
    wait: bool,
) -> None:
    """Start an action (POST /run)."""
    document = _parse_body(body, body_file, utc_offset)
    request_id = request_id or str(uuid.uuid4())
    output.note(f"request_id: {request_id}")
    client = session.client()
    status = client.run(
        document,
        request_id=request_id,
        label=label,
        monitor_by=list(monitor_by),
        manage_by=list(manage_by),
        deadline=deadline,
        release_after=release_after,
        allowed_clients=allowed_clients,
    )
    if wait:
        _follow(session, client, status)
    session.show(status, output.render_status)


@cli.command()
@click.argument("action_id")
@wait_option
@pass_session
def status(session: Session, action_id: str, wait: bool) -> None:
    """Show an action (GET /ACTION_ID/status)."""
    client = session.client()
    document = client.status(action_id)
    if wait:
        _follow(session, client, document)
    session.show(document, output.render_status)


def _follow(session: Session, client: ActionProviderClient, status: dict[str, Any]) -> NoReturn:
    action_id = str(status.get("action_id", ""))
    display = output.ProgressDisplay(action_id)
    resume = (
        f"Stopped waiting; action {action_id} was not cancelled and keeps running.\n"
        f"Resume with: ap-client --url {session.url} status --wait {action_id}"
    )
    try:
        final = Waiter(fetch=lambda: client.status(action_id), progress=display).wait(status)
    except KeyboardInterrupt:
        # A second Ctrl-C while saying so must not turn this into click's "Aborted!".
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            display.close()
            output.note(resume)
        finally:
            signal.signal(signal.SIGINT, previous)
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    except GaveUp as gave_up:
        display.close()
        error = gave_up.error
        if isinstance(error, globus_sdk.NetworkError):
            line, code = output.network_error_line(error, session.url), EXIT_UNREACHABLE
        else:
            line, code = output.api_error_line(error), EXIT_HTTP
        output.note(f"Error: {line}; gave up after {gave_up.attempts} failed polls in a row")
        output.note(resume)
        raise click.exceptions.Exit(code) from None
    finally:
        display.close()
    session.show(final, output.render_status)
    state = final.get("status")
    if state == "SUCCEEDED":
        raise click.exceptions.Exit(EXIT_OK)
    if state == "INACTIVE":
        raise click.exceptions.Exit(EXIT_INACTIVE)
    raise click.exceptions.Exit(EXIT_FAILED)


@cli.command()
@click.argument("action_id")
@pass_session
def cancel(session: Session, action_id: str) -> None:
    """Cancel an action (POST /ACTION_ID/cancel)."""
    session.show(session.client().cancel(action_id), output.render_status)


@cli.command()
@click.argument("action_id")
@pass_session
def release(session: Session, action_id: str) -> None:
    """Release a completed action: print it a last time, then the provider forgets it."""
    document = session.client().release(action_id)
    session.show(document, output.render_status)
    state = document.get("status")
    output.note(
        f"Released action {document.get('action_id') or action_id}"
        + (f" ({state})" if isinstance(state, str) else "")
        + ": the provider no longer keeps it; the status above was its last."
    )


def _unsupported(error: globus_sdk.GlobusAPIError) -> bool:
    return error.http_status in (404, 405)


@cli.command(name="list")
@click.option(
    "--status", "statuses", multiple=True,
    callback=_choices(("active", "inactive", "succeeded", "failed")),
    help="Only actions in these states: active, inactive, succeeded, failed "
    "(repeatable or a,b; provider default: active).",
)
@click.option(
    "--role", "roles", multiple=True,
    callback=_choices(("creator_id", "monitor_by", "manage_by")),
    help="Only actions where you have one of these roles: creator_id, monitor_by, manage_by "
    "(repeatable or a,b; provider default: creator_id).",
)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many per page.")
@click.option("--marker", help="Continue from this page marker.")
@click.option("--all", "all_pages", is_flag=True, help=f"Follow every page (up to {MAX_PAGES}).")
@pass_session
def list_actions(
    session: Session,
    statuses: list[str],
    roles: list[str],
    limit: int | None,
    marker: str | None,
    all_pages: bool,
) -> None:
    """List your actions (GET /actions), when the provider supports it."""
    client = session.client()
    actions: list[dict[str, Any]] = []
    page: Any = None
    for _ in range(MAX_PAGES if all_pages else 1):
        try:
            page = client.enumerate(
                statuses=statuses,
                roles=roles,
                limit=limit,
                marker=marker,
            )
        except globus_sdk.GlobusAPIError as error:
            if _unsupported(error):
                fail(
                    f"{session.url} does not list actions "
                    f"(GET /actions answered {error.http_status})",
                    EXIT_HTTP,
                )
            raise
        actions += _page_actions(page)
        marker = page.get("marker") if isinstance(page, dict) else None
        if not (isinstance(page, dict) and page.get("has_next_page") and marker):
            marker = None
            break
    if session.json:
        output.emit(output.as_json(page if not all_pages else {"actions": actions}))
    else:
        output.emit(output.render_actions(actions))
    if marker and not all_pages:
        output.note(f"More actions: add --marker {marker} (or --all)")


def _page_actions(page: Any) -> list[dict[str, Any]]:
    """The actions of one enumeration answer: a page object or a plain list."""
    items = page.get("actions", []) if isinstance(page, dict) else page
    if not isinstance(items, list):
        raise ProtocolError("GET /actions answered neither a list nor a page of actions")
    return [a for a in items if isinstance(a, dict)]


@cli.command()
@click.argument("action_id")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many entries.")
@click.option("--marker", help="Continue from this page marker.")
@pass_session
def log(session: Session, action_id: str, limit: int | None, marker: str | None) -> None:
    """Show an action's log (GET /ACTION_ID/log), when the provider supports it."""
    client = session.client()
    try:
        document = client.log(action_id, limit=limit, marker=marker)
    except globus_sdk.GlobusAPIError as error:
        # 404 is also "no such action": ask the provider whether it has logs at all.
        if _unsupported(error) and not _log_supported(client):
            fail(
                f"{session.url} does not provide action logs "
                f"(log_supported is not true; GET /{action_id}/log answered {error.http_status})",
                EXIT_HTTP,
            )
        raise
    if session.json:
        output.emit(output.as_json(document))
        return
    entries = document.get("entries", [])
    output.emit(output.render_log(entries if isinstance(entries, list) else []))
    if document.get("has_next_page") and document.get("marker"):
        output.note(f"More entries: add --marker {document['marker']}")


def _log_supported(client: ActionProviderClient) -> bool:
    try:
        return client.introspect().get("log_supported") is True
    except (globus_sdk.GlobusAPIError, globus_sdk.NetworkError, ProtocolError):
        return True  # cannot tell: report the original error


@cli.command()
@click.option(
    "--client-id", envvar=tokens.CLIENT_ID_ENV, show_envvar=True,
    help="Globus Auth client id of a native app (\"thick client\") you registered; "
    "ap-client has no registered client id of its own.",
)
@click.option(
    "--scope",
    help="Scope to ask for (default: the provider's globus_auth_scope from introspection).",
)
@pass_session
def login(session: Session, client_id: str | None, scope: str | None) -> None:
    """Log in with Globus (native-app flow) and store tokens for --url.

    Opens no browser: visit the printed URL, then paste the code it shows.
    Tokens are stored (mode 0600) in $ACTION_PROVIDER_TOKEN_FILE or
    ~/.config/ap-client/tokens.json and refreshed when they expire.
    """
    if not client_id:
        raise click.UsageError(
            "login needs a Globus Auth native-app client id: register one "
            "(https://app.globus.org/settings/developers, 'thick client or script') and "
            f"pass --client-id or set {tokens.CLIENT_ID_ENV}"
        )
    if not scope:
        scope = _provider_scope(session)
    stored = tokens.login(
        session.url,
        scope=scope,
        client_id=client_id,
        show_url=lambda url: output.note(f"Log in at this URL, then paste the code:\n\n  {url}\n"),
        ask_code=_ask_code,
    )
    output.note(
        f"Logged in to {session.url}: tokens for {stored.resource_server} (scope {stored.scope}) "
        f"stored in {tokens.token_file()}"
    )


def _ask_code() -> str:
    try:
        return str(click.prompt("Code", err=True, default="", show_default=False))
    except click.Abort:  # end of input or Ctrl-C
        return ""


def _provider_scope(session: Session) -> str:
    try:
        document = session.client().introspect()
    except globus_sdk.GlobusAPIError as error:
        fail(
            f"could not read the provider's scope ({output.api_error_line(error)}); "
            "pass --scope with its globus_auth_scope",
            EXIT_LOGIN,
        )
    scope = document.get("globus_auth_scope")
    if not isinstance(scope, str) or not scope:
        fail("the provider's introspection has no globus_auth_scope; pass --scope", EXIT_LOGIN)
    return scope


@cli.command()
@pass_session
def logout(session: Session) -> None:
    """Revoke the stored tokens for --url and remove them."""
    try:
        found, warnings = tokens.logout(session.url)
    except (ValueError, OSError) as error:
        fail(f"cannot read stored tokens ({tokens.token_file()}): {error}", EXIT_LOGIN)
    for warning in warnings:
        output.note(f"Warning: {warning}")
    if found:
        output.note(f"Logged out of {session.url}; its tokens were removed.")
    else:
        output.note(f"No stored tokens for {session.url}.")


@cli.command()
@click.option(
    "--other-token", envvar="ACTION_PROVIDER_OTHER_TOKEN", show_envvar=True,
    help="A second caller's token: checks that it cannot see or touch the first's actions.",
)
@click.option("--body", help="A valid body for the provider's input, as JSON.")
@click.option("--body-file", type=click.File("r"), help="Read the body (JSON) from a file.")
@click.option(
    "--timeout", "wait_seconds", type=click.FloatRange(min=0), default=120.0, show_default=True,
    help="Seconds to wait for an action to complete (then: a warning).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document of the results.")
@click.option(
    "--junit-xml", type=click.Path(dir_okay=False, writable=True),
    help="Also write the results as JUnit XML to this file (for CI systems).",
)
@pass_session
def check(
    session: Session,
    other_token: str | None,
    body: str | None,
    body_file: click.File | None,
    wait_seconds: float,
    as_json: bool,
    junit_xml: str | None,
) -> None:
    """Check that the provider at --url behaves as the Actions API spec and Globus
    Flows expect. Starts a few actions (cancelled and released at the end).

    \b
    Each check prints PASS, FAIL, WARN or SKIP, its id and one line.
    Exit status: 0 nothing failed, 1 a check failed, 2 bad options,
    4 the provider could not be reached.
    """
    from ap_client.check import Checker, NeedBody, Unreachable, http, report

    document = None
    if body is not None and body_file is not None:
        raise click.UsageError("give one of --body, --body-file, not both")
    if body is not None or body_file is not None:
        document = _parse_body(body, body_file, None)
    token = session.token or _stored_access_token(session)
    if not token:
        raise click.UsageError(
            f"check needs a token: pass --token, set {TOKEN_ENV}, or run `ap-client login`"
        )
    tokens_by_caller = {http.A: token}
    if other_token:
        tokens_by_caller[http.B] = other_token
    provider = http.Provider(session.url, tokens_by_caller, timeout=session.timeout)
    json_out = as_json or session.json
    checker = Checker(
        provider, body=document, wait_seconds=wait_seconds,
        on_outcome=(lambda _o: None) if json_out else (lambda o: output.emit(report.line(o))),
    )
    try:
        outcomes = checker.run()
    except Unreachable as error:
        fail(f"could not reach {session.url} ({error})", EXIT_UNREACHABLE)
    except NeedBody as error:
        raise click.UsageError(f"{error}: pass --body or --body-file") from None
    if json_out:
        output.emit(report.as_json(outcomes, session.url, checker.left_behind))
    else:
        output.emit(report.summary(outcomes, checker.left_behind))
    if junit_xml:
        report.write_junit(Path(junit_xml), outcomes, session.url)
    if any(o.result == "fail" for o in outcomes):
        raise click.exceptions.Exit(EXIT_FAILED)


def _stored_access_token(session: Session) -> str | None:
    try:
        data = tokens.stored(session.url)
    except (ValueError, OSError) as error:
        fail(f"cannot read stored tokens ({tokens.token_file()}): {error}", EXIT_LOGIN)
    return data.access_token if data else None


def main() -> None:
    cli(prog_name="ap-client")


if __name__ == "__main__":
    sys.exit(main())
