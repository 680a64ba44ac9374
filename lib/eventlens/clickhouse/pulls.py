"""Pulls from LangWatch into a ClickHouse store: sync/'s journal and page apply, for ClickHouse.

DuckDB applies a page and saves its cursor in one transaction. ClickHouse has none, so a page is
written so that applying it again gives the same store: its traces' old rows are deleted, the
page's inserted, then the pull's counts and the cursor are written. A pull killed anywhere has not
saved the cursor past that page, so the next pull applies it again and ends with exactly what
the server holds. Rows that change (a pull's counts, a cursor) are written anew with a higher
revision and read FINAL, as the datasets catalogue is.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from eventlens.clickhouse.store import (
    EVENT_COLUMNS,
    REJECT_COLUMNS,
    ClickHouseStore,
    utc_from_ms,
    utc_now,
)
from eventlens.sync.apply import SOURCE_PREFIX, Applied, CursorUpdate, split
from eventlens.sync.journal import Cursor, cursor_of, without_dead_runs
from eventlens.sync.mapping import PulledTrace

if TYPE_CHECKING:
    import pandas as pd

# The page's traces in the dataset: bind the dataset, then the trace ids.
IN_PAGE = "dataset = ? AND trace_id IN ?"  # IN, not has(): the bloom index on trace_id serves it
# An event's content, to count what a replaced trace gained and lost (as multisets), as
# sync/apply.py's CONTENT does on DuckDB.
CONTENT = "tuple(trace_id, event_type, timestamp, toString(metrics), toString(event_details))"
PULL_COUNTS = ("traces", "events", "added", "removed", "rejected", "pages")
PULL_COLUMNS = (
    "pull_id", "endpoint", "dataset", "started_at", "finished_at", "since_ms", "until_ms",
    "total_hits", *PULL_COUNTS, "updated_through_ms", "outcome", "message", "pid", "revision",
)  # fmt: skip

_revision_lock = threading.Lock()
_last_revision = 0


def _revision() -> int:
    """Microseconds since the epoch, and always more than this process's last: the latest write
    of a row wins even within one microsecond."""
    global _last_revision
    with _revision_lock:
        _last_revision = max(time.time_ns() // 1000, _last_revision + 1)
        return _last_revision


# -- the journal --------------------------------------------------------------------------------


def cursor(store: ClickHouseStore, endpoint: str, dataset: str) -> Cursor:
    rows = store.rows(
        "SELECT updated_through_ms, scroll FROM pull_cursors FINAL"
        " WHERE endpoint = ? AND dataset = ?",
        [endpoint, dataset],
    )
    return cursor_of(rows)


def save_cursor(
    store: ClickHouseStore,
    endpoint: str,
    dataset: str,
    updated_through_ms: int | None,
    scroll: dict[str, Any] | None,
) -> None:
    store.insert(
        "pull_cursors",
        [(endpoint, dataset, updated_through_ms, json.dumps(scroll) if scroll else None,
          _revision())],
        ["endpoint", "dataset", "updated_through_ms", "scroll", "revision"],
    )  # fmt: skip


def start(
    store: ClickHouseStore, endpoint: str, dataset: str, since_ms: int | None, until_ms: int | None
) -> str:
    """A new pull's row, running; returns its id."""
    pull_id = uuid.uuid4().hex[:12]
    row = dict.fromkeys(PULL_COLUMNS)
    row.update(
        pull_id=pull_id,
        endpoint=endpoint,
        dataset=dataset,
        started_at=utc_now(),
        since_ms=since_ms,
        until_ms=until_ms,
        outcome="running",
        pid=os.getpid(),
        **dict.fromkeys(PULL_COUNTS, 0),
    )
    _write_pull(store, row)
    return pull_id


def finish(
    store: ClickHouseStore,
    pull_id: str,
    outcome: str,
    updated_through_ms: int | None,
    message: str | None,
) -> None:
    row = _pull_row(store, pull_id)
    row.update(
        finished_at=utc_now(),
        outcome=outcome,
        updated_through_ms=updated_through_ms,
        message=message,
    )
    _write_pull(store, row)
    if row["pages"]:
        # The dataset's catalogue row once a pull, not per page: it counts the dataset's rows,
        # which costs more the more it holds (the events listed are counted when read).
        store.write_dataset_row(row["dataset"], content_hash="langwatch")


def counts(store: ClickHouseStore, pull_id: str) -> dict[str, int]:
    row = _pull_row(store, pull_id)
    return {name: int(row[name]) for name in PULL_COUNTS}


def past_pulls(store: ClickHouseStore, limit: int = 50) -> pd.DataFrame:
    """The newest pulls first; a "running" pull whose process is gone reads "interrupted"."""
    frame = store.df(
        "SELECT started_at, finished_at, endpoint, dataset, traces, events, added, removed,"
        " rejected, pages, updated_through_ms, outcome, message, pid, pull_id"
        " FROM pulls FINAL ORDER BY started_at DESC, revision DESC LIMIT ?",
        [limit],
    )
    return without_dead_runs(frame)


def clear_scroll(store: ClickHouseStore, endpoint: str, dataset: str, through: int | None) -> None:
    save_cursor(store, endpoint, dataset, through, None)


def _pull_row(store: ClickHouseStore, pull_id: str) -> dict[str, Any]:
    columns = ", ".join(PULL_COLUMNS)
    rows = store.rows(f"SELECT {columns} FROM pulls FINAL WHERE pull_id = ?", [pull_id])
    return dict(zip(PULL_COLUMNS, rows[0], strict=True))


def _write_pull(store: ClickHouseStore, row: dict[str, Any]) -> None:
    row["revision"] = _revision()
    store.insert("pulls", [tuple(row[c] for c in PULL_COLUMNS)], list(PULL_COLUMNS))


# -- one page -------------------------------------------------------------------------------------


def apply_page(
    store: ClickHouseStore,
    *,
    dataset: str,
    endpoint: str,
    pull_id: str,
    traces: list[PulledTrace],
    total_hits: int | None,
    cursor: CursorUpdate,
) -> Applied:
    """Replace the page's traces in the dataset, then count the page and save the cursor (in
    that order: see the module's docstring)."""
    events, metas, rejects = split(traces)
    ids = [t.trace_id for t in traces]
    source = SOURCE_PREFIX + endpoint
    stored = added = removed = 0
    with store.write_lock:
        if ids:
            held = _held(store, dataset, ids)
            stored, added, removed = _replace_events(store, dataset, source, ids, events, held)
            _replace_metadata(store, dataset, ids, metas, held)
            _replace_rejects(store, dataset, source, ids, rejects, held)
        row = _pull_row(store, pull_id)
        if ids and not row["pages"]:  # listed from the first page; its counts at finish()
            store.write_dataset_row(dataset, content_hash="langwatch")
        for name, n in (
            ("traces", len(traces)),
            ("events", stored),
            ("added", added),
            ("removed", removed),
            ("rejected", rejects.num_rows),
            ("pages", 1),
        ):
            row[name] += n
        row["total_hits"] = total_hits if total_hits is not None else row["total_hits"]
        _write_pull(store, row)
        save_cursor(store, endpoint, dataset, cursor.updated_through_ms, cursor.scroll)
    return Applied(len(traces), stored, added, removed, rejects.num_rows)


def _replace_events(
    store: ClickHouseStore, dataset: str, source: str, ids: list[str], events: Any, held: bool
) -> tuple[int, int, int]:
    """Swap the traces' events for the page's; (stored, added, removed) by content."""
    if not held:  # nothing to replace or to count against: every event is new
        store.insert("events", _stored_rows(events, dataset, source), EVENT_COLUMNS)
        return events.num_rows, events.num_rows, 0
    temp = f"_page_{uuid.uuid4().hex}"  # a name of our own, never user text
    store.command(
        f"CREATE TABLE {temp} (trace_id String, pos Int32, event_id Nullable(String),"
        " event_type String, ts Nullable(Float64), metrics Map(String, Nullable(Float64)),"
        " event_details Map(String, Nullable(String))) ENGINE = Memory"
    )
    try:
        if events.num_rows:
            store.insert(temp, _event_rows(events), list(_EVENT_COLUMNS))
        new = (
            f"SELECT trace_id, event_type, {_TIMESTAMP} AS timestamp, metrics, event_details"
            f" FROM {temp}"
        )
        old = (
            "SELECT trace_id, event_type, timestamp, metrics, event_details FROM events"
            f" WHERE {IN_PAGE}"
        )
        added, removed = store.rows(
            f"SELECT sum(greatest(n_new - n_old, 0)), sum(greatest(n_old - n_new, 0)) FROM ("
            f" SELECT content, countIf(side = 1) AS n_new, countIf(side = 0) AS n_old FROM ("
            f"  SELECT 1 AS side, {CONTENT} AS content FROM ({new})"
            f"  UNION ALL SELECT 0 AS side, {CONTENT} AS content FROM ({old})"
            f" ) GROUP BY content)",
            [dataset, ids],
        )[0]
        for table in ("events", "trace_summary"):
            # Table names are constants from this loop, never user input.
            store.execute(f"DELETE FROM {table} WHERE {IN_PAGE}", [dataset, ids])
        if events.num_rows:
            store.execute(
                "INSERT INTO events SELECT reinterpretAsUInt128(MD5(concat('pull', char(0), ?,"
                " char(0), trace_id, char(0), toString(pos)))), event_id, trace_id, event_type,"
                f" {_TIMESTAMP}, metrics, event_details, ?, ?, pos, ? FROM {temp}",
                [dataset, dataset, source, time.time_ns() // 1000],
            )
    finally:
        store.command(f"DROP TABLE IF EXISTS {temp}")
    return events.num_rows, int(added or 0), int(removed or 0)


# A pulled time is epoch ms as a float (sync/apply.py's split), rounded half away from zero as
# DuckDB's round() in sync/apply.py does (times are positive: floor(x + 0.5)); _stored_rows too.
_TIMESTAMP = "if(ts IS NULL, NULL, fromUnixTimestamp64Milli(toInt64(floor(ts + 0.5)), 'UTC'))"


def pulled_key(dataset: str, trace_id: str, pos: int) -> int:
    """A pulled event's key as DuckDB's apply makes it, md5_number('pull' \0 dataset \0 trace
    \0 position): the MD5 digest read little-endian, as reinterpretAsUInt128(MD5(...)) reads it
    in the SQL above."""
    text = f"pull\0{dataset}\0{trace_id}\0{pos}".encode()
    return int.from_bytes(hashlib.md5(text, usedforsecurity=False).digest(), "little")


def _stored_rows(events: Any, dataset: str, source: str) -> list[tuple]:
    """The page's events as rows of `events` (EVENT_COLUMNS), for a page of new traces."""
    batch = time.time_ns() // 1000
    return [
        (
            pulled_key(dataset, trace_id, pos),
            event_id,
            trace_id,
            event_type,
            None if ts is None else utc_from_ms(ts),
            metrics,
            details,
            dataset,
            source,
            pos,
            batch,
        )
        for trace_id, pos, event_id, event_type, ts, metrics, details in _event_rows(events)
    ]


_EVENT_COLUMNS = ("trace_id", "pos", "event_id", "event_type", "ts", "metrics", "event_details")


def _event_rows(events: Any) -> list[tuple]:
    """The page's events as rows, the maps as dicts (the Arrow lists of key/value pairs)."""
    columns = events.to_pydict()
    return [
        (
            columns["trace_id"][i],
            columns["pos"][i],
            columns["event_id"][i],
            columns["event_type"][i],
            columns["ts"][i],
            {p["key"]: p["value"] for p in columns["metrics"][i]},
            {p["key"]: p["value"] for p in columns["details"][i]},
        )
        for i in range(events.num_rows)
    ]


def _held(store: ClickHouseStore, dataset: str, ids: list[str]) -> bool:
    """Whether any of the traces has rows to replace (on a first pull none has: no DELETE, which
    ClickHouse runs as a mutation over the table's parts)."""
    return bool(
        store.rows(
            "SELECT 1 FROM events WHERE " + IN_PAGE + " UNION ALL SELECT 1 FROM trace_metadata"
            " WHERE " + IN_PAGE + " UNION ALL SELECT 1 FROM rejects WHERE " + IN_PAGE + " LIMIT 1",
            [dataset, ids, dataset, ids, dataset, ids],
        )
    )


def _replace_metadata(
    store: ClickHouseStore, dataset: str, ids: list[str], metas: Any, held: bool
) -> None:
    if held:
        store.execute(f"DELETE FROM trace_metadata WHERE {IN_PAGE}", [dataset, ids])
    columns = metas.to_pydict()
    rows = [
        (
            dataset,
            columns["trace_id"][i],
            columns["user_id"][i],
            columns["thread_id"][i],
            columns["customer_id"][i],
            [str(label) for label in columns["labels"][i] or []],
            None if columns["updated_at"][i] is None else utc_from_ms(columns["updated_at"][i]),
        )
        for i in range(metas.num_rows)
    ]
    store.insert(
        "trace_metadata",
        rows,
        ["dataset", "trace_id", "user_id", "thread_id", "customer_id", "labels", "updated_at"],
    )


def _replace_rejects(
    store: ClickHouseStore, dataset: str, source: str, ids: list[str], rejects: Any, held: bool
) -> None:
    if held:
        store.execute(f"DELETE FROM rejects WHERE {IN_PAGE}", [dataset, ids])
    if not rejects.num_rows:
        return
    now = utc_now()
    columns = rejects.to_pydict()
    rows = [
        (
            dataset,
            source,
            None,
            columns["pos"][i],
            f"trace {columns['trace_id'][i]}, event {columns['pos'][i]}",
            columns["reason"][i],
            columns["raw"][i],
            columns["trace_id"][i],
            now,
        )
        for i in range(rejects.num_rows)
    ]
    store.insert("rejects", rows, REJECT_COLUMNS)
