"""A local endpoint that answers like LangWatch's POST /api/track_event, and stores what it accepts.

Same validation (model.py), status codes and bodies as the real route; repeats of (trace_id,
event_id) are dropped as the server drops them; accepted events land in the store as dataset
"sandbox", so they show up in Explore and Traces. Faults can be switched on to test clients:
500s, 429s with Retry-After, a connection closed after the event was stored, added latency.
It answers reads too (sandbox_reads.py): POST /api/traces/search and GET /api/traces/{id} over
the traces it holds, which it tracks in `sandbox_traces` as it stores their events.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import queue
import random
import secrets as tokens
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from eventlens import model, settings
from eventlens.errors import first_line
from eventlens.store import Store, StoreError

if TYPE_CHECKING:  # the mirror's type only: the sandbox runs without ClickHouse installed
    from eventlens.clickhouse.store import ClickHouseStore

log = logging.getLogger(__name__)

DATASET = "sandbox"
KEY_ENV = settings.SANDBOX_KEY.name
DEFAULT_KEY = str(settings.SANDBOX_KEY.default)
PATHS = ("/api/track_event", "/api/events/track")
# The answer when an accepted event could not be stored (its store failed): a 500, which
# clients retry, never a 200 for an event that was not kept.
NOT_STORED = (500, {"error": "Internal server error (the sandbox could not store the event)"})
REFRESH_S = 1.0  # the trace summary lags the sandbox's events by at most about this


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def network_problem(host: str, key: str | None) -> str | None:
    """Why the sandbox must not listen on `host` with this key (None: it may): beyond loopback,
    the well-known default key would let anyone on the network write into the store."""
    if host in LOOPBACK_HOSTS or (key or default_key()) != DEFAULT_KEY:
        return None
    return (
        f"listening on {host} opens the sandbox's write route to the network, and its key is the"
        f" well-known default {DEFAULT_KEY!r}: set {KEY_ENV} to a key of your own (for example"
        " `export EVENTLENS_SANDBOX_KEY=$(python -c 'import secrets;"
        " print(secrets.token_urlsafe(24))')`) and start again"
    )


def default_key() -> str:
    """The sandbox's key: $EVENTLENS_SANDBOX_KEY, else 'sandbox-key'."""
    return str(settings.SANDBOX_KEY.value())


@dataclass
class Faults:
    """Share of requests (0..1) that fail each way, and latency added to every request."""

    fail_rate: float = 0.0  # 500
    throttle_rate: float = 0.0  # 429 with Retry-After
    drop_rate: float = 0.0  # stored, then the connection is closed without an answer
    latency_ms: float = 0.0
    retry_after_s: int = 1
    seed: int | None = None


@dataclass
class ReadOptions:
    """How the read routes behave, to test clients against older or buggy servers."""

    select_supported: bool = True  # False: a server before 3.5.0 (ignores `select`, no schema)
    ignore_scroll: bool = False  # True: bug #2615 (every scrollId ignored: page 1 forever)
    project_id: str = "sandbox"  # the project_id the read answers carry


def presented_key(headers: dict[str, str]) -> str | None:
    """The key a request presents: X-Auth-Token, else Authorization: Bearer (lower-case names)."""
    token = headers.get("x-auth-token")
    bearer = headers.get("authorization", "")
    if not token and bearer.lower().startswith("bearer "):
        token = bearer[7:].strip()
    return token or None


class Sandbox:
    """The route's behaviour, independent of the web framework (so tests can call it directly)."""

    def __init__(
        self,
        store: Store,
        key: str | None = None,
        faults: Faults | None = None,
        *,
        clock: Callable[[], float] = time.time,
        reads: ReadOptions | None = None,
        mirror: ClickHouseStore | None = None,
    ):
        """`clock` (epoch seconds) stamps the traces' inserted_at/updated_at and events sent
        without a timestamp, so tests control it; `reads` sets how the read routes behave.
        `mirror`, a ClickHouse store, gets every accepted event too, in the same batch
        (stores.sandbox_stores): `store` is then the sandbox's own bookkeeping."""
        self.store = store
        self.mirror = mirror
        self._mirrored = False  # events copied to the mirror since its catalogue row was written
        self.key = key or default_key()
        self.faults = faults or Faults()
        self.clock = clock
        self.reads = reads or ReadOptions()
        self.lock = threading.Lock()  # guards counts and the writer
        self._writer: _Writer | None = None
        self._unsummarised: int | None = None  # the batch after which the summary is behind
        if not store.read_only:
            with store.write_lock, store.cursor() as cur:  # in step with what the dataset holds
                cur.execute("DELETE FROM sandbox_keys")
                cur.execute(
                    "INSERT INTO sandbox_keys SELECT DISTINCT event_key FROM events"
                    " WHERE dataset = ?",
                    [DATASET],
                )
                # Events stored before sandbox_traces existed: their traces get rows now.
                cur.execute(
                    "INSERT INTO sandbox_traces SELECT trace_id, ?, ?, epoch_ms(min(timestamp)),"
                    " '{}' FROM events WHERE dataset = ? AND trace_id NOT IN"
                    " (SELECT trace_id FROM sandbox_traces) GROUP BY trace_id",
                    [self.now_ms(), self.now_ms(), DATASET],
                )
        self._summarised_at = 0.0
        self.counts = {"accepted": 0, "duplicate": 0, "rejected": 0, "unauthorized": 0}

    def now_ms(self) -> int:
        """The sandbox clock in epoch milliseconds."""
        return int(self.clock() * 1000)

    def authorised(self, headers: dict[str, str]) -> bool:
        """X-Auth-Token or Authorization: Bearer, compared in constant time."""
        token = presented_key(headers)
        if not token:
            return False
        return tokens.compare_digest(token, self.key)

    def set_trace_metadata(
        self,
        trace_id: str,
        user_id: str | None = None,
        thread_id: str | None = None,
        customer_id: str | None = None,
        labels: list[str] | None = None,
        **custom: Any,
    ) -> None:
        """Set a stored trace's metadata as LangWatch's metadata update does (keys given are set,
        others kept, labels replaced whole) and move its updated_at to now. track_event bodies
        carry no metadata: this is how tests give traces some. KeyError for an unknown trace."""
        given = {"user_id": user_id, "thread_id": thread_id, "customer_id": customer_id}
        given = {k: v for k, v in {**given, "labels": labels, **custom}.items() if v is not None}
        with self.store.write_lock:
            found = self.store.rows(
                "UPDATE sandbox_traces SET metadata = json_merge_patch(metadata, ?::JSON),"
                " updated_at = ? WHERE trace_id = ? RETURNING trace_id",
                [json.dumps(given), self.now_ms(), trace_id],
            )
        if not found:
            raise KeyError(f"the sandbox holds no trace {trace_id!r}")

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        """New faults start their own sequence, the same on every run where they have a seed
        (a test sets them on a running sandbox; the first ones' sequence was kept before)."""
        self._faults = faults
        self.random = random.Random(faults.seed)

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

    def check(self, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any], Any]:
        """LangWatch's answer for a request that is not accepted, or (200, ..., body) to store."""
        if not self.authorised(headers):
            self._count("unauthorized")
            return 401, {"error": "Unauthorized", "message": "Invalid or missing API key"}, None
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            self._count("rejected")
            return 400, {"error": "Bad request"}, None
        problems = model.validate_body(body)
        if problems:
            self._count("rejected")
            return 400, {"error": f"Validation error: {model.reason(problems)}"}, None
        return 200, {"message": "Event tracked"}, body

    def handle(self, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        """The status and JSON body LangWatch answers with (after storing an accepted event)."""
        status, answer, body = self.check(headers, raw)
        if body is not None and self.store_event(body) is None:
            return NOT_STORED
        return status, answer

    def store_event(self, body: dict[str, Any]) -> bool | None:
        """Store one valid body in dataset 'sandbox'; False when (trace_id, event_id) exists,
        None when it could not be stored."""
        waiter: concurrent.futures.Future[bool | None] = concurrent.futures.Future()
        self.writer.put(body, waiter)
        return waiter.result()

    async def store_async(self, body: dict[str, Any]) -> bool | None:
        """store_event for the web route: waits for the group commit without holding a thread."""
        waiter: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        self.writer.put(body, waiter)
        return await waiter

    @property
    def writer(self) -> _Writer:
        with self.lock:
            if self._writer is None:
                self._writer = _Writer(self)
            return self._writer

    def _refresh_traces(self, before: int) -> None:
        """Merge new events into the trace summary: at once when nothing else is queued, else at
        most every REFRESH_S (a merge costs ~15 ms whatever the batch size, which under a replay
        would cap the sandbox's rate); the writer also calls flush() when it goes idle."""
        if self._unsummarised is None:
            self._unsummarised = before
        idle = self._writer is None or self._writer.queue.empty()
        if idle or time.monotonic() - self._summarised_at >= REFRESH_S:
            self.flush()

    def flush(self) -> None:
        """Bring the trace summary (and a mirror's catalogue row) up to date with every stored
        event."""
        with self.store.write_lock:
            if self._unsummarised is not None:
                self.store.refresh_traces(after_batch=self._unsummarised)
                self._unsummarised = None
            if self._mirrored and self.mirror is not None:
                try:
                    # Test data: what QA and replays send stays out of analysis, as below.
                    self.mirror.write_dataset_row(
                        DATASET, content_hash=DATASET, test=True, files=[DATASET]
                    )
                    self._mirrored = False
                except StoreError as exc:  # the events are stored; the row is written next time
                    log.warning("sandbox: the catalogue row was not written: %s", exc)
            self._summarised_at = time.monotonic()

    def _count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] += n

    def insert(self, bodies: list[dict[str, Any]]) -> list[bool]:
        """Insert a batch of valid bodies in one transaction; whether each one was new.

        Repeats of (trace_id, event_id) already in dataset 'sandbox', or earlier in the batch,
        are dropped as LangWatch drops them.
        """
        now = self.now_ms()
        identities = []
        firsts: dict[str, dict[str, Any]] = {}  # event key -> its row, the first in the batch
        for body in bodies:
            event_id = body.get("event_id") or f"event_{uuid.uuid4().hex}"  # as the server does
            identity = (body["trace_id"], event_id)
            identities.append(identity)
            key = str(event_key(*identity))
            if key not in firsts:
                firsts[key] = event_row(key, body, event_id, now)
        with self.store.write_lock:
            # The summary merges from the batch before the first one it has not seen.
            before = self.store.last_batch() if self._unsummarised is None else 0
            with self.store.cursor() as cur:
                cur.execute("BEGIN TRANSACTION")
                try:
                    rows = self._insert_fresh(cur, firsts, now)
                    if rows and self.mirror is not None:
                        # Before the commit: if ClickHouse fails, the sandbox has not seen the
                        # events either and the sender's retry stores them (the copy skips keys
                        # already there, so a batch copied twice is stored once).
                        self.mirror.add_events(DATASET, _mirror_rows(rows))
                        self._mirrored = True
                    cur.execute("COMMIT")
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
            if rows:
                self._refresh_traces(before)
        new = {(row["trace_id"], row["event_id"]) for row in rows}
        result = []
        for identity in identities:  # the first of repeats in one batch is the one inserted
            result.append(identity in new)
            new.discard(identity)
        self._count("accepted", sum(result))
        self._count("duplicate", len(result) - sum(result))
        return result

    def _insert_fresh(
        self, cur: duckdb.DuckDBPyConnection, firsts: dict[str, dict[str, Any]], now: int
    ) -> list[dict[str, Any]]:
        """Insert the rows whose keys the sandbox has not seen, with their traces and the
        dataset's count, inside the caller's transaction; the rows inserted."""
        # The keys index answers "seen before?" without scanning the events.
        fresh = cur.execute(
            "INSERT INTO sandbox_keys SELECT unnest(?::VARCHAR[])::UHUGEINT"
            " ON CONFLICT DO NOTHING RETURNING event_key::VARCHAR",
            [list(firsts)],  # as text: a Python int this large does not bind as UHUGEINT
        ).fetchall()
        fresh_keys = {key for (key,) in fresh}
        rows = [row for key, row in firsts.items() if key in fresh_keys]  # in the batch's order
        if not rows:
            return rows
        # Bound as flat columns, the maps as JSON text: a list of nested structs costs DuckDB
        # more to take in than the insert itself.
        columns = [list(column) for column in zip(*(row.values() for row in rows), strict=True)]
        cur.execute(
            "INSERT INTO events (event_key, event_id, trace_id, event_type, timestamp, metrics,"
            " event_details, dataset, source_file, source_line, batch_id)"
            " SELECT key::UHUGEINT, event_id, trace_id, event_type,"
            " epoch_ms(round(ts)::BIGINT)::TIMESTAMPTZ,"
            " json_transform(metrics, '\"MAP(VARCHAR, DOUBLE)\"'),"
            " json_transform(details, '\"MAP(VARCHAR, VARCHAR)\"'), ?, 'sandbox', NULL,"
            " (SELECT nextval('event_batches'))"  # one value for the batch: not correlated
            " FROM (SELECT unnest(?::VARCHAR[]) AS key, unnest(?::VARCHAR[]) AS event_id,"
            " unnest(?::VARCHAR[]) AS trace_id, unnest(?::VARCHAR[]) AS event_type,"
            " unnest(?::DOUBLE[]) AS ts, unnest(?::VARCHAR[]) AS metrics,"
            " unnest(?::VARCHAR[]) AS details)",
            [DATASET, *columns],
        )
        # A new event moves its trace's updated_at, however old the trace. Each trace's first
        # time is taken here, not by a GROUP BY in SQL (which took the statement 2.5 ms, not 2.2).
        starts: dict[str, float] = {}
        for row in rows:
            trace_id, ts = row["trace_id"], row["ts"]
            starts[trace_id] = min(ts, starts.get(trace_id, ts))
        cur.execute(
            "INSERT INTO sandbox_traces SELECT trace_id, ?, ?, round(ts)::BIGINT, '{}'"
            " FROM (SELECT unnest(?::VARCHAR[]) AS trace_id, unnest(?::DOUBLE[]) AS ts)"
            " ON CONFLICT (trace_id) DO UPDATE SET updated_at ="
            " excluded.updated_at, started_at = least(sandbox_traces.started_at,"
            " excluded.started_at)",
            [now, now, list(starts), list(starts.values())],
        )
        # Counted up: a count(*) per batch would grow with the store. An UPDATE costs half
        # the upsert, which is needed only for the first event (or after a delete). Its
        # count of rows changed says which (RETURNING cost 0.5 ms more).
        counted = cur.execute(
            "UPDATE datasets SET events = events + ?, loaded_at = now() WHERE name = ?",
            [len(rows), DATASET],
        ).fetchall()
        if not counted[0][0]:
            cur.execute(
                # Test data: what QA and replays send stays out of analysis.
                "INSERT INTO datasets (name, files, content_hash, loaded_at, events,"
                " rejects, duplicates, test)"
                " VALUES (?, ['sandbox'], 'sandbox', now(), ?, 0, 0, true)"
                " ON CONFLICT (name) DO UPDATE SET events = datasets.events + ?,"
                " loaded_at = now()",
                [DATASET, len(rows), len(rows)],
            )
        return rows


def event_key(trace_id: str, event_id: str) -> int:
    """The store's identity of an event, md5_number('id' || chr(0) || trace_id || chr(0) ||
    event_id) as ingest computes it in SQL (DuckDB reads the digest little-endian)."""
    digest = hashlib.md5(f"id\0{trace_id}\0{event_id}".encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest, "little")


def event_row(key: str, body: dict[str, Any], event_id: str, now: int) -> dict[str, Any]:
    """A valid body as the columns the insert binds, in its order; no timestamp: the sandbox's
    now. Metrics as JSON numbers read as DOUBLE (validation let only finite numbers through)."""
    timestamp = body.get("timestamp")
    return {
        "key": key,
        "event_id": event_id,
        "trace_id": body["trace_id"],
        "event_type": body["event_type"],
        "ts": float(now if timestamp is None else timestamp),
        "metrics": json.dumps(body["metrics"], ensure_ascii=False),
        "details": json.dumps(body.get("event_details") or {}, ensure_ascii=False),
    }


def _mirror_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accepted rows as ClickHouseStore.add_events takes them (the maps as dicts)."""
    return [
        {
            **row,
            "key": int(row["key"]),
            "metrics": json.loads(row["metrics"]),
            "details": json.loads(row["details"]),
        }
        for row in rows
    ]


# A waiter gets whether its event was new, or None when it could not be stored (answered 500).
Waiter = asyncio.Future[bool | None] | concurrent.futures.Future[bool | None]


class _Writer:
    """Group commit: accepted events queue here and one thread inserts them in batches, so the
    sandbox keeps up with a replay (one insert per event would cap it near 60 events/s)."""

    MAX_BATCH = 5_000

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.queue: queue.SimpleQueue[tuple[dict[str, Any], Waiter]] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="sandbox-writer", daemon=True).start()

    def put(self, body: dict[str, Any], waiter: Waiter) -> None:
        """Queue a body; `waiter` gets whether it was new once it is committed."""
        self.queue.put((body, waiter))

    def _run(self) -> None:
        while True:
            try:
                first = self.queue.get(timeout=REFRESH_S)
            except queue.Empty:
                try:
                    self.sandbox.flush()  # idle: catch the trace summary up
                except duckdb.ConnectionException:
                    return  # the store was closed: the sandbox is gone
                except Exception as exc:  # noqa: BLE001 - keep serving; the next flush retries
                    log.warning("sandbox: the trace summary is behind: %s", first_line(exc))
                continue
            batch = [first]
            while len(batch) < self.MAX_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            answer(
                [waiter for _, waiter in batch],
                self._insert([body for body, _ in batch]),
            )

    def _insert(self, bodies: list[dict[str, Any]]) -> list[bool | None]:
        """Whether each body was new; when the batch fails, each body alone (None if it fails:
        its sender is answered 500 and retries, rather than told it was stored)."""
        try:
            return list(self.sandbox.insert(bodies))
        except Exception as exc:  # noqa: BLE001 - answer every waiter, one at a time
            log.warning("sandbox batch insert failed (%s); inserting one by one", first_line(exc))
        results: list[bool | None] = []
        for body in bodies:
            try:
                results.extend(self.sandbox.insert([body]))
            except Exception as exc:  # noqa: BLE001
                log.warning("sandbox insert failed: %s", first_line(exc))
                results.append(None)
        return results


def answer(waiters: list[Waiter], results: list[bool | None]) -> None:
    """Resolve the waiters of a batch: threads at once, and each event loop's futures in one
    call on that loop (a wake-up per event would cost the loop a pipe write per request)."""
    by_loop: dict[
        asyncio.AbstractEventLoop, list[tuple[asyncio.Future[bool | None], bool | None]]
    ] = {}
    for waiter, inserted in zip(waiters, results, strict=True):
        if isinstance(waiter, asyncio.Future):
            by_loop.setdefault(waiter.get_loop(), []).append((waiter, inserted))
        else:
            waiter.set_result(inserted)
    for loop, pairs in by_loop.items():
        loop.call_soon_threadsafe(_resolve, pairs)


def _resolve(pairs: list[tuple[asyncio.Future[bool | None], bool | None]]) -> None:
    for future, inserted in pairs:
        if not future.done():  # the request may have been cancelled (client gone)
            future.set_result(inserted)


def routes(get_sandbox: Any) -> list[Route]:
    """The sandbox's routes; `get_sandbox()` gives the Sandbox (made on first use if lazy)."""

    async def track(request: Request) -> Response:
        return await _track(get_sandbox(), request)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "counts": get_sandbox().counts})

    from eventlens import sandbox_reads  # it imports this module

    out = [Route(path, track, methods=["POST"]) for path in PATHS]
    out.extend(sandbox_reads.routes(get_sandbox))
    out.append(Route("/api/sandbox/health", health, methods=["GET"]))
    return out


def app(sandbox: Sandbox) -> Starlette:
    """The standalone Starlette app: the two track_event paths, the reads, a health check."""
    return Starlette(routes=routes(lambda: sandbox))


async def faulted(sandbox: Sandbox) -> tuple[Response | None, bool]:
    """The faults a request meets, as a proxy in front would add them: the latency, then a 500 or
    429 answer to send instead of the route's (or None), and whether to drop the answer."""
    if sandbox.faults.latency_ms:
        await asyncio.sleep(sandbox.faults.latency_ms / 1000)
    fault = sandbox.fault()
    if fault == "fail":
        return JSONResponse({"error": "Internal server error (sandbox fault)"}, 500), False
    if fault == "throttle":
        return JSONResponse(
            {"error": "Too many requests (sandbox fault)"},
            429,
            headers={"Retry-After": str(sandbox.faults.retry_after_s)},
        ), False
    return None, fault == "drop"


async def _track(sandbox: Sandbox, request: Request) -> Response:
    """One POST: faults first (as a proxy in front would), then LangWatch's answer."""
    raw = await request.body()  # read first: a slow answer still receives the whole event
    early, drop = await faulted(sandbox)
    if early is not None:
        return early
    headers = {k.lower(): v for k, v in request.headers.items()}
    status, body, event = sandbox.check(headers, raw)
    if event is not None and await sandbox.store_async(event) is None:
        return JSONResponse(NOT_STORED[1], NOT_STORED[0])
    if drop and status == 200:
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
    reads: ReadOptions | None = None,
    mirror: ClickHouseStore | None = None,
) -> None:
    """Run the sandbox until interrupted (the `eventlens sandbox` command); SIGTERM exits 0."""
    import signal

    import uvicorn

    def stopped(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    sandbox = Sandbox(store, key, faults, reads=reads, mirror=mirror)
    # uvicorn shuts down gracefully on SIGTERM, then raises it again to the handler it found,
    # which is this one: a clean exit instead of a death by signal (exit code -15).
    previous = signal.signal(signal.SIGTERM, stopped)
    try:
        uvicorn.run(app(sandbox), host=host, port=port, log_level="critical")
    finally:
        signal.signal(signal.SIGTERM, previous)
        sandbox.flush()
