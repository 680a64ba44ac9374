"""Questions asked of the store: SQL in, DataFrames out. Every user value is a bound parameter."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from eventlens.errors import EventlensError
from eventlens.store import Store

if TYPE_CHECKING:  # pandas loads on first use: `eventlens load` does not need it
    import pandas as pd


class Queryable(Protocol):
    """What these questions need of a store, DuckDB's (Store) or ClickHouse's: queries with
    `?` placeholders, and optionally a `dialect` (see Dialect)."""

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]: ...

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any: ...

    def df(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame: ...


def _in_dataset(dataset: str | None) -> tuple[str, list[Any]]:
    """The condition keeping one dataset's rows (every row for None), and its parameters."""
    return ("TRUE", []) if dataset is None else ("dataset = ?", [dataset])


def overview(store: Queryable, dataset: str | None = None) -> dict[str, object]:
    """Totals for the store or one dataset: events, traces, event types, time range, rejects."""
    where, params = _in_dataset(dataset)
    events, traces, types, first, last = store.rows(
        "SELECT count(*), count(DISTINCT trace_id), count(DISTINCT event_type),"
        f" min(timestamp), max(timestamp) FROM events WHERE {where}",
        params,
    )[0]
    rejects = store.scalar(f"SELECT count(*) FROM rejects WHERE {where}", params)
    return {
        "events": int(events),
        "traces": int(traces),
        "event_types": int(types),
        "first_event": first,
        "last_event": last,
        "rejects": int(rejects),
    }


def event_type_profile(store: Queryable, dataset: str | None = None) -> pd.DataFrame:
    """One row per event_type: events, traces, first and last time, metric and detail keys."""
    sql = dialect(store)
    where, params = _in_dataset(dataset)
    frame = store.df(
        f"""
        SELECT event_type, count(*) AS events, count(DISTINCT trace_id) AS traces,
               min(timestamp) AS first_event, max(timestamp) AS last_event,
               {sql.keys_of_maps.format("metrics")} AS metric_keys,
               {sql.keys_of_maps.format("event_details")} AS detail_keys
        FROM events WHERE {where}
        GROUP BY event_type ORDER BY events DESC, event_type
        """,
        params,
    )
    for column in ("metric_keys", "detail_keys"):  # lists, whatever array type the engine gives
        frame[column] = frame[column].map(list)
    return frame


def metric_profile(store: Queryable, event_type: str, dataset: str | None = None) -> pd.DataFrame:
    """One row per metric key of an event type: how many events carry it, min/median/max/mean."""
    sql = dialect(store)
    where, params = _in_dataset(dataset)
    entries = sql.map_entries.format(map="metrics", where=f"event_type = ? AND {where}")
    return store.df(
        f"""
        SELECT key AS metric, count(*) AS events, min(value) AS min,
               {sql.agg("median", "value")} AS median, max(value) AS max, avg(value) AS mean
        FROM {entries}
        GROUP BY key ORDER BY events DESC, metric
        """,
        [event_type, *params],
    )


def detail_profile(
    store: Queryable, event_type: str, dataset: str | None = None, top: int = 5
) -> pd.DataFrame:
    """One row per detail key of an event type: events, distinct values and the top values."""
    frame = _detail_values(store, event_type, dataset, top)
    frame["top_values"] = [
        ", ".join(
            f"{'(null)' if v is None else v} ({n})" for v, n in zip(values, counts, strict=True)
        )
        for values, counts in zip(frame["top_values"], frame["top_counts"], strict=True)
    ]
    return frame.drop(columns=["top_counts"])


def _detail_values(
    store: Queryable, event_type: str, dataset: str | None, top: int
) -> pd.DataFrame:
    """detail_profile's rows with the top values (None for null) and their counts as lists."""
    sql = dialect(store)
    where, params = _in_dataset(dataset)
    entries = sql.map_entries.format(map="event_details", where=f"event_type = ? AND {where}")
    frame = store.df(
        f"""
        WITH counted AS (SELECT key, value, count(*) AS n FROM {entries} GROUP BY key, value)
        SELECT key AS detail, sum(n)::BIGINT AS events, count(value) AS distinct_values,
               {sql.top_of("value")} AS top_values, {sql.top_of("n")} AS top_counts
        FROM counted GROUP BY key ORDER BY events DESC, detail
        """,
        [event_type, *params, top, top],
    )
    for column in ("top_values", "top_counts"):
        frame[column] = frame[column].map(list)
    return frame


def typical_fields(
    store: Queryable, event_type: str, min_share: float = 0.5, limit: int = 8
) -> tuple[dict[str, float], dict[str, str | None]]:
    """The metric and detail keys that at least `min_share` of an event type's events carry,
    most common first (up to `limit` of each), with a typical value: the metric's median
    (to 6 significant digits) and the detail's most common value."""
    total = store.scalar("SELECT count(*) FROM events WHERE event_type = ?", [event_type])
    floor = max(1, total * min_share)
    metrics = metric_profile(store, event_type)
    metrics = metrics[metrics["events"] >= floor].head(limit)
    details = _detail_values(store, event_type, None, top=1)
    details = details[details["events"] >= floor].head(limit)
    medians = zip(metrics["metric"], metrics["median"], strict=True)
    modes = zip(details["detail"], details["top_values"], strict=True)
    return (
        {key: float(f"{median:.6g}") for key, median in medians},
        {key: top[0] for key, top in modes},
    )


# ---------------------------------------------------------------------------------------------
# Explore: one series behind a chart, and what surrounds it
# ---------------------------------------------------------------------------------------------

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
# Fixed-width buckets are cut on the local clock but counted in real time, so the repeated hour
# of a DST change is two buckets; calendar buckets follow local midnight, Monday, the 1st.
FIXED_BUCKETS = {"1m": MINUTE_MS, "5m": 5 * MINUTE_MS, "15m": 15 * MINUTE_MS, "1h": HOUR_MS}
CALENDAR_BUCKETS = {"1d": "1 day", "1w": "7 days", "1mo": "1 month"}
BUCKETS = ("auto", *FIXED_BUCKETS, *CALENDAR_BUCKETS)
BUCKET_LABELS = {
    "auto": "auto",
    "1m": "1 min",
    "5m": "5 min",
    "15m": "15 min",
    "1h": "1 hour",
    "1d": "1 day",
    "1w": "1 week",
    "1mo": "1 month",
}
# Roughly how long each bucket is, for picking one and for limiting the number of points.
APPROX_MS = {**FIXED_BUCKETS, "1d": DAY_MS, "1w": 7 * DAY_MS, "1mo": 30 * DAY_MS}
MAX_BUCKETS = 5_000
AGGREGATIONS = ("count", "traces", "sum", "avg", "min", "max", "median", "p90", "p95", "p99")
METRIC_AGGREGATIONS = AGGREGATIONS[2:]
CUMULATIVE_AGGREGATIONS = ("count", "traces", "sum", "avg", "min", "max")
AGGREGATION_LABELS = {
    "count": "events",
    "traces": "distinct traces",
    "sum": "sum",
    "avg": "average",
    "min": "min",
    "max": "max",
    "median": "median",
    "p90": "p90",
    "p95": "p95",
    "p99": "p99",
}


@dataclass(frozen=True)
class Dialect:
    """The SQL of Explore's queries that differs between engines; everything else is shared.

    DuckDB's is eventlens.duckdb_sql.DUCKDB; ClickHouse's is eventlens.clickhouse.explore_sql's
    CLICKHOUSE. A
    store names its own (`store.dialect`); pages and the CLI never see which one it is.
    """

    name: str
    in_list: str  # a bound list holds column {}
    analysed_datasets: str  # column {} (a dataset name) is not test data
    detail_differs: str  # event_details[?] differs from ? (an event without the key does)
    time_zones: str  # every IANA zone name the engine knows, sorted
    # (store, q, bucket, start, end, top) -> the bucketed frame, and the cumulative traces' firsts
    bucketed: Callable[..., pd.DataFrame]
    new_traces: Callable[..., pd.DataFrame]
    # (q, start, end, top) -> the selected events: timestamp, trace_id, dataset, series, v
    selection: Callable[..., tuple[str, list[Any]]]
    # (store, q, column) -> a MAP column's keys in q's datasets and types, most common first
    map_keys: Callable[..., list[str]]
    aggregates: dict[str, str]  # an aggregation's SQL over {v}
    as_double: str  # expression {} as a nullable double
    sorted_distinct: str  # the sorted distinct values of {} in a group
    keys_of_maps: str  # the sorted distinct keys of MAP column {} over a group
    map_entries: str  # a subquery of (key, value) rows of column {map} of events WHERE {where}
    # (item) -> the first ? of column `item` of a group of (key, value, n), by n down, then
    # value (null first)
    top_of: Callable[[str], str]
    # Traces: a prefix match on trace_id, and "the list {} shares an element with a bound one"
    starts_with: str = "starts_with({}, ?)"
    has_any: str = "list_has_any({}, ?)"

    def agg(self, agg: str, value: str = "v") -> str:
        """The SQL aggregate for an aggregation name over a value expression."""
        return self.aggregates[agg].format(v=value)

    @property
    def null_double(self) -> str:
        return self.as_double.format("NULL")


def dialect(store: Any) -> Dialect:
    """The SQL dialect of a store's engine (DuckDB unless the store says otherwise)."""
    return getattr(store, "dialect", None) or _duckdb()


def _duckdb() -> Dialect:
    """DuckDB's dialect (eventlens.duckdb_sql, which builds on this module's shared parts)."""
    from eventlens.duckdb_sql import DUCKDB

    return DUCKDB


DETAIL_OPS = ("=", "!=")
THRESHOLD_OPS = ("<", "<=", ">", ">=", "=", "!=")
SPLIT_NONE, SPLIT_TYPE, DETAIL_PREFIX = "none", "event_type", "detail:"
ALL_SERIES, OTHER_SERIES, MISSING_VALUE = "all events", "other", "(none)"


class QueryError(EventlensError, ValueError):
    """A query that cannot run as asked, worded for the person who asked it."""


@dataclass(frozen=True)
class DetailFilter:
    """event_details[key] = value, or != value (an event without the key counts as !=)."""

    key: str
    op: str
    value: str


@dataclass(frozen=True)
class Threshold:
    """metrics[key] compared with a number; events without the key do not pass."""

    key: str
    op: str
    value: float


@dataclass(frozen=True)
class SeriesQuery:
    """Everything that decides one chart's series; JSON-safe so a URL can carry it."""

    agg: str = "count"
    metric: str | None = None
    bucket: str = "auto"
    tz: str = "UTC"
    split: str = SPLIT_TYPE  # event_type | none | detail:KEY
    top: int = 5
    datasets: tuple[str, ...] = ()  # none: every dataset but test data (see include_test)
    include_test: bool = False  # with no datasets named: count test data (the sandbox) too
    event_types: tuple[str, ...] = ()
    start: dt.datetime | None = None  # inclusive; None: the first matching event
    end: dt.datetime | None = None  # exclusive; None: just after the last matching event
    details: tuple[DetailFilter, ...] = ()
    thresholds: tuple[Threshold, ...] = ()
    previous: bool = False
    cumulative: bool = False
    rolling: int = 0  # mean over this many buckets; 0 or 1: off

    @property
    def detail_key(self) -> str | None:
        """The detail key the series are split by, if any."""
        return self.split[len(DETAIL_PREFIX) :] if self.split.startswith(DETAIL_PREFIX) else None

    @property
    def uses_metric(self) -> bool:
        return self.agg in METRIC_AGGREGATIONS


@dataclass
class SeriesResult:
    """A chart's data: one row per (bucket, series), empty buckets included."""

    frame: pd.DataFrame  # bucket, bucket_end, series, value, events, incomplete
    previous: pd.DataFrame | None  # the same columns plus previous_bucket, aligned by position
    bucket: str  # the bucket actually used (auto resolved)
    start: dt.datetime | None
    end: dt.datetime | None
    tz: str
    without_timestamp: int = 0  # matching events that cannot be placed in time
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.frame.empty


# An engine's zone list is fixed for the process: read it once per engine.
_ZONES: dict[str, list[str]] = {}


def time_zones(store: Queryable) -> list[str]:
    """The IANA time zone names the store's engine knows, sorted."""
    sql = dialect(store)
    if sql.name not in _ZONES:
        _ZONES[sql.name] = [r[0] for r in store.rows(sql.time_zones)]
    return list(_ZONES[sql.name])


def is_time_zone(store: Queryable, name: str) -> bool:
    """Whether the store's engine knows this IANA time zone name."""
    return name in time_zones(store)


def check_query(store: Queryable, q: SeriesQuery) -> None:
    """Raise QueryError when the query cannot run; the message names the part that is wrong."""
    if q.agg not in AGGREGATIONS:
        raise QueryError(f"unknown aggregation {q.agg!r}; use one of {', '.join(AGGREGATIONS)}")
    if q.uses_metric and not q.metric:
        raise QueryError(f"{q.agg} needs a metric key")
    if q.bucket not in BUCKETS:
        raise QueryError(f"unknown bucket {q.bucket!r}; use one of {', '.join(BUCKETS)}")
    if not is_time_zone(store, q.tz):
        raise QueryError(f"unknown time zone {q.tz!r}; use an IANA name such as Europe/Amsterdam")
    if q.split not in (SPLIT_NONE, SPLIT_TYPE) and not q.detail_key:
        raise QueryError(f"unknown split {q.split!r}; use event_type, none or detail:KEY")
    if q.top < 1:
        raise QueryError("top must be at least 1")
    for when in (q.start, q.end):
        if when is not None and when.tzinfo is None:
            raise QueryError("start and end need a time zone (or UTC offset)")
    if q.start and q.end and _utc(q.start) >= _utc(q.end):
        raise QueryError("the start of the range must be before its end")
    if q.cumulative and q.agg not in CUMULATIVE_AGGREGATIONS:
        raise QueryError(
            f"cumulative works with {', '.join(CUMULATIVE_AGGREGATIONS)}, not with {q.agg}"
        )
    if q.rolling < 0:
        raise QueryError("the rolling window must be 0 (off) or a number of buckets")
    for f in q.details:
        if f.op not in DETAIL_OPS:
            raise QueryError(f"detail filter on {f.key!r}: use = or !=, not {f.op!r}")
    for t in q.thresholds:
        if t.op not in THRESHOLD_OPS:
            raise QueryError(f"metric filter on {t.key!r}: unknown comparison {t.op!r}")
        if not math.isfinite(t.value):
            raise QueryError(f"metric filter on {t.key!r}: the value must be a finite number")


def _utc(when: dt.datetime) -> dt.datetime:
    # Python compares and subtracts two datetimes of one zone by wall clock; UTC is exact.
    return when.astimezone(dt.UTC)


def checked(store: Queryable, q: SeriesQuery) -> SeriesQuery:
    """The query after check_query, its start and end in UTC so that range arithmetic is exact."""
    check_query(store, q)
    return dataclasses.replace(
        q,
        start=_utc(q.start) if q.start else None,
        end=_utc(q.end) if q.end else None,
    )


def dataset_conds(
    datasets: tuple[str, ...],
    include_test: bool,
    column: str = "dataset",
    sql: Dialect | None = None,
) -> tuple[list[str], list[Any]]:
    """Which datasets a question counts, on `column` (a constant name): the named ones, else
    every one but test data (every one with include_test); the conditions and their values."""
    sql = sql or _duckdb()
    if datasets:
        return [sql.in_list.format(column)], [list(datasets)]
    return ([] if include_test else [sql.analysed_datasets.format(column)]), []


def _scope_conds(q: SeriesQuery, sql: Dialect | None = None) -> tuple[list[str], list[Any]]:
    """The conditions on dataset and event_type (columns of events and of key_summary) that
    a query's datasets, include_test and event types make, with their bound parameters."""
    sql = sql or _duckdb()
    conds, params = dataset_conds(q.datasets, q.include_test, sql=sql)
    if q.event_types:
        conds.append(sql.in_list.format("event_type"))
        params.append(list(q.event_types))
    return conds, params


def _where(
    q: SeriesQuery,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    *,
    with_metric: bool = True,
    sql: Dialect | None = None,
) -> tuple[str, list[Any]]:
    """The WHERE clause for a query's filters; every value is a bound parameter."""
    conds, params = _scope_conds(q, sql)
    conds.insert(0, "timestamp IS NOT NULL")
    if start is not None:
        conds.append("timestamp >= ?")
        params.append(start)
    if end is not None:
        conds.append("timestamp < ?")
        params.append(end)
    _add_filters(q, conds, params, sql)
    if with_metric and q.uses_metric:
        conds.append("metrics[?] IS NOT NULL")
        params.append(q.metric)
    return " AND ".join(conds), params


def _add_filters(q: SeriesQuery, conds: list[str], params: list[Any], sql: Dialect | None) -> None:
    """Append the conditions of the query's detail filters and thresholds, and their values."""
    for f in q.details:
        # The operator comes from DETAIL_OPS (checked), never from the user's text.
        conds.append("event_details[?] = ?" if f.op == "=" else (sql or _duckdb()).detail_differs)
        params += [f.key, f.value]
    for t in q.thresholds:
        conds.append(f"metrics[?] {THRESHOLD_OPS[THRESHOLD_OPS.index(t.op)]} ?")
        params += [t.key, float(t.value)]


def time_bounds(store: Queryable, q: SeriesQuery) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The first and last timestamp among the events the query's filters (not range) keep.

    With a metric, only the events that carry it count: a range of "all" spans the metric's
    data, without empty buckets before and after it (headline() counts what that leaves out).
    """
    where, params = _where(q, sql=dialect(store))
    first, last = store.rows(
        f"SELECT min(timestamp), max(timestamp) FROM events WHERE {where}", params
    )[0]
    return first, last


def resolve_range(
    store: Queryable, q: SeriesQuery
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The query's [start, end): as given, else from the first to just after the last event."""
    start, end = q.start, q.end
    if start is None or end is None:
        return _range_from(q, *time_bounds(store, q))
    return start, end


def _range_from(
    q: SeriesQuery, first: dt.datetime | None, last: dt.datetime | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """resolve_range's answer given the first and last matching event."""
    start, end = q.start, q.end
    if first is None:
        return start, end
    return start or first, end or (last or first) + dt.timedelta(milliseconds=1)


def _untimed_sql(q: SeriesQuery, sql: Dialect) -> tuple[str, list[Any]]:
    """A query of one row: how many events the filters (not the range) keep that cannot be
    placed in time, then the first and last timestamp time_bounds gives (for a query without
    a metric: with one, the timestamps of the events without it had to be left out, which cost
    a store of 1M events 15% more than the two statements)."""
    conds, params = _scope_conds(q, sql)
    _add_filters(q, conds, params, sql)
    return (
        "SELECT count(*) - count(timestamp), min(timestamp), max(timestamp) FROM events"
        f" WHERE {_and(conds or ['TRUE'])}",
        params,
    )


def auto_bucket(start: dt.datetime, end: dt.datetime) -> str:
    """A bucket that gives a chart readable at a glance: about 100 to 180 points at most, so a
    month is 30 days (not 720 hours, a tangle with ten series) and a week is 168 hours."""
    span = (end - start).total_seconds() * 1000
    for bucket, limit in (
        ("1m", 2 * HOUR_MS),
        ("5m", 8 * HOUR_MS),
        ("15m", DAY_MS),
        ("1h", 7 * DAY_MS),
        ("1d", 180 * DAY_MS),
        ("1w", 3 * 365 * DAY_MS),
    ):
        if span <= limit:
            return bucket
    return "1mo"


def choose_bucket(bucket: str, start: dt.datetime, end: dt.datetime) -> tuple[str, str | None]:
    """The bucket to use and, when the asked one would give too many points, why it changed."""
    span = (end - start).total_seconds() * 1000
    if span / APPROX_MS["1mo"] > MAX_BUCKETS:
        raise QueryError(
            f"the range is too long to chart: over {MAX_BUCKETS:,} months; choose a shorter one"
        )
    if bucket == "auto":
        return auto_bucket(start, end), None
    if span / APPROX_MS[bucket] <= MAX_BUCKETS:
        return bucket, None
    wider = next(b for b in BUCKETS[1:] if span / APPROX_MS[b] <= MAX_BUCKETS)
    return wider, (
        f"{BUCKET_LABELS[bucket]} buckets would give more than {MAX_BUCKETS:,} points over this"
        f" range; showing {BUCKET_LABELS[wider]} buckets"
    )


def _series_label_sql(q: SeriesQuery) -> tuple[str, list[Any]]:
    """SQL naming each event's series, and its parameters (the top detail values come later)."""
    if q.split == SPLIT_NONE:
        return f"'{ALL_SERIES}'", []
    if q.split == SPLIT_TYPE:
        return "event_type", []
    return f"coalesce(event_details[?], '{MISSING_VALUE}')", [q.detail_key]


def top_values(
    store: Queryable, q: SeriesQuery, start: dt.datetime | None, end: dt.datetime | None
) -> list[str]:
    """The split's top detail values by events in the selection (missing counts as a value)."""
    if not q.detail_key:
        return []
    where, params = _where(q, start, end, sql=dialect(store))
    label, label_params = _series_label_sql(q)
    rows = store.rows(
        f"SELECT {label} AS v, count(*) AS n FROM events WHERE {where}"
        " GROUP BY v ORDER BY n DESC, v LIMIT ?",
        [*label_params, *params, q.top],
    )
    return [r[0] for r in rows]


def _bucketed(
    store: Queryable,
    q: SeriesQuery,
    bucket: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    top: list[str],
) -> pd.DataFrame:
    """One row per (bucket, series) over [start, end), with empty buckets, in bucket order,
    from the store's engine; cumulative values summed up here, the same for every engine."""
    frame = dialect(store).bucketed(store, q, bucket, start, end, top)
    if q.cumulative:
        frame = _cumulative(store, q, frame, bucket, start, end, top)
    return frame


def _cumulative(
    store: Queryable,
    q: SeriesQuery,
    frame: pd.DataFrame,
    bucket: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    top: list[str],
) -> pd.DataFrame:
    """Each bucket's value over everything from the start of the range to the bucket's end
    (no start and end: the whole selection)."""
    by = frame.groupby("series", sort=False)
    if q.agg in ("count", "sum"):
        frame["value"] = by["value"].cumsum() if q.agg == "count" else by["total"].cumsum()
    elif q.agg == "avg":
        frame["value"] = by["total"].cumsum() / by["measured"].cumsum().replace(0, float("nan"))
    elif q.agg in ("min", "max"):
        # An empty bucket keeps the running value so far (cummin/cummax leave NaN there).
        column, running = ("low", "cummin") if q.agg == "min" else ("high", "cummax")
        frame["value"] = by[column].transform(lambda s: getattr(s, running)().ffill())
    elif q.agg == "traces":
        # A trace counts once, in the bucket where the range first sees it.
        firsts = dialect(store).new_traces(store, q, bucket, start, end, top)
        frame = frame.merge(firsts, on=["bucket", "series"], how="left")
        frame["value"] = frame["new_traces"].fillna(0).groupby(frame["series"]).cumsum()
        frame = frame.drop(columns=["new_traces"])
    return frame


def series(store: Queryable, q: SeriesQuery) -> SeriesResult:
    """The data behind one chart: a value per bucket and series, empty buckets included.

    Buckets the range only partly covers are flagged `incomplete`; with `previous`, the same
    series over the equally long range just before comes back aligned bucket by bucket.
    """
    q = checked(store, q)
    columns = ["bucket", "bucket_end", "series", "value", "events", "incomplete"]
    top = top_values(store, q, q.start, q.end)  # an open end includes every event anyway
    frame: pd.DataFrame | None = None
    start, end = q.start, q.end
    if start is None and end is None and q.bucket != "auto":
        # One scan: the range comes out of the aggregation. An empty frame means no events,
        # or more buckets of the asked size than a chart takes: the steps below sort both out.
        frame = _bucketed(store, q, q.bucket, None, None, top)
        if frame.empty:
            frame = None
        else:
            start = _instant(frame["range_start"].iloc[0])
            end = _instant(frame["range_end"].iloc[0])
    untimed = None
    if frame is None and (start is None or end is None) and not q.uses_metric:
        # The untimed events counted in the scan for the range: one statement less (2 of the
        # default chart's 23 ms on 3,200 events; 6.5 -> 5.3 ms on 1M).
        sql, params = _untimed_sql(q, dialect(store))
        untimed, first, last = store.rows(sql, params)[0]
        start, end = _range_from(q, first, last)
    elif frame is None:
        start, end = resolve_range(store, q)
    if start is None or end is None:
        import pandas as pd

        return SeriesResult(pd.DataFrame(columns=columns), None, "1h", None, None, q.tz)
    bucket, note = choose_bucket(q.bucket, start, end)
    if frame is None or bucket != q.bucket:
        frame = _bucketed(store, q, bucket, start, end, top)
    frame = _finish(frame, q, start, end)
    previous = None
    if q.previous:
        span = end - start
        before = _bucketed(store, q, bucket, start - span, start, top)
        before = _finish(before, q, start - span, start)
        previous = _align(before, frame)
    if untimed is None:
        where, params = _where(q, with_metric=False, sql=dialect(store))
        untimed = store.scalar(
            "SELECT count(*) FROM events WHERE "
            + where.replace("timestamp IS NOT NULL", "timestamp IS NULL", 1),
            params,
        )
    return SeriesResult(
        frame[columns],
        previous,
        bucket,
        start,
        end,
        q.tz,
        without_timestamp=int(untimed or 0),
        notes=[note] if note else [],
    )


def _instant(when: pd.Timestamp) -> dt.datetime:
    """A time from an engine's frame as a UTC datetime (a naive one is a UTC reading)."""
    return (when.tz_localize("UTC") if when.tzinfo is None else when).to_pydatetime()


def _finish(
    frame: pd.DataFrame, q: SeriesQuery, start: dt.datetime, end: dt.datetime
) -> pd.DataFrame:
    """Local bucket times, the incomplete flags and the rolling mean."""
    import pandas as pd

    # An engine may give the bucket times as instants or as UTC wall-clock readings (naive
    # times reach pandas faster: DuckDB's TIMESTAMPTZ columns cost ~1.3 ms each in df()).
    bucket = pd.to_datetime(frame["bucket"], utc=True)
    bucket_end = pd.to_datetime(frame["bucket_end"], utc=True)
    # Only the columns a result keeps, in one new frame: no copy of the others.
    frame = pd.DataFrame(
        {
            "bucket": bucket.dt.tz_convert(q.tz),
            "bucket_end": bucket_end.dt.tz_convert(q.tz),
            "series": frame["series"],
            "value": frame["value"],
            "events": frame["events"],
            "incomplete": (bucket < start) | (bucket_end > end),
        }
    )
    if q.rolling > 1:
        frame["value"] = (
            frame.groupby("series", sort=False)["value"]
            .rolling(q.rolling, min_periods=1)
            .mean()
            .reset_index(level=0, drop=True)
        )
    frame["value"] = frame["value"].astype(float)
    return frame.reset_index(drop=True)


def _align(before: pd.DataFrame, now: pd.DataFrame) -> pd.DataFrame:
    """The previous period's rows moved onto the current buckets, position by position."""
    import pandas as pd

    out = []
    for name, rows in before.groupby("series", sort=False):
        current = now.loc[now["series"] == name, ["bucket", "bucket_end"]].reset_index(drop=True)
        rows = rows.reset_index(drop=True).head(len(current))
        rows = rows.rename(columns={"bucket": "previous_bucket"}).drop(columns=["bucket_end"])
        out.append(pd.concat([current.head(len(rows)), rows], axis=1))
    columns = ["bucket", "bucket_end", "previous_bucket", "series", "value", "events", "incomplete"]
    if not out:
        return pd.DataFrame(columns=columns)
    return pd.concat(out, ignore_index=True)[columns]


def headline(store: Queryable, q: SeriesQuery) -> dict[str, Any]:
    """Events, traces and the metric over the range, and over the period just before it.

    Also: `measured`, how many of the range's events carry the metric (the measure is over
    those); `matching`, the timed events the filters keep at any time (more than the range's
    events when a range of "all" spans only the metric's data); `data_start`, the first
    matching event; and `comparable`, whether the data covers the whole period before: a change
    against a period the data does not cover (before a range of "all", or reaching past the
    first event) compares unlike with like.
    """
    q = checked(store, q)
    start, end = resolve_range(store, q)
    out: dict[str, Any] = {}
    if start is None or end is None:
        return out
    span = end - start
    sql = dialect(store)
    metric = sql.agg(q.agg, "metrics[?]") if q.uses_metric else sql.null_double
    for name, (lo, hi) in {"current": (start, end), "previous": (start - span, start)}.items():
        where, params = _where(q, lo, hi, with_metric=False, sql=sql)
        events, traces, value, measured = store.rows(
            f"SELECT count(*), count(DISTINCT trace_id), {metric}, count(metrics[?])"
            f" FROM events WHERE {where}",
            ([q.metric] if q.uses_metric else []) + [q.metric] + params,
        )[0]
        out[name] = {"events": int(events), "traces": int(traces), "value": value}
        if name == "current":
            out["measured"] = int(measured) if q.uses_metric else None
    where, params = _where(q, with_metric=False, sql=sql)
    out["matching"] = int(store.scalar(f"SELECT count(*) FROM events WHERE {where}", params))
    first, _ = time_bounds(store, dataclasses.replace(q, start=None, end=None))
    out["data_start"] = first
    out["comparable"] = first is not None and first <= start - span
    return out


def change(now: float | None, before: float | None) -> float | None:
    """The relative change from before to now (0.25 = +25%), None when it has no meaning."""
    if now is None or before is None or before == 0:
        return None
    return (now - before) / abs(before)


def leaderboard(store: Queryable, q: SeriesQuery, key: str, limit: int = 10) -> pd.DataFrame:
    """The top values of one detail key in the selection: events, traces, share, the metric."""
    q = checked(store, q)
    start, end = resolve_range(store, q)
    sql = dialect(store)
    where, params = _where(q, start, end, with_metric=False, sql=sql)
    metric = sql.agg(q.agg, "metrics[?]") if q.uses_metric else sql.null_double
    frame = store.df(
        f"""
        SELECT coalesce(event_details[?], '{MISSING_VALUE}') AS value, count(*) AS events,
               count(DISTINCT trace_id) AS traces,
               count(*) / sum(count(*)) OVER () AS share, {metric} AS metric
        FROM events WHERE {where}
        GROUP BY 1 ORDER BY events DESC, value LIMIT ?
        """,
        [key, *([q.metric] if q.uses_metric else []), *params, limit],
    )
    if not q.uses_metric:
        frame = frame.drop(columns=["metric"])
    return frame


def traces_for(
    store: Queryable,
    q: SeriesQuery,
    start: dt.datetime,
    end: dt.datetime,
    series_names: list[str] | None = None,
    limit: int = 1_000,
) -> pd.DataFrame:
    """The traces behind a chart selection: events in [start, end) of the chosen series.

    One row per trace: its matching events, first and last time, and the chart's measure over
    those events (the event count when the chart counts). A trace id in two datasets is two
    traces (a replay's copy is not the original), so each row names its dataset.
    """
    q = checked(store, q)
    top = top_values(store, q, *resolve_range(store, q)) if q.detail_key else []
    sql = dialect(store)
    selection, params = sql.selection(q, start, end, top)
    keep, keep_params = "", []
    if series_names:
        keep, keep_params = f"WHERE {sql.in_list.format('series')}", [list(series_names)]
    measure = {"count": "count(*)", "traces": "count(*)"}.get(q.agg, sql.agg(q.agg))
    return store.df(
        f"""
        SELECT trace_id, dataset, count(*) AS events, min(timestamp) AS first_time,
               max(timestamp) AS last_time, {sql.as_double.format(measure)} AS value,
               {sql.sorted_distinct.format("series")} AS series
        FROM ({selection}) {keep}
        GROUP BY trace_id, dataset ORDER BY value DESC, first_time, trace_id, dataset LIMIT ?
        """,
        [*params, *keep_params, limit],
    )


def _map_keys(store: Queryable, q: SeriesQuery, column: str) -> list[str]:
    """The keys of a MAP column (a constant name) in the query's datasets and event types, most
    common first, from the store's engine."""
    return dialect(store).map_keys(store, q, column)


def _and(conds: list[str]) -> str:
    return " AND ".join(conds)


def metric_keys(store: Queryable, q: SeriesQuery) -> list[str]:
    """The metric keys the selected event types carry, most common first."""
    return _map_keys(store, q, "metrics")


def detail_keys(store: Queryable, q: SeriesQuery) -> list[str]:
    """The detail keys the selected event types carry, most common first."""
    return _map_keys(store, q, "event_details")


def event_types(
    store: Queryable, datasets: tuple[str, ...] = (), include_test: bool = False
) -> list[str]:
    """The event types in the given datasets (all but test data when none), most common first."""
    where, params = _where(
        SeriesQuery(datasets=datasets, include_test=include_test), sql=dialect(store)
    )
    rows = store.rows(
        f"SELECT event_type, count(*) AS n FROM events WHERE {where} GROUP BY 1 ORDER BY n DESC, 1",
        params,
    )
    return [r[0] for r in rows]


@functools.cache
def _zone_rules() -> Store:
    """An empty in-memory DuckDB store that applies DuckDB's zone rules for another engine's
    store: made once per process (one took 45 ms, and the Submit page asks on every rerun)."""
    return Store(":memory:")


def local_to_instant(store: Queryable, local: dt.datetime, tz: str) -> dt.datetime:
    """A wall-clock time in an IANA zone as an instant (DuckDB's zone data, not the OS's)."""
    if not is_time_zone(store, tz):
        raise QueryError(f"unknown time zone {tz!r}; use an IANA name such as Europe/Amsterdam")
    if dialect(store).name != "duckdb":  # one rule for every engine: DuckDB's, in memory
        return local_to_instant(_zone_rules(), local, tz)
    return store.scalar("SELECT timezone(?, ?::TIMESTAMP)", [tz, local.replace(tzinfo=None)])
