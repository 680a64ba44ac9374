"""Query results cached per store version, so a rerun that changes no query (a click on the
chart, a row picked in a table) does not ask DuckDB again; any load or delete starts afresh."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from eventlens import analytics, charts, traces
from eventlens.analytics import SeriesQuery, SeriesResult
from eventlens.ui.state import get_store

# Keyed by (store path, store version, arguments); a few hundred entries are a few MB.
cached = st.cache_data(max_entries=256, show_spinner=False)
Version = tuple[str, tuple[int, int, tuple[str, ...], int | None]]


def version() -> Version:
    """The current store's path and data version, the first key of every cached call."""
    store = get_store()
    return store.path, store.version()


@cached
def series(key: Version, query: SeriesQuery) -> SeriesResult:
    return analytics.series(get_store(), query)


@cached
def headline(key: Version, query: SeriesQuery) -> dict:
    return analytics.headline(get_store(), query)


@cached
def leaderboard(key: Version, query: SeriesQuery, detail: str) -> pd.DataFrame:
    return analytics.leaderboard(get_store(), query, detail)


@cached
def metric_keys(key: Version, scope: SeriesQuery) -> list[str]:
    """The metric keys of the scope's datasets and event types (the rest of it is ignored)."""
    return analytics.metric_keys(get_store(), scope)


@cached
def detail_keys(key: Version, scope: SeriesQuery) -> list[str]:
    """The detail keys of the scope's datasets and event types (the rest of it is ignored)."""
    return analytics.detail_keys(get_store(), scope)


@cached
def event_types(key: Version, datasets: tuple[str, ...], include_test: bool = False) -> list[str]:
    return analytics.event_types(get_store(), datasets, include_test)


@cached
def resolve_range(key: Version, query: SeriesQuery) -> tuple:
    return analytics.resolve_range(get_store(), query)


@cached
def trace_search(
    key: Version, search: traces.TraceSearch, limit: int, offset: int
) -> tuple[pd.DataFrame, int]:
    return traces.search(get_store(), search, limit, offset)


# The Data page's profiles read only events, and any change to the events changes the version
# (rejects do not: the page counts those afresh). On the 50k sample the three took 80 ms of
# every rerun, a click on any widget of the page (520 ms the first time), against 3 ms for the
# version.
@cached
def event_type_profile(key: Version, dataset: str | None) -> pd.DataFrame:
    return analytics.event_type_profile(get_store(), dataset)


@cached
def metric_profile(key: Version, event_type: str, dataset: str | None) -> pd.DataFrame:
    return analytics.metric_profile(get_store(), event_type, dataset)


@cached
def detail_profile(key: Version, event_type: str, dataset: str | None) -> pd.DataFrame:
    return analytics.detail_profile(get_store(), event_type, dataset)


@st.cache_resource(max_entries=64, show_spinner=False)
def series_figure(key: Version, query: SeriesQuery, chart: str) -> go.Figure:
    """The chart of a query's series, built once per store version: Plotly checks every
    property it is given, which made building the figure a quarter of a page run. Kept as the
    object itself (st.plotly_chart only reads it), not a copy."""
    return charts.series_figure(series(key, query), chart, query.agg, query.metric)
