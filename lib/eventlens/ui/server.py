"""The app with the sandbox beside it on the same port: what `eventlens ui` runs.

`streamlit run` finds the `app` below and serves app.py plus the sandbox's routes
(POST /api/track_event, /api/events/track, the reads POST /api/traces/search and
GET /api/traces/{id}, GET /api/sandbox/health), so Submit has a LangWatch-compatible target
with nothing else to start.
"""

from __future__ import annotations

import threading

import streamlit as st

from eventlens import sandbox
from eventlens.cli import app_path
from eventlens.store import resolve_db_path

_made: list[sandbox.Sandbox] = []
_lock = threading.Lock()


def _sandbox() -> sandbox.Sandbox:
    """The sandbox, made on the first request with the app's own store (one per process)."""
    with _lock:
        if not _made:
            from eventlens.ui.state import open_store

            _made.append(sandbox.Sandbox(open_store(resolve_db_path())))
        return _made[0]


app = st.App(str(app_path()), routes=sandbox.routes(_sandbox))
