"""Replay benchmark: eventlens's replay engine against bare HTTP clients, and its memory.

    uv run python -m benchmarks.bench_replay [--instant-events N] [--slow-events N]
                                             [--repeat R] [--concurrency C]
                                             [--source-events M] [--sparse-source-events M2]
                                             [--slow-sequential K] [--instant-sequential K]
                                             [--capped-events K]
                                             [--only KEYS] [--endpoints instant,slow]
                                             [--memory-events M3] [--memory-seconds S]
                                             [--skip-throughput] [--skip-memory]
                                             [--wait-quiet SECONDS] [--retry-noisy K]
                                             [--workdir DIR]

1. Throughput. Starts two local endpoints, each a minimal asyncio HTTP/1.1 keep-alive server
   (`asyncio.start_server`, one process, one core, no framework: benchmarks/bare_endpoint.py)
   answering every POST 200 `{"message": "Event tracked"}`:
     instant   answers at once: what the client costs per request decides the rate
     slow      answers after 50 ms (asyncio.sleep): the ideal at 64 in flight is 64 / 0.05 =
               1,280 events/s; a client that keeps 64 requests in flight gets close to it
   The events are the first N of the generated export WORKDIR/events_<M>.jsonl (M =
   --source-events, 10M by default, so about 170 traces are live in any 512 consecutive events
   and the replay's one-trace-at-a-time ordering does not bind), copied to
   WORKDIR/replay_head_<N>_of_<M>.jsonl. Every contender posts those same events as JSON, with
   the same headers, each in a fresh process (the same interpreter, running
   benchmarks/replay_contenders.py), R times round-robin, with C in flight:
     a   eventlens replay      replay.plan(...) untimed (its seconds are printed apart), then
                               Replay(store, run, key).execute() timed: the engine as the CLI
                               and the page run it (AsyncSender on httpx-aiohttp's
                               AiohttpTransport, per-trace ordering, the outcome journal in
                               DuckDB, the final report)
     a2  eventlens, sparse     the same on the first N events of events_<M2>.jsonl (1M): the
                               trace density of a small export, about 42 traces live in 512
                               consecutive events, so the per-trace ordering caps the requests
                               in flight below C (skipped with --sparse-source-events 0)
     b   httpx sequential      httpx.Client, one request at a time (only K events: about 20/s
                               against the slow endpoint)
     c   raw aiohttp           aiohttp.ClientSession(TCPConnector(limit=C)) with C worker
                               coroutines taking the next event in turn: the baseline
     c2  raw aiohttp, sem.     the same session, one task per event (asyncio.gather) each
                               holding an asyncio.Semaphore(C) around its post
     d   httpx threads         one httpx.Client (C connections) shared by C threads
     e   httpx AsyncClient     httpx.AsyncClient, its default transport (httpcore), C workers
                               (d and e send only --capped-events, 3000: they are slow)
     f   AsyncClient+aiohttp   httpx.AsyncClient(transport=AiohttpTransport(...)), C workers
     g   AsyncSender+aiohttp   eventlens.client.AsyncSender on AiohttpTransport, C workers:
                               eventlens's request path without the replay engine around it
   Only the sending is timed (bodies are parsed, clients built and the plan written before).
   Every answer must be a 200: a contender's events are counted as accepted only then.
2. Memory. Runs the real CLI, `python -m eventlens.cli replay FILE --db DB --endpoint URL
   --concurrency C --json` on WORKDIR/events_<M3>.jsonl (10M by default) against a fresh instant
   server, samples its resident set (VmRSS of the process and any children, /proc) every 0.5 s,
   and reports the peak while planning (until it prints `run_id:`), the time to plan, and
   min / median / max of the RSS while sending. With --memory-seconds S it stops the CLI with
   SIGTERM after S seconds of sending (the CLI stops cleanly and journals what it sent);
   without, it sends the whole file (about an hour for 10M). The store and plan are deleted.
3. Prints the command, the machine, a table per endpoint (median seconds and events/s, ratio
   against raw aiohttp, client CPU per 1,000 events, the server's CPU share) and the memory
   samples. The targets (issue 16): against raw aiohttp at the same concurrency, eventlens (a
   and a2) >= 0.95x on the slow endpoint and >= 0.5x on the instant one; under 300 MB RSS
   replaying 10M events.

The machine is shared: each timed window reads /proc/stat and prints the CPU other processes
used meanwhile (above 10% the run is noisy). --wait-quiet waits for a quiet machine before each
run; --retry-noisy K runs a noisy run again (up to K times).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import duckdb

from benchmarks import harness, replay_contenders
from benchmarks.data import count_lines, generate
from benchmarks.harness import ROOT, Col, Table, percent, ratio
from benchmarks.replay_contenders import KEY

SLOW_DELAY_S = 0.05
SLOW_TARGET, INSTANT_TARGET = 0.95, 0.50  # issue 16 (issue 9 asked 0.85 and 0.30)
RSS_TARGET_MB = 300
SAMPLE_S = 0.5


CONTENDERS = {
    "a": "eventlens replay",
    "a2": "eventlens, sparse traces",
    "b": "httpx sequential",
    "c": "raw aiohttp",
    "c2": "raw aiohttp, semaphore",
    "d": "httpx Client, threads",
    "e": "httpx AsyncClient",
    "f": "AsyncClient+aiohttp",
    "g": "AsyncSender+aiohttp",
}
BASELINE = "c"


# ---------------------------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------------------------


class Endpoint:
    """The minimal server in its own process on a free loopback port."""

    def __init__(self, name: str, delay_s: float):
        self.name, self.delay_s = name, delay_s
        self.port = harness.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Endpoint:
        cmd = [sys.executable, "-m", "benchmarks.bare_endpoint", str(self.port), str(self.delay_s)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the {self.name} server exited: {self.proc.stderr.read()!r}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit(f"the {self.name} server did not start in 15 s")

    def stop(self) -> None:
        if self.proc is not None:
            harness.stop_process(self.proc, timeout=10)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def head_file(n: int, source_events: int, workdir: Path) -> Path:
    """WORKDIR/replay_head_<n>_of_<M>.jsonl: the first n events of events_<M>.jsonl."""
    path = workdir / f"replay_head_{n}_of_{source_events}.jsonl"
    if path.is_file() and count_lines(path) == n:
        return path
    src = generate(source_events, workdir)
    tmp = path.with_suffix(".part")
    with open(src, "rb") as fh, open(tmp, "wb") as out:
        out.writelines(itertools.islice(fh, n))
    tmp.replace(path)
    return path


def trace_density(path: Path, window: int = 512) -> str:
    """Distinct traces in each `window` consecutive events of the file: median (min-max)."""
    with duckdb.connect() as con:
        lo, med, hi = con.execute(
            f"""
            WITH e AS (SELECT row_number() OVER () - 1 AS i, trace_id
                       FROM read_json(?, columns={{trace_id: 'VARCHAR'}})),
                 w AS (SELECT i // {window} AS w, count(DISTINCT trace_id) AS d FROM e GROUP BY 1)
            SELECT min(d), median(d), max(d) FROM w
            """,
            [str(path)],
        ).fetchone()
    return f"{med:.0f} distinct traces per {window} consecutive events (min {lo}, max {hi})"


# ---------------------------------------------------------------------------------------------
# Throughput
# ---------------------------------------------------------------------------------------------


@dataclass
class Result:
    events: int
    ok: int
    seconds: float
    cpu_s: float
    server_cpu_s: float
    others: float | None
    plan_s: float | None = None
    detail: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds


@dataclass
class Row:
    key: str
    file: Path
    events: int
    runs: list[Result] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    discarded: int = 0

    @property
    def name(self) -> str:
        return f"{self.key}. {CONTENDERS[self.key]}"

    def median_seconds(self) -> float | None:
        return statistics.median(r.seconds for r in self.runs) if self.runs else None


def run_child(row: Row, endpoint: Endpoint, conc: int, workdir: Path) -> Result | str:
    cmd = [sys.executable, "-m", replay_contenders.__name__, row.key,
           "--url", endpoint.url, "--file", str(row.file), "--events", str(row.events),
           "--concurrency", str(conc), "--server-pid", str(endpoint.proc.pid),
           "--workdir", str(workdir)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    out = harness.child_output(proc.returncode, proc.stdout, proc.stderr)
    if isinstance(out, str):
        return out
    detail = ""
    if "plan_s" in out:
        detail = (
            f"plan {out['plan_s']:.2f} s (untimed); report: {out['report_rate']:,} ev/s over "
            f"{out['report_elapsed_s']} s, p50 {out['p50_ms']} ms"
        )
    return Result(
        out["events"], out["ok"], out["seconds"], out["cpu_s"], out["server_cpu_s"],
        out["others"], out.get("plan_s"), detail,
    )  # fmt: skip


def report_run(label: str, res: Result | str, again: bool) -> None:
    """One run's line as it ends (`again`: noisy, to be run again)."""
    if isinstance(res, str):
        print(f"{label}: FAILED {res}", flush=True)
        return
    print(
        f"{label}: {res.events:,} events in {res.seconds:.2f} s = {res.rate:,.0f}/s, "
        f"{res.ok:,} accepted, client CPU {res.cpu_s:.2f} s, server CPU "
        f"{res.server_cpu_s:.2f} s, others {percent(res.others)}"
        + (f"; {res.detail}" if res.detail else "")
        + ("  -> noisy, running it again" if again else ""),
        flush=True,
    )


def measure(endpoint: Endpoint, rows: list[Row], args: argparse.Namespace, workdir: Path) -> None:
    for rep in range(args.repeat):
        for row in rows:
            res, discarded = harness.run_with_retry(
                partial(run_child, row, endpoint, args.concurrency, workdir),
                lambda res: None if isinstance(res, str) else res.others,
                partial(report_run, f"  [{rep + 1}/{args.repeat}] {row.name}"),
                retry_noisy=args.retry_noisy,
                wait_quiet_s=args.wait_quiet,
            )
            row.discarded += discarded
            if isinstance(res, str):
                row.failed.append(res)
            else:
                row.runs.append(res)


TABLE = Table(
    Col("contender", "<28"),
    Col("events", ">7"),
    Col("seconds", ">8"),
    Col("events/s", ">9"),
    Col("vs c", ">6"),
    Col("cpu ms/1k", ">9"),
    Col("server", ">7"),
    Col("others", ">7"),
    Col("accepted", gap=2),
)


def print_table(endpoint: Endpoint, rows: list[Row], conc: int) -> dict[str, float]:
    """The endpoint's table; returns the median events/s by contender key."""
    rates = {r.key: r.events / r.median_seconds() for r in rows if r.runs and not r.failed}
    base = rates.get(BASELINE)
    ideal = f", ideal {conc / endpoint.delay_s:,.0f}/s" if endpoint.delay_s else ""
    print(
        f"\n{endpoint.name} endpoint ({endpoint.url}, answers after "
        f"{endpoint.delay_s * 1000:.0f} ms{ideal}), concurrency {conc}, median of "
        f"{max(len(r.runs) for r in rows)} runs"
    )
    TABLE.print_header()
    for r in rows:
        if not r.runs or r.failed:
            print(f"{TABLE.row(r.name)} FAILED: {r.failed[0] if r.failed else 'no runs'}")
            continue
        others = [x.others for x in r.runs if x.others is not None]
        print(
            TABLE.row(
                r.name,
                f"{r.events:,}",
                f"{r.median_seconds():.2f}",
                f"{rates[r.key]:,.0f}",
                ratio(rates[r.key], base),
                f"{statistics.median(x.cpu_s for x in r.runs) / r.events * 1e6:,.0f}",
                f"{statistics.median(x.server_cpu_s / x.seconds for x in r.runs):.0%}",
                percent(max(others) if others else None),
                "all" if all(x.ok == x.events for x in r.runs) else "NOT ALL",
            )
        )
    plans = [x.plan_s for r in rows for x in r.runs if x.plan_s is not None and r.key == "a"]
    if plans:
        print(f"eventlens plan() (untimed above): median {statistics.median(plans):.2f} s")
    return rates


# ---------------------------------------------------------------------------------------------
# Memory: the real CLI on a big file
# ---------------------------------------------------------------------------------------------


def dir_mb(path: Path) -> float:
    """Bytes under path, in MB (files that vanish meanwhile are skipped)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total / 1e6


PROGRESS = re.compile(r"\]\s+([\d,]+)/([\d,]+) events \| ([\d,]+)/s")


def memory_run(args: argparse.Namespace, workdir: Path) -> None:
    n = args.memory_events
    src = generate(n, workdir)
    tmp = Path(tempfile.mkdtemp(prefix="bench_replay_mem_", dir=workdir))
    server = Endpoint("instant", 0.0).start()
    db = tmp / "replay.duckdb"
    cmd = [sys.executable, "-m", "eventlens.cli", "replay", str(src), "--db", str(db),
           "--endpoint", server.url, "--concurrency", str(args.concurrency), "--json"]  # fmt: skip
    shown = ["eventlens", *cmd[3:]]
    print(f"\nmemory: {shlex.join(shown)}")
    print(
        f"  ({n:,} events, {src.stat().st_size / 1e6:,.0f} MB; RSS of the process tree every "
        f"{SAMPLE_S} s; "
        + (
            f"SIGTERM after {args.memory_seconds:.0f} s of sending)"
            if args.memory_seconds
            else "the whole file is sent)"
        ),
        flush=True,
    )
    harness.wait_quiet(args.wait_quiet)
    env = dict(os.environ, LANGWATCH_API_KEY=KEY, PYTHONUNBUFFERED="1")
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    planned_at: list[float] = []
    out_lines: list[str] = []
    progress: list[tuple[float, int, int]] = []  # (t, done, rate)
    err_tail: list[str] = []

    def read_out() -> None:
        for line in proc.stdout:
            out_lines.append(line)
            if line.startswith("run_id:") and not planned_at:
                planned_at.append(time.monotonic())

    def read_err() -> None:
        for line in proc.stderr:
            if m := PROGRESS.search(line):
                done, rate = int(m.group(1).replace(",", "")), int(m.group(3).replace(",", ""))
                progress.append((time.monotonic() - started, done, rate))
            else:
                err_tail.append(line.rstrip())
                del err_tail[:-20]

    readers = [threading.Thread(target=f, daemon=True) for f in (read_out, read_err)]
    for t in readers:
        t.start()
    samples: list[tuple[float, str, float]] = []  # (t, plan | send | stop after TERM, MB)
    termed = None
    plan_dir = Path(f"{db}.replays")
    copy_at: float | None = None  # when the plan's Parquet file appeared (staging load done)
    disk_peak, next_disk = 0.0, 0.0
    try:
        while proc.poll() is None:
            rss = harness.tree_rss_mb(proc.pid)
            now = time.monotonic()
            if rss is not None:
                phase = "stop" if termed else "send" if planned_at else "plan"
                samples.append((now - started, phase, rss))
            if not planned_at and now >= next_disk:  # the planning's files, every 2 s
                next_disk = now + 2
                disk_peak = max(disk_peak, dir_mb(tmp))
                if copy_at is None and any(plan_dir.glob("*.parquet.sorted")):
                    copy_at = now
            if (
                args.memory_seconds
                and planned_at
                and termed is None
                and now - planned_at[0] >= args.memory_seconds
            ):
                proc.send_signal(signal.SIGTERM)
                termed = now
            if termed is not None and now - termed > 120:
                print("  the CLI did not stop 120 s after SIGTERM: killing it")
                proc.kill()
            time.sleep(SAMPLE_S)
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
        for t in readers:
            t.join(timeout=5)
    ended = time.monotonic()
    plan_s = planned_at[0] - started if planned_at else None
    report: dict[str, Any] = {}
    for line in reversed(out_lines):
        if line.startswith("{"):
            report = json.loads(line)
            break
    plan_mb = sum(p.stat().st_size for p in plan_dir.glob("*.parquet")) / 1e6
    db_mb = db.stat().st_size / 1e6 if db.is_file() else 0.0
    shutil.rmtree(tmp, ignore_errors=True)

    plan_rss = [mb for _, phase, mb in samples if phase == "plan"]
    stop_rss = [mb for _, phase, mb in samples if phase == "stop"]
    send = [(t, mb) for t, phase, mb in samples if phase == "send"]
    print(f"  exit code {code}" + (" (stopped by SIGTERM, as asked)" if termed else ""))
    if plan_s is not None:
        print(
            f"  planning: {plan_s:,.1f} s from the process start to `run_id:` (interpreter start "
            f"and imports included); peak RSS {max(plan_rss, default=0):,.0f} MB"
        )
        if copy_at is not None:
            print(
                f"    of which reading the file into the staging store (ingest) "
                f"{copy_at - started:,.1f} s, writing the sorted Parquet plan "
                f"{planned_at[0] - copy_at:,.1f} s; peak disk used by the run's folder "
                f"{disk_peak / 1000:,.1f} GB (staging store, DuckDB spill files, plan)"
            )
    else:
        print("  planning never finished: " + " | ".join(err_tail[-3:]))
    if send:
        mbs = [mb for _, mb in send]
        third = max(1, len(send) // 3)
        first, last = mbs[:third], mbs[-third:]
        print(
            f"  sending: {send[-1][0] - send[0][0]:,.0f} s sampled, {len(send)} samples; RSS min "
            f"{min(mbs):,.0f} / median {statistics.median(mbs):,.0f} / max {max(mbs):,.0f} MB; "
            f"median of the first third {statistics.median(first):,.0f} MB, of the last third "
            f"{statistics.median(last):,.0f} MB"
        )
        if stop_rss:
            print(
                f"  after SIGTERM (the last journal writes, the report): "
                f"{ended - termed if termed else 0:,.1f} s until it exited, RSS max "
                f"{max(stop_rss):,.0f} MB"
            )
        if len(send) > 2:
            slope = statistics.linear_regression([t for t, _ in send], mbs).slope * 60
            print(
                f"  sending: least-squares RSS trend {slope:+.1f} MB per minute "
                f"({slope * 60:+,.0f} MB per hour if it kept on)"
            )
    if report:
        print(
            f"  report: state {report.get('state')}, {report.get('accepted', 0):,} accepted of "
            f"{report.get('planned', 0):,} planned, {report.get('not_sent', 0):,} not sent, "
            f"{report.get('failed', 0):,} failed, {report.get('unknown', 0):,} unknown; "
            f"{report.get('rate_per_s')} ev/s over {report.get('elapsed_s')} s"
        )
    print(f"  files (deleted): plan {plan_mb:,.0f} MB, store {db_mb:,.0f} MB")
    print(f"  total {ended - started:,.0f} s")
    print("  RSS over time (MB), every ~15 s; done/rate from the CLI's progress lines:")
    step = max(1, int(15 / SAMPLE_S))
    for t, phase, mb in samples[::step]:
        before = [p for p in progress if p[0] <= t]
        done = f"{before[-1][1]:>10,} done, {before[-1][2]:>6,}/s" if before else ""
        print(f"    {t:>7.1f} s  {phase:<4}  {mb:>6,.0f}  {done}")
    peak = max((mb for _, _, mb in samples), default=0)
    if samples:
        t_peak, phase_peak, _ = max(samples, key=lambda x: x[2])
        print(f"  the peak sample: {peak:,.0f} MB at {t_peak:,.1f} s ({phase_peak})")
    verdict = "met" if peak < RSS_TARGET_MB else "NOT MET"
    print(f"  target: under {RSS_TARGET_MB} MB RSS throughout: peak {peak:,.0f} MB, {verdict}")
    sending = max((mb for _, phase, mb in samples if phase != "plan"), default=0)
    verdict = "met" if sending < RSS_TARGET_MB else "NOT MET"
    print(f"    sending alone (after planning): peak {sending:,.0f} MB, {verdict}")


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--instant-events", type=int, default=20_000)
    parser.add_argument("--slow-events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (median)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (64)")
    parser.add_argument(
        "--source-events",
        type=int,
        default=10_000_000,
        help="the contenders' events are the head of events_<M>.jsonl (default 10M)",
    )
    parser.add_argument(
        "--sparse-source-events",
        type=int,
        default=1_000_000,
        help="a2's events are the head of events_<M2>.jsonl (default 1M; 0: skip a2)",
    )
    parser.add_argument("--slow-sequential", type=int, default=300, help="b's events, slow")
    parser.add_argument("--instant-sequential", type=int, default=3000, help="b's events, instant")
    parser.add_argument(
        "--capped-events",
        type=int,
        default=3000,
        help="d's and e's events (they cost 1-4 ms of CPU a request; default 3000)",
    )
    parser.add_argument("--only", default="", metavar="KEYS", help="e.g. a,c,g (default: all)")
    parser.add_argument("--endpoints", default="instant,slow", help="instant,slow (default both)")
    parser.add_argument("--memory-events", type=int, default=10_000_000)
    parser.add_argument(
        "--memory-seconds",
        type=float,
        default=180,
        help="stop the memory run after this many seconds of sending (0: send everything)",
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    harness.add_noise_options(parser, retry=True)
    harness.add_workdir(parser, "the JSONL files and the memory run's store")
    args = parser.parse_args(argv)
    args.workdir = args.workdir.resolve()
    # A TERM (or Ctrl-C) unwinds through the finally blocks, which stop the servers and the CLI.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(f"stopped by signal {signum}"))

    harness.print_header("replay", __spec__.name, argv, "httpx", "aiohttp", "httpx-aiohttp")
    only = {k.strip() for k in args.only.split(",") if k.strip()}
    keys = [k for k in CONTENDERS if (not only or k in only)]
    if not args.sparse_source_events and "a2" in keys:
        keys.remove("a2")
    summary: dict[str, dict[str, float]] = {}
    if not args.skip_throughput:
        for name in [e.strip() for e in args.endpoints.split(",") if e.strip()]:
            delay = SLOW_DELAY_S if name == "slow" else 0.0
            n = args.slow_events if name == "slow" else args.instant_events
            seq = args.slow_sequential if name == "slow" else args.instant_sequential
            data = head_file(n, args.source_events, args.workdir)
            print(f"\n{name}: {data.name}: {trace_density(data)}")
            rows = []
            for key in keys:
                if key == "a2":
                    sparse = head_file(n, args.sparse_source_events, args.workdir)
                    print(f"{name}: a2 uses {sparse.name}: {trace_density(sparse)}")
                    rows.append(Row(key, sparse, n))
                else:
                    cap = {"b": seq, "d": args.capped_events, "e": args.capped_events}
                    rows.append(Row(key, data, min(n, cap.get(key, n))))
            endpoint = Endpoint(name, delay).start()
            try:
                measure(endpoint, rows, args, args.workdir)
            finally:
                endpoint.stop()
            summary[name] = print_table(endpoint, rows, args.concurrency)
            if any(r.discarded for r in rows):
                print(
                    "noisy runs discarded and rerun: "
                    + ", ".join(f"{r.key} {r.discarded}" for r in rows if r.discarded)
                )
        for name, target in (("slow", SLOW_TARGET), ("instant", INSTANT_TARGET)):
            rates = summary.get(name, {})
            raw = [k for k in (BASELINE, "c2") if k in rates]
            if not raw:
                continue
            best = max(raw, key=rates.__getitem__)  # the faster raw aiohttp shape
            for key in (k for k in ("a", "a2") if k in rates):
                ratio = rates[key] / rates[best]
                met = "met" if ratio >= target else "NOT MET"
                print(
                    f"target ({name}, {key}): eventlens >= {target:.2f}x raw aiohttp: "
                    f"{ratio:.2f}x ({rates[key]:,.0f} vs {rates[best]:,.0f} events/s, {best}: "
                    f"the faster raw aiohttp shape), {met}"
                )
    if not args.skip_memory:
        memory_run(args, args.workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
