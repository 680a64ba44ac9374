"""The store's journal of runs: one replay_runs row per run, one replay_outcomes row per event
outcome per session. Every value is a bound parameter."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from eventlens.client import Outcome
from eventlens.replay.report import Report
from eventlens.replay.specs import (
    FINAL,
    Endpoint,
    Pacing,
    ReplayError,
    Run,
    RunState,
    Source,
    Transforms,
)
from eventlens.store import Store


def save_run(store: Store, run: Run) -> None:
    """Write the run's row (created_at stays that of its first save)."""
    now = dt.datetime.now(dt.UTC)
    with store.cursor() as cur:
        cur.execute(
            "INSERT OR REPLACE INTO replay_runs VALUES (?, coalesce((SELECT created_at FROM"
            " replay_runs WHERE run_id = ?), ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                run.run_id,
                run.run_id,
                now,
                now,
                run.source.label,
                json.dumps(run.spec()),
                run.plan_path,
                run.planned,
                run.invalid,
                run.duplicates,
                run.state,
                run.message,
                run.sessions,
                run.elapsed_s,
                json.dumps(run.report.as_dict()) if run.report is not None else None,
            ],
        )


def _run_from_row(row: tuple) -> Run:
    (
        run_id,
        created_at,
        _updated,
        _source,
        spec_json,
        plan_path,
        planned,
        invalid,
        duplicates,
        state,
        message,
        sessions,
        elapsed_s,
        report,
    ) = row
    spec = json.loads(spec_json)
    src = dict(spec["source"])
    for key in ("start", "end"):
        src[key] = dt.datetime.fromisoformat(src[key]) if src.get(key) else None
    for key in ("datasets", "event_types", "trace_ids"):
        src[key] = tuple(src.get(key) or ())
    transforms = dict(spec["transforms"])
    transforms["redact"] = tuple(transforms.get("redact") or ())
    return Run(
        run_id=run_id,
        source=Source(**src),
        transforms=Transforms(**transforms),
        pacing=Pacing(**spec["pacing"]),
        endpoint=Endpoint(**spec["endpoint"]),
        plan_path=plan_path,
        planned=planned,
        invalid=invalid,
        duplicates=duplicates,
        state=RunState(state),
        message=message,
        sessions=sessions,
        elapsed_s=elapsed_s,
        anchor_ms=spec.get("anchor_ms"),
        created_at=created_at,
        report=Report.from_dict(json.loads(report)) if report else None,
    )


def get_run(store: Store, run_id: str) -> Run:
    """The run with this id, or 'last': the newest run that has not finished."""
    if run_id == "last":
        rows = store.rows(
            "SELECT * FROM replay_runs WHERE state <> ? ORDER BY created_at DESC LIMIT 1",
            [RunState.FINISHED],
        )
        if not rows:
            raise ReplayError("there is no unfinished run to resume")
    else:
        rows = store.rows("SELECT * FROM replay_runs WHERE run_id = ?", [run_id])
        if not rows:
            raise ReplayError(f"no run {run_id!r} in this store")
    return _run_from_row(rows[0])


def list_runs(store: Store, limit: int = 50) -> list[Run]:
    """The newest runs first."""
    rows = store.rows("SELECT * FROM replay_runs ORDER BY created_at DESC LIMIT ?", [limit])
    return [_run_from_row(r) for r in rows]


def delete_run(store: Store, run_id: str) -> None:
    """Forget a run: its journal rows and its plan file."""
    run = get_run(store, run_id)
    with store.write_lock, store.cursor() as cur:
        cur.execute("DELETE FROM replay_outcomes WHERE run_id = ?", [run_id])
        cur.execute("DELETE FROM replay_runs WHERE run_id = ?", [run_id])
    Path(run.plan_path).unlink(missing_ok=True)


# replay_outcomes' columns as the engine's rows name them, with their types.
OUTCOME_COLUMNS = (
    ("run_id", "VARCHAR"),
    ("session", "INTEGER"),
    ("seq", "BIGINT"),
    ("event_type", "VARCHAR"),
    ("outcome", "VARCHAR"),
    ("status", "INTEGER"),
    ("attempts", "INTEGER"),
    ("latency_ms", "DOUBLE"),
    ("message", "VARCHAR"),
    ("record", "VARCHAR"),
    ("line", "BIGINT"),
    ("logged_at", "TIMESTAMPTZ"),
)
# One list per column, unnested side by side: DuckDB converts lists of plain values about 2.5x
# faster than a list of structs, and the journal thread holds the GIL while it converts.
_APPEND_SQL = "INSERT INTO replay_outcomes BY NAME SELECT " + ", ".join(
    f"unnest(?::{kind}[]) AS {name}" for name, kind in OUTCOME_COLUMNS
)


def append_outcomes(store: Store, rows: list[dict[str, Any]]) -> None:
    """Append outcome rows in one statement."""
    if not rows:
        return
    columns = [[row[name] for row in rows] for name, _ in OUTCOME_COLUMNS]
    with store.cursor() as cur:
        cur.execute(_APPEND_SQL, columns)


def final_seqs(store: Store, run_id: str, lo: int, hi: int) -> set[int]:
    """The seqs in (lo, hi] that already have a final outcome (skipped by a resume)."""
    rows = store.rows(
        "SELECT DISTINCT seq FROM replay_outcomes WHERE run_id = ? AND seq > ? AND seq <= ?"
        " AND list_contains(?, outcome)",
        [run_id, lo, hi, list(FINAL)],
    )
    return {r[0] for r in rows}


def invalid_reasons(store: Store, run_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """The first source records that were not valid events, with their reasons."""
    rows = store.rows(
        "SELECT line, message FROM replay_outcomes WHERE run_id = ? AND outcome = ?"
        " AND seq < 0 ORDER BY seq DESC LIMIT ?",
        [run_id, Outcome.INVALID, limit],
    )
    return [{"line": line or None, "reason": reason} for line, reason in rows]
