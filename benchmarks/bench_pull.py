"""Pull benchmark: eventlens.sync.pull against a bare httpx loop over the same pages.

    uv run python -m benchmarks.bench_pull [--events 200000] [--rounds 3] [--page-size 1000]
                                           [--clickhouse]

1. Builds a sandbox store in a temporary folder for each shape, through Sandbox.insert (so the
   sandbox tracks the traces as it does for events sent to it), and serves it with
   `eventlens sandbox` in its own process on a free loopback port.
   Shapes: 200,000 events in 20,000 traces (10 a trace, the issue's), and the same events in
   100,000 traces (2 a trace: real projects have many short traces).
2. Each round runs both sides, in turn, each in a fresh process (benchmarks/pull_contenders.py):
     a. eventlens   sync.pull into a fresh store: select pages, model.py's rules, one transaction
                    a page that replaces the traces' events, summary, metadata, cursor
     b. bare        an httpx loop asking the same pages (same body) and storing nothing
     c. chdb        with --clickhouse: the same pull into a fresh chdb:// store (ClickHouse in
                    the process; a page made safe to apply twice instead of a transaction)
   Their own timing covers the paging loop only (imports and setup excluded); the peak RSS is
   the whole process's. Both read every event (checked), and eventlens stores each once.
3. Prints per shape the median events/s of each, the ratio (target: at least 0.7x the bare
   loop) and eventlens's peak RSS (target: under 300 MB), and the others' CPU share.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import harness

KEY = "bench-pull-key"
SHAPES = {"10 events a trace": 10, "2 events a trace": 2}
# Types without predefined rules (Sandbox.insert stores bodies unchecked; a pull would reject
# a thumbs_up_down without its vote, as LangWatch would have refused it).
TYPES = ["llm_call", "retrieval", "tool_call", "checkout", "search", "guardrail", "eval"]


def build(db: Path, events: int, per_trace: int, seed: int = 7) -> None:
    """A sandbox store of `events` events in events/per_trace traces, in random order."""
    from eventlens.sandbox import Sandbox
    from eventlens.store import Store

    rng = random.Random(seed)
    traces = events // per_trace
    # A trace's events within an hour of its start (LangWatch, and so the sandbox, reads event
    # spans only within about two days of a trace's start).
    starts = [1_760_000_000_000 + rng.randrange(30 * 86_400_000) for _ in range(traces)]
    bodies = []
    for i in range(events):
        trace = rng.randrange(traces) if i >= traces else i  # every trace gets one event
        kind = rng.choice(TYPES)
        bodies.append(
            {
                "trace_id": f"trace_{trace:07d}",
                "event_id": f"evt_{i:08d}",
                "event_type": kind,
                "timestamp": starts[trace] + rng.randrange(3_600_000),
                "metrics": {
                    f"m{k}": round(rng.random() * 100, 3) for k in range(rng.randint(1, 3))
                },
                "event_details": {
                    f"d{k}": rng.choice(["gpt", "claude", "x" * 20])
                    for k in range(rng.randint(0, 2))
                },
            }
        )
    with Store(db) as store:
        sandbox = Sandbox(store, KEY)
        for start in range(0, len(bodies), 5000):
            sandbox.insert(bodies[start : start + 5000])
        sandbox.flush()


def serve(db: Path, port: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "eventlens.cli",
        "sandbox",
        "--db",
        str(db),
        "--port",
        str(port),
        "--key",
        KEY,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/sandbox/health", timeout=1).is_success:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the sandbox did not start")


def contender(kind: str, url: str, size: int, workdir: Path, run: str) -> dict:
    """One side's run into a store of its own (`run` names it: the shape and the round; a store
    pulled into before would make the pull replace its traces instead of adding them)."""
    cmd = [sys.executable, "-m", "benchmarks.pull_contenders", kind, url, str(size)]
    if kind == "eventlens":
        cmd.append(str(workdir / f"pulled-{run}.duckdb"))
    elif kind == "chdb":
        cmd.append(f"chdb://{workdir / f'pulled-{run}-ch'}")
    os.environ["LANGWATCH_API_KEY"] = KEY
    before = harness.busy_cpu_seconds()
    wall, cpu, rss, code, out, err = harness.run_measured(cmd)
    after = harness.busy_cpu_seconds()
    result = harness.child_output(code, out, err)
    if isinstance(result, str):
        raise RuntimeError(f"{kind}: {result}")
    result.update(
        rss_mb=rss, wall=wall, cpu=cpu, others=harness.others_share(before, after, cpu, wall)
    )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--clickhouse", action="store_true", help="also pull into chdb://")
    args = parser.parse_args(argv)
    sides = ["eventlens", "bare", *(["chdb"] if args.clickhouse else [])]
    harness.print_header("pull", "benchmarks.bench_pull", argv, "httpx", "duckdb")
    table = harness.Table(
        harness.Col("shape", "<20"),
        harness.Col("side", "<10"),
        harness.Col("events/s", ">10"),
        harness.Col("traces", ">8"),
        harness.Col("events", ">8"),
        harness.Col("pages", ">6"),
        harness.Col("peak RSS MB", ">12"),
        harness.Col("ratio", ">6"),
        harness.Col("met", "<10", gap=2),
        harness.Col("others CPU", ">10"),
    )
    with tempfile.TemporaryDirectory(prefix="bench_pull_") as tmp:
        workdir = Path(tmp)
        rows = []
        for shape, per_trace in SHAPES.items():
            db = workdir / f"sandbox-{per_trace}.duckdb"
            t0 = time.perf_counter()
            build(db, args.events, per_trace)
            print(
                f"built {shape}: {args.events:,} events in {time.perf_counter() - t0:.1f} s",
                flush=True,
            )
            port = harness.free_port()
            proc = serve(db, port)
            url = f"http://127.0.0.1:{port}"
            runs: dict[str, list[dict]] = {side: [] for side in sides}
            try:
                for n in range(args.rounds):
                    order = sides if n % 2 == 0 else sides[::-1]
                    for kind in order:
                        run = f"{per_trace}-{n}"
                        runs[kind].append(contender(kind, url, args.page_size, workdir, run))
            finally:
                harness.stop_process(proc, 10)
            for side in runs.values():
                for r in side:
                    assert r["events"] == args.events, (r, args.events)
                    assert r.get("stored", args.events) == args.events, r
            rate = {
                k: statistics.median(r["events"] / r["seconds"] for r in v) for k, v in runs.items()
            }
            share = rate["eventlens"] / rate["bare"]
            rss = max(r["rss_mb"] for r in runs["eventlens"])
            met = "met" if share >= 0.7 and rss < 300 else "NOT MET"
            for kind in sides:
                r = runs[kind][0]
                others = [x["others"] for x in runs[kind] if x["others"] is not None]
                rows.append(
                    table.row(
                        shape if kind == sides[0] else "",
                        kind,
                        f"{rate[kind]:,.0f}",
                        f"{r['traces']:,}",
                        f"{r['events']:,}",
                        f"{r['pages']:,}",
                        f"{max(x['rss_mb'] for x in runs[kind]):,.0f}",
                        f"{rate[kind] / rate['bare']:.2f}x" if kind != "bare" else "",
                        met if kind == "eventlens" else "",
                        harness.percent(max(others)) if others else "?",
                    )
                )
        print()
        table.print_header()
        for line in rows:
            print(line)
        print("\ntargets: eventlens at least 0.7x the bare loop's events/s; peak RSS under 300 MB")


if __name__ == "__main__":
    main()
