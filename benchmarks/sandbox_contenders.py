"""The processes bench_sandbox starts, each in a process of its own:

    python -m benchmarks.sandbox_contenders endpoint PORT
    python -m benchmarks.sandbox_contenders client URL EVENTS CONCURRENCY SEED
    python -m benchmarks.sandbox_contenders profiled-sandbox DB PORT OUT

`endpoint` is the baseline: a bare asyncio HTTP/1.1 keep-alive server (asyncio.start_server, no
framework) that reads each request, parses its JSON body and answers 200 `{"message":"Event
tracked"}`. `client` posts EVENTS valid track_event bodies, each with a fresh event_id, to
URL/api/track_event with aiohttp (CONCURRENCY in flight) and prints one JSON line: seconds from
before the session is made to the last answer (the client's start, its connections, included),
the process's seconds since the interpreter started, its CPU seconds, and the count of 200s.
The key comes from LANGWATCH_API_KEY. `profiled-sandbox` serves `eventlens sandbox` (key in
EVENTLENS_SANDBOX_KEY) with cProfile on its main thread (the event loop, the routes) and on the
writer thread, and on SIGTERM writes OUT.main and OUT.writer.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
import uuid
from typing import Any

from benchmarks.bare_endpoint import serve

STARTED = time.perf_counter()  # as early as this module runs: the interpreter's start is close

TYPES = ("thumbs_up_down", "waited_to_finish", "add_to_cart", "llm_call")


def bodies(n: int, seed: int) -> list[dict[str, Any]]:
    """n valid events, about 8 per trace, each with an event_id of its own (fresh every run)."""
    pick = random.Random(seed)
    run = uuid.uuid4().hex[:12]
    out = []
    for i in range(n):
        event_type = TYPES[i % len(TYPES)]
        metrics: dict[str, float] = {"latency_ms": round(pick.uniform(5, 900), 1)}
        if event_type == "thumbs_up_down":
            metrics["vote"] = pick.choice((-1, 1))
        elif event_type == "waited_to_finish":
            metrics["finished"] = pick.choice((0, 1))
        out.append(
            {
                "trace_id": f"trace_{run}_{i // 8}",
                "event_type": event_type,
                "metrics": metrics,
                "event_details": {"model": pick.choice(("gpt-x", "gpt-y")), "country": "NL"},
                "timestamp": 1_764_000_000_000 + i * 1000,
                "event_id": f"evt_{run}_{i}",
            }
        )
    return out


async def post_all(url: str, events: list[dict[str, Any]], concurrency: int) -> tuple[float, int]:
    """Seconds from before the session is made to the last answer, and the count of 200s."""
    import aiohttp

    headers = {
        "X-Auth-Token": os.environ["LANGWATCH_API_KEY"],
        "Content-Type": "application/json",
    }
    todo = iter(events)
    accepted = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal accepted
        for body in todo:
            async with session.post(url, data=json.dumps(body), headers=headers) as answer:
                await answer.read()
                accepted += answer.status == 200

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return time.perf_counter() - started, accepted


def client(url: str, n: int, concurrency: int, seed: int) -> dict[str, float]:
    events = bodies(n, seed)
    seconds, accepted = asyncio.run(post_all(url + "/api/track_event", events, concurrency))
    return {
        "seconds": seconds,
        "process_seconds": time.perf_counter() - STARTED,
        "cpu_seconds": time.process_time(),
        "events": n,
        "accepted": accepted,
    }


def profiled_sandbox(db: str, port: int, out: str) -> None:
    import cProfile

    from eventlens import sandbox
    from eventlens.store import Store

    main, writer = cProfile.Profile(), cProfile.Profile()
    run = sandbox._Writer._run
    sandbox._Writer._run = lambda self: writer.runcall(run, self)  # type: ignore[method-assign]
    try:
        with Store(db) as store:
            main.runcall(sandbox.serve, store, port=port)
    finally:
        main.dump_stats(out + ".main")
        writer.dump_stats(out + ".writer")  # the writer is idle by now: its stats hold still


if __name__ == "__main__":
    if sys.argv[1] == "endpoint":
        asyncio.run(serve(int(sys.argv[2]), parse=True))
    elif sys.argv[1] == "profiled-sandbox":
        profiled_sandbox(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        url, n, concurrency, seed = sys.argv[2], *map(int, sys.argv[3:6])
        print(json.dumps(client(url, n, concurrency, seed)))
