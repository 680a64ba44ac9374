"""ClickHouse benchmark (issue 17): the same export loaded into DuckDB and into ClickHouse (chDB,
in process), then Explore's hourly p95 by event type and the Traces page's trace list on both.

    uv run python -m benchmarks.bench_clickhouse [--events N] [--shape generated|real]
                                                 [--repeat R] [--workdir DIR]
                                                 [--wait-quiet SECONDS] [--delete-data]

1. The export: WORKDIR/<shape>_<N>.jsonl from the benchmarks' generator (reused when it holds N
   lines; benchmarks/data.py).
2. Load, each in a fresh process through the launcher (wall, CPU and peak RSS of that process):
     a. `eventlens load FILE --db WORKDIR/ch_bench.duckdb`
     b. `eventlens load FILE --db chdb://WORKDIR/ch_bench_chdb` (the same checks in an in-memory
        DuckDB, then the valid events to ClickHouse as Arrow)
3. In this process, one untimed call each, then R rounds (round-robin) of:
     c. series on DuckDB and d. on ClickHouse: analytics.series(store, SeriesQuery(agg="p95",
        metric=KEY, bucket="1h", split="event_type")) over the whole range
     e. trace list on DuckDB and f. on ClickHouse: traces.search(store, TraceSearch()), the
        first page by last event and the count of every trace
   The two engines' answers are compared (equal frames, equal counts).
4. Prints the command, the machine, the loads and a table with ClickHouse/DuckDB ratios.

chDB runs ClickHouse's engine in this process: a ClickHouse server on its own machine would add a
network round trip per query and take the load's CPU off this one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pandas as pd

from benchmarks import data, harness
from eventlens import analytics, traces
from eventlens.clickhouse.store import ClickHouseStore
from eventlens.location import parse
from eventlens.store import Store

METRIC = "latency_ms"  # in both shapes


def _load(title: str, path: Path, db: str) -> None:
    cmd = [sys.executable, "-m", "eventlens.cli", "load", str(path), "--db", db, "--json"]
    wall, cpu, rss, code, out, err = harness.run_measured(cmd)
    result = harness.child_output(code, out, err)
    counts = (
        f"loaded {result['loaded']:,}, rejected {result['rejected']:,}"
        if isinstance(result, dict)
        else result
    )
    print(f"  {title:<34} {wall:8.2f} s  cpu {cpu:7.2f} s  peak RSS {rss:7,.0f} MiB  {counts}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to generate")
    parser.add_argument("--shape", choices=data.SHAPES, default="real", help="the export's shape")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per query (median)")
    harness.add_workdir(parser)
    harness.add_noise_options(parser)
    parser.add_argument("--delete-data", action="store_true", help="delete the JSONL at the end")
    args = parser.parse_args(argv)
    harness.print_header(
        "ClickHouse", "benchmarks.bench_clickhouse", argv, "chdb", "clickhouse_connect"
    )
    workdir = Path(args.workdir)
    path = data.generate(args.events, workdir, args.shape)
    duck_db = workdir / "ch_bench.duckdb"
    chdb_dir = workdir / "ch_bench_chdb"
    data.remove_db(duck_db)
    shutil.rmtree(chdb_dir, ignore_errors=True)

    print(f"\nload of {path.name} ({args.events:,} events), each a fresh process:")
    harness.wait_quiet(args.wait_quiet)
    _load("a. eventlens load into DuckDB", path, str(duck_db))
    harness.wait_quiet(args.wait_quiet)
    _load("b. eventlens load into chdb://", path, f"chdb://{chdb_dir}")

    query = analytics.SeriesQuery(agg="p95", metric=METRIC, bucket="1h", split="event_type")
    search = traces.TraceSearch()
    with Store(duck_db, read_only=True) as duck, ClickHouseStore(parse(f"chdb://{chdb_dir}")) as ch:
        rows = {
            name: harness.Row(name)
            for name in (
                "c. series on DuckDB",
                "d. series on ClickHouse",
                "e. trace list on DuckDB",
                "f. trace list on ClickHouse",
            )
        }
        names = list(rows)
        calls: harness.Calls = [
            (rows[names[0]], lambda: analytics.series(duck, query)),
            (rows[names[1]], lambda: analytics.series(ch, query)),
            (rows[names[2]], lambda: traces.search(duck, search)),
            (rows[names[3]], lambda: traces.search(ch, search)),
        ]
        harness.wait_quiet(args.wait_quiet)
        harness.warm_up(calls)
        harness.time_rounds(calls, args.repeat)

    series_duck, series_ch = rows[names[0]].last, rows[names[1]].last
    pd.testing.assert_frame_equal(series_ch.frame, series_duck.frame, check_dtype=False, rtol=1e-9)
    (list_duck, total_duck), (list_ch, total_ch) = rows[names[2]].last, rows[names[3]].last
    assert total_ch == total_duck, (total_ch, total_duck)
    assert list(list_ch["trace_id"]) == list(list_duck["trace_id"])
    print(
        f"\nanswers: the same on both engines ({len(series_duck.frame):,} series rows,"
        f" {total_duck:,} traces)"
    )
    print(f"\nqueries, {args.repeat} timed calls each after one untimed call:")
    harness.print_ratio_table(
        [
            (rows[names[1]], rows[names[0]], None, "vs DuckDB"),
            (rows[names[3]], rows[names[2]], None, "vs DuckDB"),
        ]
    )
    harness.warn_if_noisy(rows.values())
    if args.delete_data:
        path.unlink(missing_ok=True)
    data.remove_db(duck_db)
    shutil.rmtree(chdb_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
