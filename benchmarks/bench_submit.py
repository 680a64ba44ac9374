"""Submit benchmark: client.send_event against the sandbox on loopback, vs bare httpx posts.

    uv run python -m benchmarks.bench_submit [--sends N] [--warmup W] [--server subprocess|thread]
                                             [--latency-ms MS] [--keep-db]

1. Starts the sandbox on a free loopback port with a fresh DuckDB store in a temporary folder:
   by default `eventlens sandbox` in its own process (client and server then do not share a
   GIL, as in real use), or with --server thread uvicorn in a thread of this process.
2. After W untimed warm-up rounds, times N rounds; each round runs every row once (the order
   rotates per round, so drift from the growing store hits all rows alike). Every send is a
   valid body with its own trace_id and event_id, so the server does the same work (validate,
   dedupe check, insert, trace summary merge) for every row:
     a. send_event              client.send_event(body, target): validation, a new httpx.Client
                                (a new TCP connection) per call, as `eventlens send` does
     b. send_event, shared      client.send_event(body, target, client=shared): one
                                keep-alive connection for all calls
     c. baseline: httpx post    shared httpx.Client.post(url, content=json.dumps(body),
                                headers=...) : the same request with nothing around it
     d. baseline: new client    `with httpx.Client() as c: c.post(...)`: the bare request on a
                                new connection, the fair baseline for a
     e. floor: GET health       GET /api/sandbox/health on the shared client (HTTP only, no store)
3. Prints median, p95, p99 and max in ms per row, the ratios a/c, a/d and b/c, the target
   (median of a under 50 ms), the parts alone (model.validate_body, building an httpx.Client,
   Sandbox.handle() without HTTP on a fresh store) and the share of the CPU other processes
   used during the run (above 10% the times are inflated: the machine
   is shared). Checks that every send was accepted and that the store holds every event once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks import harness
from benchmarks.harness import Col, Table
from eventlens import client, model
from eventlens.store import Store

TARGET_MS = 50.0
KEY = "bench-sandbox-key-0123456789"


class Server:
    """The sandbox on a free port: a subprocess (`eventlens sandbox`) or a uvicorn thread."""

    def __init__(self, kind: str, db: Path, latency_ms: float):
        self.kind, self.db, self.latency_ms = kind, db, latency_ms
        self.port = harness.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.thread: threading.Thread | None = None
        self.server: Any = None
        self.store: Store | None = None

    def start(self) -> None:
        if self.kind == "subprocess":
            cmd = [sys.executable, "-m", "eventlens.cli", "sandbox", "--db", str(self.db),
                   "--port", str(self.port), "--latency-ms", str(self.latency_ms)]  # fmt: skip
            env = dict(os.environ, EVENTLENS_SANDBOX_KEY=KEY)
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        else:
            import uvicorn

            from eventlens.sandbox import Faults, Sandbox, app

            self.store = Store(self.db)
            sandbox = Sandbox(self.store, KEY, Faults(latency_ms=self.latency_ms))
            config = uvicorn.Config(
                app(sandbox),
                host="127.0.0.1",
                port=self.port,
                log_config=None,
                log_level="critical",
                access_log=False,
                lifespan="off",
            )
            self.server = uvicorn.Server(config)
            self.thread = threading.Thread(target=self.server.run, daemon=True)
            self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise SystemExit(f"the sandbox exited: {self.proc.stderr.read().decode()}")
            try:
                if httpx.get(self.url + "/api/sandbox/health", timeout=1).is_success:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit("the sandbox did not start in 30 s")

    def cpu_seconds(self) -> float:
        """CPU the server used so far when it is its own process (else 0: it is in ours)."""
        return harness.process_cpu_seconds(self.proc.pid) if self.proc is not None else 0.0

    def stop(self) -> None:
        if self.proc is not None:
            harness.stop_process(self.proc, timeout=15)
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(timeout=15)
        if self.store is not None:
            self.store.close()
            self.store = None

    def stored(self) -> tuple[int, int]:
        """(events, distinct (trace_id, event_id)) in the store, once the server has stopped."""
        with Store(self.db) as store:
            return store.rows("SELECT count(*), count(DISTINCT (trace_id, event_id)) FROM events")[
                0
            ]


def new_body(i: int) -> dict[str, Any]:
    return {
        "trace_id": f"bench_{uuid.uuid4().hex[:16]}",
        "event_type": "thumbs_up_down",
        "metrics": {"vote": 1 if i % 2 else -1, "latency_ms": 123.4 + i},
        "event_details": {"feedback": "fine", "model": "gpt-x"},
        "timestamp": 1_717_200_000_000 + i,
        "event_id": f"evt_{uuid.uuid4().hex}",
    }


def server_handle_ms(db: Path, bodies: list[dict[str, Any]]) -> float:
    """Median ms of the sandbox's own work per accepted event, without HTTP (a fresh store)."""
    from eventlens.sandbox import Sandbox

    with Store(db) as store:
        sandbox = Sandbox(store, KEY)
        headers = {"x-auth-token": KEY}
        out = []
        for body in bodies:
            raw = json.dumps(body).encode()
            started = time.perf_counter()
            status, _ = sandbox.handle(headers, raw)
            out.append((time.perf_counter() - started) * 1000)
            assert status == 200
    return statistics.median(out[10:])


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


TABLE = Table(
    Col("row", "<32"),
    Col("median", ">8"),
    Col("p95", ">8"),
    Col("p99", ">8"),
    Col("max", ">8"),
    Col("(ms)", gap=2),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=200, help="timed rounds (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed rounds (default 20)")
    parser.add_argument("--server", choices=("subprocess", "thread"), default="subprocess")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="sandbox added latency")
    parser.add_argument("--keep-db", action="store_true", help="print and keep the store file")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench_submit_"))
    db = workdir / "submit.duckdb"
    server = Server(args.server, db, args.latency_ms)
    harness.print_header("submit", __spec__.name, argv, "httpx")
    print(f"server: {args.server}, store {db}")
    server.start()
    target = client.Target(endpoint=server.url, key=KEY, key_source="typed")
    url, headers = target.url, target.headers()
    shared = httpx.Client(timeout=client.DEFAULT_TIMEOUT)
    failures: list[str] = []
    sent = 0

    def expect_accepted(name: str, outcome: str, status: int | None) -> None:
        if outcome != client.ACCEPTED or status != 200:
            failures.append(f"{name}: {outcome} {status}")

    def row_a(i: int) -> None:
        r = client.send_event(new_body(i), target)
        expect_accepted("a", r.outcome, r.status)

    def row_b(i: int) -> None:
        r = client.send_event(new_body(i), target, client=shared)
        expect_accepted("b", r.outcome, r.status)

    def row_c(i: int) -> None:
        r = shared.post(url, content=json.dumps(new_body(i)), headers=headers)
        expect_accepted("c", client.ACCEPTED if r.status_code == 200 else "?", r.status_code)

    def row_d(i: int) -> None:
        with httpx.Client(timeout=client.DEFAULT_TIMEOUT) as own:
            r = own.post(url, content=json.dumps(new_body(i)), headers=headers)
        expect_accepted("d", client.ACCEPTED if r.status_code == 200 else "?", r.status_code)

    def row_e(i: int) -> None:
        shared.get(server.url + "/api/sandbox/health").raise_for_status()

    rows: list[tuple[str, Callable[[int], None], bool]] = [
        ("a. send_event", row_a, True),
        ("b. send_event, shared client", row_b, True),
        ("c. baseline: httpx post", row_c, True),
        ("d. baseline: new client + post", row_d, True),
        ("e. floor: GET health", row_e, False),
    ]
    times: dict[str, list[float]] = {name: [] for name, _, _ in rows}
    try:
        for i in range(args.warmup):
            for _, fn, sends in rows:
                fn(i)
                sent += sends
        busy_before = harness.busy_cpu_seconds()
        ours_before = time.process_time() + server.cpu_seconds()
        wall_started = time.perf_counter()
        for i in range(args.sends):
            turn = rows[i % len(rows) :] + rows[: i % len(rows)]
            for name, fn, sends in turn:
                started = time.perf_counter()
                fn(i)
                times[name].append((time.perf_counter() - started) * 1000)
                sent += sends
        wall = time.perf_counter() - wall_started
        busy_after = harness.busy_cpu_seconds()
        ours = time.process_time() + server.cpu_seconds() - ours_before
    finally:
        shared.close()
        server.stop()

    # Where the time goes: each part alone, in this process.
    bodies = [new_body(i) for i in range(2000)]
    started = time.perf_counter()
    for body in bodies:
        model.validate_body(body)
    validate_us = (time.perf_counter() - started) / len(bodies) * 1e6
    construct = []
    for _ in range(30):
        started = time.perf_counter()
        httpx.Client(timeout=client.DEFAULT_TIMEOUT).close()
        construct.append((time.perf_counter() - started) * 1000)
    handle_ms = server_handle_ms(workdir / "handle.duckdb", bodies[:100])

    medians = {name: statistics.median(v) for name, v in times.items()}
    print()
    print(f"{args.sends} timed rounds after {args.warmup} warm-up rounds; each row once per round")
    print(TABLE.header())
    for name, values in times.items():
        numbers = (medians[name], percentile(values, 95), percentile(values, 99), max(values))
        print(TABLE.row(name, *(f"{x:.2f}" for x in numbers)))
    a, b, c, d = (medians[name] for name, _, _ in rows[:4])
    print()
    print(f"ratio a/c (send_event vs bare post, shared connection): {a / c:.2f}x")
    print(f"ratio a/d (send_event vs bare post, new connection each): {a / d:.2f}x")
    print(f"ratio b/c (send_event with a shared client vs bare post): {b / c:.2f}x")
    print("parts, each alone in this process (median):")
    print(f"  local validation (model.validate_body):      {validate_us / 1000:8.3f} ms")
    print(f"  httpx.Client() construction + close:         {statistics.median(construct):8.2f} ms")
    print(f"  Sandbox.handle() (validate, insert, summary): {handle_ms:8.2f} ms")
    met = "met" if a < TARGET_MS else "NOT MET"
    print(f"target: send_event median under {TARGET_MS:.0f} ms: {a:.2f} ms, {met}")
    share = harness.others_share(busy_before, busy_after, ours, wall)
    if share is not None:
        note = "  (above 10%: times inflated)" if harness.is_noisy(share) else ""
        print(f"others CPU during the timed rounds: {harness.percent(share)}{note}")
    events, distinct = server.stored()
    print(
        f"check: {sent} sends, {len(failures)} not accepted; store holds {events} events, "
        f"{distinct} distinct (trace_id, event_id)"
    )
    if args.keep_db:
        print(f"store kept: {db}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    ok = not failures and events == distinct == sent
    if failures:
        print("first failures:", failures[:5])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
