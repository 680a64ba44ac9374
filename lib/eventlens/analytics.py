"""Questions asked of the store: SQL in, DataFrames out. Every user value is a bound parameter."""

from __future__ import annotations

import pandas as pd

from eventlens.store import OPTIONAL_DATASET as _DATASET
from eventlens.store import Store


def overview(store: Store, dataset: str | None = None) -> dict[str, object]:
    """Totals for the store or one dataset: events, traces, event types, time range, rejects."""
    events, traces, types, first, last = store.rows(
        "SELECT count(*), count(DISTINCT trace_id), count(DISTINCT event_type),"
        f" min(timestamp), max(timestamp) FROM events WHERE {_DATASET}",
        [dataset, dataset],
    )[0]
    rejects = store.scalar(f"SELECT count(*) FROM rejects WHERE {_DATASET}", [dataset, dataset])
    return {
        "events": int(events),
        "traces": int(traces),
        "event_types": int(types),
        "first_event": first,
        "last_event": last,
        "rejects": int(rejects),
    }


def event_type_profile(store: Store, dataset: str | None = None) -> pd.DataFrame:
    """One row per event_type: events, traces, first and last time, metric and detail keys."""
    return store.df(
        f"""
        SELECT event_type, count(*) AS events, count(DISTINCT trace_id) AS traces,
               min(timestamp) AS first_event, max(timestamp) AS last_event,
               list_sort(list_distinct(flatten(list(map_keys(metrics))))) AS metric_keys,
               list_sort(list_distinct(flatten(list(map_keys(event_details))))) AS detail_keys
        FROM events WHERE {_DATASET}
        GROUP BY event_type ORDER BY events DESC, event_type
        """,
        [dataset, dataset],
    )


def metric_profile(store: Store, event_type: str, dataset: str | None = None) -> pd.DataFrame:
    """One row per metric key of an event type: how many events carry it, min/median/max/mean."""
    return store.df(
        f"""
        SELECT m.key AS metric, count(*) AS events, min(m.value) AS min,
               median(m.value) AS median, max(m.value) AS max, avg(m.value) AS mean
        FROM (SELECT unnest(map_entries(metrics)) AS m FROM events
              WHERE event_type = ? AND {_DATASET})
        GROUP BY m.key ORDER BY events DESC, metric
        """,
        [event_type, dataset, dataset],
    )


def detail_profile(
    store: Store, event_type: str, dataset: str | None = None, top: int = 5
) -> pd.DataFrame:
    """One row per detail key of an event type: events, distinct values and the top values."""
    frame = store.df(
        f"""
        WITH d AS (
            SELECT e.key, e.value FROM (
                SELECT unnest(map_entries(event_details)) AS e FROM events
                WHERE event_type = ? AND {_DATASET})
        ),
        counted AS (SELECT key, value, count(*) AS n FROM d GROUP BY key, value)
        SELECT key AS detail, sum(n)::BIGINT AS events, count(value) AS distinct_values,
               list(coalesce(value, '(null)') ORDER BY n DESC, value)[1:?] AS top_values,
               list(n ORDER BY n DESC, value)[1:?] AS top_counts
        FROM counted GROUP BY key ORDER BY events DESC, detail
        """,
        [event_type, dataset, dataset, top, top],
    )
    frame["top_values"] = [
        ", ".join(f"{v} ({n})" for v, n in zip(values, counts, strict=True))
        for values, counts in zip(frame["top_values"], frame["top_counts"], strict=True)
    ]
    return frame.drop(columns=["top_counts"])
