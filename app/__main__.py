"""``python -m app``: serve the provider with gunicorn on this machine.

python -m app --dev                 # try it: dev tokens, loopback only
python -m app --store sqlite:///actions.db --port 8080
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import Any

import gunicorn.util
from gunicorn.app.base import BaseApplication

from app import create_app
from app.auth import MissingCredentials
from app.errors import write_gunicorn_error
from app.store import StoreError


class _Server(BaseApplication):
    def __init__(self, application: Any, options: dict[str, Any]) -> None:
        self.application = application
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self.application


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dev",
        action="store_true",
        help="dev mode: accept 'dev-token-<name>' tokens, no Globus "
        "credentials needed, loopback clients only",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    parser.add_argument("--store", help="STORE_URL: memory://, sqlite:///path, postgresql://...")
    parser.add_argument("--threads", type=int, default=8, help="request threads (default 8)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.dev:
        overrides["AUTH_MODE"] = "dev"
        if not _is_loopback(args.host):
            print(f"--dev serves loopback clients only; not binding {args.host}", file=sys.stderr)
            return 2
    if args.store:
        overrides["STORE_URL"] = args.store
    try:
        application = create_app(overrides)
    except (MissingCredentials, StoreError, ValueError) as error:
        print(f"whattimeisitrightnow: {error}", file=sys.stderr)
        return 2
    if application.config["AUTH_MODE"] == "dev":
        _print_dev_banner(args.host, args.port)
    gunicorn.util.write_error = write_gunicorn_error  # JSON, as in gunicorn.conf.py
    # One process: the memory store lives in it. Scale out with gunicorn and a
    # SQL store (see README).
    _Server(
        application,
        {
            "bind": f"{_bracket(args.host)}:{args.port}",
            "workers": 1,
            "worker_class": "gthread",
            "threads": args.threads,
            "accesslog": "-",
            "errorlog": "-",
            "logger_class": "app.logs.GunicornLogger",  # JSON lines, like the app's
            "control_socket_disable": True,
        },
    ).run()
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _print_dev_banner(host: str, port: int) -> None:
    url = f"http://{_bracket(host)}:{port}"
    print(
        f"""
  *** DEV MODE — NOT FOR PRODUCTION ***
  Tokens 'dev-token-<name>' are accepted without Globus Auth; loopback clients only.
  Try:
    curl -s -H 'Authorization: Bearer dev-token-alice' {url}/
    curl -s -H 'Authorization: Bearer dev-token-alice' -H 'Content-Type: application/json' \\
         -d '{{"request_id": "demo-1", "body": {{"utc_offset": 5.5}}}}' {url}/run
""",
        file=sys.stderr,
        flush=True,
    )
    os.environ.setdefault("PYTHONUNBUFFERED", "1")


if __name__ == "__main__":
    sys.exit(main())
