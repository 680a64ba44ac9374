"""Explore benchmark: the Explore page's queries against bare DuckDB on one generated store.

    uv run python benchmarks/bench_explore.py [--events N] [--repeat R] [--workdir DIR]
                                              [--metric KEY] [--apptest] [--wait-quiet SECONDS]
                                              [--profile] [--delete-data]

1. Builds WORKDIR/explore_<N>.duckdb with N events, or reuses it when it already holds N
   events: the JSONL comes from bench_ingest's generator (WORKDIR/events_<N>.jsonl, itself
   reused when it holds N lines) and is loaded with eventlens.ingest.load_files(Store(path),
   [jsonl], "bench").
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
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import (  # noqa: E402  (the benchmarks folder is not a package)
    NOISY_SHARE,
    ROOT,
    _busy_cpu_seconds,
    generate,
    machine_line,
    remove_db,
    wait_quiet,
)

from eventlens import analytics  # noqa: E402
from eventlens.analytics import SeriesQuery  # noqa: E402
from eventlens.ingest import load_files  # noqa: E402
from eventlens.store import DB_ENV, Store  # noqa: E402

SERIES_TARGET_MS_PER_MILLION = 150.0
APPTEST_TARGET_MS = 1000.0  # at 1,000,000 events
APPTEST_TARGET_EVENTS = 1_000_000
DATASET = "bench"

# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------


def stored_events(db: Path) -> int | None:
    """The events the store file holds, None when it is missing or unreadable."""
    if not db.is_file():
        return None
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error:
        return None
    try:
        return con.execute("SELECT count(*) FROM events").fetchone()[0]
    except duckdb.Error:
        return None
    finally:
        con.close()


def build_store(n: int, workdir: Path) -> tuple[Path, Path | None]:
    """WORKDIR/explore_<n>.duckdb holding n events; and the JSONL when one was needed."""
    db = workdir / f"explore_{n}.duckdb"
    held = stored_events(db)
    if held == n:
        print(f"reusing {db} ({n:,} events, {db.stat().st_size / 1e6:,.0f} MB)")
        return db, None
    if held is not None:
        print(f"{db} holds {held:,} events, not {n:,}: building it again")
    remove_db(db)
    src = generate(n, workdir)
    started = time.perf_counter()
    store = Store(db)
    try:
        result = load_files(store, [src], DATASET)
    finally:
        store.close()
    if result.failed_files or result.loaded != n:
        errors = "; ".join(f.error or "" for f in result.failed_files)
        raise SystemExit(
            f"loading {src} gave {result.loaded:,} events, not {n:,} "
            f"(rejected {result.rejected:,}, duplicates {result.duplicates:,}) {errors}"
        )
    print(
        f"loaded {n:,} events into {db} ({db.stat().st_size / 1e6:,.0f} MB) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return db, src


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    times: list[float] = field(default_factory=list)  # seconds
    busy_others: float = 0.0  # CPU seconds other processes used while this row ran
    wall: float = 0.0
    first: float | None = None  # the untimed first call (warm-up / first page run)
    last: Any = None  # the last call's result

    def median_ms(self) -> float | None:
        return statistics.median(self.times) * 1000 if self.times else None

    def best_ms(self) -> float | None:
        return min(self.times) * 1000 if self.times else None

    def others(self) -> float | None:
        if not self.wall:
            return None
        return self.busy_others / (self.wall * (os.cpu_count() or 1))


def timed(row: Row, fn: Callable[[], Any], *, record: bool = True) -> float:
    """Call fn once; add its wall time (and others' CPU meanwhile) to row when record."""
    busy_before, cpu_before = _busy_cpu_seconds(), time.process_time()
    started = time.perf_counter()
    row.last = fn()
    seconds = time.perf_counter() - started
    busy_after, cpu_after = _busy_cpu_seconds(), time.process_time()
    if record:
        row.times.append(seconds)
        row.wall += seconds
        if busy_before is not None and busy_after is not None:
            own = cpu_after - cpu_before
            row.busy_others += max(0.0, busy_after - busy_before - own)
    return seconds


class QueryLog:
    """Times every query a Store runs while capturing, by wrapping Store.rows() and Store.df()
    on the class (Store.scalar() goes through rows()), so the app's own store is covered too."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, Any, float, int]] = []  # sql, params, seconds, rows
        self.on = False
        self._saved = (Store.rows, Store.df)
        Store.rows = self._wrap(Store.rows)  # type: ignore[method-assign]
        Store.df = self._wrap(Store.df)  # type: ignore[method-assign]

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        log = self

        def call(store: Store, sql: str, params: Any = None) -> Any:
            started = time.perf_counter()
            out = fn(store, sql, params)
            if log.on:
                log.entries.append((sql, params, time.perf_counter() - started, len(out)))
            return out

        return call

    def capture(self, fn: Callable[[], Any]) -> tuple[float, list[tuple[str, Any, float, int]]]:
        self.entries, self.on = [], True
        started = time.perf_counter()
        try:
            fn()
        finally:
            self.on = False
        return time.perf_counter() - started, self.entries

    def close(self) -> None:
        Store.rows, Store.df = self._saved  # type: ignore[method-assign]


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
    return words[:70] + ("..." if len(words) > 70 else "")


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
) -> tuple[list[Row], list[str], list[tuple[str, float, list[tuple[str, Any, float, int]]]]]:
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
# Report
# ---------------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def print_table(entries: list[tuple[Row, Row | None, float | None, str]]) -> None:
    header = (
        f"{'name':<34} {'median ms':>10} {'best ms':>9} {'baseline ms':>12} {'ratio':>7} "
        f"{'target ms':>10}  {'met':<8} {'others CPU':>10}"
    )
    print(header)
    print("-" * len(header))
    for row, base, target, target_note in entries:
        med = row.median_ms()
        base_med = base.median_ms() if base else None
        ratio = f"{med / base_med:.1f}x" if med and base_med else "-"
        if target is None:
            target_text, met = target_note, "-"
        else:
            met = "met" if med is not None and med <= target else "NOT MET"
            target_text = _ms(target)
        others = [r.others() for r in (row, base) if r is not None and r.others() is not None]
        others_text = f"{max(others):.0%}" if others else "?"
        print(
            f"{row.name:<34} {_ms(med):>10} {_ms(row.best_ms()):>9} {_ms(base_med):>12} "
            f"{ratio:>7} {target_text:>10}  {met:<8} {others_text:>10}"
        )
        if base is not None:
            print(
                f"{'  ' + base.name:<34} {_ms(base_med):>10} {_ms(base.best_ms()):>9} "
                f"{'':>12} {'':>7} {'':>10}  {'':<8}"
            )


def print_breakdown(
    title: str, total: float, entries: list[tuple[str, Any, float, int]], rest: str
) -> None:
    queries = sum(s for _, _, s, _ in entries)
    print(
        f"{title}: {total * 1000:,.0f} ms in all, {queries * 1000:,.0f} ms in {len(entries)} "
        f"queries, {(total - queries) * 1000:,.0f} ms {rest}"
    )
    for sql, _, seconds, n in entries:
        print(f"  {seconds * 1000:>8,.1f} ms  {n:>7,} rows  {describe_sql(sql)}")


def profile(store: Store, title: str, entries: list[tuple[str, Any, float, int]]) -> str:
    """DuckDB's EXPLAIN ANALYZE of the slowest query among entries, as text to print."""
    sql, params, seconds, _ = max(entries, key=lambda e: e[2])
    with store.cursor() as cur:
        plan = cur.execute("EXPLAIN ANALYZE " + sql, params).fetchall()
    head = f"profile of {title}'s slowest query ({seconds * 1000:,.1f} ms): {describe_sql(sql)}"
    return "\n".join([head, *(text for _, text in plan)])


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the store")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per row (median)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=ROOT / "bench_data",
        help="where the JSONL and the store go (default ./bench_data)",
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
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before the timed calls (and before the page runs), wait up to SECONDS for other "
        "processes to use under 10%% of the CPU (default 0: do not wait)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print DuckDB's EXPLAIN ANALYZE of the slowest query of the series and of the "
        "trace list",
    )
    parser.add_argument(
        "--delete-data",
        action="store_true",
        help="delete the generated JSONL and the store file at the end",
    )
    args = parser.parse_args(argv)
    n, workdir = args.events, args.workdir.resolve()
    if n < 1 or args.repeat < 1:
        parser.error("--events and --repeat must be at least 1")
    raw_argv = sys.argv[1:] if argv is None else argv
    script = os.path.relpath(Path(__file__).resolve(), Path.cwd())

    print(f"eventlens explore benchmark, {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print("command: " + shlex.join(["python", script, *raw_argv]))
    print(machine_line())
    started_all = time.perf_counter()
    db, src = build_store(n, workdir)

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

    series_row, series_base = Row("a. series p95 1h by event_type"), Row("a'. bare DuckDB")
    traces_row, traces_base = Row("b. trace list (one bucket)"), Row("b'. bare DuckDB")
    calls: list[tuple[Row, Callable[[], Any]]] = [
        (series_row, lambda: analytics.series(store, q)),
        (series_base, lambda: baseline_series(con, args.metric)),
        (traces_row, lambda: analytics.traces_for(store, q, t_start, t_end, [t_type])),
        (traces_base, lambda: baseline_traces(con, args.metric, t_start, t_end, t_type)),
    ]
    for row, fn in calls:
        row.first = timed(row, fn, record=False)
    if args.wait_quiet > 0:
        wait_quiet(args.wait_quiet)
    for _ in range(args.repeat):
        for row, fn in calls:
            timed(row, fn)
    checks = [
        "series " + check_series(series_row.last, series_base.last),
        "trace list " + check_traces(traces_row.last, traces_base.last),
    ]
    breakdowns = [
        ("a. series", *log.capture(lambda: analytics.series(store, q))),
        (
            "b. trace list",
            *log.capture(lambda: analytics.traces_for(store, q, t_start, t_end, [t_type])),
        ),
    ]
    profiles = [profile(store, t, e) for t, _, e in breakdowns] if args.profile else []
    con.close()
    store.close()

    app_rows, app_notes, app_breakdowns = [], [], []
    if args.apptest:
        if args.wait_quiet > 0:
            wait_quiet(args.wait_quiet)
        app_rows, app_notes, app_breakdowns = apptest_rows(db, q, args.repeat, log)
    log.close()

    series_target = SERIES_TARGET_MS_PER_MILLION * n / 1_000_000
    table: list[tuple[Row, Row | None, float | None, str]] = [
        (series_row, series_base, series_target, ""),
        (traces_row, traces_base, None, "none"),
    ]
    for row in app_rows:
        if n == APPTEST_TARGET_EVENTS:
            table.append((row, None, APPTEST_TARGET_MS, ""))
        else:
            table.append((row, None, None, "1M only"))
    print()
    print_table(table)
    print()
    for line in checks + app_notes:
        print(line)
    print()
    for title, total, entries in breakdowns:
        print_breakdown(title, total, entries, "in Python (pandas)")
    for title, total, entries in app_breakdowns:
        print_breakdown(title, total, entries, "elsewhere (Streamlit, pandas, plotly)")
    for text in profiles:
        print("\n" + text)
    noisy = [r for r, b, _, _ in table for x in (r, b) if x and (x.others() or 0) > NOISY_SHARE]
    if noisy:
        print(
            f"\nwarning: other processes used more than 10% of the CPU while {len(noisy)} row(s)"
            " ran; those times are inflated, rerun on a quiet machine"
        )
    if args.delete_data:
        remove_db(db)
        (src or workdir / f"events_{n}.jsonl").unlink(missing_ok=True)
        print(f"\ndeleted {db} and the JSONL")
    print(f"\ntotal {time.perf_counter() - started_all:,.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
