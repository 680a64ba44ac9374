"""Apply one page of pulled traces to the store, in one transaction.

Every trace on the page replaces the stored events of that trace in the dataset (LangWatch sends
a trace whole each time anything on it changes), with its metadata, its rejects, the trace
summary and the detail index; the pull's counts and cursor are saved in the same transaction.
A page applied twice leaves the store as once: a pull killed anywhere and run again ends with
exactly what the server holds.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventlens import model
from eventlens.store import Store, fetch_scalar
from eventlens.sync import journal
from eventlens.sync.mapping import PulledTrace

if TYPE_CHECKING:  # pyarrow (and numpy) load with a pull's first page: `eventlens load` and
    import pyarrow as pa  # the other commands do not wait 0.3 s for them at start


@functools.cache
def _schemas() -> tuple[pa.Schema, pa.Schema, pa.Schema]:
    """The event, metadata and reject tables' schemas.

    A page reaches DuckDB as Arrow tables built column by column: binding 10,000 events as a
    list of structs took about a second, the Arrow table about 40 ms.
    """
    import pyarrow as pa

    events = pa.schema(
        [
            ("trace_id", pa.string()),
            ("pos", pa.int32()),
            ("event_id", pa.string()),
            ("event_type", pa.string()),
            ("ts", pa.float64()),
            ("metrics", pa.list_(pa.struct([("key", pa.string()), ("value", pa.float64())]))),
            ("details", pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))),
        ]
    )
    metadata = pa.schema(
        [
            ("trace_id", pa.string()),
            ("user_id", pa.string()),
            ("thread_id", pa.string()),
            ("customer_id", pa.string()),
            ("labels", pa.list_(pa.string())),
            ("updated_at", pa.float64()),
        ]
    )
    rejects = pa.schema(
        [
            ("trace_id", pa.string()),
            ("pos", pa.int32()),
            ("reason", pa.string()),
            ("raw", pa.string()),
        ]
    )
    return events, metadata, rejects


# The rows of the page's traces in the dataset: bind the dataset, then the trace ids.
IN_PAGE = "dataset = ? AND trace_id IN (SELECT unnest(?::VARCHAR[]))"
# A reject's 'file' names where it came from; its location names the trace and the position.
SOURCE_PREFIX = "langwatch:"


@dataclass(frozen=True)
class Applied:
    """What one page changed."""

    traces: int
    events: int  # valid events the page's traces hold now
    added: int  # of those, the ones the store did not hold (late events, new traces)
    removed: int  # events the store held for those traces that the server no longer has
    rejected: int


@dataclass(frozen=True)
class CursorUpdate:
    """The cursor to save with the page: where the next pull starts, the scroll in progress."""

    updated_through_ms: int | None
    scroll: dict[str, Any] | None


def split(traces: list[PulledTrace]) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Event, metadata and reject tables of a page; each body judged by model.py."""
    import pyarrow as pa

    schemas = _schemas()
    events: dict[str, list[Any]] = {name: [] for name in schemas[0].names}
    metas: dict[str, list[Any]] = {name: [] for name in schemas[1].names}
    rejects: dict[str, list[Any]] = {name: [] for name in schemas[2].names}
    for trace in traces:
        meta = trace.metadata
        metas["trace_id"].append(trace.trace_id)
        for key in ("user_id", "thread_id", "customer_id", "labels"):
            metas[key].append(meta.get(key))
        metas["updated_at"].append(None if trace.updated_at is None else float(trace.updated_at))
        for pos, (body, event_id) in enumerate(
            zip(trace.bodies, trace.event_ids, strict=True), start=1
        ):
            problems = model.validate_body(body)
            if problems:
                rejects["trace_id"].append(trace.trace_id)
                rejects["pos"].append(pos)
                rejects["reason"].append(model.reason(problems))
                rejects["raw"].append(json.dumps(body, ensure_ascii=False, default=str))
                continue
            timestamp = body.get("timestamp")
            events["trace_id"].append(trace.trace_id)
            events["pos"].append(pos)
            events["event_id"].append(event_id)
            events["event_type"].append(body["event_type"])
            events["ts"].append(None if timestamp is None else float(timestamp))
            events["metrics"].append(
                [{"key": k, "value": float(v)} for k, v in body["metrics"].items()]
            )
            events["details"].append(
                [
                    {"key": k, "value": v}
                    for k, v in (body.get("event_details") or {}).items()
                    if v is not None
                ]
            )
    return (
        pa.table(events, schema=schemas[0]),
        pa.table(metas, schema=schemas[1]),
        pa.table(rejects, schema=schemas[2]),
    )


def apply_page(
    store: Store,
    *,
    dataset: str,
    endpoint: str,
    pull_id: str,
    traces: list[PulledTrace],
    total_hits: int | None,
    cursor: CursorUpdate,
) -> Applied:
    """Replace the page's traces in the dataset and save the counts and cursor, atomically."""
    events, metas, rejects = split(traces)
    ids = [t.trace_id for t in traces]
    source = SOURCE_PREFIX + endpoint
    with store.write_lock, store.cursor() as cur:
        cur.register("_page_events", events)
        cur.register("_page_metadata", metas)
        cur.register("_page_rejects", rejects)
        cur.execute("BEGIN TRANSACTION")
        try:
            stored = added = removed = old_rejects = 0
            if ids and _held(cur, store, dataset, ids):
                stored, added, removed = _replace(cur, store, dataset, source, ids, events)
                old_rejects = int(
                    fetch_scalar(
                        cur,
                        f"SELECT count(*) FROM rejects WHERE {IN_PAGE}",
                        [dataset, ids],
                    )
                )
                for table in ("trace_metadata", "rejects"):
                    # Table names are constants from this loop, never user input.
                    cur.execute(f"DELETE FROM {table} WHERE {IN_PAGE}", [dataset, ids])  # noqa: S608
            elif ids:  # new traces (a first pull): nothing to delete or to count against
                _insert(cur, store, dataset, source, events)
                stored = added = events.num_rows
            if ids:
                cur.execute(
                    """
                    INSERT INTO trace_metadata
                    SELECT ?, m.trace_id, m.user_id, m.thread_id, m.customer_id, m.labels,
                           CASE WHEN m.updated_at IS NOT NULL
                                THEN epoch_ms(m.updated_at::BIGINT)::TIMESTAMPTZ END
                    FROM _page_metadata m
                    """,
                    [dataset],
                )
                if rejects.num_rows:
                    cur.execute(
                        """
                        INSERT INTO rejects (dataset, file, line, location, reason, raw, trace_id)
                        SELECT ?, ?, r.pos, 'trace ' || r.trace_id || ', event ' || r.pos,
                               r.reason, r.raw, r.trace_id
                        FROM _page_rejects r
                        """,
                        [dataset, source],
                    )
                cur.execute(
                    "INSERT INTO datasets (name, files, content_hash, loaded_at, events, rejects,"
                    " duplicates, test) VALUES (?, [?], 'langwatch', now(), ?, ?, 0, false)"
                    " ON CONFLICT (name) DO UPDATE SET events = datasets.events + ?,"
                    " rejects = datasets.rejects + ?, loaded_at = now(),"
                    " files = list_distinct(list_append(datasets.files, ?))",
                    [
                        dataset,
                        source,
                        stored,
                        rejects.num_rows,
                        added - removed,
                        rejects.num_rows - old_rejects,
                        source,
                    ],
                )
            journal.count_page(
                cur,
                pull_id,
                traces=len(traces),
                events=stored,
                added=added,
                removed=removed,
                rejected=rejects.num_rows,
                total_hits=total_hits,
            )
            journal.save_cursor(cur, endpoint, dataset, cursor.updated_through_ms, cursor.scroll)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
    return Applied(len(traces), stored, added, removed, rejects.num_rows)


# An event's content, to count what a replaced trace gained and lost (as multisets).
CONTENT = "trace_id, event_type, timestamp, metrics::VARCHAR, event_details::VARCHAR"


def _held(cur: Any, store: Store, dataset: str, ids: list[str]) -> bool:
    """Whether the dataset holds anything of the page's traces: events (the trace summary,
    and the events of batches not merged into it yet, the sandbox's), metadata or rejects.
    A first pull holds none, and skips the deletes and counts a replace costs (a third of a
    short-trace page's time)."""
    through = store.keys_through(cur)
    recent = "" if through is None else " OR batch_id > ?"
    found = cur.execute(
        f"SELECT 1 FROM trace_summary WHERE {IN_PAGE}"
        f" UNION ALL SELECT 1 FROM trace_metadata WHERE {IN_PAGE}"
        f" UNION ALL SELECT 1 FROM rejects WHERE {IN_PAGE}"
        f" UNION ALL SELECT 1 FROM events WHERE (batch_id IS NULL{recent}) AND {IN_PAGE}"
        " LIMIT 1",
        [dataset, ids] * 3 + ([] if through is None else [through]) + [dataset, ids],
    ).fetchall()
    return bool(found)


def _insert(cur: Any, store: Store, dataset: str, source: str, events: pa.Table) -> int:
    """Insert the page's events as one new batch and merge it into the summaries; the batch."""
    batch = int(fetch_scalar(cur, "SELECT nextval('event_batches')"))
    if events.num_rows:
        cur.execute(
            """
            INSERT INTO events (event_key, event_id, trace_id, event_type, timestamp, metrics,
                                event_details, dataset, source_file, source_line, batch_id)
            SELECT md5_number('pull' || chr(0) || ? || chr(0) || r.trace_id || chr(0) || r.pos),
                   r.event_id, r.trace_id, r.event_type,
                   epoch_ms(round(r.ts)::BIGINT)::TIMESTAMPTZ,
                   map_from_entries(r.metrics), map_from_entries(r.details), ?, ?, r.pos, ?
            FROM _page_events r
            """,
            [dataset, dataset, source, batch],
        )
    store.merge_summary(cur, batch - 1)  # only this page's batch is newer
    return batch


def _replace(
    cur: Any, store: Store, dataset: str, source: str, ids: list[str], events: pa.Table
) -> tuple[int, int, int]:
    """Swap the traces' events for the page's; (stored, added, removed) by content."""
    try:
        cur.execute(
            f"CREATE TEMP TABLE _old AS SELECT {CONTENT} FROM events WHERE {IN_PAGE}",
            [dataset, ids],
        )
        store.forget_keys(cur, IN_PAGE, [dataset, ids])  # the key counts of the events replaced
        for table in ("events", "trace_summary", "detail_index"):
            # Table names are constants from this loop, never user input.
            cur.execute(f"DELETE FROM {table} WHERE {IN_PAGE}", [dataset, ids])  # noqa: S608
        batch = _insert(cur, store, dataset, source, events)
        new = f"SELECT {CONTENT} FROM events WHERE batch_id = ?"
        added = fetch_scalar(
            cur, f"SELECT count(*) FROM ({new} EXCEPT ALL SELECT * FROM _old)", [batch]
        )
        removed = fetch_scalar(
            cur, f"SELECT count(*) FROM (SELECT * FROM _old EXCEPT ALL {new})", [batch]
        )
    finally:
        cur.execute("DROP TABLE IF EXISTS _old")
    return events.num_rows, int(added), int(removed)
