"""LangWatch's read routes over HTTP: one search page or one trace, retried when that can help.

429, 5xx, timeouts and dropped connections are retried with backoff (honouring Retry-After);
401/403 stop at once with a sentence about the key; 400/422 carry the server's own message. The
key travels only in a header: every text that leaves here is scrubbed of it (client.Target).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from eventlens.client import Target, retry_after_s, tls_context
from eventlens.errors import EventlensError

SEARCH_PATH = "/api/traces/search"
TRACE_PATH = "/api/traces/{trace_id}"
TIMEOUT = httpx.Timeout(60.0, connect=10.0)  # a 1000-trace page can take a while to build
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class PullError(EventlensError):
    """A pull that cannot go on, in a sentence (never with the key in it)."""


@dataclass(frozen=True)
class Retry:
    """How hard to try: attempts per request, backoff from `base_s` doubling up to `cap_s`."""

    attempts: int = 8
    base_s: float = 0.5
    cap_s: float = 30.0


class ReadClient:
    """POST /api/traces/search and GET /api/traces/{id} with retries; `sleep` is injectable so
    that tests of the backoff do not wait."""

    def __init__(
        self,
        target: Target,
        *,
        retry: Retry | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        on_retry: Callable[[str], None] | None = None,
    ):
        self.target = target
        self.retry = retry or Retry()
        self.sleep = sleep
        self.on_retry = on_retry
        self.requests = 0
        self.retries = 0
        self._http = httpx.Client(timeout=TIMEOUT, transport=transport, verify=tls_context())
        self._random = random.Random(0)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ReadClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def search(self, body: dict[str, Any]) -> dict[str, Any]:
        """One page of POST /api/traces/search."""
        answer = self._request("POST", SEARCH_PATH, body)
        if not isinstance(answer, dict) or not isinstance(answer.get("traces"), list):
            raise PullError(
                f"{self._where(SEARCH_PATH)} answered without a list of traces: this does not"
                " look like LangWatch's search route (is the endpoint right?)"
            )
        return answer

    def trace(self, trace_id: str) -> dict[str, Any]:
        """One whole trace, GET /api/traces/{id}."""
        path = TRACE_PATH.format(trace_id=quote(trace_id, safe=""))
        answer = self._request("GET", path, None)
        if not isinstance(answer, dict):
            raise PullError(f"{self._where(path)} answered with no trace object")
        return answer

    def _where(self, path: str) -> str:
        return self.target.endpoint.rstrip("/") + path

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        url = self._where(path)
        headers = self.target.headers()
        for attempt in range(1, self.retry.attempts + 1):
            self.requests += 1
            wait: float | None = None
            try:
                response = self._http.request(method, url, json=body, headers=headers)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                problem = f"{type(exc).__name__} ({self.target.scrub(str(exc)) or 'no answer'})"
            else:
                if response.status_code < 300:
                    try:
                        return response.json()
                    except ValueError:
                        problem = "an answer that is not JSON"
                else:
                    self._refuse(response, url)  # raises unless the status is worth a retry
                    problem = f"HTTP {response.status_code}"
                    wait = _retry_after(response)
            if attempt == self.retry.attempts:
                raise PullError(
                    f"{url} still failing after {attempt} attempts (last: {problem}); the pull"
                    " stopped and keeps what it saved: run it again to continue"
                )
            backoff = min(self.retry.cap_s, self.retry.base_s * 2 ** (attempt - 1))
            delay = wait if wait is not None else backoff * (0.5 + self._random.random() / 2)
            self.retries += 1
            if self.on_retry:
                self.on_retry(f"{problem}; retrying in {delay:.1f} s")
            self.sleep(delay)
        raise AssertionError("unreachable")

    def _refuse(self, response: httpx.Response, url: str) -> None:
        """Raise the sentence for a status no retry can fix."""
        status = response.status_code
        if status in RETRYABLE_STATUS:
            return
        if status in (401, 403):
            raise PullError(
                f"{url} refused the key ({status}): check that the key in the variable you"
                " named (LANGWATCH_API_KEY by default) is this project's API key"
            )
        message = self.target.scrub(_server_message(response))
        if status in (400, 422):
            raise PullError(f"{url} refused the request ({status}): {message}")
        raise PullError(f"{url} answered {status}: {message}")


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds, as the track_event client reads it, capped at 5 minutes."""
    wait = retry_after_s(response.headers.get("retry-after"))
    return None if wait is None else min(300.0, wait)


def _server_message(response: httpx.Response) -> str:
    """The server's own words: its JSON error/message, else the start of its text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or "(no message)"
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])
    return json.dumps(body)[:300]
