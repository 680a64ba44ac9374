"""The two sides of bench_pull, each run in a process of its own (for its peak RSS):

    python -m benchmarks.pull_contenders bare URL PAGE_SIZE
    python -m benchmarks.pull_contenders eventlens URL PAGE_SIZE DB
    python -m benchmarks.pull_contenders chdb URL PAGE_SIZE chdb:///FOLDER

`bare` is an httpx loop that asks the same pages as a pull (the same body, `select` and all)
and stores nothing; `eventlens` is eventlens.sync.pull into a fresh store (`chdb`: into a fresh
chDB folder, ClickHouse in the process). Each prints one JSON
line: seconds for the paging loop alone (imports and setup excluded), traces, events, pages. The
key comes from LANGWATCH_API_KEY.
"""

from __future__ import annotations

import json
import os
import sys
import time


def bare(url: str, page_size: int) -> dict[str, float]:
    import httpx

    from eventlens.sync.mapping import SELECT

    body = {
        "startDate": 0,
        "endDate": int(time.time() * 1000),
        "dateField": "updated",
        "sortDirection": "asc",
        "pageSize": page_size,
        "select": list(SELECT),
        "scrollId": None,
    }
    headers = {"X-Auth-Token": os.environ["LANGWATCH_API_KEY"]}
    traces = events = pages = 0
    start = time.perf_counter()
    with httpx.Client(timeout=120) as http:
        while True:
            answer = http.post(url + "/api/traces/search", json=body, headers=headers)
            answer.raise_for_status()
            page = answer.json()
            pages += 1
            traces += len(page["traces"])
            events += sum(len(t.get("events") or []) for t in page["traces"])
            body["scrollId"] = page["pagination"].get("scrollId")
            if not page["traces"] or not body["scrollId"]:
                break
    return {
        "seconds": time.perf_counter() - start,
        "traces": traces,
        "events": events,
        "pages": pages,
    }


def eventlens(url: str, page_size: int, db: str) -> dict[str, float]:
    from eventlens.stores import open_store
    from eventlens.sync import PullSpec, pull

    with open_store(db) as store:  # a DuckDB file, or chdb:// (bench_pull --clickhouse)
        start = time.perf_counter()
        result = pull(store, PullSpec(endpoint=url, page_size=page_size, full=True))
        seconds = time.perf_counter() - start
        held = store.scalar("SELECT count(*) FROM events WHERE dataset = 'langwatch'")
    return {
        "seconds": seconds,
        "traces": result.traces,
        "events": result.events,
        "pages": result.pages,
        "stored": held,
    }


if __name__ == "__main__":
    kind, url, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    out = bare(url, size) if kind == "bare" else eventlens(url, size, sys.argv[4])  # or chdb
    print(json.dumps(out))
