"""Sandbox throughput: `eventlens sandbox` against a bare asyncio endpoint, same client.

    uv run python -m benchmarks.bench_sandbox [--events N] [--rounds R] [--concurrency C]
                                              [--before CHECKOUT] [--profile] [--wait-quiet S]

1. Each round starts, one after the other (the order rotates per round), in processes of
   their own on free loopback ports:
     a. sandbox    `python -m eventlens.cli sandbox --db DB --port P` on a fresh store (key in
                   EVENTLENS_SANDBOX_KEY): auth, validation, dedupe, group commit, trace summary
     b. baseline   a bare asyncio HTTP/1.1 server (benchmarks/sandbox_contenders.py `endpoint`)
                   that parses each JSON body and answers 200 {"message": "Event tracked"}
   (with --before CHECKOUT also a0, the sandbox of another checkout, e.g. /work/main before a
   change: its lib/ first on PYTHONPATH), and drives each with the same client, a fresh process
   running sandbox_contenders.py `client`: aiohttp, C in flight (64), N valid events (about 8
   per trace, four event types, each with a fresh event_id), every body json.dumps-ed per
   request. The rate counts from before
   the aiohttp session is made to the last answer (the client's start and its connections
   included); `proc ev/s` counts from the launch of the client's process (interpreter start and
   imports included). An event counts only when its answer is a 200.
2. After each sandbox run the server is stopped (SIGTERM: it commits and exits) and its store
   is read: every accepted event must be stored exactly once (count, distinct (trace_id,
   event_id), and the accepted count all equal N).
3. Prints a table of medians over the R rounds: seconds, events/s, the ratio to the baseline,
   the client's CPU per 1,000 events, the server's share of one core and its CPU per 1,000
   events (which the machine's other load disturbs less than the rate), its RSS after the run, and
   the share of the machine's CPU other processes used during the run (above 10%: inflated).
   Target (issue 16): the sandbox >= 0.5x the baseline's events/s.
   --profile runs one more sandbox run under cProfile (sandbox_contenders `profiled-sandbox`:
   the main thread, i.e. the event loop, HTTP, the routes and validation, and the writer thread,
   i.e. the group commits) and prints each thread's top functions.
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import harness
from benchmarks.harness import Col, Table
from eventlens.store import Store

TARGET = 0.5
KEY = "bench-sandbox-key-0123456789"


@dataclass
class Run:
    """One client run against one server."""

    seconds: float
    process_seconds: float
    client_cpu: float
    server_cpu: float
    accepted: int
    others: float | None
    server_rss_mb: float | None
    stored: tuple[int, int] | None = None  # (events, distinct (trace_id, event_id)): sandbox


@dataclass
class Contender:
    name: str
    run: Callable[[int], Run]  # seed -> one run
    runs: list[Run] = field(default_factory=list)

    def median(self, value: str) -> float:
        return statistics.median(getattr(r, value) for r in self.runs)


class Server:
    """A server in its own process on a free loopback port (stopped with SIGTERM)."""

    def __init__(self, cmd: list[str], port: int, env: dict[str, str] | None = None):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=harness.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{cmd[2:5]} exited: {self.proc.stderr.read().decode()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit(f"{cmd[2:5]} did not listen within 30 s")

    def stop(self) -> None:
        harness.stop_process(self.proc, timeout=30)


def sandbox_server(db: Path, source: Path | None = None) -> Server:
    """`eventlens sandbox` on a fresh port; with `source`, the eventlens of that checkout."""
    port = harness.free_port()
    cmd = [sys.executable, "-m", "eventlens.cli", "sandbox", "--db", str(db), "--port", str(port)]
    env = dict(os.environ, EVENTLENS_SANDBOX_KEY=KEY)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(source / "lib"), env.get("PYTHONPATH", "")])
    return Server(cmd, port, env)


def profiled_server(db: Path, out: Path) -> Server:
    port = harness.free_port()
    cmd = [sys.executable, "-m", "benchmarks.sandbox_contenders", "profiled-sandbox"]
    env = dict(os.environ, EVENTLENS_SANDBOX_KEY=KEY)
    return Server([*cmd, str(db), str(port), str(out)], port, env)


def baseline_server() -> Server:
    port = harness.free_port()
    cmd = [sys.executable, "-m", "benchmarks.sandbox_contenders", "endpoint", str(port)]
    return Server(cmd, port)


def drive(server: Server, events: int, concurrency: int, seed: int) -> Run:
    """Run the client against the server; its rates, CPU and the others' share meanwhile."""
    cmd = [sys.executable, "-m", "benchmarks.sandbox_contenders", "client", server.url]
    cmd += [str(events), str(concurrency), str(seed)]
    env_key = os.environ.get("LANGWATCH_API_KEY")
    os.environ["LANGWATCH_API_KEY"] = KEY  # the launcher passes our environment on
    try:
        server_cpu = harness.process_cpu_seconds(server.proc.pid)
        busy = harness.busy_cpu_seconds()
        wall, cpu, _rss, code, out, err = harness.run_measured(cmd)
        busy_after = harness.busy_cpu_seconds()
        server_cpu = harness.process_cpu_seconds(server.proc.pid) - server_cpu
    finally:
        if env_key is None:
            os.environ.pop("LANGWATCH_API_KEY")
        else:
            os.environ["LANGWATCH_API_KEY"] = env_key
    result = harness.child_output(code, out, err)
    if isinstance(result, str):
        raise SystemExit(f"the client failed: {result}")
    return Run(
        seconds=result["seconds"],
        process_seconds=wall,
        client_cpu=cpu,
        server_cpu=server_cpu,
        accepted=result["accepted"],
        others=harness.others_share(busy, busy_after, cpu + server_cpu, wall),
        server_rss_mb=harness.tree_rss_mb(server.proc.pid),
    )


def stored(db: Path) -> tuple[int, int]:
    """(events, distinct (trace_id, event_id)) the sandbox's dataset holds."""
    with Store(db) as store:
        rows = store.rows(
            "SELECT count(*), count(DISTINCT (trace_id, event_id)) FROM events"
            " WHERE dataset = 'sandbox'"
        )
    return rows[0]


def run_sandbox(
    workdir: Path, events: int, concurrency: int, seed: int, source: Path | None = None
) -> Run:
    db = workdir / f"sandbox_{seed}.duckdb"
    server = sandbox_server(db, source)
    try:
        run = drive(server, events, concurrency, seed)
    finally:
        server.stop()
    run.stored = stored(db)
    return run


def run_baseline(events: int, concurrency: int, seed: int) -> Run:
    server = baseline_server()
    try:
        return drive(server, events, concurrency, seed)
    finally:
        server.stop()


TABLE = Table(
    Col("contender", "<26"),
    Col("events", ">7"),
    Col("seconds", ">8"),
    Col("events/s", ">9"),
    Col("ratio", ">6"),
    Col("proc ev/s", ">9"),
    Col("ratio", ">6"),
    Col("cpu ms/1k", ">9"),
    Col("server", ">7"),
    Col("srv ms/1k", ">9"),
    Col("RSS MB", ">7"),
    Col("others", ">7"),
    Col("accepted", ">9"),
)


def print_table(contenders: list[Contender], base: Contender, events: int) -> None:
    base_rate = events / base.median("seconds")
    base_proc = events / base.median("process_seconds")
    TABLE.print_header()
    for c in contenders:
        rate, proc = events / c.median("seconds"), events / c.median("process_seconds")
        others = [r.others for r in c.runs if r.others is not None]
        print(
            TABLE.row(
                c.name,
                f"{events:,}",
                f"{c.median('seconds'):.2f}",
                f"{rate:,.0f}",
                f"{rate / base_rate:.2f}x",
                f"{proc:,.0f}",
                f"{proc / base_proc:.2f}x",
                f"{c.median('client_cpu') / events * 1e6:,.0f}",
                harness.percent(c.median("server_cpu") / c.median("process_seconds")),
                f"{c.median('server_cpu') / events * 1e6:,.0f}",
                f"{c.median('server_rss_mb'):,.0f}",
                harness.percent(max(others)) if others else "?",
                "all" if all(r.accepted == events for r in c.runs) else "NOT ALL",
            )
        )


def print_runs(contenders: list[Contender], events: int) -> None:
    for c in contenders:
        rates = ", ".join(f"{events / r.seconds:,.0f}" for r in c.runs)
        shares = ", ".join(harness.percent(r.others) for r in c.runs)
        print(f"  {c.name}: events/s per round {rates}; others CPU {shares}")


def check_stored(sandboxes: list[Contender], events: int) -> bool:
    """Every accepted event stored exactly once, in every round."""
    ok = True
    for c in sandboxes:
        for i, run in enumerate(c.runs, 1):
            count, distinct = run.stored or (0, 0)
            good = count == distinct == run.accepted == events
            ok &= good
            print(
                f"check {c.name[:2]} round {i}: {run.accepted:,} accepted, store holds {count:,}"
                f" events, {distinct:,} distinct (trace_id, event_id): {'ok' if good else 'WRONG'}"
            )
    return ok


def profile_sandbox(workdir: Path, events: int, concurrency: int) -> None:
    """One more sandbox run under cProfile: the main thread's and the writer's top functions."""
    out = workdir / "sandbox.prof"
    server = profiled_server(workdir / "sandbox_profile.duckdb", out)
    try:
        run = drive(server, events, concurrency, seed=999)
    finally:
        server.stop()
    print(f"\nprofile (cProfile, which slows it): {events / run.seconds:,.0f} events/s")
    for thread in ("main", "writer"):
        print(f"--- the {thread} thread, by own time")
        pstats.Stats(f"{out}.{thread}").sort_stats("tottime").print_stats(15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per run (20,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, medians taken (3)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (64)")
    parser.add_argument(
        "--before",
        type=Path,
        metavar="CHECKOUT",
        help="also run the sandbox of another checkout (its lib/), e.g. main's, as row a0",
    )
    parser.add_argument("--profile", action="store_true", help="profile one more sandbox run")
    parser.add_argument("--workdir", type=Path, default=None, help="stores go here (a tmp dir)")
    harness.add_noise_options(parser)
    args = parser.parse_args(argv)

    harness.print_header(
        "sandbox throughput", __spec__.name, argv, "aiohttp", "uvicorn", "httptools"
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench_sandbox_", dir=args.workdir))
    n, flight = args.events, args.concurrency
    sandbox = Contender("a. eventlens sandbox", lambda seed: run_sandbox(workdir, n, flight, seed))
    base = Contender("b. bare asyncio endpoint", lambda seed: run_baseline(n, flight, seed))
    contenders = [sandbox, base]
    if args.before:
        before = Contender(
            "a0. sandbox before",
            lambda seed: run_sandbox(workdir, n, flight, seed, source=args.before.resolve()),
        )
        contenders.insert(0, before)
    try:
        for i in range(args.rounds):
            turn = i % len(contenders)
            for j, c in enumerate(contenders[turn:] + contenders[:turn]):
                harness.wait_quiet(args.wait_quiet)
                c.runs.append(c.run(1000 * i + j))
                print(f"  round {i + 1}, {c.name}: {n / c.runs[-1].seconds:,.0f}/s")
        print(f"\n{n:,} events per run, {flight} in flight, median of {args.rounds} rounds")
        print_table(contenders, base, n)
        print_runs(contenders, n)
        ok = check_stored([c for c in contenders if c is not base], n)
        ratio = base.median("seconds") / sandbox.median("seconds")
        print(
            f"target: sandbox >= {TARGET}x the bare endpoint's events/s: {ratio:.2f}x "
            f"({n / sandbox.median('seconds'):,.0f} vs {n / base.median('seconds'):,.0f}), "
            f"{'met' if ratio >= TARGET else 'NOT MET'}"
        )
        noisy = sum(harness.is_noisy(r.others) for c in contenders for r in c.runs)
        if noisy:
            print(harness.noise_warning(f"during {noisy} run(s)"))
        if args.profile:
            profile_sandbox(workdir, n, flight)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
