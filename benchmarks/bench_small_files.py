"""Small files: the cost of loading one small export, where planning SQL, not reading, is the work.

    uv run python -m benchmarks.bench_small_files [--files N] [--lines L]

A folder of small exports (a day's logs, a test suite's fixtures) costs what each file's
statements take to plan and run, whatever its size. In a temporary folder it writes N JSONL
files of L lines, in two shapes: clean (every line an event), and bad (two lines break a rule,
one is not JSON). Each row loads every file once, one file per call, into a store of its own:
  a. eventlens, clean     ingest.load_files(store, [file]): checks, identity, rejects, catalogue
  b. eventlens, bad       the same on the bad files: the full path, which explains rejects
  c. baseline: DuckDB     a bare INSERT ... SELECT FROM read_json(file) into one plain table per
                          store: the same rows with nothing checked (the bad files' JSON line is
                          skipped with ignore_errors)
Prints the median and best CPU ms per file of each row, the ratios a/c and b/c, and the share of
the CPU other processes used (above 10% the times are inflated: the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from benchmarks import harness
from eventlens.ingest import load_files
from eventlens.store import Store


def write_files(folder: Path, files: int, lines: int, *, bad: bool) -> list[Path]:
    """`files` JSONL files of `lines` lines; with bad, two rule breaks and a non-JSON line each."""
    paths = []
    for f in range(files):
        rows = []
        for i in range(lines):
            body = {
                "trace_id": f"t{f}-{i // 3}",
                "event_id": f"{'b' if bad else 'c'}{f}-{i}",
                "event_type": ["llm_call", "thumbs_up_down", "tool_call"][i % 3],
                "metrics": {"latency_ms": 100 + i, "vote": 1},
                "event_details": {"model": "m"},
                "timestamp": 1_764_000_000_000 + i,
            }
            if bad and i == 1:
                body["metrics"] = {"latency_ms": "slow"}
            if bad and i == 2:
                body["metrics"]["vote"] = 3
            rows.append("{not json" if bad and i == 3 else json.dumps(body))
        path = folder / f"{'bad' if bad else 'clean'}-{f}.jsonl"
        path.write_text("\n".join(rows) + "\n")
        paths.append(path)
    return paths


def eventlens_load(db: Path, path: Path) -> None:
    with Store(db) as store:
        load_files(store, [path])


def bare_load(db: Path, path: Path) -> None:
    with duckdb.connect(str(db)) as con:
        con.execute(
            "CREATE TABLE IF NOT EXISTS events (trace_id VARCHAR, event_id VARCHAR,"
            " event_type VARCHAR, metrics JSON, event_details JSON, timestamp BIGINT)"
        )
        con.execute(
            "INSERT INTO events SELECT trace_id, event_id, event_type, metrics, event_details,"
            " timestamp FROM read_json(?, format='newline_delimited', ignore_errors=true,"
            " columns={'trace_id': 'VARCHAR', 'event_id': 'VARCHAR', 'event_type': 'VARCHAR',"
            " 'metrics': 'JSON', 'event_details': 'JSON', 'timestamp': 'BIGINT'})",
            [str(path)],
        )


def per_file_ms(load: Callable[[Path, Path], None], folder: Path, paths: list[Path]) -> list[float]:
    """CPU ms of each file's load, each into a store of its own (opening it included)."""
    times = []
    for n, path in enumerate(paths):
        db = folder / f"{load.__name__}-{path.stem}-{n}.duckdb"
        started = time.process_time()
        load(db, path)
        times.append((time.process_time() - started) * 1000)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=40, help="files per shape (default 40)")
    parser.add_argument("--lines", type=int, default=10, help="lines per file (default 10)")
    args = parser.parse_args(argv)
    harness.print_header("small files", "benchmarks.bench_small_files", argv, "duckdb")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clean = write_files(folder, args.files, args.lines, bad=False)
        bad = write_files(folder, args.files, args.lines, bad=True)
        eventlens_load(folder / "warm.duckdb", clean[0])  # imports and first plans
        rows = {}
        before, wall0, own0 = harness.busy_cpu_seconds(), time.perf_counter(), time.process_time()
        rows["a. eventlens, clean"] = per_file_ms(eventlens_load, folder, clean)
        rows["b. eventlens, bad"] = per_file_ms(eventlens_load, folder, bad)
        rows["c. baseline: DuckDB"] = per_file_ms(bare_load, folder, clean + bad)
        wall, own = time.perf_counter() - wall0, time.process_time() - own0
        share = harness.others_share(before, harness.busy_cpu_seconds(), own, wall)
    print(f"\n{args.files} files per shape, {args.lines} lines each; CPU ms per file")
    print(f"{'row':24s} {'median':>8s} {'best':>8s}")
    medians = {}
    for name, times in rows.items():
        medians[name[0]] = statistics.median(times)
        print(f"{name:24s} {medians[name[0]]:8.1f} {min(times):8.1f}")
    print(f"a/c {medians['a'] / medians['c']:.1f}x   b/c {medians['b'] / medians['c']:.1f}x")
    print(f"other processes used {harness.percent(share)} of the CPU")
    if harness.is_noisy(share):
        print(harness.noise_warning("during the run"))


if __name__ == "__main__":
    main()
