"""Input files, journal rows and page sessions shared by the replay tests."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eventlens import replay
from eventlens.store import Store


def write_jsonl(path: Path, items: list[Any]) -> Path:
    """Items as lines: a str is written as is (a raw, maybe broken line), anything else as JSON."""
    lines = [item if isinstance(item, str) else json.dumps(item) for item in items]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def report_with(**fields: Any) -> replay.Report:
    """A run's closing report with these fields, zero or empty elsewhere (for a journal row whose
    counts are all a test reads)."""
    blank = replay.Report(
        run_id="",
        state=replay.RunState.FINISHED,
        source="store",
        endpoint="",
        events=0,
        planned=0,
        sent=0,
        requests=0,
        accepted=0,
        rejected=0,
        invalid=0,
        dead_lettered=0,
        retried=0,
        failed=0,
        unknown=0,
        not_sent=0,
        duplicates_in_source=0,
        elapsed_s=0.0,
        rate_per_s=None,
        latency_ms=replay.Latency(None, None, None),
        by_type={},
        sessions=1,
        closing=True,
    )
    return dataclasses.replace(blank, **fields)


@contextmanager
def session_of(store: Store, run: replay.Run, *, alive: bool = True) -> Iterator[replay.Session]:
    """A page session of the run whose thread is alive (held) or has ended; it sends nothing."""
    release = threading.Event()
    thread = threading.Thread(target=release.wait, daemon=True)
    thread.start()
    if not alive:
        release.set()
        thread.join()
    try:
        yield replay.Session(replay.Replay(store, run, "sk-unused"), thread)
    finally:
        release.set()
        thread.join()
