"""Ingest benchmark: `eventlens load` against bare DuckDB and pandas on one generated export.

    uv run python benchmarks/bench_ingest.py [--events N] [--repeat R] [--workdir DIR] [--keep]
                                             [--wait-quiet SECONDS] [--retry-noisy K]
                                             [--memory-limit LIMIT] [--only KEYS]
                                             [--delete-data]

1. Generates N LangWatch track_event bodies as JSON lines with DuckDB SQL (no Python loop) into
   WORKDIR/events_<N>.jsonl, reusing the file when it already exists with N lines.
2. Runs each contender in a fresh subprocess, into a fresh DuckDB file, R times (round-robin):
     a. eventlens load   `python -m eventlens.cli load FILE --db DB --json` (the real CLI)
     b. duckdb auto      CREATE TABLE AS SELECT * FROM read_json(FILE)   (types auto-detected)
     c. duckdb maps      the same with eventlens's target types (MAP columns), no validation,
                         line numbers or dedupe
     d. pandas           pandas.read_json(FILE, lines=True) (skipped above 2,000,000 events)
     e. (--memory-limit) eventlens's load_files via the Python API after
                         SET memory_limit = LIMIT (DuckDB's default is 80% of RAM)
3. Prints the median wall seconds, the max peak RSS, events/s and ratios against b and c, and
   checks the row counts.

Peak RSS: each contender is started by a tiny launcher (`python -S`, nothing imported) that
forks it, execs it and reaps it with os.wait4(pid), which returns that one process's rusage;
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
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
PANDAS_MAX_EVENTS = 2_000_000
NOISY_SHARE = 0.10  # a run during which other processes used more of the CPU is noisy
DAY_MS = 86_400_000
END_MS = 1_764_547_200_000  # 2025-12-01T00:00:00Z
START_MS = END_MS - 30 * DAY_MS
STEP_MS = 45_000  # events of a trace are 45-75 s apart

MAP_COLUMNS = (
    "{trace_id: 'VARCHAR', event_type: 'VARCHAR', metrics: 'MAP(VARCHAR, DOUBLE)', "
    "event_details: 'MAP(VARCHAR, VARCHAR)', timestamp: 'BIGINT', event_id: 'VARCHAR'}"
)

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def _pick(options: list[str], salt: str, key: str = "i") -> str:
    """SQL choosing one of several string constants by a hash of the row."""
    items = ", ".join("'" + o.replace("'", "''") + "'" for o in options)
    return f"[{items}][1 + (hash({key}, '{salt}') % {len(options)})::INT]"


def _u(salt: str, key: str = "i") -> str:
    """SQL for a deterministic uniform number in [0, 1) from a hash of the row."""
    return f"((hash({key}, '{salt}') % 1000000) / 1000000.0)"


def _events_sql(n: int, traces: int) -> str:
    """SELECT producing n track_event bodies, ordered by timestamp."""
    user = "'user_' || lpad((hash(t, 'user') % 20000)::VARCHAR, 5, '0')"
    model = _pick(["gpt-4o-mini", "gpt-4o", "claude-sonnet"], "model", "t")
    country = _pick(["US", "DE", "GB", "IN", "BR", "FR", "JP", "NL"], "country", "t")
    release = _pick(["v1", "v2"], "release", "t")
    page = _pick(["/", "/chat", "/product", "/docs", "/pricing", "/cart", "/checkout"], "page")
    query = _pick(
        [
            "refund policy",
            "shipping to germany",
            "cancel my order",
            "gpu laptop under 1500",
            "how do I export events",
            "reset password",
            "invoice for march",
        ],
        "query",
    )
    tool = _pick(["retriever", "web_search", "sql_query", "calculator", "code_interpreter"], "tool")
    category = _pick(["apparel", "books", "electronics", "garden", "grocery", "home"], "cat")
    payment = _pick(["card", "paypal", "invoice"], "pay")
    error = _pick(
        [
            "upstream timeout",
            "rate limited by provider",
            "internal server error",
            "invalid tool arguments",
            "response failed schema validation",
        ],
        "err",
    )
    feedback = _pick(
        [
            "great answer",
            "too slow",
            "wrong answer",
            "thanks!",
            "made up a citation",
            "clear and concise",
        ],
        "fb",
    )
    selected = _pick(
        [
            "the refund is issued within 30 days",
            "free shipping over 50 EUR",
            "SELECT count(*) FROM events",
            "your order ships tomorrow",
        ],
        "sel",
    )
    u = _u
    # (event_type, share in %, metrics json_object args, details json_object args)
    types = [
        (
            "page_view",
            22,
            f"'load_ms', round(80 + 1500 * {u('a')}, 1), 'dom_nodes', (300 + 2000 * {u('b')})::INT",
            f"'user_id', user_id, 'session_id', session_id, 'page', {page}, 'country', country",
        ),
        (
            "search",
            14,
            f"'results', (50 * {u('a')})::INT, 'latency_ms', round(40 + 400 * {u('b')}, 1), "
            f"'query_tokens', (2 + 12 * {u('c')})::INT",
            f"'user_id', user_id, 'query', {query}, 'country', country",
        ),
        (
            "llm_call",
            16,
            f"'prompt_tokens', (200 + 3000 * {u('a')})::INT, "
            f"'completion_tokens', (20 + 800 * {u('b')})::INT, "
            f"'latency_ms', round(300 + 4000 * {u('c')}, 1), "
            f"'cost_usd', round(0.02 * {u('d')}, 6)",
            "'model', model, 'user_id', user_id, 'release', release",
        ),
        (
            "tool_call",
            12,
            f"'duration_ms', round(5 + 2500 * {u('a')}, 1), 'retries', (3 * {u('b')} ^ 4)::INT",
            f"'tool', {tool}, 'user_id', user_id, 'status', "
            f"CASE WHEN {u('c')} < 0.95 THEN 'ok' ELSE 'error' END",
        ),
        (
            "add_to_cart",
            7,
            f"'price', round(5 + 300 * {u('a')}, 2), 'quantity', (1 + 3 * {u('b')})::INT",
            f"'category', {category}, 'user_id', user_id, 'currency', 'EUR'",
        ),
        (
            "checkout",
            3,
            f"'total', round(10 + 900 * {u('a')}, 2), 'items', (1 + 8 * {u('b')})::INT, "
            f"'discount', round(20 * {u('c')}, 2)",
            f"'plan', {_pick(['free', 'pro', 'enterprise'], 'plan', 't')}, 'user_id', user_id, "
            f"'payment_method', {payment}",
        ),
        (
            "error",
            4,
            f"'status_code', {_pick(['500', '502', '504', '429', '400'], 'code')}::INT, "
            f"'retry_after_ms', (30000 * {u('a')})::INT",
            f"'message', {error}, 'user_id', user_id, 'release', release, 'endpoint', '/api/chat'",
        ),
        (
            "thumbs_up_down",
            8,
            f"'vote', CASE WHEN {u('a')} < 0.7 THEN 1 ELSE -1 END, "
            f"'latency_ms', round(300 + 4000 * {u('b')}, 1)",
            f"'feedback', {feedback}, 'user_id', user_id, 'model', model",
        ),
        (
            "selected_text",
            7,
            f"'text_length', (1 + 400 * {u('a')})::INT, 'start_offset', (2000 * {u('b')})::INT",
            f"'selected_text', {selected}, 'user_id', user_id",
        ),
        (
            "waited_to_finish",
            7,
            f"'finished', CASE WHEN {u('a')} < 0.8 THEN 1 ELSE 0 END, "
            f"'wait_ms', round(500 + 8000 * {u('b')}, 1)",
            "'user_id', user_id, 'model', model",
        ),
    ]
    assert sum(share for _, share, _, _ in types) == 100
    type_case, metrics_case, details_case, low = [], [], [], 0
    for name, share, metrics, details in types:
        cond = f"WHEN bucket < {low + share}"
        type_case.append(f"{cond} THEN '{name}'")
        metrics_case.append(f"{cond} THEN json_object({metrics})")
        details_case.append(f"{cond} THEN json_object({details})")
        low += share
    span = 30 * DAY_MS - 40 * (STEP_MS + 30_000)
    return f"""
        WITH traces AS (
            SELECT t, size, sum(size) OVER (ORDER BY t ROWS UNBOUNDED PRECEDING) - size AS first
            FROM (SELECT t, 1 + (hash(t, 'size') % 40)::BIGINT AS size FROM range({traces}) r(t))
        ),
        ev AS (
            SELECT first + k AS i, t, k FROM (SELECT t, first, unnest(range(size)) AS k FROM traces)
            WHERE first + k < {n}
        ),
        rows AS (
            SELECT i, t, k, (hash(i, 'type') % 100)::INT AS bucket,
                   'trace_' || printf('%016x', hash(t, 'trace')) AS trace_id,
                   {user} AS user_id,
                   'sess_' || printf('%012x', hash(t, 'sess') % 281474976710656) AS session_id,
                   {model} AS model, {country} AS country, {release} AS release,
                   {START_MS} + (hash(t, 'start') % {span})::BIGINT + k * {STEP_MS}
                       + (hash(i, 'jitter') % 30000)::BIGINT AS ts
            FROM ev
        )
        SELECT trace_id,
               CASE {" ".join(type_case)} END AS event_type,
               CASE {" ".join(metrics_case)} END AS metrics,
               CASE {" ".join(details_case)} END AS event_details,
               ts AS timestamp,
               'evt_' || printf('%016x', hash(i, 'evt')) AS event_id
        FROM rows
        ORDER BY ts, i
    """


def generate(n: int, workdir: Path) -> Path:
    """WORKDIR/events_<n>.jsonl, generated unless it already holds n lines."""
    path = workdir / f"events_{n}.jsonl"
    if path.is_file():
        lines = _count_lines(path)
        if lines == n:
            print(f"reusing {path} ({n:,} events, {path.stat().st_size / 1e6:,.0f} MB)")
            return path
        print(f"{path} holds {lines:,} lines, not {n:,}: generating it again")
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = path.with_suffix(".jsonl.part")
    con = duckdb.connect()
    try:
        # Enough traces (1-40 events each, 20.5 on average) to cover n events.
        traces = n // 15 + 64
        while (
            con.execute(
                f"SELECT sum(1 + hash(t, 'size') % 40) FROM range({traces}) r(t)"
            ).fetchone()[0]
            < n
        ):
            traces *= 2
        con.execute(f"COPY ({_events_sql(n, traces)}) TO '{tmp}' (FORMAT json)")
    finally:
        con.close()
    tmp.replace(path)
    print(
        f"generated {path} ({n:,} events, {path.stat().st_size / 1e6:,.0f} MB) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return path


def _count_lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(16 * 1024 * 1024):
            count += chunk.count(b"\n")
    return count


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

    def command(self, src: Path, db: Path) -> list[str]:
        py = sys.executable
        if self.key == "a":
            return [py, "-m", "eventlens.cli", "load", str(src), "--db", str(db), "--json"]
        if self.key == "b":
            return [py, "-c", _BARE, str(src), str(db), ""]
        if self.key == "c":
            return [py, "-c", _BARE, str(src), str(db), MAP_COLUMNS]
        if self.key == "e":
            return [py, "-c", _EVENTLENS_LIMITED, str(src), str(db), str(self.memory_limit)]
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


# A minimal launcher between this process and each contender. A child's ru_maxrss starts from
# the RSS of the process it was forked from (Linux carries the old address space's high-water
# mark across exec, and subprocess uses vfork), so forking contenders from this process, which
# has imported duckdb and pandas and generated the data, would put a floor of 100+ MiB (GBs
# after generating 10M events) under every number. The launcher is `python -S` with nothing
# imported (about 10 MiB), forks and execs the contender, times it, and reaps it with wait4.
_LAUNCHER = """
import os, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - started
code = os.waitstatus_to_exitcode(status)
with open(out, "w") as fh:
    fh.write(f"{wall} {ru.ru_utime + ru.ru_stime} {ru.ru_maxrss} {code}")
"""


def run_child(cmd: list[str]) -> tuple[float, float, float, int, str, str]:
    """Run cmd; (wall s, cpu s, peak RSS MiB, exit code, stdout, stderr) of that one process."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as usage,
    ):
        launcher = [sys.executable, "-S", "-c", _LAUNCHER, usage.name]
        launched = subprocess.run(launcher + cmd, stdout=out, stderr=err, cwd=ROOT, check=False)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
        fields = usage.read().split()
    if launched.returncode != 0 or len(fields) != 4:
        raise RuntimeError(f"the launcher failed (exit {launched.returncode}): {stderr[-500:]}")
    wall, cpu, maxrss_kib, code = float(fields[0]), float(fields[1]), int(fields[2]), int(fields[3])
    return wall, cpu, maxrss_kib / 1024, code, stdout, stderr


def remove_db(db: Path) -> None:
    for p in (db, Path(f"{db}.wal")):
        p.unlink(missing_ok=True)
    shutil.rmtree(f"{db}.tmp", ignore_errors=True)


def run_once(c: Contender, src: Path, workdir: Path, n: int) -> Run:
    db = workdir / f"bench_{c.key}_{n}.duckdb"
    remove_db(db)
    busy_before = _busy_cpu_seconds()
    seconds, cpu, rss, code, stdout, stderr = run_child(c.command(src, db))
    busy_after = _busy_cpu_seconds()
    others = None
    if busy_before is not None and busy_after is not None:
        others = max(0.0, busy_after - busy_before - cpu) / (seconds * (os.cpu_count() or 1))
    rows, detail, load_error = None, "", None
    if code != 0:
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        detail = f"exit {code}: {tail or '(no stderr)'}"
    else:
        try:
            result = json.loads(stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            detail = f"unreadable output: {stdout[-200:]!r}"
        else:
            if c.key in ("a", "e"):
                rows = result["loaded"]
                f = result["files"][0] if result["files"] else {}
                detail = (
                    f"loaded {result['loaded']:,}, rejected {result['rejected']:,}, "
                    f"duplicates {result['duplicates']:,}, load step {f.get('seconds', 0):.1f} s"
                )
                if f.get("error"):
                    load_error = f["error"]
                    detail += f", error: {load_error}"
                stored = _stored_events(db)
                if stored != rows:
                    detail += f", but the events table holds {stored:,}"
            else:
                rows = result["rows"]
                detail = f"{rows:,} rows"
    db_mb = db.stat().st_size / 1e6 if c.writes_db and db.is_file() else None
    return Run(seconds, cpu, rss, code, rows, detail, db_mb, others, load_error)


def wait_quiet(limit: float, threshold: float = 0.10) -> None:
    """Wait (at most `limit` seconds) until other processes use < threshold of the CPU for 3 s."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before, started = _busy_cpu_seconds(), time.monotonic()
        time.sleep(3)
        after = _busy_cpu_seconds()
        if before is None or after is None:
            return
        if (after - before) / ((time.monotonic() - started) * (os.cpu_count() or 1)) < threshold:
            return
    print(f"  (the machine did not go quiet within {limit:.0f} s; running anyway)")


def _busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy (incl. steal) since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _stored_events(db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def machine_line() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "? GB"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
                break
    except OSError:
        pass
    try:
        import pandas

        pandas_version = pandas.__version__
    except ImportError:
        pandas_version = "not installed"
    return (
        f"machine: {cpu}, {os.cpu_count()} cores, {ram}; Python {platform.python_version()}, "
        f"duckdb {duckdb.__version__}, pandas {pandas_version}, {platform.system()} "
        f"{platform.release()}"
    )


def startup_overhead() -> str:
    """Wall seconds of a child that only imports, the floor under every contender's time."""
    parts = []
    for label, code in (
        ("import duckdb", "import duckdb"),
        ("import eventlens.cli", "import eventlens.cli"),
        ("import pandas", "import pandas"),
    ):
        times = [run_child([sys.executable, "-c", code])[0] for _ in range(3)]
        parts.append(f"{label} {statistics.median(times):.2f} s")
    return "process start + " + ", ".join(parts)


def _others(run: Run) -> str:
    if run.others is None:
        return "others' CPU unknown"
    return f"others used {run.others:.0%} CPU"


def _fmt_ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}x"


def print_table(contenders: list[Contender], n: int) -> bool:
    """Print the results; False when a contender's process crashed (exited non-zero)."""
    medians: dict[str, float | None] = {}
    for c in contenders:
        ok = [r.seconds for r in c.runs if not r.failed]
        medians[c.key] = statistics.median(ok) if ok and len(ok) == len(c.runs) else None
    header = (
        f"{'contender':<22} {'seconds':>8} {'best s':>7} {'cpu s':>7} {'peak RSS MiB':>12} "
        f"{'events/s':>11} "
        f"{'vs b':>6} {'vs c':>6} {'db MB':>7}  rows"
    )
    print(header)
    print("-" * len(header))
    all_ok = True
    for c in contenders:
        label = f"{c.key}. {c.name}"
        if c.skipped:
            print(f"{label:<22} skipped: {c.skipped}")
            continue
        med = medians[c.key]
        failed = [r for r in c.runs if r.failed]
        all_ok &= all(r.returncode == 0 for r in c.runs)
        rss = max(r.peak_rss_mib for r in c.runs)
        if med is None:
            print(
                f"{label:<22} FAILED ({len(failed)}/{len(c.runs)} runs), peak RSS {rss:,.0f} MiB"
                f": {failed[0].detail}"
            )
            continue
        cpu = statistics.median(r.cpu_seconds for r in c.runs)
        best = min(r.seconds for r in c.runs)
        dbs = [r.db_mb for r in c.runs if r.db_mb is not None]
        db = f"{dbs[-1]:,.0f}" if dbs else "-"
        rows_ok = all(r.rows == n for r in c.runs)
        rows = "ok" if rows_ok else "MISMATCH"
        print(
            f"{label:<22} {med:>8.2f} {best:>7.2f} {cpu:>7.2f} {rss:>12,.0f} {n / med:>11,.0f} "
            f"{_fmt_ratio(med, medians.get('b')):>6} {_fmt_ratio(med, medians.get('c')):>6} "
            f"{db:>7}  {rows} ({n:,} expected)"
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
    noisy = [
        r for c in contenders for r in c.runs if r.others is not None and r.others > NOISY_SHARE
    ]
    if noisy:
        print(
            f"\nwarning: in {len(noisy)} run(s) other processes used more than 10% of the "
            "machine's CPU; those times are inflated, rerun on a quiet machine"
        )
    return all_ok


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to generate")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (median)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=ROOT / "bench_data",
        help="where the JSONL and DuckDB files go (default ./bench_data)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the DuckDB files of the last run (the JSONL is always kept for reuse)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each run, wait up to SECONDS for other processes to use "
        "under 10%% of the CPU (default 0: do not wait)",
    )
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
        "--retry-noisy",
        type=int,
        default=0,
        metavar="K",
        help="run a measurement again (up to K times) when other processes used over 10%% of "
        "the CPU during it; the discarded runs are counted in the report (default 0)",
    )
    parser.add_argument(
        "--delete-data", action="store_true", help="delete the generated JSONL at the end too"
    )
    args = parser.parse_args(argv)
    n, workdir = args.events, args.workdir.resolve()
    if n < 1 or args.repeat < 1:
        parser.error("--events and --repeat must be at least 1")

    print(f"eventlens ingest benchmark, {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(machine_line())
    src = generate(n, workdir)
    if args.wait_quiet > 0:
        wait_quiet(args.wait_quiet)
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
            for attempt in range(args.retry_noisy + 1):
                if args.wait_quiet > 0:
                    wait_quiet(args.wait_quiet)
                run = run_once(c, src, workdir, n)
                noisy = run.others is not None and run.others > NOISY_SHARE
                retry = noisy and not run.failed and attempt < args.retry_noisy
                print(
                    f"  [{rep + 1}/{args.repeat}] {c.key}. {c.name}: {run.seconds:.2f} s, "
                    f"peak RSS {run.peak_rss_mib:,.0f} MiB, {_others(run)}"
                    + ("  -> discarded as noisy, running it again" if retry else ""),
                    flush=True,
                )
                if not retry:
                    break
                c.discarded += 1
            c.runs.append(run)
            if not args.keep or rep < args.repeat - 1:
                remove_db(workdir / f"bench_{c.key}_{n}.duckdb")
    print()
    all_ok = print_table(contenders, n)
    if args.delete_data:
        src.unlink(missing_ok=True)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
