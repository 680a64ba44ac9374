"""The Explore query layer: series, headline, leaderboard and traces, checked against pandas."""

from __future__ import annotations

import datetime as dt
import functools
import random
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from ingest_helpers import store_holding

from eventlens import analytics, traces
from eventlens.analytics import (
    AGGREGATIONS,
    MAX_BUCKETS,
    DetailFilter,
    QueryError,
    SeriesQuery,
    Threshold,
    auto_bucket,
    check_query,
    choose_bucket,
    detail_keys,
    event_types,
    headline,
    leaderboard,
    local_to_instant,
    metric_keys,
    series,
    traces_for,
)
from eventlens.store import Store

UTC = dt.UTC
AMS = "Europe/Amsterdam"
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
EPOCH = pd.Timestamp(0, tz="UTC")
COLUMNS = ["bucket", "bucket_end", "series", "value", "events", "incomplete"]
FIXED_WIDTH = {"1m": "1min", "5m": "5min", "15m": "15min", "1h": "1h"}
QUANTILES = {"median": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
SPLITS = ("event_type", "none", "detail:product")
MATRIX_BUCKETS = ("1m", "5m", "15m", "1h", "1d", "1w", "1mo")
EVIL = "x'); DROP TABLE events; --"


def ms(*args: int) -> int:
    """Epoch milliseconds of a UTC date-time."""
    return int(dt.datetime(*args, tzinfo=UTC).timestamp() * 1000)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def ams(*args: int, fold: int = 0) -> dt.datetime:
    """A wall-clock time in Amsterdam (fold=1: the second of a repeated hour)."""
    return dt.datetime(*args, tzinfo=ZoneInfo(AMS), fold=fold)


# -- generated data -------------------------------------------------------------------------------

SEED = 20241027
TYPES = ("page_view", "search", "add_to_cart", "llm_call")
PRODUCTS = [f"sku-{i:02d}" for i in range(60)]
COUNTRIES = ("NL", "DE", "US")
# dataset: (events, whole period, DST change window that gets a third of them)
PERIODS = {
    "web": (
        1600,
        (ms(2024, 10, 21), ms(2024, 10, 31)),
        (ms(2024, 10, 26, 22), ms(2024, 10, 27, 3)),
    ),
    "app": (
        1000,
        (ms(2024, 10, 21), ms(2024, 10, 31)),
        (ms(2024, 10, 26, 22), ms(2024, 10, 27, 3)),
    ),
    "spring": (600, (ms(2024, 3, 29), ms(2024, 4, 2)), (ms(2024, 3, 30, 23), ms(2024, 3, 31, 3))),
}
AUTUMN = (utc(2024, 10, 21, 7, 13, 20), utc(2024, 10, 30, 18, 47, 5))
AUTUMN_SHORT = (utc(2024, 10, 26, 23, 40, 20), utc(2024, 10, 27, 2, 5, 30))  # repeated hour
SPRING = (utc(2024, 3, 29, 5, 0, 0), utc(2024, 4, 1, 20, 30, 0))
SPRING_SHORT = (utc(2024, 3, 31, 0, 10, 0), utc(2024, 3, 31, 2, 40, 45))  # skipped hour


def make_bodies() -> dict[str, list[dict]]:
    """Seeded track_event bodies per dataset: several types, a partial metric, many products."""
    rng = random.Random(SEED)
    out: dict[str, list[dict]] = {}
    n = 0
    for dataset, (count, (lo, hi), (dst_lo, dst_hi)) in PERIODS.items():
        bodies = []
        for _ in range(count):
            ts = rng.randrange(dst_lo, dst_hi) if rng.random() < 0.3 else rng.randrange(lo, hi)
            if rng.random() < 0.05:
                ts -= ts % (15 * MINUTE_MS)  # exactly on a bucket boundary
            etype = rng.choices(TYPES, (5, 3, 2, 2))[0]
            metrics: dict[str, float] = {}
            if etype == "add_to_cart" or (etype == "llm_call" and rng.random() < 0.5):
                metrics["amount"] = rng.choice(
                    [round(rng.uniform(0.5, 300), 2), float(rng.randint(1, 20))]
                )
            if etype in ("llm_call", "search"):
                metrics["latency_ms"] = round(rng.lognormvariate(6, 1), 3)
            if etype == "search":
                metrics["score"] = round(rng.uniform(-1, 1), 4)
            body = {
                "trace_id": f"tr-{rng.randrange(700):03d}",
                "event_type": etype,
                "metrics": metrics,
                "timestamp": ts,
                "event_id": f"ev-{n}",
            }
            r = rng.random()
            if r >= 0.08:  # else: no event_details at all
                details: dict[str, str] = {}
                if r >= 0.12:  # else: an empty object
                    if rng.random() < 0.85:
                        details["product"] = PRODUCTS[min(int(rng.paretovariate(0.9)) - 1, 59)]
                    if rng.random() < 0.8:
                        details["country"] = rng.choice(COUNTRIES)
                body["event_details"] = details
            bodies.append(body)
            n += 1
        out[dataset] = bodies
    for i in range(4):  # events that cannot be placed in time
        out["web"].append(
            {
                "trace_id": f"tr-{i:03d}",
                "event_type": TYPES[i % 2],
                "metrics": {"amount": 1.0},
                "event_details": {"country": "NL"},
                "event_id": f"untimed-{i}",
            }
        )
    return out


def events_frame(bodies_by_dataset: dict[str, list[dict]]) -> pd.DataFrame:
    """The bodies as a pandas frame, built without the store."""
    rows = []
    for dataset, bodies in bodies_by_dataset.items():
        for line, b in enumerate(bodies, start=1):
            rows.append(
                {
                    "ts_raw": b.get("timestamp"),
                    "trace_id": b["trace_id"],
                    "event_type": b["event_type"],
                    "dataset": dataset,
                    "metrics": b["metrics"],
                    "details": b.get("event_details"),
                    "event_id": b["event_id"],
                    "line": line,
                }
            )
    ev = pd.DataFrame(rows)
    ev["ts"] = pd.to_datetime(ev["ts_raw"], unit="ms", utc=True)
    return ev.drop(columns=["ts_raw"])


@pytest.fixture(scope="module")
def gen(tmp_path_factory) -> tuple[Store, pd.DataFrame]:
    """A store of about 3,200 seeded events in three datasets, and the same events in pandas."""
    bodies = make_bodies()
    with store_holding(tmp_path_factory.mktemp("generated"), bodies) as s:
        yield s, with_columns(events_frame(bodies))


# -- the independent pandas computation -----------------------------------------------------------


def to_ms(values: pd.Series) -> pd.Series:
    """Instants as epoch milliseconds (floored, as numpy casts to a coarser unit)."""
    return pd.Series(values.to_numpy("datetime64[ms]").view("int64"), index=values.index)


def scalar_ms(when: dt.datetime) -> int:
    return (pd.Timestamp(when).tz_convert("UTC") - EPOCH) // pd.Timedelta(milliseconds=1)


def metric_of(ev: pd.DataFrame, key: str) -> pd.Series:
    """Each event's value of a metric, NaN where it has none."""
    if f"m:{key}" in ev.columns:
        return ev[f"m:{key}"]
    return ev["metrics"].map(lambda m: m.get(key, np.nan)).astype(float)


def detail_of(ev: pd.DataFrame, key: str) -> pd.Series:
    """Each event's value of a detail, None where it has none."""
    if f"d:{key}" in ev.columns:
        return ev[f"d:{key}"]
    return ev["details"].map(lambda d: (d or {}).get(key)).astype(object)


def with_columns(ev: pd.DataFrame) -> pd.DataFrame:
    """The frame plus one column per metric key (m:KEY) and detail key (d:KEY), for speed."""
    columns = {f"m:{k}": metric_of(ev, k) for k in {k for m in ev["metrics"] for k in m}}
    keys = {k for d in ev["details"] for k in (d or {})}
    columns.update({f"d:{k}": detail_of(ev, k) for k in keys})
    columns["ts_ms"] = (ev["ts"] - EPOCH) // pd.Timedelta(milliseconds=1)  # NaN: untimed
    return ev.assign(**columns)


def bucket_starts(ts: pd.Series, bucket: str, tz: str) -> pd.Series:
    """The start (UTC) of the bucket holding each instant, by the documented rules."""
    local = ts.dt.tz_convert(tz).dt.tz_localize(None)
    if bucket in FIXED_WIDTH:
        offset = local - ts.dt.tz_convert("UTC").dt.tz_localize(None)
        return (local.dt.floor(FIXED_WIDTH[bucket]) - offset).dt.tz_localize("UTC")
    day = local.dt.normalize()
    if bucket == "1w":
        day = day - pd.to_timedelta(day.dt.day_of_week, unit="D")
    elif bucket == "1mo":
        day = day - pd.to_timedelta(day.dt.day - 1, unit="D")
    return day.dt.tz_localize(tz).dt.tz_convert("UTC")


_MEMO: dict[tuple, tuple[pd.DataFrame, Any]] = {}


def memo(ev: pd.DataFrame, key: tuple, compute: Callable[[], Any]) -> Any:
    """compute() once per frame and key: many tests ask the same of the module's frame. What it
    returns is only read. The frame is kept too, so that its id stays its own."""
    full = (id(ev), *key)
    if full not in _MEMO:
        _MEMO[full] = (ev, compute())
    return _MEMO[full][1]


def instant(when: dt.datetime | None) -> dt.datetime | None:
    """A cache key for a time: the same instant in any zone (an hour repeated in one zone too)."""
    return None if when is None else when.astimezone(UTC)


def event_buckets(ev: pd.DataFrame, bucket: str, tz: str) -> pd.Series:
    """bucket_starts of every timed event in epoch ms, computed once per frame, bucket and zone."""
    return memo(
        ev, ("buckets", bucket, tz), lambda: to_ms(bucket_starts(ev["ts"].dropna(), bucket, tz))
    )


def bucket_ends(starts: pd.Series, bucket: str, tz: str) -> pd.Series:
    if bucket in FIXED_WIDTH:
        return starts + pd.Timedelta(FIXED_WIDTH[bucket])
    local = starts.dt.tz_convert(tz).dt.tz_localize(None)
    step = {"1d": pd.Timedelta(days=1), "1w": pd.Timedelta(days=7)}.get(bucket)
    nxt = local + step if step is not None else local + pd.DateOffset(months=1)
    return nxt.dt.tz_localize(tz).dt.tz_convert("UTC")


@functools.cache
def grid(start: dt.datetime, end: dt.datetime, bucket: str, tz: str) -> tuple[np.ndarray, ...]:
    """Every bucket holding an instant of [start, end): (starts, ends) in epoch ms."""
    s, e = scalar_ms(start), scalar_ms(end)
    first_minute = -(-s // MINUTE_MS) * MINUTE_MS
    samples = np.unique(np.r_[s, np.arange(first_minute, e, MINUTE_MS)])
    ts = pd.Series(pd.to_datetime(samples, unit="ms", utc=True))
    starts = bucket_starts(ts, bucket, tz).drop_duplicates().sort_values(ignore_index=True)
    return to_ms(starts).to_numpy(), to_ms(bucket_ends(starts, bucket, tz)).to_numpy()


def filters_key(
    q: SeriesQuery, start: dt.datetime | None, end: dt.datetime | None, with_metric: bool
) -> tuple:
    """What select() depends on."""
    needs_metric = with_metric and q.uses_metric
    return (
        q.datasets, q.event_types, q.details, q.thresholds,
        needs_metric, q.metric if needs_metric else None, instant(start), instant(end),
    )  # fmt: skip


def select(
    ev: pd.DataFrame,
    q: SeriesQuery,
    start: dt.datetime | None,
    end: dt.datetime | None,
    *,
    with_metric: bool = True,
) -> pd.DataFrame:
    """The events a query's filters keep (once per frame and filters: callers only read it)."""
    key = ("select", *filters_key(q, start, end, with_metric))
    return memo(ev, key, lambda: _select(ev, q, start, end, with_metric=with_metric))


def _select(
    ev: pd.DataFrame,
    q: SeriesQuery,
    start: dt.datetime | None,
    end: dt.datetime | None,
    *,
    with_metric: bool,
) -> pd.DataFrame:
    keep = ev["ts"].notna()
    if q.datasets:
        keep &= ev["dataset"].isin(q.datasets)
    if q.event_types:
        keep &= ev["event_type"].isin(q.event_types)
    if start is not None:
        keep &= ev["ts"] >= pd.Timestamp(start)
    if end is not None:
        keep &= ev["ts"] < pd.Timestamp(end)
    for f in q.details:
        values = detail_of(ev, f.key)
        same = values.map(lambda v, want=f.value: v == want).astype(bool)
        keep &= same if f.op == "=" else ~same
    for t in q.thresholds:
        values = metric_of(ev, t.key)
        ops = {
            "<": values < t.value,
            "<=": values <= t.value,
            ">": values > t.value,
            ">=": values >= t.value,
            "=": values == t.value,
            "!=": values != t.value,
        }
        keep &= ops[t.op] & values.notna()
    if with_metric and q.uses_metric:
        keep &= metric_of(ev, q.metric).notna()
    return ev[keep]


def top_of(labels: pd.Series, n: int) -> list[str]:
    counts = labels.value_counts()
    return sorted(counts.index, key=lambda v: (-counts[v], v))[:n]


def label(sel: pd.DataFrame, q: SeriesQuery, top: list[str] | None) -> tuple[pd.Series, list]:
    """Each selected event's series name, and the detail values kept."""
    if q.split == "none":
        return pd.Series("all events", index=sel.index, dtype=object), []
    if q.split == "event_type":
        return sel["event_type"].astype(object), []
    values = detail_of(sel, q.split.removeprefix("detail:")).fillna("(none)")
    if top is None:
        top = top_of(values, q.top)
    return values.where(values.isin(top), "other"), top


def aggregate(groups, agg: str) -> pd.Series:
    if agg == "count":
        return groups.size()
    if agg == "traces":
        return groups["trace_id"].nunique()
    if agg in QUANTILES:
        return groups["v"].quantile(QUANTILES[agg])
    return groups["v"].agg({"sum": "sum", "avg": "mean", "min": "min", "max": "max"}[agg])


def derived_range(ev: pd.DataFrame, q: SeriesQuery) -> tuple[dt.datetime, dt.datetime]:
    """[first event, last event + 1 ms) of what the filters keep."""
    ts = select(ev, q, None, None)["ts"]
    return ts.min().to_pydatetime(), (ts.max() + pd.Timedelta(milliseconds=1)).to_pydatetime()


def expect(
    ev: pd.DataFrame,
    q: SeriesQuery,
    bucket: str,
    start: dt.datetime,
    end: dt.datetime,
    top: list[str] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """series(store, q).frame computed with pandas (buckets in epoch ms), and the top values."""
    # The events, series and buckets do not depend on the measure: the aggregations share them.
    key = (
        "grouped", *filters_key(q, start, end, True), q.split, q.top,
        None if top is None else tuple(top), bucket, q.tz,
    )  # fmt: skip
    grouped = memo(ev, key, lambda: _grouped(ev, q, bucket, start, end, top))
    if grouped is None:
        return pd.DataFrame(columns=COLUMNS), list(top or [])
    sel, top, series_names, index, groups, ends, columns = grouped
    values = aggregate(groups, q.agg).reindex(index).to_numpy(float)
    if q.agg in ("count", "traces"):
        values = np.nan_to_num(values, nan=0.0)
    frame = pd.DataFrame(
        {
            "series": columns["series"],
            "bucket": columns["bucket"],
            "bucket_end": columns["bucket_end"],
            "value": values,
            "events": columns["events"],
            "incomplete": columns["incomplete"],
        }
    )
    if q.cumulative:
        frame["value"] = np.concatenate(
            [running(sel[sel["series"] == n], ends, q.agg) for n in series_names]
        )
    if q.rolling > 1:
        frame["value"] = np.concatenate(
            [
                rolling_mean(frame.loc[frame["series"] == n, "value"].to_numpy(), q.rolling)
                for n in series_names
            ]
        )
    return frame, list(top)


class Grouped(NamedTuple):
    """expect()'s part that the measure does not change."""

    sel: pd.DataFrame  # the selected events' trace, series, measured value, time and bucket
    top: list[str]
    series_names: list[str]
    index: pd.MultiIndex  # (series, bucket start) of every row
    groups: Any  # sel grouped by series and bucket
    ends: np.ndarray  # the grid's bucket ends
    columns: dict[str, Any]  # the frame's columns but the value


def _grouped(
    ev: pd.DataFrame,
    q: SeriesQuery,
    bucket: str,
    start: dt.datetime,
    end: dt.datetime,
    top: list[str] | None,
) -> Grouped | None:
    """None when no event is selected."""
    sel = select(ev, q, start, end)
    if sel.empty:
        return None
    names, top = label(sel, q, top)
    sel = pd.DataFrame(  # only what the measures read: it is kept
        {
            "trace_id": sel["trace_id"],
            "series": names,
            "v": metric_of(sel, q.metric) if q.uses_metric else np.nan,
            "ts_ms": to_ms(sel["ts"]),
            "bucket": event_buckets(ev, bucket, q.tz).loc[sel.index],
        }
    )
    series_names = sorted(sel["series"].unique())
    starts, ends = grid(start, end, bucket, q.tz)
    assert set(sel["bucket"]) <= set(starts), "the pandas grid misses a bucket"
    index = pd.MultiIndex.from_product([series_names, starts], names=["series", "bucket"])
    groups = sel.groupby(["series", "bucket"])
    bucket_starts_ms = index.get_level_values(1).to_numpy()
    bucket_ends_ms = np.tile(ends, len(series_names))
    columns = {
        "series": index.get_level_values(0),
        "bucket": bucket_starts_ms,
        "bucket_end": bucket_ends_ms,
        "events": groups.size().reindex(index, fill_value=0).to_numpy(),
        "incomplete": (bucket_starts_ms < scalar_ms(start)) | (bucket_ends_ms > scalar_ms(end)),
    }
    return Grouped(sel, top, series_names, index, groups, ends, columns)


def running(part: pd.DataFrame, ends: np.ndarray, agg: str) -> np.ndarray:
    """The measure over all of one series' events before each bucket end (NaN: none yet)."""
    part = part.sort_values("ts_ms")
    seen = np.searchsorted(part["ts_ms"].to_numpy(), ends, side="left")
    if agg == "count":
        return seen.astype(float)
    if agg == "traces":
        firsts = np.sort(part.groupby("trace_id")["ts_ms"].min().to_numpy())
        return np.searchsorted(firsts, ends, side="left").astype(float)
    v = part["v"].to_numpy(float)
    run = {
        "sum": np.cumsum(v),
        "avg": np.cumsum(v) / np.arange(1, len(v) + 1),
        "min": np.minimum.accumulate(v),
        "max": np.maximum.accumulate(v),
    }[agg]
    return np.where(seen > 0, run[np.maximum(seen - 1, 0)], np.nan)


def rolling_mean(values: np.ndarray, n: int) -> np.ndarray:
    out = np.full(len(values), np.nan)
    for i in range(len(values)):
        window = values[max(0, i - n + 1) : i + 1]
        window = window[~np.isnan(window)]
        if len(window):
            out[i] = window.mean()
    return out


def as_ms_columns(got: pd.DataFrame) -> dict[str, list | np.ndarray]:
    """A result frame's columns with buckets as epoch ms, for comparing with expect()."""
    return {
        "series": got["series"].astype(object).tolist(),
        "bucket": to_ms(got["bucket"]).tolist() if len(got) else [],
        "bucket_end": to_ms(got["bucket_end"]).tolist() if len(got) else [],
        "value": got["value"].to_numpy(float),
        "events": got["events"].astype("int64").tolist(),
        "incomplete": got["incomplete"].astype(bool).tolist(),
    }


def assert_same(got: pd.DataFrame, exp: pd.DataFrame, tz: str, *, lead_free: bool = False) -> None:
    """Row by row: the same buckets and series in the same order, values within tolerance.

    lead_free: where pandas has no value yet (a running sum before the first value) the result
    may hold 0 or nothing.
    """
    assert list(got.columns) == COLUMNS
    if len(got):
        assert str(got["bucket"].dt.tz) == tz and str(got["bucket_end"].dt.tz) == tz
    actual = as_ms_columns(got)
    assert len(got) == len(exp), (len(got), len(exp))
    for column in ("series", "bucket", "bucket_end", "events", "incomplete"):
        a, e = actual[column], exp[column].tolist()
        if a != e:
            i = next(i for i, (x, y) in enumerate(zip(a, e, strict=True)) if x != y)
            row = pd.DataFrame(actual).iloc[i]
            pytest.fail(f"{column} differs at row {i}:\n{row}\nexpected\n{exp.iloc[i]}")
    a, e = actual["value"], exp["value"].to_numpy(float)
    if lead_free:
        lead = np.isnan(e)
        assert np.all(np.isnan(a[lead]) | (a[lead] == 0))
        a, e = a[~lead], e[~lead]
    np.testing.assert_allclose(a, e, rtol=1e-9, atol=1e-9, equal_nan=True)


def check(
    gen: tuple[Store, pd.DataFrame], q: SeriesQuery, *, bucket: str | None = None
) -> analytics.SeriesResult:
    """Run series() and compare its frame with pandas; returns the result."""
    store, ev = gen
    result = series(store, q)
    start, end = (q.start, q.end) if q.start and q.end else derived_range(ev, q)
    assert (result.start, result.end) == (start, end)
    used = bucket or q.bucket
    assert result.bucket == used
    exp, _ = expect(ev, q, used, start, end)
    assert_same(result.frame, exp, q.tz, lead_free=q.cumulative and q.agg == "sum")
    return result


# -- every aggregation x bucket x split -----------------------------------------------------------


def matrix_query(agg: str, bucket: str, split: str, ranges, metric: str, **kw) -> SeriesQuery:
    """A query over ranges[0], or the short ranges[1] for 1m buckets; metric only if needed."""
    start, end = ranges[1] if bucket == "1m" else ranges[0]
    return SeriesQuery(
        agg=agg,
        metric=metric if agg in analytics.METRIC_AGGREGATIONS else None,
        bucket=bucket,
        tz=kw.pop("tz", AMS),
        split=split,
        start=start,
        end=end,
        **kw,
    )


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("bucket", MATRIX_BUCKETS)
@pytest.mark.parametrize("agg", AGGREGATIONS)
def test_autumn_matches_pandas(gen, agg, bucket, split):
    """Ten days over the autumn DST change in Amsterdam: every bucket and value agrees."""
    check(gen, matrix_query(agg, bucket, split, (AUTUMN, AUTUMN_SHORT), "amount"))


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("bucket", MATRIX_BUCKETS)
@pytest.mark.parametrize("agg", ["count", "sum", "p99"])
def test_spring_matches_pandas(gen, agg, bucket, split):
    """Days over the spring DST change (a negative-valued metric) agree with pandas."""
    check(gen, matrix_query(agg, bucket, split, (SPRING, SPRING_SHORT), "score", top=4))


@pytest.mark.parametrize("bucket", MATRIX_BUCKETS)
@pytest.mark.parametrize("agg", ["count", "p95"])
@pytest.mark.parametrize("tz", ["UTC", "Asia/Kolkata"])
def test_other_zones_match_pandas(gen, tz, agg, bucket):
    """Other zones, including a half-hour offset, bucket by the same rules."""
    check(gen, matrix_query(agg, bucket, "event_type", (AUTUMN, AUTUMN_SHORT), "amount", tz=tz))


@pytest.mark.parametrize("bucket", ["15m", "1h", "1d", "1w"])
@pytest.mark.parametrize("agg", ["count", "avg", "p90"])
def test_derived_range_matches_pandas(gen, agg, bucket):
    """Without start and end the range is [first event, last event + 1 ms)."""
    q = SeriesQuery(agg=agg, metric="latency_ms", bucket=bucket, tz=AMS, datasets=("app",))
    frame = check(gen, q).frame
    assert frame.groupby("series")["incomplete"].first().any()
    assert frame.groupby("series")["incomplete"].last().all()


def test_generated_data_covers_the_cases(gen):
    """The matrix above sees other, (none), empty buckets and both repeated hours."""
    store, ev = gen
    split = series(store, matrix_query("count", "1d", "detail:product", (AUTUMN,), ""))
    assert {"(none)", "other"} <= set(split.frame["series"])
    counts = series(store, matrix_query("count", "15m", "event_type", (AUTUMN,), "")).frame
    assert (counts["value"] == 0).any() and (counts["value"] > 0).any()
    avgs = series(store, matrix_query("avg", "1h", "event_type", (AUTUMN,), "amount")).frame
    assert avgs["value"].isna().any() and avgs["value"].notna().any()
    short = series(store, matrix_query("count", "1h", "none", (AUTUMN,), "", tz=AMS)).frame
    repeated = short[short["bucket"].map(lambda b: b.strftime("%m-%d %H")) == "10-27 02"]
    assert len(repeated) == 2 and (repeated["value"] > 10).all()
    assert ev["ts"].isna().sum() == 4


def test_series_frame_is_sorted_by_series_then_bucket(gen):
    """Rows come ordered by series name, then bucket."""
    store, _ = gen
    frame = series(store, matrix_query("count", "1d", "detail:product", (AUTUMN,), "")).frame
    keys = list(zip(frame["series"], frame["bucket"], strict=True))
    assert keys == sorted(keys)


# -- daylight saving time -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dst_store(tmp_path_factory):
    """Events in Amsterdam's repeated hour (2024-10-27) and skipped hour (2024-03-31)."""
    times = [
        ms(2024, 10, 27, 0, 10),  # 02:10 CEST
        ms(2024, 10, 27, 0, 50),  # 02:50 CEST
        ms(2024, 10, 27, 1, 5),  # 02:05 CET
        ms(2024, 10, 27, 1, 20),  # 02:20 CET
        ms(2024, 10, 27, 1, 59, 59) + 999,  # 02:59:59.999 CET
        ms(2024, 10, 27, 2, 0),  # 03:00 CET
        ms(2024, 3, 31, 0, 30),  # 01:30 CET
        ms(2024, 3, 31, 1, 0),  # 03:00 CEST
        ms(2024, 3, 31, 1, 30),  # 03:30 CEST
    ]
    bodies = [
        {"trace_id": f"t{i}", "event_type": "tick", "metrics": {}, "timestamp": t}
        for i, t in enumerate(times)
    ]
    with store_holding(tmp_path_factory.mktemp("dst"), {"small": bodies}) as s:
        yield s


def local_rows(frame: pd.DataFrame) -> list[tuple[str, str, int]]:
    return [
        (b.isoformat(), e.isoformat(), int(n))
        for b, e, n in zip(frame["bucket"], frame["bucket_end"], frame["value"], strict=True)
    ]


def test_repeated_hour_is_two_hour_buckets(dst_store):
    """In the hour Amsterdam repeats, 1h buckets are two real hours, both labelled 02:00."""
    q = SeriesQuery(
        bucket="1h", tz=AMS, split="none", start=ams(2024, 10, 27, 1), end=ams(2024, 10, 27, 4)
    )
    assert local_rows(series(dst_store, q).frame) == [
        ("2024-10-27T01:00:00+02:00", "2024-10-27T02:00:00+02:00", 0),
        ("2024-10-27T02:00:00+02:00", "2024-10-27T02:00:00+01:00", 2),
        ("2024-10-27T02:00:00+01:00", "2024-10-27T03:00:00+01:00", 3),
        ("2024-10-27T03:00:00+01:00", "2024-10-27T04:00:00+01:00", 1),
    ]


def test_repeated_hour_in_15_minute_buckets(dst_store):
    """Eight 15-minute buckets cover the repeated hour, each 15 real minutes long."""
    q = SeriesQuery(
        bucket="15m",
        tz=AMS,
        split="none",
        start=ams(2024, 10, 27, 2),
        end=ams(2024, 10, 27, 3, fold=1),
    )
    frame = series(dst_store, q).frame
    assert len(frame) == 8
    assert ((frame["bucket_end"] - frame["bucket"]) == pd.Timedelta(minutes=15)).all()
    assert [b.strftime("%H:%M%z") for b in frame["bucket"]] == [
        "02:00+0200",
        "02:15+0200",
        "02:30+0200",
        "02:45+0200",
        "02:00+0100",
        "02:15+0100",
        "02:30+0100",
        "02:45+0100",
    ]
    assert frame["value"].tolist() == [1, 0, 0, 1, 1, 1, 0, 1]


def test_fall_back_day_is_25_hours(dst_store):
    """The 1d bucket of 2024-10-27 in Amsterdam runs from local midnight to midnight: 25 h."""
    q = SeriesQuery(
        bucket="1d", tz=AMS, split="none", start=ams(2024, 10, 26), end=ams(2024, 10, 29)
    )
    frame = series(dst_store, q).frame
    assert local_rows(frame) == [
        ("2024-10-26T00:00:00+02:00", "2024-10-27T00:00:00+02:00", 0),
        ("2024-10-27T00:00:00+02:00", "2024-10-28T00:00:00+01:00", 6),
        ("2024-10-28T00:00:00+01:00", "2024-10-29T00:00:00+01:00", 0),
    ]
    lengths = (frame["bucket_end"] - frame["bucket"]).tolist()
    assert lengths == [pd.Timedelta(hours=24), pd.Timedelta(hours=25), pd.Timedelta(hours=24)]


def test_spring_forward_day_is_23_hours_and_skips_02(dst_store):
    """On 2024-03-31 the day is 23 hours and no 1h bucket starts at 02:00 local."""
    day = SeriesQuery(
        bucket="1d", tz=AMS, split="none", start=ams(2024, 3, 31), end=ams(2024, 4, 1)
    )
    frame = series(dst_store, day).frame
    assert (frame["bucket_end"] - frame["bucket"]).tolist() == [pd.Timedelta(hours=23)]
    hours = SeriesQuery(
        bucket="1h", tz=AMS, split="none", start=ams(2024, 3, 31, 1), end=ams(2024, 3, 31, 4)
    )
    assert local_rows(series(dst_store, hours).frame) == [
        ("2024-03-31T01:00:00+01:00", "2024-03-31T03:00:00+02:00", 1),
        ("2024-03-31T03:00:00+02:00", "2024-03-31T04:00:00+02:00", 2),
    ]


def test_week_starts_monday_and_month_on_the_first(dst_store):
    """Calendar buckets start at local midnight on a Monday and on the 1st."""
    week = SeriesQuery(
        bucket="1w", tz=AMS, split="none", start=ams(2024, 10, 27), end=ams(2024, 10, 29)
    )
    assert local_rows(series(dst_store, week).frame) == [
        ("2024-10-21T00:00:00+02:00", "2024-10-28T00:00:00+01:00", 6),
        ("2024-10-28T00:00:00+01:00", "2024-11-04T00:00:00+01:00", 0),
    ]
    month = SeriesQuery(
        bucket="1mo", tz=AMS, split="none", start=ams(2024, 3, 20), end=ams(2024, 4, 2)
    )
    assert local_rows(series(dst_store, month).frame) == [
        ("2024-03-01T00:00:00+01:00", "2024-04-01T00:00:00+02:00", 3),
        ("2024-04-01T00:00:00+02:00", "2024-05-01T00:00:00+02:00", 0),
    ]


def test_half_hour_dst_shift_keeps_every_event(store, write_bodies, load):
    """1h buckets in Australia/Lord_Howe across its 30-minute DST change count every event."""
    start = ms(2024, 4, 6, 12)  # the change is at 15:00 UTC: 02:00 +11:00 -> 01:30 +10:30
    bodies = [
        {"trace_id": "t", "event_type": "tick", "metrics": {}, "timestamp": start + i * 600_000}
        for i in range(60)
    ]
    load(write_bodies(bodies), "lh")
    q = SeriesQuery(bucket="1h", tz="Australia/Lord_Howe", split="none")
    assert series(store, q).frame["value"].sum() == 60


def test_weeks_start_on_monday_where_a_zone_skipped_a_day(store, write_bodies, load):
    """Pacific/Apia skipped 2011-12-30: weeks after it still start on a Monday (DuckDB's own
    zone bucketing counted 7-day steps from a 2000 origin, and began them on Tuesdays)."""
    apia = ZoneInfo("Pacific/Apia")
    times = [dt.datetime(2019, 12, d, 12, tzinfo=apia) for d in (29, 30, 31)]
    bodies = [
        {"trace_id": "t", "event_type": "tick", "metrics": {}, "timestamp": scalar_ms(t)}
        for t in times
    ]
    load(write_bodies(bodies), "apia")
    q = SeriesQuery(bucket="1w", tz="Pacific/Apia", split="none")
    frame = series(store, q).frame
    weeks = zip(frame["bucket"], frame["value"], strict=True)
    assert [(b.strftime("%a %Y-%m-%d %H:%M"), n) for b, n in weeks] == [
        ("Mon 2019-12-23 00:00", 1),
        ("Mon 2019-12-30 00:00", 2),
    ]


def test_a_repeated_midnight_keeps_every_event(store, write_bodies, load):
    """Havana turned 01:00 back to 00:00 on 2020-11-01, so that day's midnight came twice.
    Day and month buckets count every event of that hour (the month's lost them)."""
    start = ms(2020, 11, 1, 3, 30)  # 23:30 CDT on Oct 31; 04:00 UTC is the first 00:00
    bodies = [
        {"trace_id": "t", "event_type": "tick", "metrics": {}, "timestamp": start + i * 600_000}
        for i in range(18)  # to 06:20 UTC, 01:20 CST
    ]
    load(write_bodies(bodies), "havana")
    for bucket in ("1d", "1w", "1mo"):
        q = SeriesQuery(bucket=bucket, tz="America/Havana", split="none")
        assert series(store, q).frame["value"].sum() == 18, bucket
    day = SeriesQuery(bucket="1d", tz="America/Havana", split="none")
    assert local_rows(series(store, day).frame) == [
        ("2020-10-31T00:00:00-04:00", "2020-11-01T00:00:00-04:00", 3),
        ("2020-11-01T00:00:00-04:00", "2020-11-02T00:00:00-05:00", 15),
    ]


# -- edge cases -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def empty_store() -> Iterator[Store]:
    """A store without events, for the tests that only query one (no query writes)."""
    with Store(":memory:") as s:
        yield s


def test_empty_store_gives_an_empty_result(empty_store):
    """No events: an empty frame with the columns, no range, no previous."""
    result = series(empty_store, SeriesQuery(previous=True))
    assert result.empty
    assert list(result.frame.columns) == COLUMNS
    assert (result.start, result.end, result.previous) == (None, None, None)
    assert headline(empty_store, SeriesQuery()) == {}


def test_empty_selection_without_range(gen):
    """Filters that match nothing give an empty frame and no range."""
    store, _ = gen
    result = series(store, SeriesQuery(event_types=("no_such_type",)))
    assert result.empty and list(result.frame.columns) == COLUMNS
    assert result.start is None and result.end is None


def test_empty_selection_with_range(gen):
    """A range with no matching events has no series; previous is empty too."""
    store, _ = gen
    q = SeriesQuery(
        start=utc(2024, 6, 1), end=utc(2024, 6, 2), bucket="1h", previous=True, split="none"
    )
    result = series(store, q)
    assert result.empty and list(result.frame.columns) == COLUMNS
    assert result.previous is not None and result.previous.empty
    assert headline(store, q)["current"] == {"events": 0, "traces": 0, "value": None}
    assert leaderboard(store, q, "product").empty


def test_exactly_one_event(store, write_bodies, load):
    """One event: one 1m bucket, flagged incomplete, holding the event's own value."""
    ts = ms(2024, 5, 1, 12, 30, 15) + 250
    load(
        write_bodies([{"trace_id": "t", "event_type": "x", "metrics": {"m": 4.5}, "timestamp": ts}])
    )
    result = series(store, SeriesQuery())
    assert result.bucket == "1m" and not result.notes
    assert result.start == utc(2024, 5, 1, 12, 30, 15, 250_000)
    assert result.end == utc(2024, 5, 1, 12, 30, 15, 251_000)
    assert local_rows(result.frame) == [
        ("2024-05-01T12:30:00+00:00", "2024-05-01T12:31:00+00:00", 1)
    ]
    assert result.frame["incomplete"].tolist() == [True]
    assert result.frame["series"].tolist() == ["x"]
    for agg in analytics.METRIC_AGGREGATIONS:
        assert series(store, SeriesQuery(agg=agg, metric="m")).frame["value"].tolist() == [4.5]


def test_metric_only_some_events_have(gen):
    """A metric aggregation keeps only events with the metric; count keeps them all."""
    store, ev = gen
    start, end = AUTUMN
    q = SeriesQuery(agg="avg", metric="amount", bucket="1d", tz=AMS, start=start, end=end)
    frame = series(store, q).frame
    assert set(frame["series"]) == {"add_to_cart", "llm_call"}
    in_range = select(ev, SeriesQuery(), start, end)
    with_amount = metric_of(in_range, "amount").notna()
    assert frame["events"].sum() == with_amount.sum() < len(in_range)
    assert frame["value"].isna().sum() == (frame["events"] == 0).sum()
    counted = series(store, SeriesQuery(bucket="1d", tz=AMS, start=start, end=end)).frame
    assert counted["value"].sum() == len(in_range)


def test_without_timestamp_counts_untimed_matches(gen):
    """Events without a timestamp are counted aside, under the same filters."""
    store, ev = gen
    untimed = ev[ev["ts"].isna()]
    assert series(store, SeriesQuery(datasets=("web",))).without_timestamp == len(untimed)
    q = SeriesQuery(datasets=("web",), event_types=("page_view",))
    assert series(store, q).without_timestamp == (untimed["event_type"] == "page_view").sum()
    assert series(store, SeriesQuery(datasets=("app",))).without_timestamp == 0


# -- filters --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"), [("country", "NL"), ("product", "sku-00"), ("no_such_key", "x")]
)
@pytest.mark.parametrize("op", ["=", "!="])
def test_detail_filters(gen, key, op, value):
    """Detail = and != agree with pandas; an event without the key counts as !=."""
    start, end = AUTUMN
    q = SeriesQuery(
        bucket="1d", tz=AMS, start=start, end=end, details=(DetailFilter(key, op, value),)
    )
    if key == "no_such_key" and op == "=":
        assert series(gen[0], q).empty
        return
    check(gen, q)


def test_detail_not_equal_includes_events_without_the_key(gen):
    """= and != on one detail split every event in the range between them."""
    store, ev = gen
    start, end = AUTUMN

    def total(op: str) -> int:
        q = SeriesQuery(
            split="none", bucket="1d", start=start, end=end,
            details=(DetailFilter("country", op, "NL"),),
        )  # fmt: skip
        return int(series(store, q).frame["value"].sum())

    in_range = select(ev, SeriesQuery(), start, end)
    missing = detail_of(in_range, "country").isna().sum()
    assert missing > 0 and in_range["details"].isna().sum() > 0
    assert total("=") + total("!=") == len(in_range)
    assert total("!=") == (detail_of(in_range, "country") != "NL").sum()


def test_two_detail_filters_combine(gen):
    """Several detail filters must all hold."""
    start, end = AUTUMN
    details = (DetailFilter("country", "!=", "US"), DetailFilter("product", "=", "sku-01"))
    check(gen, SeriesQuery(bucket="1d", tz=AMS, start=start, end=end, details=details))


@pytest.mark.parametrize("op", analytics.THRESHOLD_OPS)
def test_thresholds(gen, op):
    """A metric threshold agrees with pandas; events without the metric never pass."""
    start, end = AUTUMN
    value = 20.0 if op in ("=", "!=") else 50.0
    q = SeriesQuery(
        bucket="1d", tz=AMS, start=start, end=end, thresholds=(Threshold("amount", op, value),)
    )
    result = check(gen, q)
    assert set(result.frame["series"]) <= {"add_to_cart", "llm_call"}


def test_thresholds_combine_with_a_metric_aggregation(gen):
    """Two thresholds on different metrics and an aggregation of a third all apply."""
    start, end = AUTUMN
    q = SeriesQuery(
        agg="median",
        metric="latency_ms",
        bucket="1d",
        tz=AMS,
        start=start,
        end=end,
        thresholds=(Threshold("amount", ">=", 10), Threshold("latency_ms", "<", 1000)),
    )
    result = check(gen, q)
    assert set(result.frame["series"]) == {"llm_call"}


@pytest.mark.parametrize(
    ("datasets", "types"),
    [
        (("web",), ()),
        (("app", "web"), ()),
        ((), ("search",)),
        (("app",), ("add_to_cart", "page_view")),
        (("spring", "web"), ("llm_call",)),
    ],
)
def test_dataset_and_type_filters(gen, datasets, types):
    """Dataset and event type filters agree with pandas."""
    q = SeriesQuery(bucket="1w", tz=AMS, datasets=datasets, event_types=types, split="none")
    if "spring" in datasets:
        q = SeriesQuery(
            bucket="1d", tz=AMS, datasets=datasets, event_types=types, start=SPRING[0],
            end=AUTUMN[1],
        )  # fmt: skip
    check(gen, q)


# -- incomplete, previous, cumulative, rolling ----------------------------------------------------


HOURS = [
    {"trace_id": t, "event_type": "x", "metrics": {"m": m}, "timestamp": ts}
    for t, m, ts in [
        ("a", 3.0, ms(2024, 5, 1, 10, 5)),
        ("b", 1.0, ms(2024, 5, 1, 11, 30)),
        ("a", 2.0, ms(2024, 5, 1, 13, 30)),
    ]
]


@pytest.fixture(scope="module")
def hours_store(tmp_path_factory):
    """Events at 10:05, 11:30, 13:30 UTC on 2024-05-01 (traces a, b, a; m = 3, 1, 2)."""
    with store_holding(tmp_path_factory.mktemp("hours"), {"small": HOURS}) as s:
        yield s


@pytest.mark.parametrize(
    ("start", "end", "flags"),
    [
        (utc(2024, 5, 1, 10, 20), utc(2024, 5, 1, 13, 40), [True, False, False, True]),
        (utc(2024, 5, 1, 10), utc(2024, 5, 1, 14), [False, False, False, False]),
        (utc(2024, 5, 1, 10), utc(2024, 5, 1, 13, 0, 0, 1000), [False, False, False, True]),
        (None, None, [True, False, False, True]),
    ],
)
def test_incomplete_flags(hours_store, start, end, flags):
    """Buckets the range only partly covers are incomplete, at either end."""
    q = SeriesQuery(bucket="1h", start=start, end=end)
    frame = series(hours_store, q).frame
    assert frame["incomplete"].tolist() == flags
    assert frame["bucket"].iloc[0] == pd.Timestamp("2024-05-01 10:00", tz="UTC")


def test_previous_period_alignment(store, write_bodies, load):
    """previous holds the equally long period before, moved onto the current buckets."""
    early = {"trace_id": "p", "event_type": "x", "metrics": {}, "timestamp": ms(2024, 5, 1, 7, 10)}
    load(write_bodies([*HOURS, early]))
    q = SeriesQuery(bucket="1h", start=utc(2024, 5, 1, 10), end=utc(2024, 5, 1, 14), previous=True)
    result = series(store, q)
    prev = result.previous
    assert list(prev.columns) == [
        "bucket", "bucket_end", "previous_bucket", "series", "value", "events", "incomplete"
    ]  # fmt: skip
    assert prev["bucket"].tolist() == result.frame["bucket"].tolist()
    assert [b.hour for b in prev["previous_bucket"]] == [6, 7, 8, 9]
    assert prev["value"].tolist() == [0, 1, 0, 0]


@pytest.mark.parametrize(
    ("agg", "bucket", "split"),
    [
        ("count", "1d", "event_type"),
        ("traces", "1h", "detail:product"),
        ("p90", "1d", "none"),
        ("sum", "15m", "event_type"),
    ],
)
def test_previous_matches_pandas(gen, agg, bucket, split):
    """The previous period agrees with pandas over the span before, aligned by position."""
    store, ev = gen
    # Seven local days holding the 25-hour day; UTC datetimes so that Python's end - start is
    # the real span (see test_previous_period_does_not_depend_on_tzinfo).
    start, end = ams(2024, 10, 24).astimezone(UTC), ams(2024, 10, 31).astimezone(UTC)
    q = SeriesQuery(
        agg=agg,
        metric="amount" if agg in analytics.METRIC_AGGREGATIONS else None,
        bucket=bucket,
        tz=AMS,
        split=split,
        start=start,
        end=end,
        previous=True,
    )
    result = series(store, q)
    now, top = expect(ev, q, bucket, start, end)
    assert_same(result.frame, now, AMS)
    span = end - start
    before, _ = expect(ev, q, bucket, start - span, start, top=top)
    rows = []
    for name, part in before.groupby("series", sort=True):
        current = now[now["series"] == name].reset_index(drop=True)
        part = part.reset_index(drop=True).head(len(current))
        part = part.assign(previous_bucket=part["bucket"], bucket=current["bucket"].head(len(part)))
        rows.append(part.assign(bucket_end=current["bucket_end"].head(len(part))))
    exp = pd.concat(rows, ignore_index=True)
    prev = result.previous
    assert prev.columns.tolist()[:3] == ["bucket", "bucket_end", "previous_bucket"]
    assert_same(prev.drop(columns=["previous_bucket"]), exp[COLUMNS], AMS)
    assert to_ms(prev["previous_bucket"]).tolist() == exp["previous_bucket"].tolist()
    if bucket == "1d":  # 7 local days are 169 hours, so the period before starts at 23:00
        assert len(exp) < len(before)


def test_previous_period_does_not_depend_on_tzinfo(gen):
    """The same instants as Amsterdam or as UTC datetimes give the same previous period."""
    store, _ = gen
    local = (ams(2024, 10, 24), ams(2024, 10, 31))  # 169 real hours
    results = []
    for start, end in (local, tuple(t.astimezone(UTC) for t in local)):
        q = SeriesQuery(bucket="1h", tz=AMS, split="none", start=start, end=end, previous=True)
        results.append((series(store, q).previous, headline(store, q)))
    pd.testing.assert_frame_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]


def test_range_inside_the_repeated_hour(dst_store):
    """02:30 CEST to 02:10 CET (fold=1) is a valid 40-minute range."""
    start, end = ams(2024, 10, 27, 2, 30), ams(2024, 10, 27, 2, 10, fold=1)
    assert end.astimezone(UTC) - start.astimezone(UTC) == dt.timedelta(minutes=40)
    q = SeriesQuery(bucket="5m", tz=AMS, split="none", start=start, end=end)
    assert series(dst_store, q).frame["value"].sum() == 2  # 02:50 CEST and 02:05 CET


@pytest.mark.parametrize("split", ["event_type", "detail:product"])
@pytest.mark.parametrize(
    "agg",
    [
        "count",
        "traces",
        "sum",
        "avg",
        pytest.param("min"),
        pytest.param("max"),
    ],
)
def test_cumulative_matches_pandas(gen, agg, split):
    """Cumulative values cover everything from the range start to each bucket's end."""
    check(gen, matrix_query(agg, "1h", split, (AUTUMN,), "amount", cumulative=True))


def test_cumulative_traces_counts_each_trace_once(hours_store):
    """Cumulative traces are distinct traces so far, not a sum of per-bucket counts."""
    q = SeriesQuery(agg="traces", bucket="1h", cumulative=True)
    assert series(hours_store, q).frame["value"].tolist() == [1, 2, 2, 2]


@pytest.mark.parametrize(
    ("agg", "values"),
    [
        ("count", [1, 2]),
        ("sum", [3, 4]),
        ("avg", [3, 2]),
        ("min", [3, 1]),
        ("max", [3, 3]),
    ],
)
def test_cumulative_without_gaps(hours_store, agg, values):
    """Running count, sum, average, min and max over buckets that all hold events."""
    q = SeriesQuery(
        agg=agg, metric="m", bucket="1h", cumulative=True, end=utc(2024, 5, 1, 12)
    )  # 10:05 and 11:30
    assert series(hours_store, q).frame["value"].tolist() == values


@pytest.mark.parametrize(("agg", "values"), [("min", [3, 1, 1, 1]), ("max", [3, 3, 3, 3])])
def test_cumulative_min_max_carry_over_empty_buckets(hours_store, agg, values):
    """An empty bucket after values keeps the running min or max (10:05=3, 11:30=1, 13:30=2)."""
    q = SeriesQuery(agg=agg, metric="m", bucket="1h", cumulative=True)
    assert series(hours_store, q).frame["value"].tolist() == values


@pytest.mark.parametrize("agg", ["median", "p90", "p95", "p99"])
def test_cumulative_percentile_is_refused(hours_store, agg):
    """Percentiles cannot be accumulated bucket by bucket: QueryError."""
    with pytest.raises(QueryError, match="cumulative"):
        series(hours_store, SeriesQuery(agg=agg, metric="m", cumulative=True))


@pytest.mark.parametrize("rolling", [3, 24])
@pytest.mark.parametrize("agg", ["count", "avg", "p90"])
def test_rolling_mean_matches_pandas(gen, agg, rolling):
    """rolling=N averages each series over its last N buckets (empty metric buckets skipped)."""
    check(gen, matrix_query(agg, "1h", "event_type", (AUTUMN,), "amount", rolling=rolling))


def test_rolling_one_is_off(gen):
    """rolling 0 and 1 give the plain series."""
    store, _ = gen
    plain = series(store, matrix_query("avg", "1h", "none", (AUTUMN,), "amount")).frame
    for n in (0, 1):
        frame = series(
            store, matrix_query("avg", "1h", "none", (AUTUMN,), "amount", rolling=n)
        ).frame
        pd.testing.assert_frame_equal(frame, plain)


# -- split by a detail: top N, other, (none) ------------------------------------------------------


@pytest.fixture(scope="module")
def plans_store(tmp_path_factory):
    """Detail 'plan': missing x5, a x4, b x3, c x2, d x1; 'tie': w x2, x x2."""
    plans = [None] * 5 + ["a"] * 4 + ["b"] * 3 + ["c"] * 2 + ["d"]
    bodies = []
    for i, plan in enumerate(plans):
        details = {"tie": "wx"[i % 2]} if i < 4 else {}
        if plan:
            details["plan"] = plan
        bodies.append(
            {"trace_id": f"t{i}", "event_type": "x", "metrics": {}, "event_details": details,
             "timestamp": ms(2024, 5, 1, 10, i)}
        )  # fmt: skip
    with store_holding(tmp_path_factory.mktemp("plans"), {"small": bodies}) as s:
        yield s


def totals(store: Store, q: SeriesQuery) -> dict[str, int]:
    frame = series(store, q).frame
    return {k: int(v) for k, v in frame.groupby("series")["value"].sum().items()}


def test_top_values_other_and_none(plans_store):
    """The top N values by events are kept (missing is '(none)'); the rest is 'other'."""
    q = SeriesQuery(split="detail:plan", top=3, bucket="1h")
    assert totals(plans_store, q) == {"(none)": 5, "a": 4, "b": 3, "other": 3}


def test_no_other_when_everything_fits(plans_store):
    """With top at least the number of values there is no 'other'."""
    q = SeriesQuery(split="detail:plan", top=5, bucket="1h")
    assert totals(plans_store, q) == {"(none)": 5, "a": 4, "b": 3, "c": 2, "d": 1}


def test_top_ties_break_by_value(plans_store):
    """Equal counts are ranked by the value itself."""
    q = SeriesQuery(split="detail:tie", top=2, bucket="1h")
    assert totals(plans_store, q) == {"(none)": 11, "w": 2, "other": 2}


def test_top_is_chosen_over_the_range(plans_store):
    """The top values are counted over the query's range only."""
    q = SeriesQuery(
        split="detail:plan", top=1, bucket="1h",
        start=utc(2024, 5, 1, 10, 5), end=utc(2024, 5, 1, 11),
    )  # fmt: skip
    assert totals(plans_store, q) == {"a": 4, "other": 6}


# -- check_query and bucket choice ----------------------------------------------------------------

START, END = utc(2024, 5, 1), utc(2024, 5, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tz": "Mars/Olympus_Mons"}, "unknown time zone"),
        ({"tz": EVIL}, "unknown time zone"),
        ({"agg": "p95"}, "needs a metric"),
        ({"agg": "sum", "metric": ""}, "needs a metric"),
        ({"agg": "mode", "metric": "m"}, "unknown aggregation"),
        ({"bucket": "2h"}, "unknown bucket"),
        ({"split": "country"}, "unknown split"),
        ({"split": "detail:"}, "unknown split"),
        ({"top": 0, "split": "detail:x"}, "top"),
        ({"start": END, "end": START}, "before its end"),
        ({"start": START, "end": START}, "before its end"),
        ({"start": dt.datetime(2024, 5, 1)}, "time zone"),
        ({"end": dt.datetime(2024, 5, 1)}, "time zone"),
        ({"start": dt.datetime(2024, 5, 1), "end": dt.datetime(2024, 5, 2)}, "time zone"),
        ({"agg": "p95", "metric": "m", "cumulative": True}, "cumulative"),
        ({"rolling": -1}, "rolling"),
        ({"details": (DetailFilter("k", "~", "v"),)}, "use = or !="),
        ({"thresholds": (Threshold("m", "=>", 1.0),)}, "unknown comparison"),
        ({"thresholds": (Threshold("m", ">", float("nan")),)}, "finite"),
        ({"thresholds": (Threshold("m", ">", float("inf")),)}, "finite"),
    ],
)
def test_check_query_errors(empty_store, kwargs, message):
    """Queries that cannot run raise QueryError naming the problem; series does too."""
    q = SeriesQuery(**kwargs)
    with pytest.raises(QueryError, match=message):
        check_query(empty_store, q)
    with pytest.raises(QueryError, match=message):
        series(empty_store, q)


@pytest.mark.parametrize(
    ("start", "end"), [(dt.datetime(2024, 5, 1), END), (START, dt.datetime(2024, 5, 2))]
)
def test_check_query_mixed_naive_and_aware(empty_store, start, end):
    """A naive start with an aware end is a QueryError, not a TypeError."""
    with pytest.raises(QueryError, match="time zone"):
        check_query(empty_store, SeriesQuery(start=start, end=end))


def test_check_query_accepts_a_valid_query(empty_store):
    """A query using every option passes."""
    check_query(
        empty_store,
        SeriesQuery(
            agg="max", metric="m", bucket="1w", tz=AMS, split="detail:k", top=3,
            datasets=("d",), event_types=("x",), start=START, end=END,
            details=(DetailFilter("k", "!=", "v"),), thresholds=(Threshold("m", "<=", 2),),
            previous=True, cumulative=True, rolling=4,
        ),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("hours", "bucket"),
    [
        (0.001, "1m"),
        (2, "1m"),
        (2.01, "5m"),
        (8, "5m"),
        (9, "15m"),
        (24, "15m"),
        (25, "1h"),
        (7 * 24, "1h"),
        (8 * 24, "1d"),
        (30 * 24, "1d"),
        (180 * 24, "1d"),
        (181 * 24, "1w"),
        (3 * 365 * 24, "1w"),
        (4 * 365 * 24, "1mo"),
    ],
)
def test_auto_bucket(hours, bucket):
    """auto picks the narrowest bucket giving a readable number of points."""
    assert auto_bucket(START, START + dt.timedelta(hours=hours)) == bucket
    assert choose_bucket("auto", START, START + dt.timedelta(hours=hours)) == (bucket, None)


def test_choose_bucket_keeps_a_bucket_within_the_limit():
    """A bucket giving at most MAX_BUCKETS points is kept without a note."""
    assert choose_bucket("1m", START, START + dt.timedelta(minutes=MAX_BUCKETS)) == ("1m", None)


def test_choose_bucket_widens_past_the_limit():
    """Past MAX_BUCKETS the next bucket that fits is used, and a note says why."""
    bucket, note = choose_bucket("1m", START, START + dt.timedelta(days=10))
    assert bucket == "5m"
    assert note == (
        "1 min buckets would give more than 5,000 points over this range; showing 5 min buckets"
    )
    assert choose_bucket("1m", START, START + dt.timedelta(days=30))[0] == "15m"


def test_series_auto_bucket(gen):
    """series resolves auto from its range and says which bucket it used."""
    store, _ = gen
    result = check(gen, SeriesQuery(tz=AMS, datasets=("spring",)), bucket="1h")
    assert result.bucket == auto_bucket(result.start, result.end) == "1h"
    short = series(store, SeriesQuery(start=AUTUMN_SHORT[0], end=AUTUMN_SHORT[1]))
    assert short.bucket == "5m" and not short.notes  # 2 h 25 min: past the 2 h of 1m


def test_series_falls_back_with_a_note(gen):
    """1h buckets over seven months give too many points: 1d buckets and a note."""
    result = check(gen, SeriesQuery(bucket="1h", tz=AMS, split="none"), bucket="1d")
    assert result.notes == [
        "1 hour buckets would give more than 5,000 points over this range; showing 1 day buckets"
    ]


def test_huge_span_does_not_crash(store, write_bodies, load):
    """A span wider than MAX_BUCKETS months gives a QueryError or few enough buckets."""
    bodies = [
        {"trace_id": "t", "event_type": "x", "metrics": {}, "timestamp": ts}
        for ts in (ms(1, 1, 2), ms(9999, 1, 1))
    ]
    load(write_bodies(bodies))
    try:
        result = series(store, SeriesQuery(bucket="1d", split="none"))
    except QueryError:
        return
    assert len(result.frame) <= MAX_BUCKETS


# -- every user value is bound --------------------------------------------------------------------

NASTY = [EVIL, "it's", 'say "hi"', "? $1 %s", "{v}", "a\\b --", "ünï ✓"]


@pytest.mark.parametrize("nasty", NASTY)
def test_user_values_are_bound(store, write_bodies, load, nasty):
    """Metric keys, detail keys and values, types and datasets with SQL in them just work."""
    bodies = [
        {
            "trace_id": nasty,
            "event_type": nasty,
            "metrics": {nasty: float(i)},
            "event_details": {nasty: "plain" if i == 2 else nasty},
            "timestamp": ms(2024, 5, 1, 10, i),
        }
        for i in range(1, 5)
    ]
    bodies.append(
        {
            "trace_id": "t",
            "event_type": "other_type",
            "metrics": {},
            "timestamp": ms(2024, 5, 1, 10),
        }
    )
    load(write_bodies(bodies), nasty)
    q = SeriesQuery(
        agg="sum",
        metric=nasty,
        bucket="1h",
        split=f"detail:{nasty}",
        datasets=(nasty,),
        event_types=(nasty,),
        details=(DetailFilter(nasty, "=", nasty),),
        thresholds=(Threshold(nasty, ">=", 1),),
    )
    frame = series(store, q).frame
    assert frame[["series", "value", "events"]].values.tolist() == [[nasty, 8.0, 3]]
    top = series(store, SeriesQuery(split=f"detail:{nasty}", top=1)).frame
    assert set(top["series"]) == {nasty, "other"}
    not_equal = SeriesQuery(split="none", details=(DetailFilter(nasty, "!=", nasty),))
    assert series(store, not_equal).frame["value"].sum() == 2
    assert headline(store, q)["current"] == {"events": 3, "traces": 1, "value": 8.0}
    board = leaderboard(store, q, nasty)
    assert board[["value", "events"]].values.tolist() == [[nasty, 3]]
    behind = traces_for(store, q, utc(2024, 5, 1), utc(2024, 5, 2), [nasty])
    assert behind["trace_id"].tolist() == [nasty]
    assert len(traces.events(store, nasty, nasty)) == 4
    assert metric_keys(store, SeriesQuery(event_types=(nasty,))) == [nasty]
    assert detail_keys(store, SeriesQuery(datasets=(nasty,))) == [nasty]
    assert event_types(store, (nasty,)) == [nasty, "other_type"]
    assert store.event_count() == 5
    assert store.scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'events'"
    )


def test_evil_time_zone_is_a_query_error(empty_store):
    """A time zone with SQL in it is only an unknown zone."""
    with pytest.raises(QueryError, match="unknown time zone"):
        local_to_instant(empty_store, dt.datetime(2024, 5, 1), EVIL)
    assert empty_store.event_count() == 0


# -- headline, leaderboard, traces ----------------------------------------------------------------


def agg_of(values: pd.Series, agg: str) -> float | None:
    values = values.dropna()
    if values.empty:
        return None
    if agg in QUANTILES:
        return float(values.quantile(QUANTILES[agg]))
    return float(getattr(values, {"avg": "mean"}.get(agg, agg))())


@pytest.mark.parametrize("agg", ["count", "traces", "sum", "avg", "min", "p95"])
def test_headline_matches_pandas(gen, agg):
    """Events, traces and the metric over the range and the period before it."""
    store, ev = gen
    start, end = ams(2024, 10, 26).astimezone(UTC), ams(2024, 10, 29).astimezone(UTC)
    q = SeriesQuery(
        agg=agg,
        metric="amount" if agg in analytics.METRIC_AGGREGATIONS else None,
        start=start,
        end=end,
        datasets=("web", "app"),
        details=(DetailFilter("country", "!=", "DE"),),
    )
    got = headline(store, q)
    span = end - start
    for name, (lo, hi) in {"current": (start, end), "previous": (start - span, start)}.items():
        sel = select(ev, q, lo, hi, with_metric=False)
        assert got[name]["events"] == len(sel) > 0
        assert got[name]["traces"] == sel["trace_id"].nunique()
        if q.uses_metric:
            assert got[name]["value"] == pytest.approx(agg_of(metric_of(sel, "amount"), agg))
        else:
            assert got[name]["value"] is None


def test_headline_derived_range(gen):
    """Without a range the headline covers first to last event; the period before is empty."""
    store, ev = gen
    got = headline(store, SeriesQuery(datasets=("spring",)))
    spring = ev[(ev["dataset"] == "spring")]
    assert got["current"]["events"] == len(spring)
    assert got["previous"] == {"events": 0, "traces": 0, "value": None}


def test_headline_compares_only_like_with_like(gen):
    """A change needs data over the whole period before: never before "all", nor when the
    period before reaches past the first event."""
    store, ev = gen
    spring = ev[ev["dataset"] == "spring"]
    first = spring["ts"].min()
    everything = headline(store, SeriesQuery(datasets=("spring",)))
    assert everything["comparable"] is False and everything["data_start"] == first
    # A day, three days after the first event: the day before is data too.
    start = first + dt.timedelta(days=3)
    day = SeriesQuery(datasets=("spring",), start=start, end=start + dt.timedelta(days=1))
    assert headline(store, day)["comparable"] is True
    # Two days from one day after the first event: the period before starts before the data.
    half = SeriesQuery(
        datasets=("spring",),
        start=first + dt.timedelta(days=1),
        end=first + dt.timedelta(days=3),
    )
    assert headline(store, half)["comparable"] is False


def test_headline_counts_what_a_metric_leaves_out(gen):
    """With a metric, a range of "all" spans the metric's events: `matching` counts all the
    filters keep, `measured` those the measure is over."""
    store, ev = gen
    q = SeriesQuery(agg="max", metric="amount", datasets=("web",))
    got = headline(store, q)
    web = ev[(ev["dataset"] == "web") & ev["ts"].notna()]
    carrying = web[metric_of(web, "amount").notna()]
    inside = web[(web["ts"] >= carrying["ts"].min()) & (web["ts"] <= carrying["ts"].max())]
    assert got["matching"] == len(web) > got["current"]["events"] == len(inside)
    assert got["measured"] == len(carrying)
    assert headline(store, SeriesQuery(datasets=("web",)))["measured"] is None


@pytest.mark.parametrize(("agg", "limit"), [("count", 10), ("avg", 5), ("p90", 100)])
def test_leaderboard_matches_pandas(gen, agg, limit):
    """A detail key's top values with events, traces, share and the metric."""
    store, ev = gen
    start, end = AUTUMN
    q = SeriesQuery(
        agg=agg,
        metric="amount" if agg in analytics.METRIC_AGGREGATIONS else None,
        start=start,
        end=end,
        event_types=("add_to_cart", "llm_call", "search"),
    )
    got = leaderboard(store, q, "product", limit)
    sel = select(ev, q, start, end, with_metric=False)
    sel = sel.assign(value=detail_of(sel, "product").fillna("(none)"), m=metric_of(sel, "amount"))
    table = sel.groupby("value").agg(events=("value", "size"), traces=("trace_id", "nunique"))
    table["share"] = table["events"] / len(sel)
    if q.uses_metric:
        table["metric"] = [agg_of(g["m"], agg) for _, g in sel.groupby("value")]
    table = table.reset_index()
    table = table.sort_values(["events", "value"], ascending=[False, True]).head(limit)
    columns = ["value", "events", "traces", "share"] + (["metric"] if q.uses_metric else [])
    assert got.columns.tolist() == columns
    assert got["value"].tolist() == table["value"].tolist()
    assert got["events"].tolist() == table["events"].tolist()
    assert got["traces"].tolist() == table["traces"].tolist()
    np.testing.assert_allclose(got["share"].to_numpy(float), table["share"].to_numpy(float))
    if q.uses_metric:
        np.testing.assert_allclose(
            got["metric"].to_numpy(float), table["metric"].to_numpy(float), equal_nan=True
        )
    assert "(none)" in got["value"].tolist()


@pytest.mark.parametrize(
    ("agg", "split", "names"),
    [
        ("count", "event_type", None),
        ("traces", "event_type", ["search", "llm_call"]),
        ("max", "detail:product", None),
        ("median", "detail:product", ["other", "(none)"]),
    ],
)
def test_traces_for_matches_pandas(gen, agg, split, names):
    """The traces behind a chart selection, one row each, highest measure first; a trace id
    in two datasets is two rows (each dataset's copy is a trace of its own)."""
    store, ev = gen
    q = SeriesQuery(
        agg=agg,
        metric="amount" if agg in analytics.METRIC_AGGREGATIONS else None,
        tz=AMS,
        split=split,
        top=3,
        start=AUTUMN[0],
        end=AUTUMN[1],
    )
    lo, hi = utc(2024, 10, 26, 12), utc(2024, 10, 27, 12)
    got = traces_for(store, q, lo, hi, names, limit=50)
    full = select(ev, q, *AUTUMN)
    _, top = label(full, q, None)
    sel = select(ev, q, lo, hi)
    labels, _ = label(sel, q, top or None)
    sel = sel.assign(series=labels, v=metric_of(sel, "amount"))
    if names:
        sel = sel[sel["series"].isin(names)]
    rows = []
    for (trace_id, dataset), part in sel.groupby(["trace_id", "dataset"]):
        measure = len(part) if agg in ("count", "traces") else agg_of(part["v"], agg)
        rows.append(
            (trace_id, len(part), part["ts"].min(), part["ts"].max(), float(measure),
             sorted(part["series"].unique()), dataset)
        )  # fmt: skip
    rows.sort(key=lambda r: (-r[4], r[2], r[0], r[6]))
    rows = rows[:50]
    assert len(got) == len(rows) > 5
    assert sel.groupby("trace_id")["dataset"].nunique().max() > 1  # the case is exercised
    assert got["trace_id"].tolist() == [r[0] for r in rows]
    assert got["dataset"].tolist() == [r[6] for r in rows]
    assert got["events"].tolist() == [r[1] for r in rows]
    assert got["first_time"].tolist() == [r[2] for r in rows]
    assert got["last_time"].tolist() == [r[3] for r in rows]
    np.testing.assert_allclose(got["value"].to_numpy(float), [r[4] for r in rows])
    assert [list(s) for s in got["series"]] == [r[5] for r in rows]


def test_keys_and_types_most_common_first(gen):
    """metric_keys, detail_keys and event_types list the commonest first, ties by name."""
    store, ev = gen
    timed = ev[ev["ts"].notna()]

    def ranked(counts: pd.Series) -> list[str]:
        return sorted(counts.index, key=lambda k: (-counts[k], k))

    app = timed[timed["dataset"] == "app"]
    metric_counts = pd.Series([k for m in app["metrics"] for k in m]).value_counts()
    assert metric_keys(store, SeriesQuery(datasets=("app",))) == ranked(metric_counts)
    search = timed[timed["event_type"] == "search"]
    detail_counts = pd.Series([k for d in search["details"] for k in (d or {})]).value_counts()
    assert detail_keys(store, SeriesQuery(event_types=("search",))) == ranked(detail_counts)
    assert event_types(store) == ranked(timed["event_type"].value_counts())
    spring = timed[timed["dataset"] == "spring"]
    assert event_types(store, ("spring",)) == ranked(spring["event_type"].value_counts())


def test_local_to_instant(empty_store):
    """A wall-clock time in a zone becomes the instant it names."""
    assert local_to_instant(empty_store, dt.datetime(2024, 6, 1, 12), AMS) == utc(2024, 6, 1, 10)
    assert local_to_instant(empty_store, dt.datetime(2024, 1, 1, 12), AMS) == utc(2024, 1, 1, 11)
    assert local_to_instant(empty_store, dt.datetime(2024, 1, 1, 12), "Asia/Kolkata") == utc(
        2024, 1, 1, 6, 30
    )
    with pytest.raises(QueryError, match="unknown time zone"):
        local_to_instant(empty_store, dt.datetime(2024, 1, 1), "Nowhere/Special")
