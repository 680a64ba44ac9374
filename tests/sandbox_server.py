"""Test helpers (not a test module): ASGI apps served over real loopback HTTP in a thread.

The sandbox, stubs and counters every HTTP test uses; the fixtures live in the test modules.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from eventlens.client import Target
from eventlens.sandbox import PATHS, Faults, ReadOptions, Sandbox, app
from eventlens.store import Store


class CountingApp:
    """Wraps an ASGI app and counts the HTTP requests that reach it, by path, and the statuses
    it answers with."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.paths: list[str] = []
        self.statuses: collections.Counter[int] = collections.Counter()

    @property
    def track_requests(self) -> int:
        """How many requests hit one of the track_event paths."""
        return sum(p in PATHS for p in self.paths)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        self.paths.append(scope["path"])

        async def counted(message: dict) -> None:
            if message["type"] == "http.response.start":
                self.statuses[message["status"]] += 1
            await send(message)

        await self.inner(scope, receive, counted)


def free_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _PromptServer(uvicorn.Server):
    """uvicorn's Server, stopping within milliseconds of should_exit. uvicorn looks at it every
    0.1 s and then pauses 0.1 s more for open connections to close: 0.15-0.2 s of idle wall time
    per test server, over 200 of them a run. (Written against uvicorn 0.54's Server.)"""

    async def main_loop(self) -> None:
        ticks = 0
        should_exit = await self.on_tick(ticks)
        while not should_exit:
            for _ in range(20):  # uvicorn's 0.1 s tick, in steps that notice should_exit
                await asyncio.sleep(0.005)
                if self.should_exit:
                    break
            ticks = (ticks + 1) % 864000
            should_exit = await self.on_tick(ticks)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.server_state.connections or self.server_state.tasks:
            await super().shutdown(sockets)  # its pause lets those connections close
            return
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()


@contextmanager
def serve_in_thread(asgi_app: Any, *, no_delay: bool = False) -> Iterator[str]:
    """Serve `asgi_app` with uvicorn on a free loopback port; yields the base URL.

    The socket is bound here and handed to uvicorn (no race for the port); the server is always
    asked to exit and joined, whatever the test did. uvicorn writes an answer's headers and body
    apart, and the body waits for the client's delayed ACK of the headers (~40 ms), which a
    client sending one request at a time pays on every one; `no_delay` sends them at once.
    """
    sock = socket.socket()
    if no_delay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        asgi_app,
        log_config=None,
        log_level="critical",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = _PromptServer(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="sandbox"
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "the test server did not stop"


def stub_app(status: int, body: Any, headers: dict[str, str] | None = None) -> Starlette:
    """A fake LangWatch that answers every POST on the track paths with one fixed answer.

    `body` is JSON unless it is a str (then text/plain); a callable gets the request's headers
    (lower-cased) and returns the body, so a test can echo what the client sent.
    """

    async def answer(request: Request) -> Response:
        await request.body()
        value = body({k.lower(): v for k, v in request.headers.items()}) if callable(body) else body
        if isinstance(value, str):
            return PlainTextResponse(value, status, headers=headers)
        return JSONResponse(value, status, headers=headers)

    return Starlette(routes=[Route(path, answer, methods=["POST"]) for path in PATHS])


class SetClock:
    """A clock for the sandbox (epoch seconds) that moves only when a test moves it."""

    def __init__(self, start_ms: int = 1_700_000_000_000):
        self.ms = start_ms

    def __call__(self) -> float:
        return self.ms / 1000

    def advance(self, ms: int = 1000) -> int:
        """Move on `ms` milliseconds; the new time in ms."""
        self.ms += ms
        return self.ms


@dataclass
class Live:
    """A sandbox served on loopback: its base URL, the Sandbox, its store, a counter of requests
    and statuses, and its key."""

    url: str
    sandbox: Sandbox
    store: Store
    counter: CountingApp
    key: str

    def target(self, **options: Any) -> Target:
        options.setdefault("key", self.key)
        return Target(endpoint=self.url, key_source="typed", **options)

    def total_requests(self) -> int:
        return self.counter.track_requests

    def headers(self, key: str | None = None) -> dict[str, str]:
        """The X-Auth-Token header with the sandbox's key (or another)."""
        return {"X-Auth-Token": self.key if key is None else key}

    def stored(self, trace_id: str) -> list[tuple]:
        return self.store.rows(
            "SELECT event_id, event_type, epoch_ms(timestamp), metrics, event_details, dataset,"
            " source_file FROM events WHERE trace_id = ? ORDER BY timestamp, event_id",
            [trace_id],
        )

    def keys(self, dataset: str) -> tuple[int, int, set[tuple[str, str]]]:
        """count(*), count(distinct (trace_id, event_id)) and the keys stored in a dataset."""
        total, distinct = self.store.rows(
            "SELECT count(*), count(DISTINCT (trace_id, event_id)) FROM events WHERE dataset = ?",
            [dataset],
        )[0]
        rows = self.store.rows("SELECT trace_id, event_id FROM events WHERE dataset = ?", [dataset])
        return total, distinct, set(rows)


@contextmanager
def live_sandbox(
    path: Path | str = ":memory:",
    key: str = "sandbox-key",
    faults: Faults | None = None,
    *,
    clock: Callable[[], float] | None = None,
    reads: ReadOptions | None = None,
) -> Iterator[Live]:
    """A sandbox on a Store at `path` (in memory by default), served by uvicorn in a thread until
    the block ends (each answer sent at once: serve_in_thread's no_delay); its writes are flushed
    before the store closes. `clock` (epoch seconds, e.g. a SetClock) and `reads` go to the
    Sandbox."""
    with Store(path) as store:
        sandbox = Sandbox(store, key, faults or Faults(), clock=clock or time.time, reads=reads)
        counter = CountingApp(app(sandbox))
        with serve_in_thread(counter, no_delay=True) as url:
            yield Live(url, sandbox, store, counter, key)
        sandbox.flush()  # before the store closes (its writer thread would do it a second later)
