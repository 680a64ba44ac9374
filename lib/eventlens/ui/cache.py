"""Query results cached per store version, so a rerun that changes no query (a click on the
chart, a row picked in a table) does not ask DuckDB again; any load or delete starts afresh."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from eventlens import analytics, traces
from eventlens.analytics import SeriesQuery, SeriesResult
from eventlens.ui.state import get_store

# Keyed by (store path, store version, arguments); a few hundred entries are a few MB.
_CACHE = {"max_entries": 256, "show_spinner": False}


def version() -> tuple[str, tuple[int, int]]:
    """The current store's path and data version, the first key of every cached call."""
    store = get_store()
    return store.path, store.version()


@st.cache_data(**_CACHE)
def series(key: tuple, query: SeriesQuery) -> SeriesResult:
    return analytics.series(get_store(), query)


@st.cache_data(**_CACHE)
def headline(key: tuple, query: SeriesQuery) -> dict:
    return analytics.headline(get_store(), query)


@st.cache_data(**_CACHE)
def leaderboard(key: tuple, query: SeriesQuery, detail: str) -> pd.DataFrame:
    return analytics.leaderboard(get_store(), query, detail)


@st.cache_data(**_CACHE)
def metric_keys(key: tuple, scope: SeriesQuery) -> list[str]:
    """The metric keys of the scope's datasets and event types (the rest of it is ignored)."""
    return analytics.metric_keys(get_store(), scope)


@st.cache_data(**_CACHE)
def detail_keys(key: tuple, scope: SeriesQuery) -> list[str]:
    """The detail keys of the scope's datasets and event types (the rest of it is ignored)."""
    return analytics.detail_keys(get_store(), scope)


@st.cache_data(**_CACHE)
def event_types(key: tuple, datasets: tuple[str, ...], include_test: bool = False) -> list[str]:
    return analytics.event_types(get_store(), datasets, include_test)


@st.cache_data(**_CACHE)
def resolve_range(key: tuple, query: SeriesQuery) -> tuple:
    return analytics.resolve_range(get_store(), query)


@st.cache_data(**_CACHE)
def trace_search(
    key: tuple, search: traces.TraceSearch, limit: int, offset: int
) -> tuple[pd.DataFrame, int]:
    return traces.search(get_store(), search, limit, offset)
