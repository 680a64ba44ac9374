"""Ingest benchmark: `eventlens load` against bare DuckDB and pandas on one generated export.

    uv run python -m benchmarks.bench_ingest [--events N] [--shape generated|real] [--repeat R]
                                             [--workdir DIR] [--keep]
                                             [--wait-quiet SECONDS] [--retry-noisy K]
                                             [--memory-limit LIMIT] [--only KEYS]
                                             [--parquet map|struct] [--profile]
                                             [--delete-data]

1. Generates N LangWatch track_event bodies as JSON lines with DuckDB SQL (no Python loop) into
   WORKDIR/events_<N>.jsonl, reusing the file when it already exists with N lines
   (benchmarks/data.py). --shape real makes WORKDIR/real_<N>.jsonl instead, the shape real
   exports often have: no event_id, random order, about 4 events a trace, 7 event types with
   1-3 metrics and 0-2 details, about 165 bytes a line.
2. Runs each contender in a fresh subprocess, into a fresh DuckDB file, R times (round-robin):
     a. eventlens load   `python -m eventlens.cli load FILE --db DB --json` (the real CLI)
     b. duckdb auto      CREATE TABLE AS SELECT * FROM read_json(FILE)   (types auto-detected)
     c. duckdb maps      the same with eventlens's target types (MAP columns), no validation,
                         line numbers or dedupe
     d. pandas           pandas.read_json(FILE, lines=True) (skipped above 2,000,000 events)
     e. (--memory-limit) eventlens's load_files via the Python API after
                         SET memory_limit = LIMIT (DuckDB's default is 80% of RAM)
     p. (--parquet)      `eventlens load` of the same export written as Parquet, with MAP
                         columns (eventlens's types) or the STRUCT columns read_json detects
                         (benchmarks/data.py, parquet_export; WORKDIR/<stem>_<kind>.parquet)
     q. (--parquet)      bare CREATE TABLE AS SELECT * FROM read_parquet(FILE) of that file
3. Prints the median wall seconds, the max peak RSS, events/s and ratios against b and c (and
   p against q, issue 16's target 2: at most 1.5x), and checks the row counts. --profile then
   loads the Parquet file once more in this process and prints where the time goes
   (benchmarks/ingest_profile.py).

Peak RSS: each contender is started by a tiny launcher (`python -S`, nothing imported; in
benchmarks/harness.py) that forks it, execs it and reaps it with os.wait4(pid), which returns
that one process's rusage;
ru_maxrss is the kernel's high-water mark of its resident set (KiB on Linux), so it catches
short spikes that polling /proc/PID/status would miss, and unlike RUSAGE_CHILDREN it is not a
running maximum over every child reaped so far. The launcher exists because Linux carries the
forking process's high-water mark into the child across exec: spawned straight from this
process (duckdb and pandas imported, the data generated) every contender would inherit its
peak. Through the launcher the floor is about 10 MiB, below any Python process.

Seconds are wall-clock for the whole subprocess: interpreter start, imports, opening the
database, the load, and the checkpoint on close. The interpreter + import overhead is printed
separately so it can be subtracted. The JSONL file is in the page cache for every run (warm).

Noise: the CPU time other processes used during each run is read from /proc/stat and printed
("others used N% CPU"); a run is noisy above 10%. --wait-quiet SECONDS waits for the machine
to go quiet before each run and --retry-noisy K repeats a noisy run (the report counts them).

The exit code is 0 whatever the numbers say, including when eventlens reports that the file did
not load (shown as FAILED); it is 1 only when a contender's process crashed (exited non-zero).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from benchmarks import harness, ingest_profile
from benchmarks.data import (
    PARQUET_KINDS,
    SHAPES,
    generate,
    parquet_export,
    remove_db,
    stored_events,
)
from benchmarks.harness import Col, Table, percent, ratio

PANDAS_MAX_EVENTS = 2_000_000
PARQUET_TARGET = 1.5  # issue 16, target 2: eventlens load of Parquet against a bare CTAS

MAP_COLUMNS = (
    "{trace_id: 'VARCHAR', event_type: 'VARCHAR', metrics: 'MAP(VARCHAR, DOUBLE)', "
    "event_details: 'MAP(VARCHAR, VARCHAR)', timestamp: 'BIGINT', event_id: 'VARCHAR'}"
)

# ---------------------------------------------------------------------------------------------
# Contenders
# ---------------------------------------------------------------------------------------------

_BARE = """
import json, sys, duckdb
src, db, columns = sys.argv[1], sys.argv[2], sys.argv[3]
con = duckdb.connect(db)
opts = f", columns={columns}" if columns else ""
con.execute(f"CREATE TABLE events AS SELECT * FROM read_json('{src}'{opts})")
rows = con.execute("SELECT count(*) FROM events").fetchone()[0]
con.close()
print(json.dumps({"rows": rows}))
"""

_BARE_PARQUET = """
import json, sys, duckdb
src, db = sys.argv[1], sys.argv[2]
con = duckdb.connect(db)
con.execute("CREATE TABLE events AS SELECT * FROM read_parquet(?)", [src])
rows = con.execute("SELECT count(*) FROM events").fetchone()[0]
con.close()
print(json.dumps({"rows": rows}))
"""

_PANDAS = """
import json, sys, pandas
df = pandas.read_json(sys.argv[1], lines=True)
print(json.dumps({"rows": len(df)}))
"""


# eventlens through its Python API with DuckDB's memory_limit lowered (--memory-limit).
_EVENTLENS_LIMITED = """
import json, sys
from eventlens.ingest import load_files
from eventlens.store import Store
src, db, limit = sys.argv[1], sys.argv[2], sys.argv[3]
store = Store(db)
store.execute(f"SET memory_limit = '{limit}'")
result = load_files(store, [src], "bench")
store.close()
print(json.dumps(result.as_dict()))
"""


@dataclass
class Contender:
    key: str
    name: str
    writes_db: bool = True
    memory_limit: str | None = None
    runs: list[Run] = field(default_factory=list)
    skipped: str | None = None
    discarded: int = 0  # runs thrown away by --retry-noisy
    source: Path | None = None  # the file it reads, when not the JSONL (p and q: the Parquet)

    def command(self, src: Path, db: Path) -> list[str]:
        py = sys.executable
        src = self.source or src
        if self.key in ("a", "p"):
            return [py, "-m", "eventlens.cli", "load", str(src), "--db", str(db), "--json"]
        if self.key == "b":
            return [py, "-c", _BARE, str(src), str(db), ""]
        if self.key == "c":
            return [py, "-c", _BARE, str(src), str(db), MAP_COLUMNS]
        if self.key == "e":
            return [py, "-c", _EVENTLENS_LIMITED, str(src), str(db), str(self.memory_limit)]
        if self.key == "q":
            return [py, "-c", _BARE_PARQUET, str(src), str(db)]
        return [py, "-c", _PANDAS, str(src)]


@dataclass
class Run:
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    returncode: int
    rows: int | None
    detail: str
    db_mb: float | None
    others: float | None  # share of the machine's CPU that other processes used meanwhile
    load_error: str | None = None  # eventlens ran but reported that the file did not load

    @property
    def failed(self) -> bool:
        return self.returncode != 0 or self.load_error is not None or self.rows is None


def run_once(c: Contender, src: Path, workdir: Path, n: int) -> Run:
    db = workdir / f"bench_{c.key}_{n}.duckdb"
    remove_db(db)
    busy_before = harness.busy_cpu_seconds()
    seconds, cpu, rss, code, stdout, stderr = harness.run_measured(c.command(src, db))
    busy_after = harness.busy_cpu_seconds()
    others = harness.others_share(busy_before, busy_after, cpu, seconds)
    rows, load_error = None, None
    result = harness.child_output(code, stdout, stderr)
    if isinstance(result, str):
        detail = result
    elif c.key in ("a", "e", "p"):
        rows = result["loaded"]
        f = result["files"][0] if result["files"] else {}
        detail = (
            f"loaded {result['loaded']:,}, rejected {result['rejected']:,}, "
            f"duplicates {result['duplicates']:,}, load step {f.get('seconds', 0):.1f} s"
        )
        if f.get("error"):
            load_error = f["error"]
            detail += f", error: {load_error}"
        stored = stored_events(db)
        if stored != rows:
            held = "no readable events" if stored is None else f"{stored:,}"
            detail += f", but the events table holds {held}"
    else:
        rows = result["rows"]
        detail = f"{rows:,} rows"
    db_mb = db.stat().st_size / 1e6 if c.writes_db and db.is_file() else None
    return Run(seconds, cpu, rss, code, rows, detail, db_mb, others, load_error)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def startup_overhead() -> str:
    """Wall seconds of a child that only imports, the floor under every contender's time."""
    parts = []
    for label, code in (
        ("import duckdb", "import duckdb"),
        ("import eventlens.cli", "import eventlens.cli"),
        ("import pandas", "import pandas"),
    ):
        times = [harness.run_measured([sys.executable, "-c", code])[0] for _ in range(3)]
        parts.append(f"{label} {statistics.median(times):.2f} s")
    return "process start + " + ", ".join(parts)


def report_run(label: str, run: Run, again: bool) -> None:
    """One run's line as it ends (`again`: discarded as noisy, to be run again)."""
    print(
        f"{label}: {run.seconds:.2f} s, peak RSS {run.peak_rss_mib:,.0f} MiB, {_others(run)}"
        + ("  -> discarded as noisy, running it again" if again else ""),
        flush=True,
    )


def _others(run: Run) -> str:
    if run.others is None:
        return "others' CPU unknown"
    return f"others used {percent(run.others)} CPU"


TABLE = Table(
    Col("contender", "<22"),
    Col("seconds", ">8"),
    Col("best s", ">7"),
    Col("cpu s", ">7"),
    Col("peak RSS MiB", ">12"),
    Col("events/s", ">11"),
    Col("vs b", ">6"),
    Col("vs c", ">6"),
    Col("db MB", ">7"),
    Col("rows", gap=2),
)


def print_table(contenders: list[Contender], n: int) -> bool:
    """Print the results; False when a contender's process crashed (exited non-zero)."""
    medians: dict[str, float | None] = {}
    for c in contenders:
        ok = [r.seconds for r in c.runs if not r.failed]
        medians[c.key] = statistics.median(ok) if ok and len(ok) == len(c.runs) else None
    TABLE.print_header()
    all_ok = True
    for c in contenders:
        label = f"{c.key}. {c.name}"
        if c.skipped:
            print(f"{TABLE.row(label)} skipped: {c.skipped}")
            continue
        med = medians[c.key]
        failed = [r for r in c.runs if r.failed]
        all_ok &= all(r.returncode == 0 for r in c.runs)
        rss = max(r.peak_rss_mib for r in c.runs)
        if med is None:
            print(
                f"{TABLE.row(label)} FAILED ({len(failed)}/{len(c.runs)} runs), peak RSS "
                f"{rss:,.0f} MiB: {failed[0].detail}"
            )
            continue
        dbs = [r.db_mb for r in c.runs if r.db_mb is not None]
        rows_ok = all(r.rows == n for r in c.runs)
        print(
            TABLE.row(
                label,
                f"{med:.2f}",
                f"{min(r.seconds for r in c.runs):.2f}",
                f"{statistics.median(r.cpu_seconds for r in c.runs):.2f}",
                f"{rss:,.0f}",
                f"{n / med:,.0f}",
                ratio(med, medians.get("b")),
                ratio(med, medians.get("c")),
                f"{dbs[-1]:,.0f}" if dbs else "-",
                f"{'ok' if rows_ok else 'MISMATCH'} ({n:,} expected)",
            )
        )
    print()
    for c in contenders:
        for i, r in enumerate(c.runs, 1):
            print(
                f"  {c.key} run {i}: {r.seconds:.2f} s, cpu {r.cpu_seconds:.2f} s, "
                f"peak RSS {r.peak_rss_mib:,.0f} MiB, {_others(r)}; {r.detail}"
            )
    discarded = {c.key: c.discarded for c in contenders if c.discarded}
    if discarded:
        print(
            "\nnoisy runs discarded and rerun (--retry-noisy): "
            + ", ".join(f"{k} {v}" for k, v in discarded.items())
        )
    noisy = sum(1 for c in contenders for r in c.runs if harness.is_noisy(r.others))
    if noisy:
        print("\n" + harness.noise_warning(f"in {noisy} run(s)"))
    _print_parquet_verdict({c.key: c for c in contenders}, medians)
    return all_ok


def _print_parquet_verdict(by_key: dict[str, Contender], medians: dict[str, float | None]) -> None:
    """p against q: the ratio of their median seconds and of their peak RSS, and the target."""
    p, q = by_key.get("p"), by_key.get("q")
    if not p or not q or p.skipped or q.skipped:
        return
    med_p, med_q = medians.get("p"), medians.get("q")
    met = med_p is not None and med_q is not None and med_p <= PARQUET_TARGET * med_q
    rss_p, rss_q = (max(r.peak_rss_mib for r in c.runs) for c in (p, q))
    print(
        "\nParquet: eventlens load "
        f"{med_p or 0:.2f} s vs bare read_parquet CTAS {med_q or 0:.2f} s = "
        f"{ratio(med_p, med_q)} (target <= {PARQUET_TARGET}x: {'met' if met else 'NOT MET'}); "
        f"peak RSS {rss_p:,.0f} vs {rss_q:,.0f} MiB = {ratio(rss_p, rss_q)}"
    )


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to generate")
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        default="generated",
        help="the export: generated (time order, event ids, long traces) or real (see above)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (median)")
    harness.add_workdir(parser, "the JSONL and DuckDB files")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the DuckDB files of the last run (the JSONL is always kept for reuse)",
    )
    harness.add_noise_options(parser, retry=True)
    parser.add_argument(
        "--memory-limit",
        metavar="LIMIT",
        help="also run e: eventlens's load_files through the Python API with DuckDB's "
        "memory_limit set to LIMIT (e.g. 2GB), to see whether it spills instead of growing",
    )
    parser.add_argument(
        "--only",
        metavar="KEYS",
        default="",
        help="run only these contenders, e.g. 'ae' (default: all)",
    )
    parser.add_argument(
        "--parquet",
        choices=PARQUET_KINDS,
        help="also write the export as Parquet with MAP (eventlens's types) or STRUCT columns and "
        "run p (eventlens load of it) and q (bare CREATE TABLE AS SELECT * FROM read_parquet)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="with --parquet: after the runs, load the Parquet file once in this process and "
        "print each statement's time, the typed insert's operators and the key's share",
    )
    parser.add_argument(
        "--delete-data", action="store_true", help="delete the generated JSONL at the end too"
    )
    args = parser.parse_args(argv)
    n, workdir = args.events, args.workdir.resolve()
    if n < 1 or args.repeat < 1:
        parser.error("--events and --repeat must be at least 1")

    if args.profile and not args.parquet:
        parser.error("--profile needs --parquet")

    harness.print_header("ingest", __spec__.name, argv)
    src = generate(n, workdir, args.shape)
    parquet = parquet_export(src, args.parquet) if args.parquet else None
    harness.wait_quiet(args.wait_quiet)
    print(startup_overhead())
    contenders = [
        Contender("a", "eventlens load"),
        Contender("b", "duckdb read_json"),
        Contender("c", "duckdb read_json MAP"),
        Contender("d", "pandas read_json", writes_db=False),
    ]
    if args.memory_limit:
        contenders.append(
            Contender("e", f"eventlens {args.memory_limit} lim", memory_limit=args.memory_limit)
        )
    if parquet:
        contenders += [
            Contender("p", "eventlens parquet", source=parquet),
            Contender("q", "duckdb read_parquet", source=parquet),
        ]
    if n > PANDAS_MAX_EVENTS:
        contenders[3].skipped = (
            f"pandas is skipped above {PANDAS_MAX_EVENTS:,} events (about 12 s and 3 GiB per "
            "million)"
        )
        print(f"note: {contenders[3].skipped}")
    if args.only:
        for c in contenders:
            if c.key not in args.only and not c.skipped:
                c.skipped = "not in --only"
    active = [c for c in contenders if not c.skipped]
    print(
        f"{n:,} events, {args.repeat} run(s) per contender, round-robin, "
        f"each a fresh process into a fresh DuckDB file"
        + (
            f", waiting up to {args.wait_quiet:.0f} s for a quiet machine before each run"
            if args.wait_quiet > 0
            else ""
        )
        + "\n"
    )
    for rep in range(args.repeat):
        for c in active:
            run, discarded = harness.run_with_retry(
                partial(run_once, c, src, workdir, n),
                lambda run: None if run.failed else run.others,
                partial(report_run, f"  [{rep + 1}/{args.repeat}] {c.key}. {c.name}"),
                retry_noisy=args.retry_noisy,
                wait_quiet_s=args.wait_quiet,
            )
            c.runs.append(run)
            c.discarded += discarded
            if not args.keep or rep < args.repeat - 1:
                remove_db(workdir / f"bench_{c.key}_{n}.duckdb")
    print()
    all_ok = print_table(contenders, n)
    if parquet and args.profile:
        harness.wait_quiet(args.wait_quiet)
        ingest_profile.print_profile(parquet, workdir / f"profile_{n}.duckdb")
    if args.delete_data:
        src.unlink(missing_ok=True)
        if parquet:
            parquet.unlink(missing_ok=True)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
