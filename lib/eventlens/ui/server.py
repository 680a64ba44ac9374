"""The app with the sandbox beside it on the same port: what `eventlens ui` runs.

`streamlit run` finds the `app` below and serves app.py plus the sandbox's routes
(POST /api/track_event, /api/events/track, the reads POST /api/traces/search and
GET /api/traces/{id}, GET /api/sandbox/health), so Submit has a LangWatch-compatible target
with nothing else to start. At start it opens the store and serves the hand-off
(eventlens.handoff) on loopback, so that `eventlens load`, `pull`, `info`, `series`, `replay`
and `delete` in a terminal run here while the app holds the store (a DuckDB file, or a chDB
folder, which one process opens at a time). A ClickHouse server needs no hand-off: it takes every
process's commands itself. On ClickHouse the sandbox copies what it accepts there, keeping its
bookkeeping in a local DuckDB file (stores.sandbox_stores).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator

import streamlit as st

from eventlens import location, sandbox, stores
from eventlens.cli import app_path
from eventlens.handoff.server import HandoffServer
from eventlens.store import StoreError, resolve_db_path

log = logging.getLogger("eventlens")

_made: list[sandbox.Sandbox] = []
_lock = threading.Lock()


def _sandbox() -> sandbox.Sandbox:
    """The sandbox, made on the first request with the app's own store (one per process)."""
    with _lock:
        if not _made:
            from eventlens.ui.state import open_store

            local, mirror = stores.sandbox_stores(open_store(resolve_db_path()))
            _made.append(sandbox.Sandbox(local, mirror=mirror))
        return _made[0]


def _start_hand_off() -> HandoffServer | None:
    """Open the app's store now (not at the first page view) and publish the hand-off."""
    from eventlens.ui.state import open_store

    path = resolve_db_path()
    key = location.handoff_key(path)
    if key is None:
        return None  # no other process can reach it, or a ClickHouse server takes many
    try:
        open_store(path)
    except StoreError as exc:  # the page says it to whoever opens the app
        log.error("%s", exc)
        return None
    address = st.get_option("server.address") or "localhost"
    server = HandoffServer(key, f"http://{address}:{st.get_option('server.port')}")
    server.start()
    return server


@contextlib.asynccontextmanager
async def _hand_off(_app: st.App) -> AsyncIterator[None]:
    server = await asyncio.to_thread(_start_hand_off)
    try:
        yield None
    finally:
        if server is not None:
            server.close()


routes = sandbox.routes(_sandbox)
app = st.App(str(app_path()), routes=routes, lifespan=_hand_off)
