"""Explore benchmark: the Explore page's queries against bare DuckDB on one generated store.

    uv run python -m benchmarks.bench_explore [--events N] [--repeat R] [--workdir DIR]
                                              [--metric KEY] [--apptest] [--wait-quiet SECONDS]
                                              [--profile] [--delete-data]

1. Builds WORKDIR/explore_<N>.duckdb with N events, or reuses it when it already holds N
   events: the JSONL comes from the benchmarks' generator (benchmarks/data.py;
   WORKDIR/events_<N>.jsonl, itself reused when it holds N lines) and is loaded with
   eventlens.ingest.load_files(Store(path), [jsonl], "bench").
2. In this one process, on that store, after one untimed warm-up call each, times R calls
   (round-robin) of:
     a. series        analytics.series(store, SeriesQuery(agg="p95", metric=KEY, bucket="1h",
                      split="event_type")): the hourly p95 by event type over the whole range
     a'. baseline     the same numbers from one bare DuckDB query: time_bucket('1 hour') and
                      quantile_cont(metrics[KEY], 0.95) grouped by bucket and event_type (no
                      gap filling, no time zone handling, no range or untimed-event queries)
     b. trace list    analytics.traces_for(store, that query, bucket start, bucket end,
                      [event type]) for the busiest (bucket, event type) of the series
     b'. baseline     GROUP BY trace_id over that bucket and event type, same columns and order
     c. days in a zone analytics.series(store, SeriesQuery(agg="count", bucket="1d",
                      split="event_type", tz="Europe/Amsterdam")): events per local day
     c'. baseline     the same from one bare DuckDB query with DuckDB's own zone bucketing,
                      time_bucket(INTERVAL '1 day', timestamp, 'Europe/Amsterdam')
     c. (--apptest)   the Explore page in streamlit.testing.v1.AppTest with EVENTLENS_DB set to
                      the store: the first at.run() is reported, then R more at.run() are timed
                      (the default view, and the p95 view above given as URL parameters)
   Every result is fetched as a DataFrame, like eventlens's. The results are checked against
   the baselines (same buckets, series and values; same traces).
3. Prints the command, the machine, a table (median and best ms, the baseline's median, the
   ratio, the target and whether it is met), and where eventlens's time goes: each query of one
   more call of a and b (and of one more page rerun), timed by wrapping Store.rows/Store.df.
   --profile adds DuckDB's EXPLAIN ANALYZE of the slowest query of a and of b.

Targets: the series 150 ms per million events (150 ms at 1M, 1,500 ms at 10M); the Explore page
rerun 1,000 ms at 1M; the trace list has none.

The machine is shared: the CPU time other processes used while each row was measured is read
from /proc/stat and printed; above 10% the times are inflated.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd

from benchmarks import harness
from benchmarks.data import build_store, delete_data
from benchmarks.harness import ROOT, Calls, Judged, Query, QueryLog, Row, timed
from eventlens import analytics
from eventlens.analytics import SeriesQuery
from eventlens.store import DB_ENV, Store

SERIES_TARGET_MS_PER_MILLION = 150.0
APPTEST_TARGET_MS = 1000.0  # at 1,000,000 events
APPTEST_TARGET_EVENTS = 1_000_000
ZONE = "Europe/Amsterdam"  # row c: calendar buckets in a zone with DST


def describe_sql(sql: str) -> str:
    """A short name for a query: its first meaningful words."""
    words = " ".join(sql.split())
    if words.startswith("WITH sel AS"):
        return "bucketed series (WITH sel ... grid ... agg ... LEFT JOIN)"
    if "FROM pg_timezone_names()" in words:
        return "time zone check (pg_timezone_names)"
    if words.startswith("SELECT min(timestamp), max(timestamp)"):
        return "range: min/max(timestamp) over the filtered events"
    if "timestamp IS NULL" in words:
        return "events without a timestamp: count(*)"
    if words.startswith("SELECT trace_id, count(*)"):
        return "trace list (GROUP BY trace_id)"
    if words.startswith("SELECT count(*), count(DISTINCT trace_id),"):
        return "headline: count(*), count(DISTINCT trace_id), measure"
    return harness.short_sql(sql)


# ---------------------------------------------------------------------------------------------
# The contenders
# ---------------------------------------------------------------------------------------------


def baseline_series(con: duckdb.DuckDBPyConnection, metric: str) -> pd.DataFrame:
    return con.execute(
        """
        SELECT time_bucket(INTERVAL '1 hour', timestamp) AS bucket, event_type AS series,
               quantile_cont(metrics[?], 0.95) AS value, count(*) AS events
        FROM events
        WHERE timestamp IS NOT NULL AND metrics[?] IS NOT NULL
        GROUP BY ALL ORDER BY series, bucket
        """,
        [metric, metric],
    ).df()


def baseline_zone_days(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute(
        f"""
        SELECT time_bucket(INTERVAL '1 day', timestamp, '{ZONE}') AS bucket,
               event_type AS series, count(*) AS value, count(*) AS events
        FROM events WHERE timestamp IS NOT NULL
        GROUP BY ALL ORDER BY series, bucket
        """
    ).df()


def baseline_traces(
    con: duckdb.DuckDBPyConnection,
    metric: str,
    start: dt.datetime,
    end: dt.datetime,
    event_type: str,
) -> pd.DataFrame:
    return con.execute(
        """
        SELECT trace_id, count(*) AS events, min(timestamp) AS first_time,
               max(timestamp) AS last_time, quantile_cont(metrics[?], 0.95) AS value
        FROM events
        WHERE timestamp >= ? AND timestamp < ? AND event_type = ? AND metrics[?] IS NOT NULL
        GROUP BY trace_id ORDER BY value DESC, first_time, trace_id LIMIT 1000
        """,
        [metric, start, end, event_type, metric],
    ).df()


def _epoch_ns(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column, utc=True).map(lambda t: t.value)


def check_series(result: analytics.SeriesResult, base: pd.DataFrame) -> str:
    """Whether eventlens's non-empty buckets are the baseline's, with the same values."""
    ours = result.frame[result.frame["events"] > 0][["bucket", "series", "value", "events"]]
    ours = ours.assign(bucket=_epoch_ns(ours["bucket"]))
    theirs = base.assign(bucket=_epoch_ns(base["bucket"]))
    both = ours.merge(theirs, on=["bucket", "series"], how="outer", suffixes=("", "_b"))
    missing = both["value"].isna() & both["value_b"].notna()
    extra = both["value_b"].isna() & both["value"].notna()
    diff = (both["value"] - both["value_b"]).abs().max()
    events_off = (both["events"] != both["events_b"]).sum()
    ok = not missing.any() and not extra.any() and events_off == 0 and diff <= 1e-9
    empty = len(result.frame) - len(ours)
    return (
        f"{'ok' if ok else 'MISMATCH'}: {len(ours):,} non-empty (bucket, series) rows vs "
        f"{len(theirs):,} in the baseline, {missing.sum()} missing, {extra.sum()} extra, "
        f"{events_off} event counts differ, max |value diff| {diff:.3g}; eventlens adds "
        f"{empty:,} empty rows ({result.frame['series'].nunique()} series x "
        f"{result.frame['bucket'].nunique():,} buckets)"
    )


def check_traces(ours: pd.DataFrame, base: pd.DataFrame) -> str:
    same = (
        len(ours) == len(base)
        and ours["trace_id"].tolist() == base["trace_id"].tolist()
        and ours["events"].tolist() == base["events"].tolist()
        and (ours["value"] - base["value"]).abs().max() <= 1e-9
    )
    return (
        f"{'ok' if same else 'MISMATCH'}: {len(ours):,} traces vs {len(base):,} in the baseline"
        f"{', same ids, order, event counts and values' if same else ''}"
    )


# ---------------------------------------------------------------------------------------------
# AppTest
# ---------------------------------------------------------------------------------------------


def apptest_rows(
    db: Path, q: SeriesQuery, repeat: int, log: QueryLog
) -> tuple[list[Row], list[str], list[tuple[str, float, list[Query]]]]:
    """The Explore page's first run and `repeat` reruns, for the default view and for q; and
    the queries of one more (untimed) rerun of each."""
    from streamlit.testing.v1 import AppTest

    os.environ[DB_ENV] = str(db)
    views = [
        ("page rerun, default view", {}),
        (
            f"page rerun, {q.agg} {q.metric} {q.bucket}",
            {"agg": q.agg, "metric": q.metric or "", "bucket": q.bucket},
        ),
    ]
    import streamlit as st

    def cold_run(at: AppTest) -> Callable[[], object]:
        """A rerun with the page's query cache emptied first: every query runs again."""

        def run() -> object:
            st.cache_data.clear()
            return at.run()

        return run

    rows, notes, breakdowns = [], [], []
    for label, params in views:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
        at.query_params.update(params)
        row = Row(label)
        row.first = timed(row, at.run, record=False)
        problems = [str(e.value) for e in at.exception] + [w.value for w in at.warning]
        for _ in range(repeat):
            timed(row, at.run)
            problems += [str(e.value) for e in at.exception]
        metrics = ", ".join(f"{m.label} {m.value}" for m in at.metric)
        notes.append(
            f"{label}: first run {row.first * 1000:,.0f} ms; page shows {metrics}"
            + (f"; PROBLEMS: {' | '.join(problems)}" if problems else "")
        )
        rows.append(row)
        cold = Row(label.replace("page rerun", "page run, cache emptied"))
        cold.first = timed(cold, cold_run(at), record=False)
        for _ in range(repeat):
            timed(cold, cold_run(at))
        rows.append(cold)
        breakdowns.append((label, *log.capture(at.run)))
        breakdowns.append((cold.name, *log.capture(cold_run(at))))
    return rows, notes, breakdowns


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    harness.add_store_options(
        parser,
        "before the timed calls (and before the page runs)",
        "the series and of the trace list",
    )
    parser.add_argument(
        "--metric",
        default="latency_ms",
        help="the metric of the p95 series (default latency_ms: search, llm_call and "
        "thumbs_up_down events carry it)",
    )
    parser.add_argument(
        "--apptest",
        action="store_true",
        help="also time the Explore page in Streamlit's AppTest (first run, then reruns)",
    )
    args = parser.parse_args(argv)
    n, workdir = args.events, args.workdir.resolve()
    if n < 1 or args.repeat < 1:
        parser.error("--events and --repeat must be at least 1")

    harness.print_header("explore", __spec__.name, argv)
    started_all = time.perf_counter()
    db, _, _ = build_store(n, workdir, "explore")

    store = Store(db)
    log = QueryLog()
    con = store.cursor()  # the baselines' own cursor on the same database
    q = SeriesQuery(agg="p95", metric=args.metric, bucket="1h", split="event_type")
    if args.metric not in analytics.metric_keys(store, SeriesQuery()):
        raise SystemExit(f"no events carry the metric {args.metric!r}")
    print(
        f"{n:,} events; series: {q.agg} of {q.metric}, {q.bucket} buckets, split by "
        f"{q.split}, whole range, UTC; {args.repeat} timed call(s) per row after one "
        "untimed warm-up, round-robin, in one process\n"
    )

    # The busiest (bucket, event type) of the series picks the trace list's bucket.
    first = analytics.series(store, q)
    busiest = first.frame.sort_values(["events", "bucket"], ascending=[False, True]).iloc[0]
    t_start = busiest["bucket"].to_pydatetime()
    t_end = busiest["bucket_end"].to_pydatetime()
    t_type = str(busiest["series"])
    print(
        f"trace list bucket: {t_type}, {t_start:%Y-%m-%d %H:%M} to {t_end:%H:%M} UTC "
        f"({int(busiest['events']):,} events with {q.metric}, the busiest of the series)"
    )

    zone_q = SeriesQuery(agg="count", bucket="1d", split="event_type", tz=ZONE)
    series_row, series_base = Row("a. series p95 1h by event_type"), Row("a'. bare DuckDB")
    zone_row, zone_base = Row("c. series count 1d, Amsterdam"), Row("c'. bare DuckDB")
    traces_row, traces_base = Row("b. trace list (one bucket)"), Row("b'. bare DuckDB")
    calls: Calls = [
        (series_row, lambda: analytics.series(store, q)),
        (series_base, lambda: baseline_series(con, args.metric)),
        (traces_row, lambda: analytics.traces_for(store, q, t_start, t_end, [t_type])),
        (traces_base, lambda: baseline_traces(con, args.metric, t_start, t_end, t_type)),
        (zone_row, lambda: analytics.series(store, zone_q)),
        (zone_base, lambda: baseline_zone_days(con)),
    ]
    harness.warm_up(calls)
    harness.wait_quiet(args.wait_quiet)
    harness.time_rounds(calls, args.repeat)
    checks = [
        "series " + check_series(series_row.last, series_base.last),
        "trace list " + check_traces(traces_row.last, traces_base.last),
        "days in a zone " + check_series(zone_row.last, zone_base.last),
    ]
    breakdowns = [
        ("a. series", *log.capture(lambda: analytics.series(store, q))),
        (
            "b. trace list",
            *log.capture(lambda: analytics.traces_for(store, q, t_start, t_end, [t_type])),
        ),
    ]
    profiles = []
    if args.profile:
        profiles = [harness.profile(store, t, e, describe_sql) for t, _, e in breakdowns]
    con.close()
    store.close()

    app_rows, app_notes, app_breakdowns = [], [], []
    if args.apptest:
        harness.wait_quiet(args.wait_quiet)
        app_rows, app_notes, app_breakdowns = apptest_rows(db, q, args.repeat, log)
    log.close()

    series_target = SERIES_TARGET_MS_PER_MILLION * n / 1_000_000
    table: list[Judged] = [
        (series_row, series_base, series_target, ""),
        (traces_row, traces_base, None, "none"),
        (zone_row, zone_base, None, "none"),
    ]
    for row in app_rows:
        if n == APPTEST_TARGET_EVENTS:
            table.append((row, None, APPTEST_TARGET_MS, ""))
        else:
            table.append((row, None, None, "1M only"))
    print()
    harness.print_ratio_table(table)
    print()
    for line in checks + app_notes:
        print(line)
    print()
    for title, total, entries in breakdowns:
        harness.print_breakdown(title, total, entries, "in Python (pandas)", describe_sql)
    for title, total, entries in app_breakdowns:
        harness.print_breakdown(
            title, total, entries, "elsewhere (Streamlit, pandas, plotly)", describe_sql
        )
    for text in profiles:
        print("\n" + text)
    harness.warn_if_noisy(x for r, b, _, _ in table for x in (r, b))
    if args.delete_data:
        delete_data(db, n, workdir)
    print(f"\ntotal {time.perf_counter() - started_all:,.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
