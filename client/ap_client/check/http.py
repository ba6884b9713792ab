"""Raw HTTP to one provider for the checker: every answer is looked at, none raised."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ap_client.api import USER_AGENT

A = "A"  # the caller given by --token
B = "B"  # the caller given by --other-token


class Unreachable(Exception):
    """The provider could not be reached at all (connection refused, DNS, timeout)."""


@dataclass
class Answer:
    method: str
    path: str
    status: int
    document: Any  # the JSON body, or None when there is none or it is not JSON
    headers: requests.structures.CaseInsensitiveDict

    @property
    def what(self) -> str:
        return f"{self.method} {self.path}"

    def error_code(self) -> str | None:
        document = self.document
        return document.get("code") if isinstance(document, dict) else None

    def is_error_document(self) -> bool:
        """A JSON error body as the spec's providers send: {code, description} strings."""
        document = self.document
        return (
            isinstance(document, dict)
            and isinstance(document.get("code"), str)
            and isinstance(document.get("description"), str)
        )

    def brief(self) -> str:
        """'404 ActionNotFound' / '200' / '500 (not JSON)': what came back, in a few words."""
        if self.is_error_document():
            return f"{self.status} {self.error_code()}"
        if self.document is None and self.status >= 400:
            return f"{self.status} (no JSON error body)"
        return str(self.status)


class Provider:
    """One provider at ``url``; ``tokens`` maps caller names to bearer tokens."""

    def __init__(self, url: str, tokens: dict[str, str], timeout: float) -> None:
        self.url = url.rstrip("/")
        self.tokens = tokens
        self.timeout = timeout
        self.session = requests.Session()
        # A kept-alive connection the provider closed just as it was reused
        # (its idle timeout) is not the provider stopping: a GET is sent once
        # more on a new connection. Nothing else is retried.
        once = Retry(total=1, connect=1, read=1, status=0, other=0, redirect=0,
                     allowed_methods=frozenset({"GET", "HEAD", "OPTIONS"}), raise_on_status=False)
        for scheme in ("http://", "https://"):
            self.session.mount(scheme, HTTPAdapter(max_retries=once))
        self.session.headers["User-Agent"] = f"{USER_AGENT} check"

    def call(
        self,
        method: str,
        path: str,
        *,
        caller: str | None = A,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
    ) -> Answer:
        """``caller`` names a token of ``tokens`` (None: no Authorization); ``token``
        sends that literal token instead."""
        sent = dict(headers or {})
        bearer = token if token is not None else (self.tokens[caller] if caller else None)
        if bearer is not None:
            sent["Authorization"] = f"Bearer {bearer}"
        try:
            response = self.session.request(
                method, self.url + path, json=json, params=params, headers=sent,
                timeout=self.timeout, allow_redirects=False,
            )
        except (requests.ConnectionError, requests.Timeout) as error:
            raise Unreachable(f"{method} {path}: {type(error).__name__}") from error
        try:
            document = response.json() if response.content else None
        except ValueError:
            document = None
        return Answer(method, path, response.status_code, document, response.headers)


def segment(action_id: str) -> str:
    return quote(action_id, safe="")
