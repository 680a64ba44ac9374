"""Explore's SQL where ClickHouse differs from DuckDB: buckets, the bucket grid, quantiles,
list membership. The filters, series labels and the query's shape are analytics' own.

Where the engines differ in meaning, the ClickHouse function chosen is the one that gives
DuckDB's answer (tests/test_clickhouse.py runs both over the same events):
- Percentiles: DuckDB's `quantile_cont` interpolates linearly between the two nearest ranks;
  `quantileExactInclusive` does the same (ClickHouse's `quantile` samples, `quantileExact`
  does not interpolate).
- Time zones: a bucket of a fixed width floors the local clock reading but keeps the event's
  own UTC offset, so the hour a DST change repeats stays two buckets, as in analytics.
  ClickHouse takes a time zone only as a constant, so the zone is a query parameter named
  once in a WITH clause (`zone`), not a column as in DuckDB's query.
- Days, weeks (from Monday, DuckDB's origin) and months start at local midnight: the local
  date (`toDate`, `toMonday`, `toStartOfMonth` in the zone) turned back into an instant.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from eventlens import analytics
from eventlens.analytics import (
    APPROX_MS,
    FIXED_BUCKETS,
    MAX_BUCKETS,
    MINUTE_MS,
    SeriesQuery,
    _series_label_sql,
    _where,
)

if TYPE_CHECKING:
    import pandas as pd

QUANTILES = {"median": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
AGG_SQL = {
    "count": "count()",
    "traces": "uniqExact(trace_id)",
    "sum": "sum({v})",
    "avg": "avg({v})",
    "min": "min({v})",
    "max": "max({v})",
    **{name: f"quantileExactInclusive({p})({{v}})" for name, p in QUANTILES.items()},
}
CALENDAR_START = {
    "1d": "toDate({c}, zone)",
    "1w": "toMonday({c}, zone)",
    "1mo": "toStartOfMonth({c}, zone)",
}
CALENDAR_STEP = {"1d": "addDays", "1w": "addWeeks", "1mo": "addMonths"}
LEFT_OUT_DATASETS = (
    "SELECT name FROM datasets FINAL WHERE test"
    " AND (SELECT count() FROM datasets FINAL WHERE NOT test) > 0"
)


def _ms(column: str) -> str:
    return f"toUnixTimestamp64Milli(assumeNotNull({column}))"


def _instant(date: str) -> str:
    """A local date's midnight in `zone`, as an instant in UTC."""
    return f"toTimeZone(toDateTime64({date}, 3, zone), 'UTC')"


def bucket_sql(bucket: str, column: str) -> str:
    """The start of the bucket holding `column` (a DateTime64), in the WITH clause's `zone`."""
    if bucket in FIXED_BUCKETS:
        width = FIXED_BUCKETS[bucket]
        offset = f"timeZoneOffset(toTimeZone(assumeNotNull({column}), zone)) * 1000"
        local = f"({_ms(column)} + {offset})"
        return f"fromUnixTimestamp64Milli(intDiv({local}, {width}) * {width} - {offset}, 'UTC')"
    return _instant(CALENDAR_START[bucket].format(c=f"assumeNotNull({column})"))


def grid_sql(bucket: str) -> str:
    """Every bucket (bucket, bucket_end) overlapping [s, e) of the CTE `bounds`; none when that
    would be more than MAX_BUCKETS (analytics.choose_bucket then picks a wider one)."""
    fits = f"{_ms('e')} - {_ms('s')} <= {MAX_BUCKETS * APPROX_MS[bucket]}"
    if bucket in FIXED_BUCKETS:
        width = FIXED_BUCKETS[bucket]
        # Probe the range every 15 minutes (offsets move in such steps) and keep the buckets
        # the probes fall in, as analytics' grid does.
        probe = min(width, 15 * MINUTE_MS)
        start = bucket_sql(bucket, "s")
        return f"""
            SELECT DISTINCT {bucket_sql(bucket, "p")} AS bucket,
                   addMilliseconds(bucket, {width}) AS bucket_end
            FROM (SELECT fromUnixTimestamp64Milli(
                             arrayJoin(range(toUnixTimestamp64Milli({start}), {_ms("e")}, {probe})),
                             'UTC') AS p
                  FROM bounds WHERE {fits})
        """
    first = CALENDAR_START[bucket].format(c="assumeNotNull(s)")
    step = CALENDAR_STEP[bucket]
    # Step on the local calendar from the first bucket's date, then back to instants; enough
    # steps for a range of days, those starting at or after e dropped.
    return f"""
        SELECT bucket, bucket_end FROM (
            SELECT {_instant(f"{step}(d0, i)")} AS bucket,
                   {_instant(f"{step}(d0, i + 1)")} AS bucket_end, e
            FROM (SELECT {first} AS d0, e,
                         arrayJoin(range(toUInt32(dateDiff('day', d0,
                                                           toDate(assumeNotNull(e), zone)) + 2)))
                             AS i
                  FROM bounds WHERE {fits}))
        WHERE bucket < e
    """


def _selection(
    q: SeriesQuery, start: dt.datetime | None, end: dt.datetime | None, top: list[str]
) -> tuple[str, list[Any]]:
    """The selected events: timestamp, trace_id, dataset, series and v (the metric)."""
    where, params = _where(q, start, end, sql=CLICKHOUSE)
    label, label_params = _series_label_sql(q)
    if q.detail_key:
        label = f"if(has(?, {label}), {label}, '{analytics.OTHER_SERIES}')"
        label_params = [top, *label_params, *label_params]
    metric = "metrics[?]" if q.uses_metric else "CAST(NULL AS Nullable(Float64))"
    metric_params = [q.metric] if q.uses_metric else []
    sql = f"""
        SELECT timestamp, trace_id, dataset, {label} AS series, {metric} AS v
        FROM events WHERE {where}
    """
    return sql, [*label_params, *metric_params, *params]


def bucketed(
    store: Any,
    q: SeriesQuery,
    bucket: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    top: list[str],
) -> pd.DataFrame:
    """analytics' bucketed frame (the same columns and rows) computed by ClickHouse."""
    selection, params = _selection(q, start, end, top)
    agg = CLICKHOUSE.agg(q.agg)
    empty = "0" if q.agg in ("count", "traces") else "NULL"
    whole = start is None or end is None
    bounds = (
        "SELECT min(first_time) AS s, addMilliseconds(max(last_time), 1) AS e FROM agg"
        if whole
        else "SELECT ? AS s, ? AS e"
    )
    return store.df(
        f"""
        WITH ? AS zone,
        sel AS ({selection}),
        agg AS (
            SELECT {bucket_sql(bucket, "timestamp")} AS bucket, series, {agg} AS value,
                   count() AS events, sum(v) AS total, count(v) AS measured,
                   min(v) AS low, max(v) AS high,
                   min(timestamp) AS first_time, max(timestamp) AS last_time
            FROM sel GROUP BY bucket, series
        ),
        bounds AS ({bounds}),
        grid AS ({grid_sql(bucket)}),
        names AS (SELECT DISTINCT series FROM agg)
        SELECT g.bucket AS bucket, g.bucket_end AS bucket_end, n.series AS series,
               CAST(coalesce(a.value, {empty}) AS Nullable(Float64)) AS value,
               coalesce(a.events, 0) AS events, coalesce(a.total, 0) AS total,
               coalesce(a.measured, 0) AS measured, a.low AS low, a.high AS high,
               r.s AS range_start, r.e AS range_end
        FROM grid g CROSS JOIN names n CROSS JOIN bounds r
        LEFT JOIN agg a ON a.bucket = g.bucket AND a.series = n.series
        ORDER BY series, bucket
        """,
        [q.tz, *params, *([] if whole else [start, end])],
    )


def new_traces(
    store: Any,
    q: SeriesQuery,
    bucket: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    top: list[str],
) -> pd.DataFrame:
    """Per (bucket, series), the traces whose first event in the range falls in that bucket."""
    selection, params = _selection(q, start, end, top)
    return store.df(
        f"""
        WITH ? AS zone, sel AS ({selection})
        SELECT bucket, series, count() AS new_traces FROM (
            SELECT series, trace_id, {bucket_sql(bucket, "min(timestamp)")} AS bucket
            FROM sel GROUP BY series, trace_id
        ) GROUP BY bucket, series
        """,
        [q.tz, *params],
    )


def map_keys(store: Any, q: SeriesQuery, column: str) -> list[str]:
    """The keys of a Map column (a constant name) in q's datasets and event types, most common
    first, read from the maps (DuckDB's store keeps a catalogue of them instead)."""
    scope = SeriesQuery(datasets=q.datasets, include_test=q.include_test, event_types=q.event_types)
    where, params = _where(scope, with_metric=False, sql=CLICKHOUSE)
    rows = store.rows(
        f"SELECT key, count() AS n FROM events ARRAY JOIN mapKeys({column}) AS key"
        f" WHERE {where} GROUP BY key ORDER BY n DESC, key",
        params,
    )
    return [r[0] for r in rows]


CLICKHOUSE = analytics.Dialect(
    name="clickhouse",
    in_list="has(?, {})",
    analysed_datasets=f"{{}} NOT IN ({LEFT_OUT_DATASETS})",
    detail_differs="coalesce(event_details[?] != ?, true)",
    time_zones="SELECT time_zone FROM system.time_zones ORDER BY time_zone",
    bucketed=bucketed,
    new_traces=new_traces,
    selection=_selection,
    map_keys=map_keys,
    aggregates=AGG_SQL,
    as_double="CAST({} AS Nullable(Float64))",
    sorted_distinct="arraySort(groupUniqArray({}))",
    keys_of_maps="arraySort(groupUniqArrayArray(mapKeys({})))",
    map_entries="(SELECT k AS key, v AS value FROM events"
    " ARRAY JOIN mapKeys({map}) AS k, mapValues({map}) AS v WHERE {where})",
    top_of=lambda item: (
        f"arraySlice(arrayMap(x -> x.{1 if item == 'value' else 2},"
        " arraySort(x -> (-x.2, isNotNull(x.1), x.1), groupArray((value, n)))), 1, ?)"
    ),
    starts_with="startsWith({}, ?)",
    has_any="hasAny({}, ?)",
)
