"""Replay exported events to a track_event endpoint: paced, concurrent, retried safely, resumable.

A run is planned once. Its events (a file read through ingest, or the store's events under
Explore's filters) are written in replay order (timestamp, then source order) to a Parquet plan
beside the store, and the run is recorded in the store's journal (`replay_runs`). Sending reads
the plan a row group at a time, so memory stays flat whatever its size. Each event carries an
event_id that is stable for the run, so the server drops a retry or a resend as a repeat.
Every outcome is journalled (`replay_outcomes`) in small batches; a resume sends only the events
without a final outcome (accepted, rejected, invalid).

asyncio on httpx's aiohttp transport, not threads: at 64 in flight on this 2-core machine it
sent 3.3-3.8x the events/s of httpx's sync client in 64 threads, and ~10x httpx's AsyncClient
on its default transport (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import json
import logging
import os
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
from httpx_aiohttp import AiohttpTransport

from eventlens import client
from eventlens.store import MEMORY_ENV, Store
from eventlens.words import counted

log = logging.getLogger(__name__)

TIMESTAMPS = ("keep", "shift", "now")
FINAL = ("accepted", "rejected", "invalid")  # never sent again by a resume
DEAD = ("rejected", "invalid")  # what goes to the dead-letter file
STATES = ("planned", "running", "paused", "stopped", "finished", "failed")
REDACTED = "[redacted]"
CHUNK = 16_384  # plan rows read at a time (the plan's row group size)
EXACT_QUANTILES = 1_000_000  # latency percentiles are estimated above this many events
JOURNAL_EVERY_S = 0.2  # outcomes reach the journal at most this late (what a kill -9 can lose)
# Planning a file holds DuckDB to a small budget, so that replaying a 10M-event file stays
# under 300 MB RSS (docs/BENCHMARKS.md): one thread (each would hold its own read buffer and sort
# run), lines up to 8 MB, the file as one ingest chunk (a chunked load's anti-join against the
# chunks before it does not fit), and the sort written out before the seqs are numbered.
PLAN_MEMORY = "96MB"
PLAN_THREADS = 1
PLAN_LINE_BYTES = 8 * 1024 * 1024
PLAN_CHUNK_RECORDS = 1 << 62


class ReplayError(Exception):
    """A replay problem worded for a person (bad source, unknown run, missing plan)."""


@dataclass(frozen=True)
class Source:
    """What to replay: a file, or the store's events under Explore's filters."""

    path: str | None = None
    datasets: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    trace_ids: tuple[str, ...] = ()
    display_name: str | None = None  # an upload's own name, for the journal

    @property
    def label(self) -> str:
        return self.display_name or self.path or "store"

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "datasets": list(self.datasets),
            "event_types": list(self.event_types),
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "trace_ids": list(self.trace_ids),
            "display_name": self.display_name,
        }


@dataclass(frozen=True)
class Transforms:
    """How events change on the way: timestamps, trace ids, redacted detail keys."""

    timestamps: str = "keep"  # keep | shift (first event at the start, gaps kept) | now
    trace_ids: str = "keep"  # keep | prefix:P | fresh (a new id per trace, the same all run)
    redact: tuple[str, ...] = ()

    def check(self) -> None:
        if self.timestamps not in TIMESTAMPS:
            raise ReplayError(f"timestamps must be one of {', '.join(TIMESTAMPS)}")
        if self.trace_ids not in ("keep", "fresh") and not (
            self.trace_ids.startswith("prefix:") and len(self.trace_ids) > len("prefix:")
        ):
            raise ReplayError("trace ids must be keep, fresh or prefix:SOMETHING")


@dataclass(frozen=True)
class Pacing:
    """How fast: a cap in events/s, or the original timing sped up; and how many at once."""

    rate: float | None = None  # events per second at most (retries included)
    speed: float | None = None  # original gaps divided by this (None: as fast as allowed)
    max_gap_s: float = 60.0  # original gaps longer than this count as this long
    concurrency: int = 16
    max_retries: int = 8  # per event, for 5xx, 429, connection errors and timeouts
    backoff_s: float = 0.25  # first retry delay; doubles each time, with jitter
    max_backoff_s: float = 30.0
    timeout_s: float = 10.0

    def check(self) -> None:
        if self.rate is not None and self.rate <= 0:
            raise ReplayError("the rate must be above 0 events/s")
        if self.speed is not None and self.speed <= 0:
            raise ReplayError("the speed factor must be above 0")
        if self.concurrency < 1 or self.concurrency > 1024:
            raise ReplayError("concurrency must be between 1 and 1024")
        if self.max_retries < 0:
            raise ReplayError("max retries must be 0 or more")


@dataclass(frozen=True)
class Endpoint:
    """Where to send, without the key: the key is looked up when a session starts."""

    url: str = client.DEFAULT_ENDPOINT
    path: str = client.PATHS[0]
    auth: str = "x-auth-token"
    key_env: str = client.KEY_ENV  # the environment variable the CLI reads the key from

    def target(self, key: str | None, key_source: str = "environment") -> client.Target:
        return client.Target(self.url, key, key_source, self.auth, self.path)


@dataclass
class Run:
    """A journalled run: its id, spec and counts (the row of replay_runs)."""

    run_id: str
    source: Source
    transforms: Transforms
    pacing: Pacing
    endpoint: Endpoint
    plan_path: str
    planned: int = 0
    invalid: int = 0
    duplicates: int = 0
    state: str = "planned"
    message: str | None = None
    sessions: int = 0
    elapsed_s: float = 0.0
    anchor_ms: int | None = None  # where "shift" puts the first event (set when first started)
    created_at: dt.datetime | None = None
    report: dict[str, Any] | None = None

    def spec(self) -> dict[str, Any]:
        return {
            "source": self.source.as_dict(),
            "transforms": dataclasses.asdict(self.transforms),
            "pacing": dataclasses.asdict(self.pacing),
            "endpoint": dataclasses.asdict(self.endpoint),
            "anchor_ms": self.anchor_ms,
        }


# -- journal ----------------------------------------------------------------------------------


def plan_dir(store: Store) -> Path:
    """Where plans live: beside the store's file (a temporary folder for an in-memory store)."""
    if store.path == ":memory:":
        folder = Path(tempfile.gettempdir()) / f"eventlens-replays-{os.getpid()}"
    else:
        folder = Path(store.path).with_name(Path(store.path).name + ".replays")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _save_run(store: Store, run: Run) -> None:
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
                json.dumps(run.report) if run.report is not None else None,
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
        state=state,
        message=message,
        sessions=sessions,
        elapsed_s=elapsed_s,
        anchor_ms=spec.get("anchor_ms"),
        created_at=created_at,
        report=json.loads(report) if report else None,
    )


def get_run(store: Store, run_id: str) -> Run:
    """The run with this id, or 'last': the newest run that has not finished."""
    if run_id == "last":
        rows = store.rows(
            "SELECT * FROM replay_runs WHERE state <> 'finished' ORDER BY created_at DESC LIMIT 1"
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


def _journal(store: Store, rows: list[dict[str, Any]]) -> None:
    """Append outcome rows in one statement."""
    if not rows:
        return
    with store.cursor() as cur:
        cur.execute(
            "INSERT INTO replay_outcomes BY NAME SELECT unnest(?::STRUCT(run_id VARCHAR,"
            " session INTEGER, seq BIGINT, event_type VARCHAR, outcome VARCHAR, status INTEGER,"
            " attempts INTEGER, latency_ms DOUBLE, message VARCHAR, record VARCHAR, line BIGINT,"
            " logged_at TIMESTAMPTZ)[],"
            " recursive := true)",
            [rows],
        )


_LATEST = """
    SELECT * FROM replay_outcomes WHERE run_id = ?
    QUALIFY row_number() OVER (PARTITION BY seq ORDER BY session DESC, logged_at DESC) = 1
"""


# -- planning ---------------------------------------------------------------------------------


def new_run_id() -> str:
    """A sortable, readable run id: UTC time plus a random tail."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def plan(
    store: Store,
    source: Source,
    transforms: Transforms = Transforms(),
    pacing: Pacing = Pacing(),
    endpoint: Endpoint = Endpoint(),
    run_id: str | None = None,
) -> Run:
    """Stage a run: validate the source, write its plan, journal invalid records; send nothing."""
    transforms.check()
    pacing.check()
    if problem := client.check_target(endpoint.target(None)):
        raise ReplayError(problem)
    run_id = run_id or new_run_id()
    plan_path = plan_dir(store) / f"{run_id}.parquet"
    run = Run(run_id, source, transforms, pacing, endpoint, str(plan_path))
    if source.path is not None:
        _plan_file(store, run)
    else:
        _plan_store(store, run)
    with store.write_lock:
        _save_run(store, run)
    return run


# The plan: original fields (for dead letters) beside what is sent, in replay order. Ids are
# made in SQL, so planning stays one sort however many events there are.
_PLAN_SELECT = """
    SELECT trace_id,
           event_id,
           CASE ? WHEN 'fresh' THEN 'trace_' || md5(? || chr(0) || trace_id)
                  WHEN 'keep' THEN trace_id
                  ELSE ? || trace_id END AS send_trace_id,
           coalesce(event_id, 'replay_' || md5(? || chr(0) || event_key::VARCHAR)) AS send_event_id,
           event_type,
           epoch_ms(timestamp) AS ts,
           to_json(metrics)::VARCHAR AS metrics,
           to_json(event_details)::VARCHAR AS event_details,
           {line} AS line
    FROM events WHERE {where}
    ORDER BY timestamp NULLS LAST, {order}
"""


def _plan_params(run: Run) -> list[Any]:
    mode = run.transforms.trace_ids
    prefix = mode[len("prefix:") :] if mode.startswith("prefix:") else ""
    return [mode if mode in ("fresh", "keep") else "prefix", run.run_id, prefix, run.run_id]


def hold_memory(store: Store) -> None:
    """Hold a store to the planning budget, for a process that only replays (the CLI).

    Without it DuckDB keeps the growing journal and the store's pages cached (up to 80% of RAM),
    and the report's pass over a 10M-event journal takes about a gigabyte.
    $EVENTLENS_MEMORY_LIMIT, when set, wins.
    """
    if not os.environ.get(MEMORY_ENV):
        store.execute("SET GLOBAL memory_limit = ?", [PLAN_MEMORY])
        store.execute("SET GLOBAL threads = ?", [PLAN_THREADS])


def _small_duckdb() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB held to the planning budget, for Parquet in and Parquet out."""
    con = duckdb.connect()
    con.execute("SET memory_limit = ?", [PLAN_MEMORY])
    con.execute("SET threads = ?", [PLAN_THREADS])
    return con


def _copy_plan(cur: duckdb.DuckDBPyConnection, run: Run, select: str, params: list[Any]) -> int:
    """Write the plan: the events sorted into replay order, then numbered 1..N in that order."""
    sorted_path, tmp = run.plan_path + ".sorted", run.plan_path + ".part"
    write = f"(FORMAT parquet, ROW_GROUP_SIZE {CHUNK})"
    try:
        cur.execute(f"COPY ({select}) TO ? {write}", [*params, sorted_path])
        # Numbered apart: row_number() over the sort itself holds every row in memory; over the
        # written file it streams, in the file's order (one thread, insertion order kept).
        with _small_duckdb() as con:
            con.execute(
                f"COPY (SELECT row_number() OVER () AS seq, * FROM read_parquet(?)) TO ? {write}",
                [sorted_path, tmp],
            )
            planned = con.execute("SELECT count(*) FROM read_parquet(?)", [tmp]).fetchone()[0]
        os.replace(tmp, run.plan_path)
    finally:
        for leftover in (sorted_path, tmp):
            Path(leftover).unlink(missing_ok=True)
    return int(planned)


def _plan_file(store: Store, run: Run) -> None:
    """Read the file with ingest into a staging store, write the plan, journal the rejects."""
    if not os.path.isfile(run.source.path or ""):
        raise ReplayError(f"{run.source.label}: no such file")
    staging = Path(run.plan_path).with_suffix(".staging.duckdb")
    try:
        if not _stage(run, staging, budget=True):
            # A line longer than PLAN_LINE_BYTES, or a record that needs bigger buffers than
            # the budget (a large JSON document): read it the way `eventlens load` would.
            log.info("replay: %s needs more than the planning budget", run.source.label)
            _stage(run, staging, budget=False)
        _journal_rejects(store, run, staging)
    finally:
        for leftover in (staging, staging.with_suffix(".duckdb.wal")):
            leftover.unlink(missing_ok=True)


def _stage(run: Run, staging_path: Path, *, budget: bool) -> bool:
    """Load the file into a staging store and write the plan from it.

    With budget, DuckDB is held to PLAN_MEMORY and lines to PLAN_LINE_BYTES; returns False when
    the file needs more than that (it is then up to the caller to try without the budget).
    """
    from eventlens import ingest

    staging_path.unlink(missing_ok=True)
    staging = Store(staging_path)
    try:
        if budget:
            hold_memory(staging)
        result = ingest.load_files(
            staging,
            [run.source.path or ""],
            "replay",
            [run.source.label],
            max_line_bytes=PLAN_LINE_BYTES if budget else None,
            chunk_records=PLAN_CHUNK_RECORDS,
        )
        if failed := result.failed_files:
            if budget and (failed[0].record_too_long or failed[0].out_of_memory):
                return False
            raise ReplayError(failed[0].error or f"{run.source.label} could not be read")
        with staging.cursor() as cur:
            run.planned = _copy_plan(
                cur,
                run,
                _PLAN_SELECT.format(
                    order="source_line, event_key", line="source_line", where="true"
                ),
                _plan_params(run),
            )
        run.invalid = int(staging.scalar("SELECT count(*) FROM rejects"))
        run.duplicates = result.duplicates
        return True
    finally:
        staging.close()


def _journal_rejects(store: Store, run: Run, staging_path: Path) -> None:
    """Journal the staging store's rejects as invalid outcomes, in SQL (there may be millions)."""
    if not run.invalid:
        return
    alias = f"replay_staging_{uuid.uuid4().hex}"
    with store.write_lock, store.cursor() as cur:
        cur.execute(f"ATTACH ? AS {alias} (READ_ONLY)", [str(staging_path)])
        try:
            cur.execute(
                # One seq per record (-1, -2, ...): a trace document line can hold several.
                "INSERT INTO replay_outcomes BY NAME"
                " SELECT ? AS run_id, 0 AS session,"
                " -row_number() OVER (ORDER BY line NULLS LAST, rowid) AS seq,"
                " 'invalid' AS outcome, 0 AS attempts,"
                " CASE WHEN coalesce(location, '') = '' THEN reason"
                " ELSE location || ': ' || reason END AS message,"
                f" raw AS record, line, now() AS logged_at FROM {alias}.rejects",
                [run.run_id],
            )
        finally:
            cur.execute(f"DETACH {alias}")


def _plan_store(store: Store, run: Run) -> None:
    """Write the plan from the store's events under the source's filters (all bound)."""
    src = run.source
    conds, params = ["true"], []
    if src.datasets:
        conds.append("list_contains(?, dataset)")
        params.append(list(src.datasets))
    if src.event_types:
        conds.append("list_contains(?, event_type)")
        params.append(list(src.event_types))
    if src.trace_ids:
        conds.append("list_contains(?, trace_id)")
        params.append(list(src.trace_ids))
    if src.start is not None:
        conds.append("timestamp >= ?")
        params.append(src.start)
    if src.end is not None:
        conds.append("timestamp < ?")
        params.append(src.end)
    select = _PLAN_SELECT.format(
        order="dataset, source_file, source_line, event_key",
        line="source_line",
        where=" AND ".join(conds),
    )
    with store.cursor() as cur:
        run.planned = _copy_plan(cur, run, select, _plan_params(run) + params)
    if not run.planned:
        Path(run.plan_path).unlink(missing_ok=True)
        raise ReplayError("no events match the filters")


# -- the plan, read back ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Planned:
    """One event of the plan: original fields, plus the ids it is sent with."""

    seq: int
    trace_id: str
    event_id: str | None
    send_trace_id: str
    send_event_id: str
    event_type: str
    ts: int | None
    metrics: str
    event_details: str | None
    line: int | None

    def original(self) -> dict[str, Any]:
        """The event as the source had it (what a dead letter keeps)."""
        body: dict[str, Any] = {"trace_id": self.trace_id, "event_type": self.event_type}
        if self.event_id is not None:
            body["event_id"] = self.event_id
        body["metrics"] = json.loads(self.metrics)
        if self.event_details is not None:
            body["event_details"] = json.loads(self.event_details)
        if self.ts is not None:
            body["timestamp"] = self.ts
        return body


def read_plan(path: str) -> Iterator[list[Planned]]:
    """The plan's events, a row group at a time, in order (seqs run 1..N without gaps)."""
    if not os.path.isfile(path):
        raise ReplayError(f"the run's plan {path} is gone; start a new run")
    con = _small_duckdb()
    try:
        lo = 0
        while rows := con.execute(
            "SELECT seq, trace_id, event_id, send_trace_id, send_event_id, event_type, ts,"
            " metrics, event_details, line FROM read_parquet(?) WHERE seq > ? AND seq <= ?"
            " ORDER BY seq",
            [path, lo, lo + CHUNK],
        ).fetchall():
            yield [Planned(*r) for r in rows]
            lo += CHUNK
    finally:
        con.close()


def _final_seqs(store: Store, run_id: str, lo: int, hi: int) -> set[int]:
    """The seqs in (lo, hi] that already have a final outcome (skipped by a resume)."""
    rows = store.rows(
        "SELECT DISTINCT seq FROM replay_outcomes WHERE run_id = ? AND seq > ? AND seq <= ?"
        " AND list_contains(?, outcome)",
        [run_id, lo, hi, list(FINAL)],
    )
    return {r[0] for r in rows}


# -- dry run ----------------------------------------------------------------------------------


def dry_run(store: Store, run: Run, first: int = 5) -> dict[str, Any]:
    """Counts, the duration the pacing implies, and the first bodies as they would be sent."""
    with _small_duckdb() as con:
        # The plan is in seq order and one thread reads it in order, so lag() OVER () streams
        # (OVER (ORDER BY seq) would sort 10M rows again: 35x slower, measured).
        events, first_ts, last_ts, timed_ms = con.execute(
            """
            SELECT count(*), min(ts), max(ts), sum(least(gap, ?)) FILTER (WHERE gap IS NOT NULL)
            FROM (SELECT ts, ts - lag(ts) OVER () AS gap FROM read_parquet(?))
            """,
            [int(run.pacing.max_gap_s * 1000), run.plan_path],
        ).fetchone()
        traces = con.execute(
            "SELECT count(DISTINCT trace_id) FROM read_parquet(?)", [run.plan_path]
        ).fetchone()[0]
        by_type = con.execute(
            "SELECT event_type, count(*) FROM read_parquet(?) GROUP BY 1 ORDER BY 2 DESC, 1",
            [run.plan_path],
        ).fetchall()
    shaper = _Shaper(run, dt.datetime.now(dt.UTC).timestamp() * 1000)
    bodies: list[dict[str, Any]] = []
    for chunk in read_plan(run.plan_path):
        bodies = [shaper.body(p) for p in chunk[:first]]
        break
    return {
        "run_id": run.run_id,
        "source": run.source.label,
        "events": events,
        "traces": traces,
        "invalid": run.invalid,
        "duplicates": run.duplicates,
        "by_type": dict(by_type),
        "first_time": _iso_ms(first_ts),
        "last_time": _iso_ms(last_ts),
        "estimated_s": estimate_seconds(run.pacing, events, (timed_ms or 0) / 1000),
        "first_bodies": bodies,
        "invalid_reasons": invalid_reasons(store, run.run_id),
    }


def estimate_seconds(pacing: Pacing, events: int, timed_s: float) -> float | None:
    """How long sending should take: the slowest of the rate cap and the original timing."""
    parts = []
    if pacing.rate:
        parts.append(events / pacing.rate)
    if pacing.speed:
        parts.append(timed_s / pacing.speed)
    return round(max(parts), 1) if parts else None


def invalid_reasons(store: Store, run_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """The first source records that were not valid events, with their reasons."""
    rows = store.rows(
        "SELECT line, message FROM replay_outcomes WHERE run_id = ? AND outcome = 'invalid'"
        " AND seq < 0 ORDER BY seq DESC LIMIT ?",
        [run_id, limit],
    )
    return [{"line": line or None, "reason": reason} for line, reason in rows]


def _iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


# -- sending ----------------------------------------------------------------------------------


class _Shaper:
    """Turns a planned event into the body sent: ids, timestamps, redactions."""

    def __init__(self, run: Run, start_ms: float):
        self.mode = run.transforms.timestamps
        self.redact = set(run.transforms.redact)
        self.offset = 0
        if self.mode == "shift":
            first = _first_ts(run.plan_path)
            anchor = run.anchor_ms if run.anchor_ms is not None else int(start_ms)
            self.offset = anchor - first if first is not None else 0

    def body(self, p: Planned) -> dict[str, Any]:
        body: dict[str, Any] = {
            "trace_id": p.send_trace_id,
            "event_id": p.send_event_id,
            "event_type": p.event_type,
            "metrics": json.loads(p.metrics),
        }
        if p.event_details is not None:
            details = json.loads(p.event_details)
            for key in self.redact.intersection(details):
                details[key] = REDACTED
            body["event_details"] = details
        if self.mode == "now":
            body["timestamp"] = int(time.time() * 1000)
        elif p.ts is not None:
            body["timestamp"] = p.ts + self.offset
        return body


def _first_ts(path: str) -> int | None:
    with _small_duckdb() as con:
        return con.execute("SELECT min(ts) FROM read_parquet(?)", [path]).fetchone()[0]


@dataclass
class Progress:
    """A snapshot of a session, safe to read from another thread."""

    run_id: str
    state: str
    planned: int
    done: int  # events with a final outcome, earlier sessions included
    accepted: int
    rejected: int
    invalid: int
    failed: int
    unknown: int
    retried: int
    requests: int
    rate: float  # events finished per second in this session, pauses left out
    eta_s: float | None
    elapsed_s: float  # sending time of this session (pauses left out)
    paused_for_s: float  # left of a server-requested pause (Retry-After)
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _run_in_own_thread(main: Any) -> None:
    """asyncio.run(main()) on a new thread: the caller's thread may already run an event loop
    (a notebook, Playwright's sync API in tests), where asyncio.run refuses to start."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            failure.append(exc)

    thread = threading.Thread(target=target, name="replay-loop", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


class _Gate:
    """Run-wide controls every request waits on: stop, pause, a server's Retry-After.

    Set from any thread (the page's buttons, a signal); read by the engine's coroutines.
    """

    TICK = 0.05  # how often a waiting coroutine looks again

    def __init__(self) -> None:
        self.stopping = False
        self.paused = False
        self.until = 0.0  # monotonic time before which nobody sends (a server's Retry-After)

    def hold(self, seconds: float) -> None:
        self.until = max(self.until, time.monotonic() + seconds)

    def held_for(self) -> float:
        return max(0.0, self.until - time.monotonic())

    async def wait(self) -> bool:
        """Wait while paused or held; False once the run is stopping."""
        while not self.stopping:
            delay = self.TICK if self.paused else self.held_for()
            if delay <= 0:
                return True
            await asyncio.sleep(min(delay, self.TICK))
        return False

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless the run stops first; False once stopping."""
        end = time.monotonic() + seconds
        while not self.stopping:
            left = end - time.monotonic()
            if left <= 0:
                return True
            await asyncio.sleep(min(left, self.TICK))
        return False


class _RateLimit:
    """At most `rate` requests per second across the run, without bursts after idling."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self.next = time.monotonic()

    def slot(self) -> float:
        """Seconds to wait for this request's slot (one event loop: no lock needed)."""
        if not self.interval:
            return 0.0
        now = time.monotonic()
        slot = max(self.next, now)
        self.next = slot + self.interval
        return slot - now


class Replay:
    """One session of a run: send what has no final outcome, journal it, report.

    The engine is one asyncio loop (in the thread that calls execute) with `concurrency` worker
    coroutines sharing an httpx.AsyncClient on the aiohttp transport: measured fastest here
    (docs/BENCHMARKS.md). The journal is written by a thread, so DuckDB never blocks sending.
    """

    def __init__(
        self,
        store: Store,
        run: Run,
        key: str | None,
        *,
        key_source: str = "environment",
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.store = store
        self.run = run
        self.target = run.endpoint.target(key, key_source)
        self._transport = transport
        self.gate = _Gate()
        self.limit = _RateLimit(run.pacing.rate)
        self.counts = collections.Counter[str]()
        self.started = time.monotonic()
        self._paused_total = 0.0  # seconds spent paused by pause(), over the session
        self._paused_since: float | None = None
        self.session = run.sessions + 1
        self.done_before = 0
        # Final outcomes of earlier sessions, read when the session starts (None until then),
        # so that the runs list can show run-wide counts while this session sends.
        self.accepted_before: int | None = None
        self.dead_lettered_before: int | None = None
        self.message: str | None = None
        self.state = "running"
        self._rows: list[dict[str, Any]] = []
        self._rows_lock = threading.Lock()
        self._busy: dict[str, collections.deque[Planned]] = {}
        self.finished = threading.Event()

    # controls (any thread)
    def pause(self) -> None:
        if self._paused_since is None:
            self._paused_since = time.monotonic()
        self.gate.paused = True
        self.state = "paused"

    def resume(self) -> None:
        if self._paused_since is not None:
            self._paused_total += time.monotonic() - self._paused_since
            self._paused_since = None
        self.gate.paused = False
        self.state = "running"

    def sending_s(self) -> float:
        """Seconds this session has spent sending: since it started, less its pauses."""
        now = time.monotonic()
        since = self._paused_since
        paused = self._paused_total + (now - since if since is not None else 0.0)
        return max(now - self.started - paused, 0.0)

    def stop(self, message: str | None = None) -> None:
        if message and not self.message:
            self.message = message
        self.gate.stopping = True

    def progress(self) -> Progress:
        """Counts so far (earlier sessions included in done)."""
        c = dict(self.counts)
        elapsed = self.sending_s()
        finished = sum(c.get(k, 0) for k in (*FINAL, "failed", "unknown"))
        done = self.done_before + sum(c.get(k, 0) for k in FINAL)
        rate = finished / elapsed if elapsed > 0 else 0.0
        left = self.run.planned - done
        return Progress(
            run_id=self.run.run_id,
            state=self.state,
            planned=self.run.planned,
            done=done,
            accepted=c.get("accepted", 0),
            rejected=c.get("rejected", 0),
            invalid=c.get("invalid", 0),
            failed=c.get("failed", 0),
            unknown=c.get("unknown", 0),
            retried=c.get("retried", 0),
            requests=c.get("requests", 0),
            rate=round(rate, 1),
            eta_s=round(left / rate, 1) if rate > 0 and left > 0 else (0.0 if left <= 0 else None),
            elapsed_s=round(elapsed, 1),
            paused_for_s=round(self.gate.held_for(), 1),
            message=self.message,
        )

    # the session
    def execute(self) -> dict[str, Any]:
        """Send the run's remaining events; returns the run's report (also journalled)."""
        run = self.run
        if run.state == "finished":
            raise ReplayError(f"run {run.run_id} has finished; there is nothing left to send")
        # One scan of the final outcomes. Plain counts are exact for accepted and dead letters:
        # an event gets at most one final outcome (a resume skips it), and the file's invalid
        # records are journalled once, at seq <= 0.
        done, accepted, dead = self.store.rows(
            "SELECT count(DISTINCT seq) FILTER (WHERE seq > 0),"
            " count(*) FILTER (WHERE outcome = 'accepted'),"
            " count(*) FILTER (WHERE outcome <> 'accepted')"
            " FROM replay_outcomes WHERE run_id = ? AND list_contains(?, outcome)",
            [run.run_id, list(FINAL)],
        )[0]
        self.done_before, self.accepted_before, self.dead_lettered_before = done, accepted, dead
        if problem := client.check_target(self.target):
            raise ReplayError(f"nothing sent: {problem}")  # not a reason to dead-letter events
        now_ms = time.time() * 1000
        if run.anchor_ms is None:
            run.anchor_ms = int(now_ms)
        self.shaper = _Shaper(run, now_ms)
        run.state, run.sessions, run.message = "running", self.session, None
        with self.store.write_lock:
            _save_run(self.store, run)
        journal = threading.Thread(target=self._journal_loop, name="replay-journal", daemon=True)
        journal.start()
        crashed: BaseException | None = None
        try:
            _run_in_own_thread(self._main)
        except BaseException as exc:  # noqa: BLE001 - journal what we have, then re-raise
            crashed = exc
            self.stop(f"the replay failed: {type(exc).__name__}: {exc}")
        finally:
            self.finished.set()
            journal.join(timeout=10)
            self._flush()
            report = self._finish(crashed)
        if crashed is not None:
            raise crashed
        return report

    def _finish(self, crashed: BaseException | None) -> dict[str, Any]:
        run = self.run
        run.elapsed_s += self.sending_s()
        report = build_report(self.store, run)
        left = report["not_sent"] + report["failed"] + report["unknown"]
        if crashed is not None:
            run.state = "failed"
        elif self.gate.stopping:
            run.state = "stopped"
        else:
            run.state = "finished" if left == 0 else "stopped"
        run.message = self.message or (
            None
            if run.state == "finished"
            else f"{counted(left, 'event')} still to send; resume the run"
        )
        report["state"], report["message"] = run.state, run.message
        run.report = report
        self.state = run.state
        with self.store.write_lock:
            _save_run(self.store, run)
        return report

    async def _main(self) -> None:
        pacing = self.run.pacing
        limits = httpx.Limits(
            max_connections=pacing.concurrency, max_keepalive_connections=pacing.concurrency
        )
        transport = self._transport or AiohttpTransport(limits=limits)
        timeout = httpx.Timeout(pacing.timeout_s, connect=min(5.0, pacing.timeout_s))
        sender = client.AsyncSender(self.target, transport, timeout)
        async with transport:
            work: asyncio.Queue[Planned | None] = asyncio.Queue()
            # Events handed out but unfinished. Wide, so that an export whose traces come in
            # long runs (events queued behind their trace) still keeps every worker busy.
            window = asyncio.Semaphore(max(1024, pacing.concurrency * 64))
            workers = [
                asyncio.create_task(self._worker(work, window, sender))
                for _ in range(pacing.concurrency)
            ]
            try:
                await self._dispatch(work, window)
                await work.join()
            finally:
                for _ in workers:
                    work.put_nowait(None)
                await asyncio.gather(*workers, return_exceptions=True)

    async def _dispatch(
        self, work: asyncio.Queue[Planned | None], window: asyncio.Semaphore
    ) -> None:
        """Feed the workers in plan order: traces in parallel, one trace's events in order."""
        pacing = self.run.pacing
        timed = pacing.speed is not None
        clock_start, prev_ts, offset_ms = time.monotonic(), None, 0.0
        first_due: float | None = None
        cap_ms = pacing.max_gap_s * 1000
        chunks = read_plan(self.run.plan_path)
        while True:
            # DuckDB reads the next chunk on a thread while the workers keep sending.
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                return
            skip = await asyncio.to_thread(
                _final_seqs, self.store, self.run.run_id, chunk[0].seq - 1, chunk[-1].seq
            )
            for p in chunk:
                if timed and p.ts is not None:
                    if prev_ts is not None:
                        offset_ms += min(max(p.ts - prev_ts, 0), cap_ms) / (pacing.speed or 1)
                    prev_ts = p.ts
                if p.seq in skip:
                    continue
                if timed:
                    if first_due is None:  # the clock starts at the first event sent
                        first_due, clock_start = offset_ms, time.monotonic()
                    due = clock_start + (offset_ms - first_due) / 1000
                    if not await self.gate.sleep(due - time.monotonic()):
                        return
                if window.locked():  # the window is full: wait, looking at the stop flag
                    while not await self._acquire(window):
                        if self.gate.stopping:
                            return
                else:
                    await window.acquire()
                if self.gate.stopping:
                    window.release()
                    return
                queue = self._busy.get(p.trace_id)
                if queue is not None:
                    queue.append(p)  # its trace is in flight: sent after the one before it
                    continue
                self._busy[p.trace_id] = collections.deque()
                work.put_nowait(p)

    async def _acquire(self, window: asyncio.Semaphore) -> bool:
        """Take a window slot, giving up every tick to look at the stop flag."""
        try:
            await asyncio.wait_for(window.acquire(), self.gate.TICK)
            return True
        except TimeoutError:
            return False

    async def _worker(
        self,
        work: asyncio.Queue[Planned | None],
        window: asyncio.Semaphore,
        sender: client.AsyncSender,
    ) -> None:
        while True:
            item = await work.get()
            try:
                if item is None:
                    return
                while item is not None:  # this trace's queued events, in order
                    if not self.gate.stopping:
                        try:
                            await self._send(item, sender)
                        except Exception as exc:  # noqa: BLE001 - a bug must not hang the run
                            log.exception("replay: sending seq %s failed", item.seq)
                            self._record(item, "failed", None, 0, None, f"{type(exc).__name__}")
                    window.release()
                    queue = self._busy[item.trace_id]
                    nxt = queue.popleft() if queue else None
                    if nxt is None:
                        del self._busy[item.trace_id]
                    item = nxt
            finally:
                work.task_done()

    async def _send(self, p: Planned, sender: client.AsyncSender) -> None:
        """Send one event until it has an outcome, or the run stops (then it stays unsent)."""
        pacing = self.run.pacing
        body = self.shaper.body(p)
        attempts = 0
        while True:
            if not await self.gate.wait():
                return
            if not await self.gate.sleep(self.limit.slot()):
                return
            if self.gate.paused or self.gate.held_for() > 0:
                continue  # paused (or held by a Retry-After) while waiting for the slot
            result = await sender.send(body)
            outcome = result.outcome
            if result.sent or outcome != client.INVALID:
                attempts += 1
                self.counts["requests"] += 1
            if outcome == client.ACCEPTED:
                self._record(p, "accepted", result.status, attempts, result.latency_ms, None)
                return
            if outcome in (client.REJECTED, client.INVALID):
                kind = "rejected" if outcome == client.REJECTED else "invalid"
                self._record(p, kind, result.status, attempts, result.latency_ms, result.message)
                return
            if outcome in (client.UNAUTHORIZED, client.FORBIDDEN):
                self.stop(
                    f"stopped: {result.message}. Check the key in ${self.run.endpoint.key_env}"
                    " (or the one typed), then resume the run."
                )
                return
            # Retryable (429, 5xx, connect errors, timeouts) or unknown (dropped mid-answer).
            if attempts > pacing.max_retries:
                # Unknown: it may have arrived (no answer came back); failed: the server said no.
                no_answer = result.status is None and result.sent
                final = "unknown" if outcome == client.UNKNOWN or no_answer else "failed"
                self._record(p, final, result.status, attempts, result.latency_ms, result.message)
                return
            self.counts["retried"] += 1
            if result.retry_after is not None and result.status in (429, 503):
                self.gate.hold(result.retry_after)  # the whole run waits, not just this worker
                continue
            delay = min(pacing.max_backoff_s, pacing.backoff_s * 2 ** (attempts - 1))
            if not await self.gate.sleep(delay / 2 + random.uniform(0, delay / 2)):
                return

    def _record(
        self,
        p: Planned,
        outcome: str,
        status: int | None,
        attempts: int,
        latency_ms: float | None,
        message: str | None,
    ) -> None:
        record = json.dumps(p.original(), ensure_ascii=False) if outcome in DEAD else None
        row = {
            "run_id": self.run.run_id,
            "session": self.session,
            "seq": p.seq,
            "event_type": p.event_type,
            "outcome": outcome,
            "status": status,
            "attempts": attempts,
            "latency_ms": latency_ms,
            "message": message,
            "record": record,
            "line": p.line,
            "logged_at": dt.datetime.now(dt.UTC),
        }
        with self._rows_lock:
            self._rows.append(row)
        self.counts[outcome] += 1

    def _journal_loop(self) -> None:
        saved = time.monotonic()
        while not self.finished.wait(JOURNAL_EVERY_S):
            self._flush()
            if time.monotonic() - saved >= 5:  # so a crashed run still shows its sending time
                saved = time.monotonic()
                try:
                    self.store.execute(
                        "UPDATE replay_runs SET elapsed_s = ?, updated_at = now() WHERE run_id = ?",
                        [self.run.elapsed_s + self.sending_s(), self.run.run_id],
                    )
                except Exception:  # noqa: BLE001 - a missed progress note loses nothing
                    log.debug("replay progress note failed", exc_info=True)

    def _flush(self) -> None:
        with self._rows_lock:
            rows, self._rows = self._rows, []
        if not rows:
            return
        try:
            _journal(self.store, rows)
        except Exception:  # noqa: BLE001 - keep the rows and stop: an unjournalled send is unsafe
            log.exception("replay journal write failed")
            with self._rows_lock:
                self._rows[:0] = rows
            self.stop("the journal could not be written; the run stopped so nothing is lost")


# -- report and dead letters -------------------------------------------------------------------


def build_report(store: Store, run: Run) -> dict[str, Any]:
    """What happened to every event of the run, over all its sessions."""
    latest = f"({_LATEST})"
    counts: collections.Counter[str] = collections.Counter()
    by_type: dict[str, dict[str, int]] = {}
    planned_seen = sent = 0
    # One pass over each event's latest outcome gives every count (a 10M-event run's journal
    # is read a handful of times at most, under the CLI's memory limit).
    for event_type, outcome, planned, n, with_attempts in store.rows(
        "SELECT event_type, outcome, seq > 0, count(*), count(*) FILTER (WHERE attempts > 0)"
        f" FROM {latest} GROUP BY ALL ORDER BY ALL",
        [run.run_id],
    ):
        counts[outcome] += n
        sent += with_attempts
        if planned:
            planned_seen += n
            by_type.setdefault(event_type, {})[outcome] = n
    retried, requests = store.rows(
        "SELECT coalesce(sum(greatest(attempts - 1, 0)), 0), coalesce(sum(attempts), 0)"
        " FROM replay_outcomes WHERE run_id = ?",
        [run.run_id],
    )[0]
    latency = _latency_quantiles(store, run.run_id, counts["accepted"])
    accepted = counts.get("accepted", 0)
    rejected = counts.get("rejected", 0)
    invalid = counts.get("invalid", 0)
    return {
        "run_id": run.run_id,
        "state": run.state,
        "source": run.source.label,
        "endpoint": run.endpoint.url + run.endpoint.path,
        "events": run.planned + run.invalid,
        "planned": run.planned,
        "sent": sent,
        "requests": int(requests),
        "accepted": accepted,
        "rejected": rejected,
        "invalid": invalid,
        "dead_lettered": rejected + invalid,
        "retried": int(retried),
        "failed": counts.get("failed", 0),
        "unknown": counts.get("unknown", 0),
        "not_sent": run.planned - planned_seen,
        "duplicates_in_source": run.duplicates,
        "elapsed_s": round(run.elapsed_s, 2),
        "rate_per_s": round(planned_seen / run.elapsed_s, 1) if run.elapsed_s else None,
        "latency_ms": latency,
        "by_type": by_type,
        "sessions": run.sessions,
    }


def _latency_quantiles(store: Store, run_id: str, accepted: int) -> dict[str, Any]:
    """p50/p95/p99 of the accepted events' latency: exact up to EXACT_QUANTILES events, then
    DuckDB's t-digest estimate (exact quantiles hold every value in memory at once)."""
    estimated = accepted > EXACT_QUANTILES
    quantile = "approx_quantile" if estimated else "quantile_cont"
    values = store.rows(
        f"SELECT {quantile}(latency_ms, [0.5, 0.95, 0.99]) FROM ({_LATEST})"
        " WHERE outcome = 'accepted'",
        [run_id],
    )[0][0] or [None, None, None]
    p50, p95, p99 = (_round(v) for v in values)
    return {"p50": p50, "p95": p95, "p99": p99, "estimated": estimated}


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def dead_letters(store: Store, run_id: str) -> Iterator[dict[str, Any]]:
    """The run's dead letters: each original event (or raw record) plus why it was refused."""
    with store.cursor() as cur:
        cur.execute(
            f"SELECT seq, outcome, status, message, record, line FROM ({_LATEST})"
            " WHERE list_contains(?, outcome) ORDER BY line NULLS LAST, seq",
            [run_id, list(DEAD)],
        )
        while rows := cur.fetchmany(10_000):
            for seq, outcome, status, message, record, line in rows:
                letter = {
                    "reason": message,
                    "outcome": outcome,
                    "status": status,
                    "run_id": run_id,
                    "line": line,
                    "seq": seq if seq > 0 else None,
                }
                try:
                    event = json.loads(record) if record is not None else None
                except ValueError:
                    event = None
                if isinstance(event, dict):
                    yield {**event, "dead_letter": letter}
                else:
                    yield {"raw": record, "dead_letter": letter}


def write_dead_letters(store: Store, run_id: str, path: str | os.PathLike[str]) -> int:
    """Write the run's dead letters as JSONL (replayable: ingest ignores the extra key)."""
    n = 0
    tmp = Path(str(path) + ".part")
    with open(tmp, "w", encoding="utf-8") as fh:
        for letter in dead_letters(store, run_id):
            fh.write(json.dumps(letter, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def cleanup_plan_dir(store: Store) -> None:
    """Remove an in-memory store's temporary plan folder."""
    if store.path == ":memory:":
        shutil.rmtree(plan_dir(store), ignore_errors=True)


@dataclass
class Session:
    """A run in a background thread (the Replay page's worker)."""

    replay: Replay
    thread: threading.Thread
    report: dict[str, Any] | None = None
    error: str | None = None

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()


def start_background(store: Store, run: Run, key: str | None, key_source: str) -> Session:
    """Start a session in a daemon thread; the Session gives progress and controls."""
    replay = Replay(store, run, key, key_source=key_source)
    holder: list[Session] = []

    def target() -> None:
        session = holder[0]
        try:
            session.report = replay.execute()
        except ReplayError as exc:
            session.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown on the page, details in the log
            log.exception("replay %s failed", run.run_id)
            session.error = f"the replay failed ({type(exc).__name__}: {exc})"

    thread = threading.Thread(target=target, name=f"replay-{run.run_id}", daemon=True)
    holder.append(Session(replay, thread))
    thread.start()
    return holder[0]


# -- the runs list ----------------------------------------------------------------------------


def shown_state(run: Run, session: Session | None) -> str:
    """The state to show for a run, given its session in this process (if any).

    A live session's own state wins: the journal says "planned" until the session has read it
    and saved "running", and it never records a pause. A run the journal says is running or
    paused, with no live session here, was left so by a process that ended mid-run.
    """
    if session is not None and session.alive:
        return session.replay.state
    if run.state in ("running", "paused"):
        return "interrupted"
    return run.state


@dataclass
class Listing:
    """A run as the runs list shows it; a count is None where it does not exist yet."""

    state: str
    events: int  # planned plus invalid: every record of the source
    accepted: int | None
    dead_lettered: int | None
    rate_per_s: float | None


def listing(run: Run, session: Session | None) -> Listing:
    """The run's state and counts: a live session's, run-wide, else its last report's."""
    state = shown_state(run, session)
    events = run.planned + run.invalid
    if session is not None and session.alive:
        live, p = session.replay, session.replay.progress()
        if live.accepted_before is None or live.dead_lettered_before is None:
            return Listing(state, events, None, None, None)  # it has not read the journal yet
        return Listing(
            state,
            events,
            live.accepted_before + p.accepted,
            live.dead_lettered_before + p.rejected + p.invalid,
            p.rate,
        )
    report = run.report or {}
    return Listing(
        state,
        events,
        report.get("accepted"),
        report.get("dead_lettered", run.invalid if run.sessions else None),
        report.get("rate_per_s"),
    )
