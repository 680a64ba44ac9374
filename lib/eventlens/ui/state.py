"""The app's shared store, opened once per process, and the sample data a new store starts with."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, cast

import streamlit as st

from eventlens import location, stores
from eventlens.store import Store, app_memory_limit, resolve_db_path

log = logging.getLogger("eventlens")

SAMPLE_DATASET = "sample"
SAMPLE_FILE = Path(__file__).resolve().parents[3] / "sample_data" / "events.jsonl.gz"


def get_store() -> Store:
    """The store for $EVENTLENS_DB (or ./eventlens.duckdb), opened once per process.

    A ClickHouse URL gives a ClickHouseStore, which answers what Explore, Traces and Data ask
    (the type says Store; Replay journals in get_replay_store's)."""
    return open_store(resolve_db_path())


@st.cache_resource(show_spinner=False)
def open_store(path: str) -> Store:
    # One Store per file and process: DuckDB allows a single writing process per file.
    store: Any
    if location.is_url(path):
        store = stores.open_store(path)
    else:
        store = Store(path, memory_limit=app_memory_limit())
    if store.is_empty():
        load_sample(store)
    return cast(Store, store)


def get_replay_store() -> Store:
    """The store the Replay page journals runs in (stores.replay_store): the store itself on
    DuckDB; on ClickHouse a local DuckDB journal that plans "the store's events" from it."""
    return _replay_store(resolve_db_path())


@st.cache_resource(show_spinner=False)
def _replay_store(path: str) -> Store:
    return stores.replay_store(open_store(path))


def load_sample(store: Any) -> None:
    """Load the committed sample export, or generate it when the checkout lacks it."""

    if SAMPLE_FILE.is_file():
        result = stores.load(store, [SAMPLE_FILE], SAMPLE_DATASET, ["sample_data/events.jsonl.gz"])
    else:
        from eventlens.sample import write_samples

        with tempfile.TemporaryDirectory() as tmp:
            files = [p for p in write_samples(Path(tmp)) if p.name == "events.jsonl.gz"]
            result = stores.load(store, files, SAMPLE_DATASET, ["generated sample"])
    log.info("loaded sample data: %s events", result.loaded)


def require_router() -> None:
    """Make sure app.py's st.navigation runs this page, not Streamlit's older pages/ mode.

    With a pages/ folder beside app.py, Streamlit starts each server process in its first
    multipage mode until app.py has called st.navigation once. A visitor whose first request
    is a page URL (a shared /traces?trace=... link) would get that page run on its own: no
    router, no sidebar, the wrong menu. This switches the old mode off for the process and
    runs the request again through the router. That happens at most once per process, on a
    page load, so no widget event is lost. AppTest resets the mode for every run and runs a
    switched-to page directly, which is harmless there, so it is left alone.
    """
    from streamlit.runtime import Runtime
    from streamlit.runtime.pages_manager import PagesManager

    if not PagesManager.uses_pages_directory:
        return
    if Runtime.exists() and type(Runtime.instance()) is not Runtime:
        return  # AppTest's stand-in runtime
    PagesManager.uses_pages_directory = False
    st.rerun()
