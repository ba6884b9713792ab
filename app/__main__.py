"""``python -m app``: serve the provider with gunicorn on this machine.

python -m app --dev                 # try it: dev tokens, loopback only
python -m app --store sqlite:///actions.db --port 8080
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from gunicorn.app.wsgiapp import WSGIApplication

from app.startup import check_or_exit


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
    parser.add_argument("--threads", type=int, default=None,
                        help="request threads (default: THREADS, else 4)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dev:
        if not _is_loopback(args.host):
            print(f"--dev serves loopback clients only; not binding {args.host}", file=sys.stderr)
            return 2
        os.environ["FLASK_AUTH_MODE"] = "dev"
    if args.store:
        os.environ["FLASK_STORE_URL"] = args.store
    config = check_or_exit(workers=1)  # one line and exit 2 if anything is wrong
    if config["AUTH_MODE"] == "dev":
        _print_dev_banner(args.host, args.port)
    # The production settings (app.gunicorn_conf) on one process: the memory
    # store lives in it. Scale out with gunicorn and a SQL store (see README).
    sys.argv = [
        "python -m app", "-c", "python:app.gunicorn_conf",
        "--bind", f"{_bracket(args.host)}:{args.port}",
        "--workers", "1",
        *(("--threads", str(args.threads)) if args.threads else ()),
        "app:create_app()",
    ]
    WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").run()
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
