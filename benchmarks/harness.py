"""What the benchmark scripts share: how they report and how they measure.

- The header: the title, the command as run and the machine (CPU, cores, RAM, versions).
- Noise: the CPU time other processes used while something ran, read from /proc/stat; a
  measurement is noisy when they used more than NOISY_SHARE of the machine. wait_quiet() waits
  for a quiet machine, run_with_retry() runs a noisy measurement again.
- Processes: a free port, a process's CPU seconds, stopping one, the peak RSS of one child
  (through a launcher) and the RSS of a process tree (sampled).
- Timing in one process: a Row of timed calls (an untimed warm-up, then round-robin rounds), its
  median and best; the queries a Store ran (QueryLog) and EXPLAIN ANALYZE of the slowest.
- Tables: fixed-width text columns (Table), and the table of rows against their baselines with
  the ratio and the target.

The generated data (the LangWatch export, the stores loaded from it) is in benchmarks/data.py.

Run the scripts from the repository root as modules: `uv run python -m benchmarks.bench_ingest`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from eventlens.store import Store

ROOT = Path(__file__).resolve().parent.parent
NOISY_SHARE = 0.10  # a measurement during which other processes used more of the CPU is noisy

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# The header
# ---------------------------------------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def machine_line(*packages: str) -> str:
    """`machine: CPU, cores, RAM; Python, duckdb, pandas, OS`, then `; ` and the versions of
    `packages` (distribution names, e.g. "httpx") when given."""
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
    line = (
        f"machine: {cpu}, {os.cpu_count()} cores, {ram}; Python {platform.python_version()}, "
        f"duckdb {duckdb.__version__}, pandas {_version('pandas')}, {platform.system()} "
        f"{platform.release()}"
    )
    if packages:
        line += "; " + ", ".join(f"{p} {_version(p)}" for p in packages)
    return line


def command_line(module: str, argv: list[str] | None = None) -> str:
    """`command: python -m MODULE ARGS`: how to run this benchmark again (argv: sys.argv[1:])."""
    args = sys.argv[1:] if argv is None else argv
    return "command: " + shlex.join(["python", "-m", module, *args])


def print_header(title: str, module: str, argv: list[str] | None, *packages: str) -> None:
    """The first lines of every benchmark: title and time, command, machine."""
    print(f"eventlens {title} benchmark, {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(command_line(module, argv))
    print(machine_line(*packages))


# ---------------------------------------------------------------------------------------------
# Noise: the CPU other processes use meanwhile
# ---------------------------------------------------------------------------------------------


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy (incl. steal) since boot, from /proc/stat;
    None where it cannot be read (off Linux)."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return busy_ticks(fields) / os.sysconf("SC_CLK_TCK")


def busy_ticks(fields: list[int]) -> int:
    """The busy ticks of /proc/stat's `cpu` line: user, nice, system, irq, softirq and steal
    (not idle and iowait, nor guest time, which user already counts)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq + steal


def others_busy(before: float | None, after: float | None, own: float) -> float | None:
    """CPU seconds other processes used between two busy_cpu_seconds() readings, `own` of the
    machine's busy seconds meanwhile being ours (never below 0); None without readings."""
    if before is None or after is None:
        return None
    return max(0.0, after - before - own)


def cpu_share(seconds: float, wall: float, cores: int | None = None) -> float:
    """CPU seconds as a share of what the machine's cores could give in `wall` seconds."""
    return seconds / (wall * (cores or os.cpu_count() or 1))


def others_share(
    before: float | None, after: float | None, own: float, wall: float, cores: int | None = None
) -> float | None:
    """The share of the machine's CPU that other processes used during `wall` seconds."""
    busy = others_busy(before, after, own)
    if busy is None or wall <= 0:
        return None
    return cpu_share(busy, wall, cores)


def is_noisy(share: float | None) -> bool:
    """Whether others used more than NOISY_SHARE of the CPU (unknown is not noisy)."""
    return share is not None and share > NOISY_SHARE


def percent(share: float | None) -> str:
    """A share as `12%`, `?` when unknown."""
    return "?" if share is None else f"{share:.0%}"


def noise_warning(when: str) -> str:
    """The closing warning, e.g. noise_warning("while 2 row(s) ran")."""
    return (
        f"warning: other processes used more than {NOISY_SHARE:.0%} of the CPU {when}; those "
        "times are inflated, rerun on a quiet machine"
    )


def wait_quiet(
    limit: float,
    threshold: float = NOISY_SHARE,
    *,
    window: float = 3.0,
    busy: Callable[[], float | None] = busy_cpu_seconds,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Wait (at most `limit` seconds; not at all when limit <= 0) until the machine spends less
    than `threshold` of its CPU over `window` seconds; whether it went quiet."""
    if limit <= 0:
        return False
    deadline = clock() + limit
    while clock() < deadline:
        before, started = busy(), clock()
        sleep(window)
        after = busy()
        if before is None or after is None:
            return False
        if cpu_share(after - before, clock() - started) < threshold:
            return True
    print(f"  (the machine did not go quiet within {limit:.0f} s; running anyway)")
    return False


def run_with_retry(
    run: Callable[[], T],
    share: Callable[[T], float | None],
    report: Callable[[T, bool], None],
    *,
    retry_noisy: int = 0,
    wait_quiet_s: float = 0,
) -> tuple[T, int]:
    """Run once, after waiting up to wait_quiet_s for a quiet machine; while share(result) says
    the run was noisy, run again, up to retry_noisy more times. report(result, again) prints
    each run. Returns the kept result and how many were discarded."""
    discarded = 0
    while True:
        wait_quiet(wait_quiet_s)
        result = run()
        again = discarded < retry_noisy and is_noisy(share(result))
        report(result, again)
        if not again:
            return result, discarded
        discarded += 1


def add_noise_options(
    parser: argparse.ArgumentParser, when: str = "before each run", retry: bool = False
) -> None:
    """--wait-quiet SECONDS (and --retry-noisy K when retry)."""
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help=f"{when}, wait up to SECONDS for other processes to use under 10%% of the CPU "
        "(default 0: do not wait)",
    )
    if retry:
        parser.add_argument(
            "--retry-noisy",
            type=int,
            default=0,
            metavar="K",
            help="run a measurement again (up to K times) when other processes used over 10%% "
            "of the CPU during it; the discarded runs are counted in the report (default 0)",
        )


def add_workdir(parser: argparse.ArgumentParser, what: str = "the JSONL and the store") -> None:
    """--workdir DIR, by default ./bench_data (git-ignored)."""
    parser.add_argument(
        "--workdir",
        type=Path,
        default=ROOT / "bench_data",
        help=f"where {what} go (default ./bench_data)",
    )


def add_store_options(parser: argparse.ArgumentParser, wait_when: str, profile: str) -> None:
    """The options of a benchmark timing calls on one generated store: --events, --repeat,
    --workdir, --wait-quiet (wait_when: before what), --profile (profile: of what) and
    --delete-data."""
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the store")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per row (median)")
    add_workdir(parser)
    add_noise_options(parser, wait_when)
    parser.add_argument(
        "--profile",
        action="store_true",
        help=f"print DuckDB's EXPLAIN ANALYZE of the slowest query of {profile}",
    )
    parser.add_argument(
        "--delete-data",
        action="store_true",
        help="delete the generated JSONL and the store file at the end",
    )


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process (from /proc/PID/stat); 0 once it is gone."""
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL when it has not exited after `timeout` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tree_rss_mb(pid: int) -> float | None:
    """VmRSS of pid and its descendants, in MB (10^6 bytes); None once it is gone."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
            else:  # no VmRSS line: a zombie, exiting
                if p == pid:
                    return None
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            if p == pid:
                return None
    return total / 1e6


# A minimal launcher between this process and a measured child. A child's ru_maxrss starts from
# the RSS of the process it was forked from (Linux carries the old address space's high-water
# mark across exec, and subprocess uses vfork), so forking children from a benchmark that has
# imported duckdb and pandas and generated the data would put a floor of 100+ MiB (GBs after
# generating 10M events) under every number. The launcher is `python -S` with nothing imported
# (about 10 MiB), forks and execs the child, times it, and reaps it with wait4.
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


def run_measured(cmd: list[str]) -> tuple[float, float, float, int, str, str]:
    """Run cmd through the launcher; (wall s, cpu s, peak RSS MiB, exit code, stdout, stderr)
    of that one process."""
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


def child_output(code: int, stdout: str, stderr: str) -> dict[str, Any] | str:
    """A child's last stdout line as JSON, or why there is none: `exit N: <stderr's last
    lines>` or `unreadable output: ...`."""
    if code != 0:
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        return f"exit {code}: {tail or '(no stderr)'}"
    try:
        return json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return f"unreadable output: {stdout[-200:]!r}"


# ---------------------------------------------------------------------------------------------
# Timing in one process
# ---------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One timed call's results: its times, and the CPU other processes used meanwhile."""

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
        return cpu_share(self.busy_others, self.wall)


def timed(row: Row, fn: Callable[[], Any], *, record: bool = True) -> float:
    """Call fn once; add its wall time (and others' CPU meanwhile) to row when record."""
    busy_before, cpu_before = busy_cpu_seconds(), time.process_time()
    started = time.perf_counter()
    row.last = fn()
    seconds = time.perf_counter() - started
    busy_after, cpu_after = busy_cpu_seconds(), time.process_time()
    if record:
        row.times.append(seconds)
        row.wall += seconds
        busy = others_busy(busy_before, busy_after, cpu_after - cpu_before)
        if busy is not None:
            row.busy_others += busy
    return seconds


Calls = list[tuple[Row, Callable[[], Any]]]


def warm_up(calls: Calls) -> None:
    """One untimed call of each (its seconds kept as row.first)."""
    for row, fn in calls:
        row.first = timed(row, fn, record=False)


def time_rounds(calls: Calls, repeat: int) -> None:
    """`repeat` rounds, each calling every row once, in turn (round-robin)."""
    for _ in range(repeat):
        for row, fn in calls:
            timed(row, fn)


def noisy_rows(rows: Iterable[Row | None]) -> int:
    return sum(1 for r in rows if r is not None and is_noisy(r.others()))


def warn_if_noisy(rows: Iterable[Row | None]) -> None:
    """The closing warning when other processes used over 10% of the CPU during any row."""
    noisy = noisy_rows(rows)
    if noisy:
        print("\n" + noise_warning(f"while {noisy} row(s) ran"))


Query = tuple[str, Any, float, int]  # sql, params, seconds, rows


class QueryLog:
    """Times every query a Store runs while capturing, by wrapping Store.rows() and Store.df()
    on the class (Store.scalar() goes through rows()), so the app's own store is covered too."""

    def __init__(self) -> None:
        self.entries: list[Query] = []
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

    def capture(self, fn: Callable[[], Any]) -> tuple[float, list[Query]]:
        self.entries, self.on = [], True
        started = time.perf_counter()
        try:
            fn()
        finally:
            self.on = False
        return time.perf_counter() - started, self.entries

    def close(self) -> None:
        Store.rows, Store.df = self._saved  # type: ignore[method-assign]


def short_sql(sql: str) -> str:
    """A query's first 70 characters, white space folded."""
    words = " ".join(sql.split())
    return words[:70] + ("..." if len(words) > 70 else "")


def print_breakdown(
    title: str,
    total: float,
    entries: list[Query],
    rest: str,
    describe: Callable[[str], str] = short_sql,
) -> None:
    """Where a call's time went: each query it ran, and the rest (`rest` says where)."""
    queries = sum(s for _, _, s, _ in entries)
    print(
        f"{title}: {total * 1000:,.0f} ms in all, {queries * 1000:,.0f} ms in {len(entries)} "
        f"queries, {(total - queries) * 1000:,.0f} ms {rest}"
    )
    for sql, _, seconds, n in entries:
        print(f"  {seconds * 1000:>8,.1f} ms  {n:>7,} rows  {describe(sql)}")


def profile(
    store: Store, title: str, entries: list[Query], describe: Callable[[str], str] = short_sql
) -> str:
    """DuckDB's EXPLAIN ANALYZE of the slowest query among entries, as text to print."""
    sql, params, seconds, _ = max(entries, key=lambda e: e[2])
    with store.cursor() as cur:
        plan = cur.execute("EXPLAIN ANALYZE " + sql, params).fetchall()
    head = f"profile of {title}'s slowest query ({seconds * 1000:,.1f} ms): {describe(sql)}"
    return "\n".join([head, *(text for _, text in plan)])


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Col:
    title: str
    spec: str = ""  # alignment and width of the cells' text, e.g. "<22" or ">8"
    gap: int = 1  # spaces before the column


class Table:
    """Fixed-width text columns. row() takes the cells as text, fewer than the columns when the
    last ones stay off the line; a cell wider than its column pushes the rest to the right."""

    def __init__(self, *columns: Col) -> None:
        self.columns = columns

    def row(self, *cells: object) -> str:
        if len(cells) > len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        return "".join(
            (" " * col.gap if i else "") + format(str(cell), col.spec)
            for i, (col, cell) in enumerate(zip(self.columns, cells, strict=False))
        )

    def header(self) -> str:
        return self.row(*(col.title for col in self.columns))

    def print_header(self) -> None:
        """The header and a rule of dashes as long."""
        header = self.header()
        print(header)
        print("-" * len(header))


def ms(value: float | None) -> str:
    """Milliseconds to print: `-`, `4.4`, `104`, `1,133`."""
    return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def ratio(value: float | None, base: float | None, digits: int = 2) -> str:
    """value / base as `1.86x`; `-` when either is missing or base is 0."""
    if value is None or not base:
        return "-"
    return f"{value / base:.{digits}f}x"


RATIO_TABLE = Table(
    Col("name", "<34"),
    Col("median ms", ">10"),
    Col("best ms", ">9"),
    Col("baseline ms", ">12"),
    Col("ratio", ">7"),
    Col("target ms", ">10"),
    Col("met", "<8", gap=2),
    Col("others CPU", ">10"),
)

# (eventlens's row, the baseline's row or None, the target in ms or None, the target's text
# when there is no number to judge)
Judged = tuple[Row, Row | None, float | None, str]


def print_ratio_table(entries: list[Judged]) -> None:
    """Median and best ms of each row, its baseline's median (the baseline on a line of its own
    below), the ratio, the target and whether the median met it, and the others' CPU share."""
    RATIO_TABLE.print_header()
    for row, base, target, target_note in entries:
        med = row.median_ms()
        base_med = base.median_ms() if base else None
        if target is None:
            target_text, met = target_note, "-"
        else:
            met = "met" if med is not None and med <= target else "NOT MET"
            target_text = ms(target)
        others = [r.others() for r in (row, base) if r is not None and r.others() is not None]
        print(
            RATIO_TABLE.row(
                row.name,
                ms(med),
                ms(row.best_ms()),
                ms(base_med),
                ratio(med, base_med, digits=1),
                target_text,
                met,
                percent(max(others)) if others else "?",
            )
        )
        if base is not None:
            print(RATIO_TABLE.row("  " + base.name, ms(base_med), ms(base.best_ms()), *[""] * 4))
