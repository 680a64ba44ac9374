"""The Submit history: each send kept in the store (endpoint, body, outcome, answer), no key."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from eventlens.client import SendResult, Target
from eventlens.store import Store

if TYPE_CHECKING:
    import pandas as pd


def record(store: Store | Any, target: Target, body: dict[str, Any], result: SendResult) -> int:
    """Keep one send; returns its id. The key is not among the columns, and is scrubbed."""
    values = [
        target.url,
        target.scrub(json.dumps(body, ensure_ascii=False)),
        result.outcome,
        result.status,
        None
        if result.response is None
        else target.scrub(json.dumps(result.response, ensure_ascii=False)),
        result.latency_ms,
        target.scrub(result.message),
    ]
    if store.engine == "clickhouse":  # no sequences there: an id from the clock, in microseconds
        with store.write_lock:
            submission_id = time.time_ns() // 1000
            store.execute(
                "INSERT INTO submissions (id, sent_at, endpoint, body, outcome, status, response,"
                " latency_ms, message) SELECT ?, now64(3), ?, ?, ?, ?, ?, ?, ?",
                [submission_id, *values],
            )
        return submission_id
    with store.write_lock, store.cursor() as cur:
        return int(
            cur.execute(
                "INSERT INTO submissions (sent_at, endpoint, body, outcome, status, response,"
                " latency_ms, message) VALUES (now(), ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                values,
            ).fetchall()[0][0]
        )


def recent(store: Store | Any, limit: int = 200) -> pd.DataFrame:
    """The newest sends first."""
    return store.df(
        "SELECT id, sent_at, endpoint, outcome, status, latency_ms, message, body, response"
        " FROM submissions ORDER BY id DESC LIMIT ?",
        [limit],
    )


def body_of(store: Store | Any, submission_id: int) -> dict[str, Any] | None:
    """The body of one earlier send, to send again or to load into the form."""
    raw = store.scalar("SELECT body FROM submissions WHERE id = ?", [submission_id])
    return json.loads(raw) if raw else None


def save_template(store: Store | Any, name: str, body: dict[str, Any]) -> None:
    """Keep an event shape under a name (replacing one of the same name)."""
    if (
        store.engine == "clickhouse"
    ):  # a newer row of the name replaces the older (ReplacingMergeTree)
        store.execute(
            "INSERT INTO templates SELECT ?, ?, now64(6)",
            [name, json.dumps(body, ensure_ascii=False)],
        )
        return
    with store.write_lock, store.cursor() as cur:
        cur.execute(
            "INSERT OR REPLACE INTO templates VALUES (?, ?, now())",
            [name, json.dumps(body, ensure_ascii=False)],
        )


def templates(store: Store | Any) -> dict[str, dict[str, Any]]:
    """The saved event shapes by name."""
    final = " FINAL" if store.engine == "clickhouse" else ""
    rows = store.rows(f"SELECT name, body FROM templates{final} ORDER BY name")
    return {name: json.loads(body) for name, body in rows}


def delete_template(store: Store | Any, name: str) -> None:
    if store.engine == "clickhouse":
        store.execute("DELETE FROM templates WHERE name = ?", [name])
        return
    with store.write_lock, store.cursor() as cur:
        cur.execute("DELETE FROM templates WHERE name = ?", [name])


def bodies_from_file(path: str, limit: int = 1_000) -> tuple[list[dict[str, Any]], list[str]]:
    """The events of a small export (any format ingest reads) as track_event bodies.

    Returns the bodies in file order and a problem per record that could not be read; the
    records are read by ingest into a throwaway store, so every format and rule applies.
    """
    from eventlens.ingest import load_files
    from eventlens.traces import body

    with Store(":memory:") as scratch:
        result = load_files(scratch, [path], "bulk").files[0]
        problems = [f"{where}: {why}" for where, why in result.first_rejects]
        if result.rejected > len(result.first_rejects):
            problems.append(f"... {result.rejected - len(result.first_rejects)} more rejected")
        if result.error:
            problems.append(result.error)
        frame = scratch.df(
            "SELECT trace_id, event_type, metrics, event_details, event_id,"
            " epoch_ms(timestamp) AS timestamp_ms FROM events"
            " ORDER BY source_line, event_key LIMIT ?",
            [limit],
        )
    return [body(row, row["trace_id"]) for _, row in frame.iterrows()], problems
