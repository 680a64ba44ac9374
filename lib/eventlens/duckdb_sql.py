"""Explore's SQL where DuckDB differs from ClickHouse: buckets in a zone (a column `zone`),
the bucket grid, `quantile_cont`, list membership, and the key lists read from the key
catalogue. analytics.py holds what both engines share and calls these through its Dialect
(ClickHouse's counterpart is eventlens.clickhouse.explore_sql)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from eventlens.analytics import (
    APPROX_MS,
    CALENDAR_BUCKETS,
    DAY_MS,
    FIXED_BUCKETS,
    MAX_BUCKETS,
    MINUTE_MS,
    OTHER_SERIES,
    Dialect,
    Queryable,
    SeriesQuery,
    _and,
    _scope_conds,
    _series_label_sql,
    _where,
)
from eventlens.store import Store, analysed_datasets_sql

if TYPE_CHECKING:
    import pandas as pd

AGG_SQL = {
    "count": "count(*)",
    "traces": "count(DISTINCT trace_id)",
    "sum": "sum({v})",
    "avg": "avg({v})",
    "min": "min({v})",
    "max": "max({v})",
    "median": "quantile_cont({v}, 0.5)",
    "p90": "quantile_cont({v}, 0.9)",
    "p95": "quantile_cont({v}, 0.95)",
    "p99": "quantile_cont({v}, 0.99)",
}


def bucket_key_sql(bucket: str, tz: str, column: str = "timestamp") -> str:
    """SQL for what names the bucket holding `column` in the time zone of column `zone`: its
    start instant (TIMESTAMPTZ), or for a calendar bucket in a zone, the local clock reading
    that starts it (TIMESTAMP; key_instant_sql turns it into the instant, once per bucket)."""
    if bucket in FIXED_BUCKETS:
        width = FIXED_BUCKETS[bucket]
        if tz == "UTC":  # no offsets to keep: DuckDB's own bucketing, about twice as fast
            return f"time_bucket(INTERVAL ({width}) MILLISECOND, {column})"
        # Floor the local clock reading but keep the event's own UTC offset: in the hour that
        # a DST change repeats, the two real hours stay two buckets.
        local = f"epoch_ms(timezone(zone, {column}))"
        return (
            f"epoch_ms({local} // {width} * {width} - ({local} - epoch_ms({column})))::TIMESTAMPTZ"
        )
    if not keyed_by_reading(bucket, tz):
        # A UTC day or week has a fixed length: bucketing by milliseconds (weeks from DuckDB's
        # Monday origin, 2000-01-03) is about twice as fast as truncating the reading.
        return f"time_bucket(INTERVAL ({UTC_FIXED_WIDTH[bucket]}) MILLISECOND, {column})"
    return local_start_sql(bucket, column)


def keyed_by_reading(bucket: str, tz: str) -> bool:
    """Whether bucket_key_sql names this bucket by its local reading rather than an instant."""
    return bucket in CALENDAR_BUCKETS and not (tz == "UTC" and bucket in UTC_FIXED_WIDTH)


def key_instant_sql(bucket: str, tz: str, key: str) -> str:
    """SQL for the start instant of the bucket that `key` (bucket_key_sql's) names."""
    return first_instant_sql(key) if keyed_by_reading(bucket, tz) else key


def local_start_sql(bucket: str, column: str) -> str:
    """SQL for the local clock reading (TIMESTAMP) that starts the calendar bucket holding
    `column` in the zone of column `zone`: its day, its week's Monday or its month's first.

    Truncating the reading is the rule as documented, and far cheaper than DuckDB's
    `time_bucket(interval, timestamp, zone)`, which works through ICU calendars per event: 1M
    events in Europe/Amsterdam took 3.8 s by month and 0.9 s by day that way, 0.17 s this way
    (docs/BENCHMARKS.md, Explore). ICU's weeks also began on Tuesdays in Pacific/Apia, counted
    from an origin before that zone skipped a day in 2011.
    """
    return f"date_trunc('{CALENDAR_UNITS[bucket]}', timezone(zone, {column}))"


def first_instant_sql(reading: str) -> str:
    """SQL for the first instant whose clock reading in `zone` is `reading` (a TIMESTAMP).

    Where a DST change repeats the reading, DuckDB's timezone() gives the later instant:
    Havana turned 01:00 back to 00:00 on 2020-11-01, and that day began at the first midnight.
    A reading the change skips gives the first instant after the gap."""
    later = f"timezone(zone, {reading})"
    earlier = f"({later} - INTERVAL 1 HOUR)"
    return f"(CASE WHEN timezone(zone, {earlier}) = {reading} THEN {earlier} ELSE {later} END)"


def utc_reading(instant: str) -> str:
    """SQL for an instant's UTC clock reading (TIMESTAMP): arithmetic on its microseconds, where
    timezone('UTC', ...) looks the zone up per row (50 ns against 2 ns, 11,000 rows a chart)."""
    return f"make_timestamp(epoch_us({instant}))"


UTC_FIXED_WIDTH = {"1d": DAY_MS, "1w": 7 * DAY_MS}
CALENDAR_UNITS = {"1d": "day", "1w": "week", "1mo": "month"}


# Where a grid's range comes from (the CTE `bounds`): bound values, or the selection itself
# (the whole range: its first and last event come out of the aggregation's own scan, rather
# than a scan of their own, which cost a quarter of the series at 10M events).
GIVEN_RANGE = "SELECT ?::TIMESTAMPTZ AS s, ?::TIMESTAMPTZ AS e, ?::VARCHAR AS zone"
SELECTION_RANGE = (
    "SELECT min(first_time) AS s, max(last_time) + INTERVAL 1 MILLISECOND AS e,"
    " ?::VARCHAR AS zone FROM agg"
)


def grid_sql(bucket: str, tz: str) -> str:
    """SQL for every bucket (key, bucket, bucket_end) overlapping [s, e) of the CTE `bounds`,
    key as bucket_key_sql's; none when that would be more than MAX_BUCKETS (choose_bucket then
    picks a wider one)."""
    fits = f"epoch_ms(e) - epoch_ms(s) <= {MAX_BUCKETS * APPROX_MS[bucket]}"
    params = f"(SELECT * FROM bounds WHERE {fits})"
    if bucket in FIXED_BUCKETS:
        width = FIXED_BUCKETS[bucket]
        # Offsets move in steps of 15 minutes (Lord Howe Island: 30): probe the range at that
        # step and keep the distinct buckets the probes fall in, so a shift that is not a whole
        # number of buckets moves the grid with the events.
        probe = width if tz == "UTC" else min(width, 15 * MINUTE_MS)
        return f"""
            SELECT DISTINCT {bucket_key_sql(bucket, tz, "p")} AS key, key AS bucket,
                   key + INTERVAL ({width}) MILLISECOND AS bucket_end
            FROM (SELECT zone, unnest(generate_series({bucket_key_sql(bucket, tz, "s")},
                                                       e - INTERVAL 1 MILLISECOND,
                                                       INTERVAL ({probe}) MILLISECOND)) AS p
                  FROM {params})
        """
    step = CALENDAR_BUCKETS[bucket]
    # Step on the local calendar, then turn each local start into an instant.
    key = "b" if keyed_by_reading(bucket, tz) else "bucket"
    return f"""
        SELECT {key} AS key, bucket, bucket_end FROM (
            SELECT b, {first_instant_sql("b")} AS bucket,
                   {first_instant_sql(f"b + INTERVAL '{step}'")} AS bucket_end, e
            FROM (SELECT zone, e, unnest(generate_series({local_start_sql(bucket, "s")},
                                                         timezone(zone, e), INTERVAL '{step}')) AS b
                  FROM {params})
        )
        WHERE bucket < e
    """


def selection_sql(
    q: SeriesQuery, start: dt.datetime | None, end: dt.datetime | None, top: list[str]
) -> tuple[str, list[Any]]:
    """SQL for the selected events: timestamp, trace_id, dataset, series, v (the metric) and
    zone (the query's time zone, a column for DuckDB's bucket SQL)."""
    where, params = _where(q, start, end)
    label, label_params = _series_label_sql(q)
    if q.detail_key:
        label = f"CASE WHEN list_contains(?, {label}) THEN {label} ELSE '{OTHER_SERIES}' END"
        label_params = [top, *label_params, *label_params]
    metric = "metrics[?]" if q.uses_metric else "NULL::DOUBLE"
    metric_params = [q.metric] if q.uses_metric else []
    sql = f"""
        SELECT timestamp, trace_id, dataset, {label} AS series, {metric} AS v, zone
        FROM events, (SELECT ?::VARCHAR AS zone)
        WHERE {where}
    """
    return sql, [*label_params, *metric_params, q.tz, *params]


def bucketed(
    store: Queryable,
    q: SeriesQuery,
    bucket: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    top: list[str],
) -> pd.DataFrame:
    """analytics._bucketed on DuckDB: columns bucket, bucket_end, series, value, events, total,
    measured, low, high, range_start, range_end; the times as UTC readings (TIMESTAMP): a
    TIMESTAMPTZ column cost ~1.3 ms more to turn into pandas, four of the chart's ~14 ms.

    With no start and end, over the whole selection: its first and last event come out of the
    same scan (columns range_start and range_end) instead of a scan of their own before it.
    """
    selection, params = selection_sql(q, start, end, top)
    agg = DUCKDB.agg(q.agg)
    empty = "0" if q.agg in ("count", "traces") else "NULL"
    whole = start is None or end is None
    frame = store.df(
        f"""
        WITH sel AS ({selection}),
        agg AS (
            SELECT {bucket_key_sql(bucket, q.tz)} AS key, series, {agg} AS value,
                   count(*) AS events, sum(v) AS total, count(v) AS measured,
                   min(v) AS low, max(v) AS high,
                   min(timestamp) AS first_time, max(timestamp) AS last_time
            FROM sel GROUP BY ALL
        ),
        bounds AS ({SELECTION_RANGE if whole else GIVEN_RANGE}),
        grid AS ({grid_sql(bucket, q.tz)}),
        names AS (SELECT DISTINCT series FROM agg)
        SELECT {utc_reading("g.bucket")} AS bucket, {utc_reading("g.bucket_end")} AS bucket_end,
               n.series,
               coalesce(a.value, {empty})::DOUBLE AS value,
               coalesce(a.events, 0) AS events, coalesce(a.total, 0) AS total,
               coalesce(a.measured, 0) AS measured, a.low, a.high,
               {utc_reading("r.s")} AS range_start, {utc_reading("r.e")} AS range_end
        FROM grid g CROSS JOIN names n CROSS JOIN bounds r
        LEFT JOIN agg a ON a.key = g.key AND a.series = n.series
        ORDER BY n.series, g.bucket
        """,
        [*params, *([q.tz] if whole else [start, end, q.tz])],
    )
    return frame


def new_traces(
    store: Queryable,
    q: SeriesQuery,
    bucket: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    top: list[str],
) -> pd.DataFrame:
    """Per (bucket, series), the traces whose first event in the range falls in that bucket."""
    selection, params = selection_sql(q, start, end, top)
    return store.df(
        f"""
        WITH sel AS ({selection})
        SELECT {utc_reading(key_instant_sql(bucket, q.tz, "key"))} AS bucket, series,
               count(*) AS new_traces
        FROM (
            SELECT series, trace_id, zone, {bucket_key_sql(bucket, q.tz, "min(timestamp)")} AS key
            FROM sel GROUP BY series, trace_id, zone
        ) GROUP BY key, series, zone
        """,
        params,
    )


def map_keys(store: Store, q: SeriesQuery, column: str) -> list[str]:
    """The keys of a MAP column (a constant name) in the query's datasets and event types, most
    common first: from the key catalogue (key_summary), not from every event's map.

    The catalogue counts the events of the batches up to its marker (Store.keys_through); the
    few events after it are counted here from events. The sandbox merges up to a second after
    an insert, and the insert already changes the store's version that Explore caches this list
    by: without them a list read in that second would miss the insert's new keys. So the list
    is the one a scan of every event's keys gives, at any moment.
    """
    conds, params = _scope_conds(
        SeriesQuery(datasets=q.datasets, include_test=q.include_test, event_types=q.event_types)
    )
    with store.cursor() as cur:
        built = store.keys_through(cur) is not None
    if built:  # one statement: the marker and the catalogue of one moment
        keep = _and(["map = ?", *conds])
        summary = f"SELECT key, events AS n FROM key_summary WHERE {keep} UNION ALL "
        newer = ["batch_id > (SELECT max(batch) FROM key_summary_batch)"]
    else:  # no catalogue (a store made before it, opened read-only): every event
        summary, newer = "", []
    rows = store.rows(
        f"SELECT key, sum(n) AS n FROM ({summary}"
        f"SELECT unnest(map_keys({column})) AS key, 1 AS n FROM events"
        f" WHERE {_and(['timestamp IS NOT NULL', *newer, *conds])})"
        " GROUP BY key ORDER BY n DESC, key",
        [*([column, *params] if built else []), *params],
    )
    return [r[0] for r in rows]


DUCKDB = Dialect(
    name="duckdb",
    in_list="list_contains(?, {})",
    analysed_datasets=analysed_datasets_sql("{}"),
    detail_differs="event_details[?] IS DISTINCT FROM ?",
    time_zones="SELECT name FROM pg_timezone_names() ORDER BY 1",
    bucketed=bucketed,
    new_traces=new_traces,
    selection=selection_sql,
    map_keys=map_keys,
    aggregates=AGG_SQL,
    as_double="{}::DOUBLE",
    sorted_distinct="list_sort(list_distinct(list({})))",
    keys_of_maps="list_sort(list_distinct(flatten(list(map_keys({})))))",
    map_entries="(SELECT m.key AS key, m.value AS value"
    " FROM (SELECT unnest(map_entries({map})) AS m FROM events WHERE {where}))",
    top_of=lambda item: f"list({item} ORDER BY n DESC, value NULLS FIRST)[1:?]",
)
