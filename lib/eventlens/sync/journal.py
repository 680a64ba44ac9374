"""The pulls' journal: where the next pull of an (endpoint, dataset) starts, the scroll in
progress, and one row per pull for the history. Never the key."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventlens.store import Store

if TYPE_CHECKING:
    import duckdb
    import pandas as pd


@dataclass(frozen=True)
class Cursor:
    """Where a pull of one (endpoint, dataset) goes on from."""

    updated_through_ms: int | None = None  # the last finished scroll's updatedThrough
    scroll: dict[str, Any] | None = None  # an unfinished scroll: request, scroll_id, mode


def cursor(store: Store, endpoint: str, dataset: str) -> Cursor:
    rows = store.rows(
        "SELECT updated_through_ms, scroll FROM pull_cursors WHERE endpoint = ? AND dataset = ?",
        [endpoint, dataset],
    )
    return cursor_of(rows)


def cursor_of(rows: list[tuple]) -> Cursor:
    """The Cursor in a (updated_through_ms, scroll JSON) row, if any."""
    if not rows:
        return Cursor()
    through, scroll = rows[0]
    return Cursor(through, json.loads(scroll) if scroll else None)


def save_cursor(
    cur: duckdb.DuckDBPyConnection,
    endpoint: str,
    dataset: str,
    updated_through_ms: int | None,
    scroll: dict[str, Any] | None,
) -> None:
    """On the caller's transaction: the page applied and its cursor commit together."""
    cur.execute(
        "INSERT INTO pull_cursors VALUES (?, ?, ?, ?) ON CONFLICT (endpoint, dataset)"
        " DO UPDATE SET updated_through_ms = excluded.updated_through_ms,"
        " scroll = excluded.scroll",
        [endpoint, dataset, updated_through_ms, json.dumps(scroll) if scroll else None],
    )


def start(
    store: Store, endpoint: str, dataset: str, since_ms: int | None, until_ms: int | None
) -> str:
    """A new pull's row, running; returns its id."""
    pull_id = uuid.uuid4().hex[:12]
    with store.write_lock:
        store.execute(
            "INSERT INTO pulls (pull_id, endpoint, dataset, started_at, since_ms, until_ms,"
            " traces, events, added, removed, rejected, pages, outcome, pid)"
            " VALUES (?, ?, ?, now(), ?, ?, 0, 0, 0, 0, 0, 0, 'running', ?)",
            [pull_id, endpoint, dataset, since_ms, until_ms, os.getpid()],
        )
    return pull_id


def count_page(
    cur: duckdb.DuckDBPyConnection,
    pull_id: str,
    *,
    traces: int,
    events: int,
    added: int,
    removed: int,
    rejected: int,
    total_hits: int | None,
) -> None:
    """On the caller's transaction: add one applied page to its pull's counts."""
    cur.execute(
        "UPDATE pulls SET traces = traces + ?, events = events + ?, added = added + ?,"
        " removed = removed + ?, rejected = rejected + ?, pages = pages + 1,"
        " total_hits = coalesce(?, total_hits) WHERE pull_id = ?",
        [traces, events, added, removed, rejected, total_hits, pull_id],
    )


def finish(
    store: Store, pull_id: str, outcome: str, updated_through_ms: int | None, message: str | None
) -> None:
    with store.write_lock:
        store.execute(
            "UPDATE pulls SET finished_at = now(), outcome = ?, updated_through_ms = ?,"
            " message = ? WHERE pull_id = ?",
            [outcome, updated_through_ms, message, pull_id],
        )


def counts(store: Store, pull_id: str) -> dict[str, int]:
    row = store.rows(
        "SELECT traces, events, added, removed, rejected, pages FROM pulls WHERE pull_id = ?",
        [pull_id],
    )[0]
    return dict(
        zip(("traces", "events", "added", "removed", "rejected", "pages"), row, strict=True)
    )


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def past_pulls(store: Store, limit: int = 50) -> pd.DataFrame:
    """The newest pulls first; a "running" pull whose process is gone reads "interrupted"."""
    frame = store.df(
        "SELECT started_at, finished_at, endpoint, dataset, traces, events, added, removed,"
        " rejected, pages, updated_through_ms, outcome, message, pid, pull_id"
        " FROM pulls ORDER BY started_at DESC LIMIT ?",
        [limit],
    )
    return without_dead_runs(frame)


def without_dead_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The pulls with a "running" pull whose process is gone as "interrupted", and no pid."""
    running = frame["outcome"] == "running"
    dead = running & ~frame["pid"].map(lambda p: _alive(None if p != p else int(p)))
    frame.loc[dead, "outcome"] = "interrupted"
    return frame.drop(columns=["pid"])
