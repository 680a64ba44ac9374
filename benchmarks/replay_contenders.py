"""The replay benchmark's contenders, each run once in a fresh process by bench_replay:

    python -m benchmarks.replay_contenders KEY --url URL --file JSONL --events N
                                           --concurrency C --server-pid PID --workdir DIR

KEY is a contender of bench_replay (a, a2: eventlens's replay engine; b-g: bare HTTP clients).
Everything is built untimed (the bodies parsed, the clients made, eventlens's plan written);
only the sending is timed. Prints one JSON line: events, accepted (200) answers, seconds, this
process's CPU seconds, the server's (PID) and the share of the CPU other processes used.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import harness

KEY = "bench-replay-key-0123456789"


def _bodies(path: str, n: int) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in itertools.islice(fh, n)]


def _headers() -> dict[str, str]:
    from eventlens import client

    return client.Target("http://unused", KEY, "typed").headers()


async def _pool(n: int, concurrency: int, send: Any) -> int:
    """C worker coroutines taking the next index in turn; the number of 200 answers."""
    import asyncio

    counter = itertools.count()
    ok = 0

    async def worker() -> None:
        nonlocal ok
        while (i := next(counter)) < n:
            accepted = await send(i)  # (ok += await ... would read ok before the await)
            ok += accepted

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


def _child_http(kind: str, url: str, bodies: list[dict[str, Any]], conc: int) -> tuple[int, Any]:
    """(events accepted, a closure that sends them all) for contenders b-g; built untimed."""
    import asyncio

    import httpx

    n = len(bodies)
    headers = _headers()
    post_url = url + "/api/track_event"
    timeout = httpx.Timeout(10.0, connect=5.0)
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)

    if kind == "b":

        def run() -> int:
            ok = 0
            with httpx.Client(timeout=timeout) as http:
                for body in bodies:
                    r = http.post(post_url, content=json.dumps(body).encode(), headers=headers)
                    ok += r.status_code == 200
            return ok

        return n, run

    if kind == "d":

        def run() -> int:
            from concurrent.futures import ThreadPoolExecutor

            counter = itertools.count()
            with httpx.Client(timeout=timeout, limits=limits) as http:

                def worker() -> int:
                    ok = 0
                    while (i := next(counter)) < n:
                        r = http.post(
                            post_url, content=json.dumps(bodies[i]).encode(), headers=headers
                        )
                        ok += r.status_code == 200
                    return ok

                with ThreadPoolExecutor(conc) as pool:
                    return sum(pool.map(lambda _: worker(), range(conc)))

        return n, run

    async def main_c() -> int:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=conc)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=10)
        ) as session:

            async def send(i: int) -> int:
                data = json.dumps(bodies[i]).encode()
                async with session.post(post_url, data=data, headers=headers) as r:
                    await r.read()
                    return r.status == 200

            return await _pool(n, conc, send)

    async def main_client(transport: Any) -> int:
        kwargs = {"transport": transport} if transport is not None else {"limits": limits}
        async with httpx.AsyncClient(timeout=timeout, **kwargs) as http:

            async def send(i: int) -> int:
                data = json.dumps(bodies[i]).encode()
                r = await http.post(post_url, content=data, headers=headers)
                return r.status_code == 200

            return await _pool(n, conc, send)

    async def main_g() -> int:
        from eventlens import client

        target = client.Target(url, KEY, "typed")
        async with client.AsyncSender(target, timeout, limits=limits) as sender:

            async def send(i: int) -> int:
                result = await sender.send(bodies[i])
                return result.ok

            return await _pool(n, conc, send)

    async def main_c2() -> int:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=conc)
        gate = asyncio.Semaphore(conc)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=10)
        ) as session:

            async def send(body: dict[str, Any]) -> bool:
                async with gate:
                    data = json.dumps(body).encode()
                    async with session.post(post_url, data=data, headers=headers) as r:
                        await r.read()
                        return r.status == 200

            return sum(await asyncio.gather(*(send(b) for b in bodies)))

    def aiohttp_transport() -> Any:
        from httpx_aiohttp import AiohttpTransport

        return AiohttpTransport(limits=limits)

    runners = {
        "c": lambda: asyncio.run(main_c()),
        "c2": lambda: asyncio.run(main_c2()),
        "e": lambda: asyncio.run(main_client(None)),
        "f": lambda: asyncio.run(main_client(aiohttp_transport())),
        "g": lambda: asyncio.run(main_g()),
    }
    return n, runners[kind]


def run_once(args: argparse.Namespace) -> int:
    """Run one contender once; print one JSON line with the timed window's numbers."""
    extra: dict[str, Any] = {}
    workdir = Path(tempfile.mkdtemp(prefix="bench_replay_", dir=args.workdir))
    try:
        if args.key in ("a", "a2"):
            from eventlens import replay as rp
            from eventlens.store import Store

            store = Store(workdir / "replay.duckdb")
            started = time.perf_counter()
            run = rp.plan(
                store,
                rp.Source(path=args.file),
                rp.Transforms(),
                rp.Pacing(concurrency=args.concurrency),
                rp.Endpoint(url=args.url),
            )
            extra["plan_s"] = round(time.perf_counter() - started, 3)
            events = run.planned
            session = rp.Replay(store, run, KEY)

            def send_all() -> int:
                report = session.execute()
                extra["report_rate"] = report["rate_per_s"]
                extra["report_elapsed_s"] = report["elapsed_s"]
                extra["p50_ms"] = report["latency_ms"]["p50"]
                return int(report["accepted"])
        else:
            events, send_all = _child_http(
                args.key, args.url, _bodies(args.file, args.events), args.concurrency
            )
        busy0, cpu0 = harness.busy_cpu_seconds(), time.process_time()
        server0 = harness.process_cpu_seconds(args.server_pid)
        started = time.perf_counter()
        ok = send_all()
        seconds = time.perf_counter() - started
        busy1, cpu1 = harness.busy_cpu_seconds(), time.process_time()
        server = harness.process_cpu_seconds(args.server_pid) - server0
        if args.key in ("a", "a2"):
            store.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    cpu = cpu1 - cpu0
    others = harness.others_share(busy0, busy1, cpu + server, seconds)
    print(
        json.dumps(
            {"events": events, "ok": ok, "seconds": seconds, "cpu_s": cpu, "server_cpu_s": server}
            | {"others": others}
            | extra
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("key", choices=("a", "a2", "b", "c", "c2", "d", "e", "f", "g"))
    parser.add_argument("--url", required=True, help="the endpoint")
    parser.add_argument("--file", required=True, help="the JSONL of the events to send")
    parser.add_argument("--events", type=int, required=True, help="how many (b-g)")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--server-pid", type=int, required=True, help="the endpoint's process")
    parser.add_argument("--workdir", type=Path, required=True, help="for eventlens's store")
    return run_once(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
