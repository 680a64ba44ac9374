"""The track_event client: validate as LangWatch does, send one event, say exactly what happened.

The API key never leaves the request headers: it is not in a SendResult, a log record, an error
message or a repr (Target hides it), and any text that echoes it back is scrubbed.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from eventlens import model, settings

if TYPE_CHECKING:
    import aiohttp
    from multidict import CIMultiDictProxy

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = str(settings.ENDPOINT.default)
ENDPOINT_ENV = settings.ENDPOINT.name
KEY_ENV = settings.API_KEY.name
PATHS = ("/api/track_event", "/api/events/track")
AUTH_STYLES = ("x-auth-token", "bearer")
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class Outcome(enum.StrEnum):
    """What happened to an event. A send answers with any of them but FAILED; replay's journal
    keeps ACCEPTED, REJECTED and INVALID (final), FAILED and UNKNOWN (retries used up)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"  # the server refused the event: sending it again cannot help
    UNAUTHORIZED = "unauthorized"  # 401
    FORBIDDEN = "forbidden"  # 403
    RETRYABLE = "retryable"  # 429, 5xx, connect errors, timeouts
    UNKNOWN = "unknown"  # no answer after the body went out: it may have arrived
    INVALID = "invalid"  # never sent: LangWatch would refuse it
    FAILED = "failed"  # replay: the server still said "later" after the last retry


OUTCOMES = tuple(o for o in Outcome if o is not Outcome.FAILED)  # what one send can answer


@dataclass(frozen=True)
class Target:
    """Where and how to send: endpoint, route, auth header style, and the key (never shown)."""

    endpoint: str = DEFAULT_ENDPOINT
    key: str | None = field(default=None, repr=False)
    key_source: str = "none"  # environment | secrets | typed | sandbox | none
    auth: str = "x-auth-token"
    path: str = PATHS[0]

    @property
    def url(self) -> str:
        return self.endpoint.rstrip("/") + self.path

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.key:
            if self.auth == "bearer":
                headers["Authorization"] = f"Bearer {self.key}"
            else:
                headers["X-Auth-Token"] = self.key
        return headers

    def scrub(self, text: str) -> str:
        """Text with the key (as written, or as Python would escape it) replaced by a mask."""
        for form, masked in self._key_forms:
            text = text.replace(form, masked)
        return text

    @functools.cached_property
    def _key_forms(self) -> tuple[tuple[str, str], ...]:
        """(form, mask) for each way the key may be written; made once (replay scrubs every
        answer)."""
        if not self.key:
            return ()
        forms = {self.key, self.key.strip(), repr(self.key)[1:-1], repr(self.key.encode())[2:-1]}
        return tuple((form, mask(self.key)) for form in forms if form)


def mask(key: str | None) -> str:
    """A key as it may be shown: its first 4 characters, then stars (nothing for short keys)."""
    if not key:
        return ""
    return (key[:4] if len(key) >= 12 else "") + "*" * 8


def resolve_target(
    endpoint: str | None = None,
    key: str | None = None,
    secrets: Mapping[str, Any] | None = None,
    **options: Any,
) -> Target:
    """A target from explicit values, else the environment, else Streamlit-style secrets."""
    secrets = secrets or {}
    endpoint = (
        endpoint or settings.ENDPOINT.from_env() or secrets.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
    )
    if key:
        source = "typed"
    elif env_key := settings.API_KEY.from_env():
        key, source = env_key, "environment"
    elif secrets.get(KEY_ENV):
        key, source = str(secrets[KEY_ENV]), "secrets"
    else:
        key, source = None, "none"
    return Target(endpoint=str(endpoint), key=key, key_source=source, **options)


@dataclass
class SendResult:
    """One send: its outcome class, HTTP status, parsed response, latency and a sentence."""

    outcome: Outcome
    message: str
    status: int | None = None
    response: Any = None
    latency_ms: float | None = None
    sent: bool = False  # whether the body left this machine
    retry_after: float | None = None  # seconds the server asked to wait (429, 503)

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.ACCEPTED

    @property
    def retryable(self) -> bool:
        return self.outcome in (Outcome.RETRYABLE, Outcome.UNKNOWN)

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "message": self.message,
            "status": self.status,
            "response": self.response,
            "latency_ms": self.latency_ms,
            "sent": self.sent,
            "retry_after": self.retry_after,
        }


def classify(status: int, response: Any) -> tuple[Outcome, str]:
    """The outcome class of an HTTP answer and a sentence with the server's own message."""
    said = ""
    if isinstance(response, dict):
        said = str(response.get("message") or response.get("error") or "")
    elif isinstance(response, str):
        said = response[:300]
    if 200 <= status < 300:
        return Outcome.ACCEPTED, said or "accepted"
    if status == 401:
        return Outcome.UNAUTHORIZED, f"the key was refused (401){': ' + said if said else ''}"
    if status == 403:
        return (
            Outcome.FORBIDDEN,
            f"the key may not create traces (403){': ' + said if said else ''}",
        )
    if status == 429 or status >= 500:
        return (
            Outcome.RETRYABLE,
            f"the server asks to try again later ({status}){': ' + said if said else ''}",
        )
    return Outcome.REJECTED, f"rejected ({status}){': ' + said if said else ''}"


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS settings every client here verifies with, as httpx makes them (certifi's CA
    bundle, SSL_CERT_FILE/SSL_CERT_DIR honoured), built once: loading the bundle costs ~30 ms
    of CPU, which each new client or session otherwise paid again. A context is safe to share
    between threads."""
    return httpx.create_ssl_context()


_shared: dict[str, httpx.Client] = {}
_shared_lock = threading.Lock()


def shared_client() -> httpx.Client:
    """One client per process, so sends reuse connections."""
    with _shared_lock:
        if "client" not in _shared:
            _shared["client"] = httpx.Client(timeout=DEFAULT_TIMEOUT, verify=tls_context())
        return _shared["client"]


def check_target(target: Target) -> str | None:
    """Why the target cannot be used, in words that never show the key; None when usable."""
    if not target.endpoint.startswith(("http://", "https://")):
        return "the endpoint must start with http:// or https://"
    try:
        httpx.URL(target.url)
    except (httpx.InvalidURL, ValueError):
        return "the endpoint is not a valid URL"
    if target.key is not None and (
        target.key != target.key.strip() or not target.key.isascii() or not target.key.isprintable()
    ):
        return (
            "the key has a space, line break or non-ASCII character at an end or inside it;"
            " check where it came from (a .env file with Windows line endings?)"
        )
    return None


def send_event(
    body: Any,
    target: Target,
    *,
    timeout: httpx.Timeout | float | None = None,
    client: httpx.Client | None = None,
) -> SendResult:
    """Check the body against LangWatch's rules, then POST it; never raises for a failed send."""
    if refused := _refusal(body, target):
        return refused
    http = client or shared_client()
    started = time.perf_counter()
    try:
        reply = http.post(
            target.url,
            content=json.dumps(body),
            headers=target.headers(),
            # The client's own timeout unless one is given.
            timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
        )
    except Exception as exc:  # noqa: BLE001 - a send must report, not raise
        return _from_exception(exc, target, started)
    return _from_reply(reply, target, started)


class AsyncSender:
    """Posts replay's bodies, checked and classified as send_event does, as an async context.

    By default straight through an aiohttp session, the one httpx-aiohttp's transport would
    make: the httpx request and response objects around each request took a third of the
    replay's CPU (docs/BENCHMARKS.md). Through `transport` when one is given (a test's, which
    holds a virtual clock while a request is answered). Both send the same headers and body and
    map aiohttp's errors to httpx's the same way, so one classification serves both.
    """

    def __init__(
        self,
        target: Target,
        timeout: httpx.Timeout,
        *,
        limits: httpx.Limits,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        from aiohttp import ClientTimeout  # here: sending one event needs no aiohttp
        from yarl import URL

        if problem := check_target(target):
            raise ValueError(problem)
        self.target = target
        self.transport = transport
        self.limits = limits
        self.url = httpx.URL(target.url)
        # What httpx puts in a request's head (host first, content-length per body), in its
        # lowercase names, as the transport hands them to aiohttp.
        headers = httpx.Request("POST", self.url, headers=target.headers()).headers
        self.headers = {k: v for k, v in headers.items() if k != "content-length"}
        self.extensions = {"timeout": timeout.as_dict()}
        self._aiohttp_url = URL(str(self.url))  # parsed once, not by aiohttp for every request
        self.timeout = ClientTimeout(  # as the transport turns httpx's timeout into one
            sock_connect=timeout.connect, sock_read=timeout.read, connect=timeout.pool
        )
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncSender:
        if self.transport is None:
            from httpx_aiohttp import AiohttpTransport

            self._session = AiohttpTransport(limits=self.limits, verify=tls_context()).get_client()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.transport is not None:
            await self.transport.aclose()
        if self._session is not None:
            await self._session.close()

    async def send(self, body: Any) -> SendResult:
        """Check, then POST one body; never raises for a failed send."""
        if problems := model.validate_body(body):  # the target was checked once, up front
            return SendResult(Outcome.INVALID, "not sent: " + model.reason(problems))
        content = json.dumps(body).encode()
        started = time.perf_counter()
        try:
            if self._session is None:
                reply = await self._post_through_transport(content)
            else:
                status, raw, headers = await self._post(self._session, content)
        except Exception as exc:  # noqa: BLE001 - a send must report, not raise
            return _from_exception(_as_httpx_error(exc), self.target, started)
        if self._session is None:
            return _from_reply(reply, self.target, started)
        return _from_answer(
            status,
            raw,
            _joined(headers.getall("retry-after", [])),
            lambda: httpx.Response(status, headers=list(headers.items()), content=raw).text,
            self.target,
            started,
        )

    async def _post(
        self, session: aiohttp.ClientSession, content: bytes
    ) -> tuple[int, bytes, CIMultiDictProxy[str]]:
        """What AiohttpTransport.handle_async_request does (its errors are mapped in send)."""
        async with session.request(
            "POST",
            self._aiohttp_url,
            headers=self.headers | {"content-length": str(len(content))},
            data=content,
            allow_redirects=False,
            auto_decompress=False,
            compress=False,
            timeout=self.timeout,
        ) as reply:
            return reply.status, await reply.read(), reply.headers

    async def _post_through_transport(self, content: bytes) -> httpx.Response:
        request = httpx.Request(
            "POST", self.url, headers=self.headers, content=content, extensions=self.extensions
        )
        assert self.transport is not None
        reply = await self.transport.handle_async_request(request)
        try:
            await reply.aread()
        finally:
            await reply.aclose()
        return reply


def _as_httpx_error(exc: Exception) -> Exception:
    """The error httpx-aiohttp's transport raises for this one (an httpx error caused by
    aiohttp's, or the same error when it maps none), so both paths classify alike."""
    from httpx_aiohttp.transport import map_aiohttp_exceptions

    try:
        with map_aiohttp_exceptions():
            raise exc
    except Exception as mapped:  # noqa: BLE001 - handed back, not handled
        return mapped


def _joined(values: list[str]) -> str | None:
    """A header's values as httpx.Headers.get gives them: joined by commas, None if absent."""
    return ", ".join(values) if values else None


def _refusal(body: Any, target: Target) -> SendResult | None:
    """Why a body must not be sent (LangWatch would refuse it, or the target is unusable)."""
    problems = model.validate_body(body)
    if problems:
        return SendResult(Outcome.INVALID, "not sent: " + model.reason(problems))
    if unusable := check_target(target):
        return SendResult(Outcome.INVALID, "not sent: " + unusable)
    return None


def _from_exception(exc: Exception, target: Target, started: float) -> SendResult:
    """A request that got no HTTP answer, classed by how far it got."""
    if _dropped(exc):
        return _failed(
            Outcome.UNKNOWN, "the connection was lost after sending", exc, target, started
        )
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return _failed(Outcome.RETRYABLE, "could not connect", exc, target, started, sent=False)
    if isinstance(exc, httpx.TimeoutException):
        # The body may have arrived; with an event_id a retry is deduplicated by the server.
        return _failed(Outcome.RETRYABLE, "no answer in time", exc, target, started, sent=True)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.InvalidURL):
        return _failed(
            Outcome.INVALID,
            "not sent: the request could not be made",
            exc,
            target,
            started,
            sent=False,
        )
    if isinstance(exc, httpx.TransportError):
        return _failed(
            Outcome.UNKNOWN, "the connection was lost after sending", exc, target, started
        )
    return _failed(Outcome.UNKNOWN, "the send failed", exc, target, started, sent=False)


def _dropped(exc: Exception) -> bool:
    """Whether the server closed the connection after the request went out (aiohttp transport:
    it reports that as a ConnectTimeout, with aiohttp's ServerDisconnectedError as the cause)."""
    cause = exc.__cause__
    return cause is not None and type(cause).__name__ in (
        "ServerDisconnectedError",
        "ClientPayloadError",
        "ClientOSError",
    )


def _from_reply(reply: httpx.Response, target: Target, started: float) -> SendResult:
    return _from_answer(
        reply.status_code,
        reply.content,
        reply.headers.get("retry-after"),
        lambda: reply.text,
        target,
        started,
    )


def _from_answer(
    status: int,
    content: bytes,
    retry_after: str | None,
    text: Callable[[], str],
    target: Target,
    started: float,
) -> SendResult:
    """An HTTP answer classed: its body parsed as JSON (else its text), the key scrubbed."""
    latency = (time.perf_counter() - started) * 1000
    try:
        response: Any = json.loads(content)  # what httpx.Response.json() does
    except ValueError:
        response = text()[:2000]
    response = _scrub_value(response, target)  # before classify cuts any text short
    outcome, message = classify(status, response)
    return SendResult(
        outcome,
        target.scrub(message),
        status,
        response,
        round(latency, 2),
        True,
        retry_after=retry_after_s(retry_after),
    )


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number of seconds; HTTP dates are not used here)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _failed(
    outcome: Outcome,
    what: str,
    exc: Exception,
    target: Target,
    started: float,
    *,
    sent: bool = True,
) -> SendResult:
    latency = round((time.perf_counter() - started) * 1000, 2)
    message = target.scrub(f"{what} ({type(exc).__name__}: {exc})")
    log.info("send to %s: %s", target.url, message)
    return SendResult(outcome, message, None, None, latency, sent)


def _scrub_value(value: Any, target: Target) -> Any:
    """A parsed response with the key masked in every string (a server could echo it)."""
    if isinstance(value, str):
        return target.scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(v, target) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_value(v, target) for v in value]
    return value
