"""The app's shared store, opened once per process, and the sample data a new store starts with."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import streamlit as st

from eventlens.ingest import load_files
from eventlens.store import Store, resolve_db_path

log = logging.getLogger("eventlens")

SAMPLE_DATASET = "sample"
SAMPLE_FILE = Path(__file__).resolve().parents[3] / "sample_data" / "events.jsonl.gz"


def get_store() -> Store:
    """The store for $EVENTLENS_DB (or ./eventlens.duckdb), opened once per process."""
    return _open_store(resolve_db_path())


@st.cache_resource(show_spinner=False)
def _open_store(path: str) -> Store:
    # One Store per file and process: DuckDB allows a single writing process per file.
    store = Store(path)
    if store.is_empty():
        load_sample(store)
    return store


def load_sample(store: Store) -> None:
    """Load the committed sample export, or generate it when the checkout lacks it."""
    if SAMPLE_FILE.is_file():
        result = load_files(store, [SAMPLE_FILE], SAMPLE_DATASET, ["sample_data/events.jsonl.gz"])
    else:
        from eventlens.sample import write_samples

        with tempfile.TemporaryDirectory() as tmp:
            files = [p for p in write_samples(Path(tmp)) if p.name == "events.jsonl.gz"]
            result = load_files(store, files, SAMPLE_DATASET, ["generated sample"])
    log.info("loaded sample data: %s events", result.loaded)
