"""Replay sessions running in this server process, kept across reruns, pages and browser tabs."""

from __future__ import annotations

import threading

import streamlit as st

from eventlens import replay
from eventlens.store import Store


class Registry:
    """The background sessions this process started, by run id."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions: dict[str, replay.Session] = {}

    def start(self, store: Store, run: replay.Run, key: str | None, source: str) -> None:
        """Start a run's next session in a daemon thread, unless one is already running."""
        with self.lock:
            current = self.sessions.get(run.run_id)
            if current is not None and current.alive:
                return
            session = replay.Replay(store, run, key, key_source=source)
            self.sessions[run.run_id] = replay.start_background(session)

    def get(self, run_id: str) -> replay.Session | None:
        with self.lock:
            return self.sessions.get(run_id)

    def live(self) -> list[replay.Session]:
        """Sessions still sending (or paused), oldest first."""
        with self.lock:
            return [s for s in self.sessions.values() if s.alive]


@st.cache_resource(show_spinner=False)
def registry() -> Registry:
    """One registry per server process (cache_resource outlives reruns and sessions)."""
    return Registry()
