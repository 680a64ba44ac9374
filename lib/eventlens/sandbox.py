"""A local endpoint that answers like LangWatch's POST /api/track_event, and stores what it accepts.

Same validation (model.py), status codes and bodies as the real route; repeats of (trace_id,
event_id) are dropped as the server drops them; accepted events land in the store as dataset
"sandbox", so they show up in Explore and Traces. Faults can be switched on to test clients:
500s, 429s with Retry-After, a connection closed after the event was stored, added latency.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import secrets as tokens
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from eventlens import model
from eventlens.store import Store

log = logging.getLogger(__name__)

DATASET = "sandbox"
KEY_ENV = "EVENTLENS_SANDBOX_KEY"
DEFAULT_KEY = "sandbox-key"
PATHS = ("/api/track_event", "/api/events/track")


def default_key() -> str:
    """The sandbox's key: $EVENTLENS_SANDBOX_KEY, else 'sandbox-key'."""
    return os.environ.get(KEY_ENV) or DEFAULT_KEY


@dataclass
class Faults:
    """Share of requests (0..1) that fail each way, and latency added to every request."""

    fail_rate: float = 0.0  # 500
    throttle_rate: float = 0.0  # 429 with Retry-After
    drop_rate: float = 0.0  # stored, then the connection is closed without an answer
    latency_ms: float = 0.0
    retry_after_s: int = 1
    seed: int | None = None


class Sandbox:
    """The route's behaviour, independent of the web framework (so tests can call it directly)."""

    def __init__(self, store: Store, key: str | None = None, faults: Faults | None = None):
        self.store = store
        self.key = key or default_key()
        self.faults = faults or Faults()
        self.random = random.Random(self.faults.seed)
        self.lock = threading.Lock()  # one write at a time: dedupe must see the last insert
        self.counts = {"accepted": 0, "duplicate": 0, "rejected": 0, "unauthorized": 0}

    def authorised(self, headers: dict[str, str]) -> bool:
        """X-Auth-Token or Authorization: Bearer, compared in constant time."""
        token = headers.get("x-auth-token")
        bearer = headers.get("authorization", "")
        if not token and bearer.lower().startswith("bearer "):
            token = bearer[7:].strip()
        return bool(token) and tokens.compare_digest(token, self.key)

    def fault(self) -> str | None:
        """Which fault, if any, this request meets."""
        draw = self.random.random()
        for name, rate in (
            ("fail", self.faults.fail_rate),
            ("throttle", self.faults.throttle_rate),
            ("drop", self.faults.drop_rate),
        ):
            if draw < rate:
                return name
            draw -= rate
        return None

    def handle(self, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        """The status and JSON body LangWatch answers with (after storing an accepted event)."""
        if not self.authorised(headers):
            self.counts["unauthorized"] += 1
            return 401, {"error": "Unauthorized", "message": "Invalid or missing API key"}
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            self.counts["rejected"] += 1
            return 400, {"error": "Bad request"}
        problems = model.validate_body(body)
        if problems:
            self.counts["rejected"] += 1
            return 400, {"error": f"Validation error: {model.reason(problems)}"}
        inserted = self.store_event(body)
        with self.lock:
            self.counts["accepted" if inserted else "duplicate"] += 1
        return 200, {"message": "Event tracked"}

    def store_event(self, body: dict[str, Any]) -> bool:
        """Insert one valid body into dataset 'sandbox'; False when (trace_id, event_id) exists."""
        event_id = body.get("event_id") or f"event_{uuid.uuid4().hex}"  # as the server does
        timestamp = body.get("timestamp")
        if timestamp is None:
            timestamp = int(time.time() * 1000)
        metrics = [{"key": k, "value": float(v)} for k, v in body["metrics"].items()]
        details = [{"key": k, "value": v} for k, v in (body.get("event_details") or {}).items()]
        key_sql = "md5_number('id' || chr(0) || ? || chr(0) || ?)"
        with self.lock, self.store.write_lock:
            before = self.store.last_batch()
            with self.store.cursor() as cur:
                inserted = cur.execute(
                    f"""
                    INSERT INTO events (event_key, event_id, trace_id, event_type, timestamp,
                                        metrics, event_details, dataset, source_file, source_line,
                                        batch_id)
                    SELECT {key_sql}, ?, ?, ?, epoch_ms(round(?::DOUBLE)::BIGINT)::TIMESTAMPTZ,
                           map_from_entries(?::STRUCT(key VARCHAR, value DOUBLE)[]),
                           map_from_entries(?::STRUCT(key VARCHAR, value VARCHAR)[]),
                           ?, 'sandbox', NULL, nextval('event_batches')
                    WHERE NOT EXISTS (SELECT 1 FROM events WHERE event_key = {key_sql})
                    """,
                    [
                        body["trace_id"],
                        event_id,
                        event_id,
                        body["trace_id"],
                        body["event_type"],
                        timestamp,
                        metrics,
                        details,
                        DATASET,
                        body["trace_id"],
                        event_id,
                    ],
                ).fetchone()[0]
                if inserted:
                    cur.execute(
                        "INSERT OR REPLACE INTO datasets SELECT ?, ['sandbox'], 'sandbox', now(),"
                        " (SELECT count(*) FROM events WHERE dataset = ?), 0,"
                        " coalesce((SELECT duplicates FROM datasets WHERE name = ?), 0)",
                        [DATASET, DATASET, DATASET],
                    )
            if inserted:
                self.store.refresh_traces(after_batch=before)
        return bool(inserted)


def routes(get_sandbox: Any) -> list[Route]:
    """The sandbox's routes; `get_sandbox()` gives the Sandbox (made on first use if lazy)."""

    async def track(request: Request) -> Response:
        return await _track(get_sandbox(), request)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "counts": get_sandbox().counts})

    out = [Route(path, track, methods=["POST"]) for path in PATHS]
    out.append(Route("/api/sandbox/health", health, methods=["GET"]))
    return out


def app(sandbox: Sandbox) -> Starlette:
    """The standalone Starlette app: the two track_event paths and a health check."""
    return Starlette(routes=routes(lambda: sandbox))


async def _track(sandbox: Sandbox, request: Request) -> Response:
    """One POST: faults first (as a proxy in front would), then LangWatch's answer."""
    raw = await request.body()  # read first: a slow answer still receives the whole event
    if sandbox.faults.latency_ms:
        await asyncio.sleep(sandbox.faults.latency_ms / 1000)
    fault = sandbox.fault()
    if fault == "fail":
        return JSONResponse({"error": "Internal server error (sandbox fault)"}, 500)
    if fault == "throttle":
        return JSONResponse(
            {"error": "Too many requests (sandbox fault)"},
            429,
            headers={"Retry-After": str(sandbox.faults.retry_after_s)},
        )
    headers = {k.lower(): v for k, v in request.headers.items()}
    status, body = await asyncio.to_thread(sandbox.handle, headers, raw)
    if fault == "drop" and status == 200:
        return DroppedResponse()
    return JSONResponse(body, status)


class DroppedResponse(Response):
    """An answer that starts and never finishes: the client sees the connection close after
    its event was stored, as when a proxy or a server dies mid-answer."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]}
        )
        raise ConnectionAbortedError("sandbox fault: the event was stored, the answer dropped")


def serve(
    store: Store,
    host: str = "127.0.0.1",
    port: int = 8787,
    key: str | None = None,
    faults: Faults | None = None,
) -> None:
    """Run the sandbox until interrupted (the `eventlens sandbox` command)."""
    import uvicorn

    sandbox = Sandbox(store, key, faults)
    uvicorn.run(app(sandbox), host=host, port=port, log_level="critical")
