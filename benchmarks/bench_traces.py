"""Traces benchmark: the Traces page's queries against bare DuckDB on one generated store.

    uv run python -m benchmarks.bench_traces [--events N] [--repeat R] [--workdir DIR]
                                             [--prefix P] [--event-type T] [--detail K=V]
                                             [--deep-offset O] [--refresh-repeat R2]
                                             [--wait-quiet SECONDS] [--profile] [--delete-data]

1. Builds WORKDIR/traces_<N>.duckdb with N events, or reuses it when it already holds N events:
   the JSONL comes from the benchmarks' generator (benchmarks/data.py; WORKDIR/events_<N>.jsonl,
   reused when it holds N lines) and is loaded with eventlens.ingest.load_files(Store(path),
   [jsonl], "bench"), which also fills the store's trace_summary table (one row per dataset and
   trace).
2. In this one process, on that store, after one untimed warm-up call each, times R calls
   (round-robin) of eventlens's traces module, each against a bare DuckDB query that computes
   the same from the events table (GROUP BY dataset, trace_id ... ORDER BY ... LIMIT 50, the
   match count as count(*) OVER (); WHERE trace_id = ?):
     a. default list     traces.search(TraceSearch()): newest last event first, page 1
     b. prefix           traces.search(text=P): trace_ids starting with P (default trace_ab)
     c. event type       traces.search(event_types=(T,)): traces with an event of type T
     d. detail           traces.search(detail_key=K, detail_value=V): traces with an event
                         whose detail K is V (the one filter that reads the events table)
     e. deep page        traces.search(TraceSearch(), offset=O): default order, offset 10,000
     f. one trace        traces.events(trace): the one-trace load, time order (the trace with
                         the most events, the first of the list sorted by events)
     g. summarise        traces.summarise(f's frame) (pandas, on the loaded frame) against one
                         SQL query of the same numbers from the events table
     h. open a trace     traces.copies + traces.events + traces.summarise, as the page does,
                         against the bare queries of f and g
   Every result is checked against its baseline (same traces, order, counts, times, types).
3. Times store.refresh_traces() (a full rebuild of trace_summary) R2 times: what the summary
   adds to loading (load_files refreshes the traces a load touched; on a first load, all),
   against the bare GROUP BY that computes the same rows into a temp table.
4. Prints the command, the machine, a table (median and best ms, the baseline's median, the
   ratio, the target and whether it is met) and the queries each eventlens call ran.

Target: 200 ms for each of a-h at 10,000,000 events (checked only at N >= 10M).

The machine is shared: the CPU time other processes used while each row was measured is read
from /proc/stat and printed; above 10% the times are inflated.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import duckdb
import pandas as pd

from benchmarks import harness
from benchmarks.data import build_store, delete_data
from benchmarks.harness import Judged, QueryLog, Row, ms
from eventlens import traces
from eventlens.store import Store
from eventlens.traces import TraceSearch

TARGET_MS = 200.0
TARGET_EVENTS = 10_000_000
PAGE = traces.PAGE_SIZE

# ---------------------------------------------------------------------------------------------
# The baselines: the same answers from the events table
# ---------------------------------------------------------------------------------------------

ORDER = {
    "last": "last_time",
    "first": "first_time",
    "events": "events",
    "duration": "duration_ms",
    "trace_id": "trace_id",
}


def baseline_search(
    con: duckdb.DuckDBPyConnection, s: TraceSearch, limit: int = PAGE, offset: int = 0
) -> tuple[pd.DataFrame, int]:
    """One page of traces and the match count, grouped from the events in one query."""
    where, having, params, having_params = ["true"], ["true"], [], []
    if s.text:
        where.append("trace_id = ?" if s.exact else "starts_with(trace_id, ?)")
        params.append(s.text)
    if s.datasets:
        where.append("list_contains(?, dataset)")
        params.append(list(s.datasets))
    if s.event_types:
        having.append("bool_or(list_contains(?, event_type))")
        having_params.append(list(s.event_types))
    if s.detail_key:
        having.append("bool_or(event_details[?] = ?)")
        having_params += [s.detail_key, s.detail_value]
    if s.start is not None or s.end is not None:
        raise NotImplementedError("the benchmark has no time filter")
    order = f"{ORDER[s.sort]} {'DESC' if s.descending else 'ASC'} NULLS LAST, trace_id, dataset"
    frame = con.execute(
        f"""
        SELECT trace_id, dataset, count(*) AS events, min(timestamp) AS first_time,
               max(timestamp) AS last_time,
               date_diff('millisecond', min(timestamp), max(timestamp)) AS duration_ms,
               list_sort(list(DISTINCT event_type)) AS event_types,
               count(*) OVER () AS total
        FROM events WHERE {" AND ".join(where)}
        GROUP BY dataset, trace_id HAVING {" AND ".join(having)}
        ORDER BY {order} LIMIT ? OFFSET ?
        """,
        [*params, *having_params, int(limit), int(offset)],
    ).df()
    if len(frame):
        total = int(frame["total"].iloc[0])
    else:  # a page past the end carries no count: count the groups on their own
        total = con.execute(
            f"""
            SELECT count(*) FROM (SELECT 1 FROM events WHERE {" AND ".join(where)}
            GROUP BY dataset, trace_id HAVING {" AND ".join(having)})
            """,
            [*params, *having_params],
        ).fetchone()[0]
    return frame.drop(columns="total"), total


def baseline_events(con: duckdb.DuckDBPyConnection, trace_id: str) -> pd.DataFrame:
    return con.execute(
        """
        SELECT timestamp, event_type, metrics, event_details, event_id, dataset,
               source_file, source_line
        FROM events WHERE trace_id = ?
        ORDER BY timestamp NULLS LAST, source_file, source_line, event_key
        """,
        [trace_id],
    ).df()


def baseline_summary(con: duckdb.DuckDBPyConnection, trace_id: str) -> dict[str, Any]:
    events, first, last, span, untimed, types, datasets = con.execute(
        """
        SELECT count(*), min(timestamp), max(timestamp),
               coalesce(date_diff('millisecond', min(timestamp), max(timestamp)), 0),
               count(*) FILTER (WHERE timestamp IS NULL), histogram(event_type),
               list_sort(list(DISTINCT dataset))
        FROM events WHERE trace_id = ?
        """,
        [trace_id],
    ).fetchone()
    return {
        "events": events,
        "first": first,
        "last": last,
        "span_ms": float(span),
        "untimed": untimed,
        "types": dict(types or {}),
        "datasets": datasets,
    }


def baseline_open(con: duckdb.DuckDBPyConnection, trace_id: str) -> tuple[pd.DataFrame, dict]:
    return baseline_events(con, trace_id), baseline_summary(con, trace_id)


def eventlens_open(store: Store, trace_id: str) -> tuple[pd.DataFrame, dict]:
    copy = traces.choose_copy(traces.copies(store, trace_id), None)
    if copy is None:
        raise SystemExit(f"{trace_id} does not exist")
    frame = traces.events(store, trace_id, copy.dataset)
    return frame, traces.summarise(frame)


BARE_SUMMARY = """
    CREATE OR REPLACE TEMP TABLE _bare_summary AS
    SELECT dataset, trace_id, count(*) AS events, min(timestamp) AS first_time,
           max(timestamp) AS last_time, list_sort(list(DISTINCT event_type)) AS event_types
    FROM events GROUP BY dataset, trace_id
"""


def bare_summary(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(BARE_SUMMARY)


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------

LIST_COLUMNS = ["trace_id", "dataset", "events", "first_time", "last_time", "duration_ms"]


def _instants(column: pd.Series) -> list[int | None]:
    return [None if pd.isna(t) else pd.Timestamp(t).value for t in column]


def check_search(ours: tuple[pd.DataFrame, int], base: tuple[pd.DataFrame, int]) -> str:
    (frame, total), (bframe, btotal) = ours, base
    problems = []
    if total != btotal:
        problems.append(f"match count {total:,} vs {btotal:,}")
    if len(frame) != len(bframe):
        problems.append(f"{len(frame)} rows vs {len(bframe)}")
    else:
        for column in LIST_COLUMNS:
            a, b = frame[column], bframe[column]
            if column.endswith("_time"):
                same = _instants(a) == _instants(b)
            else:
                same = a.astype("object").tolist() == b.astype("object").tolist()
            if not same:
                problems.append(f"{column} differs")
        a_types = [tuple(t) for t in frame["event_types"]]
        b_types = [tuple(t) for t in bframe["event_types"]]
        if a_types != b_types:
            problems.append("event_types differ")
    if problems:
        return "MISMATCH: " + "; ".join(problems)
    return f"ok: {len(frame)} rows of {total:,} matches, same ids, order, counts, times and types"


def check_events(ours: pd.DataFrame, base: pd.DataFrame) -> str:
    same = (
        len(ours) == len(base)
        and ours["event_id"].tolist() == base["event_id"].tolist()
        and ours["event_type"].tolist() == base["event_type"].tolist()
        and _instants(ours["timestamp"]) == _instants(base["timestamp"])
        and [dict(m) for m in ours["metrics"]] == [dict(m) for m in base["metrics"]]
    )
    return (
        f"{'ok' if same else 'MISMATCH'}: {len(ours)} events vs {len(base)} in the baseline"
        f"{', same events, order, times and metrics' if same else ''}"
    )


def check_summary(ours: dict[str, Any], base: dict[str, Any]) -> str:
    problems = [
        key
        for key in ("events", "span_ms", "untimed", "types", "datasets")
        if (ours[key] if key != "types" else dict(ours[key])) != base[key]
    ]
    for key in ("first", "last"):
        a, b = ours[key], base[key]
        if (a is None) != (b is None) or (
            a is not None and pd.Timestamp(a).value != pd.Timestamp(b).value
        ):
            problems.append(key)
    if problems:
        return "MISMATCH: " + ", ".join(problems)
    return (
        f"ok: {ours['events']} events, span {ours['span_ms']:,.0f} ms, "
        f"{len(ours['types'])} event types, same numbers"
    )


def check_refresh(con: duckdb.DuckDBPyConnection) -> str:
    """Whether trace_summary holds exactly the rows the bare GROUP BY gives."""
    bare_summary(con)
    rows = con.execute("SELECT count(*) FROM trace_summary").fetchone()[0]
    bare = con.execute("SELECT count(*) FROM _bare_summary").fetchone()[0]
    only_ours = con.execute(
        "SELECT count(*) FROM (SELECT * FROM trace_summary EXCEPT ALL SELECT * FROM _bare_summary)"
    ).fetchone()[0]
    only_bare = con.execute(
        "SELECT count(*) FROM (SELECT * FROM _bare_summary EXCEPT ALL SELECT * FROM trace_summary)"
    ).fetchone()[0]
    con.execute("DROP TABLE IF EXISTS _bare_summary")
    ok = rows == bare and only_ours == 0 and only_bare == 0
    return (
        f"{'ok' if ok else 'MISMATCH'}: trace_summary {rows:,} rows, the bare GROUP BY {bare:,}; "
        f"{only_ours} only in trace_summary, {only_bare} only in the bare result"
    )


def describe(sql: str) -> str:
    words = " ".join(sql.split())
    if words.startswith("SELECT trace_id, dataset, events"):
        return "page of traces: trace_summary WHERE ... ORDER BY ... LIMIT/OFFSET"
    if words.startswith("SELECT count(*) FROM trace_summary t WHERE"):
        return "match count: count(*) FROM trace_summary WHERE ..."
    if words.startswith("SELECT t.dataset, t.events, coalesce(d.test, false)"):
        return "copies: trace_summary JOIN datasets WHERE trace_id = ?"
    if words.startswith("SELECT timestamp,"):
        return "one trace: events WHERE trace_id = ? ORDER BY timestamp, file, line"
    return harness.short_sql(sql)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    harness.add_store_options(
        parser, "before the timed calls", "the detail filter and of the one-trace load"
    )
    parser.add_argument("--prefix", default="trace_ab", help="the prefix search (b)")
    parser.add_argument("--event-type", default="checkout", help="the event type filter (c)")
    parser.add_argument(
        "--detail", default="country=NL", metavar="KEY=VALUE", help="the detail filter (d)"
    )
    parser.add_argument("--deep-offset", type=int, default=10_000, help="the deep page (e)")
    parser.add_argument(
        "--refresh-repeat",
        type=int,
        default=3,
        help="full rebuilds of the trace summary to time (default 3; 0: skip)",
    )
    args = parser.parse_args(argv)
    n, workdir = args.events, args.workdir.resolve()
    if n < 1 or args.repeat < 1 or args.refresh_repeat < 0:
        parser.error("--events and --repeat must be at least 1, --refresh-repeat at least 0")
    detail_key, sep, detail_value = args.detail.partition("=")
    if not sep or not detail_key:
        parser.error("--detail takes KEY=VALUE")

    harness.print_header("traces", __spec__.name, argv)
    started_all = time.perf_counter()
    db, _, load_seconds = build_store(
        n, workdir, "traces", "(load_files, including its trace summary refresh)"
    )

    opened = time.perf_counter()
    store = Store(db)
    opened = time.perf_counter() - opened
    log = QueryLog()
    con = store.cursor()  # the baselines' own cursor on the same database
    n_traces = store.scalar("SELECT count(*) FROM trace_summary")
    print(
        f"{n:,} events in {n_traces:,} (dataset, trace) rows; store opened in "
        f"{opened * 1000:,.0f} ms; {args.repeat} timed call(s) per row after one untimed "
        "warm-up, round-robin, in one process"
    )

    searches = {
        "a. default list (newest, page 1)": (TraceSearch(), 0),
        f"b. prefix {args.prefix!r}": (TraceSearch(text=args.prefix), 0),
        f"c. event type {args.event_type}": (TraceSearch(event_types=(args.event_type,)), 0),
        f"d. detail {detail_key}={detail_value}": (
            TraceSearch(detail_key=detail_key, detail_value=detail_value),
            0,
        ),
        f"e. deep page (offset {args.deep_offset:,})": (TraceSearch(), args.deep_offset),
    }
    biggest, _ = traces.search(store, TraceSearch(sort="events"), 1, 0)
    trace_id = str(biggest["trace_id"].iloc[0])
    frame = traces.events(store, trace_id)
    print(
        f"one trace (f-h): {trace_id}, {len(frame)} events (the most of any trace; the first "
        "when sorted by events)\n"
    )

    def search_call(s: TraceSearch, offset: int) -> Callable[[], Any]:
        return lambda: traces.search(store, s, PAGE, offset)

    def base_call(s: TraceSearch, offset: int) -> Callable[[], Any]:
        return lambda: baseline_search(con, s, PAGE, offset)

    pairs: list[tuple[Row, Row, Callable[[], Any], Callable[[], Any]]] = []
    for name, (s, offset) in searches.items():
        pairs.append(
            (Row(name), Row("bare DuckDB GROUP BY"), search_call(s, offset), base_call(s, offset))
        )
    pairs += [
        (
            Row("f. one trace: traces.events"),
            Row("bare DuckDB WHERE trace_id = ?"),
            lambda: traces.events(store, trace_id),
            lambda: baseline_events(con, trace_id),
        ),
        (
            Row("g. traces.summarise (pandas)"),
            Row("bare DuckDB summary query"),
            lambda: traces.summarise(frame),
            lambda: baseline_summary(con, trace_id),
        ),
        (
            Row("h. open a trace (copies+f+g)"),
            Row("bare DuckDB f' + g'"),
            lambda: eventlens_open(store, trace_id),
            lambda: baseline_open(con, trace_id),
        ),
    ]
    calls = [(row, fn) for ours, base, fn, bfn in pairs for row, fn in ((ours, fn), (base, bfn))]
    harness.warm_up(calls)
    harness.wait_quiet(args.wait_quiet)
    harness.time_rounds(calls, args.repeat)

    checks = []
    for ours, base, _, _ in pairs[: len(searches)]:
        checks.append(f"{ours.name}: {check_search(ours.last, base.last)}")
    f_row, f_base, g_row, g_base, h_row, h_base = (x for p in pairs[len(searches) :] for x in p[:2])
    checks.append(f"{f_row.name}: {check_events(f_row.last, f_base.last)}")
    checks.append(f"{g_row.name}: {check_summary(g_row.last, g_base.last)}")
    checks.append(
        f"{h_row.name}: {check_events(h_row.last[0], h_base.last[0])}; "
        f"{check_summary(h_row.last[1], h_base.last[1])}"
    )

    breakdowns = []
    for ours, _, fn, _ in pairs:
        if ours is not g_row:
            breakdowns.append((ours.name, *log.capture(fn)))
    profiles = []
    if args.profile:
        for title, _, entries in breakdowns:
            if title.startswith(("d.", "f.")):
                profiles.append(harness.profile(store, title, entries, describe))

    # The trace summary's cost at load time: a full rebuild, against the bare GROUP BY.
    refresh_row, refresh_base = Row("refresh_traces() full rebuild"), Row("bare GROUP BY into temp")
    refresh_check = "skipped (--refresh-repeat 0)"
    if args.refresh_repeat:
        harness.wait_quiet(args.wait_quiet)
        harness.time_rounds(
            [(refresh_row, store.refresh_traces), (refresh_base, lambda: bare_summary(con))],
            args.refresh_repeat,
        )
        con.execute("DROP TABLE IF EXISTS _bare_summary")
        refresh_check = check_refresh(con)
    log.close()
    con.close()
    store.close()

    target = TARGET_MS if n >= TARGET_EVENTS else None
    table: list[Judged] = [(ours, base, target, "200@10M") for ours, base, _, _ in pairs]
    harness.print_ratio_table(table)
    print()
    for line in checks:
        print(line)
    if args.refresh_repeat:
        med, best = refresh_row.median_ms(), refresh_row.best_ms()
        base_med = refresh_base.median_ms()
        others = [r.others() for r in (refresh_row, refresh_base) if r.others() is not None]
        calls_s = ", ".join(f"{t:.2f}" for t in refresh_row.times)
        print(
            f"\ntrace summary at load time: store.refresh_traces() (full rebuild of "
            f"{n_traces:,} rows) median {ms(med)} ms, best {ms(best)} ms "
            f"({args.refresh_repeat} calls: {calls_s} s); the bare GROUP BY into a temp table "
            f"{ms(base_med)} ms ({med / base_med:.1f}x); others CPU "
            + (harness.percent(max(others)) if others else "?")
        )
        if load_seconds:
            print(
                f"this run's load took {load_seconds:.1f} s in all; a full rebuild is "
                f"{med / 1000 / load_seconds:.0%} of it (the first load of a store refreshes "
                "every trace, so it pays about one rebuild)"
            )
        print(f"refresh check {refresh_check}")
    print()
    for title, total, entries in breakdowns:
        harness.print_breakdown(title, total, entries, "in Python (pandas)", describe)
    for text in profiles:
        print("\n" + text)
    harness.warn_if_noisy([*(x for r, b, _, _ in table for x in (r, b)), refresh_row, refresh_base])
    if args.delete_data:
        delete_data(db, n, workdir)
    print(f"\ntotal {time.perf_counter() - started_all:,.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
