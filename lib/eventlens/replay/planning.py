"""A run's plan: its events in replay order, written once to Parquet beside the store, read back
a row group at a time, and looked at before sending (the dry run).

Planning a file holds DuckDB to a small budget, so that replaying a 10M-event file stays under
300 MB RSS (docs/BENCHMARKS.md): one thread (each would hold its own read buffer and sort run),
lines up to 8 MB, the file as one ingest chunk (a chunked load's anti-join against the chunks
before it does not fit), and the sort written out before the seqs are numbered.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from eventlens import client, settings
from eventlens.analytics import dialect
from eventlens.client import Outcome
from eventlens.replay.journal import invalid_reasons, save_run
from eventlens.replay.specs import Endpoint, Pacing, ReplayError, Run, Source, Transforms
from eventlens.store import Store, fetch_scalar

log = logging.getLogger(__name__)

REDACTED = "[redacted]"
CHUNK = 16_384  # plan rows read at a time (the plan's row group size)
PLAN_MEMORY = "96MB"
PLAN_THREADS = 1
PLAN_LINE_BYTES = 8 * 1024 * 1024
PLAN_CHUNK_RECORDS = 1 << 62


def plan_dir(store: Store) -> Path:
    """Where plans live: beside the store's file (a temporary folder for an in-memory store)."""
    if store.path == ":memory:":
        folder = Path(tempfile.gettempdir()) / f"eventlens-replays-{os.getpid()}"
    else:
        folder = Path(store.path).with_name(Path(store.path).name + ".replays")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cleanup_plan_dir(store: Store) -> None:
    """Remove an in-memory store's temporary plan folder."""
    if store.path == ":memory:":
        shutil.rmtree(plan_dir(store), ignore_errors=True)


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
        save_run(store, run)
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
    $EVENTLENS_MEMORY_LIMIT, when set, wins, and so does $EVENTLENS_THREADS (Store set it).
    """
    if not settings.MEMORY_LIMIT.from_env():
        store.execute("SET GLOBAL memory_limit = ?", [PLAN_MEMORY])
        if not settings.THREADS.from_env():
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
            planned = fetch_scalar(con, "SELECT count(*) FROM read_parquet(?)", [tmp])
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
                " ? AS outcome, 0 AS attempts,"
                " CASE WHEN coalesce(location, '') = '' THEN reason"
                " ELSE location || ': ' || reason END AS message,"
                f" raw AS record, line, now() AS logged_at FROM {alias}.rejects",
                [run.run_id, Outcome.INVALID],
            )
        finally:
            cur.execute(f"DETACH {alias}")


def _source_filters(src: Source, in_list: str) -> tuple[list[str], list[Any]]:
    """A store source's filters as conditions with bound values; `in_list` is the engine's test
    of a column against a bound list (its Dialect's, filled in from the constant names below)."""
    conds: list[str] = ["true"]
    params: list[Any] = []
    for values, column in (
        (src.datasets, "dataset"),
        (src.event_types, "event_type"),
        (src.trace_ids, "trace_id"),
    ):
        if values:
            conds.append(in_list.format(column))
            params.append(list(values))
    if src.start is not None:
        conds.append("timestamp >= ?")
        params.append(src.start)
    if src.end is not None:
        conds.append("timestamp < ?")
        params.append(src.end)
    return conds, params


def _plan_store(store: Store, run: Run) -> None:
    """Write the plan from the store's events under the source's filters (all bound)."""
    if store.events_from is not None:
        _plan_clickhouse(store.events_from, run)
        return
    conds, params = _source_filters(run.source, dialect(store).in_list)
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


# The events' columns as the plan's SELECT reads them, the 128-bit key in two halves (Arrow has
# no such integer) on the way out of ClickHouse.
_CLICKHOUSE_EVENTS = """
    SELECT toUInt64(bitShiftRight(event_key, 64)) AS key_hi,
           toUInt64(bitAnd(event_key, toUInt128('18446744073709551615'))) AS key_lo,
           event_id, trace_id, toString(event_type) AS event_type, timestamp, metrics,
           event_details, toString(dataset) AS dataset, source_file, source_line
    FROM events WHERE {where}
"""
_STAGED_EVENTS = """
    CREATE TABLE events (event_key UHUGEINT, event_id VARCHAR, trace_id VARCHAR,
                         event_type VARCHAR, timestamp TIMESTAMPTZ, metrics MAP(VARCHAR, DOUBLE),
                         event_details MAP(VARCHAR, VARCHAR), dataset VARCHAR,
                         source_file VARCHAR, source_line BIGINT)
"""


def _plan_clickhouse(house: Any, run: Run) -> None:
    """The plan of a ClickHouse store's events: those under the source's filters (bound, as
    ClickHouse parameters), streamed as Arrow into a DuckDB file beside the plan, then the same
    plan SQL as for a DuckDB store (the same order, the same ids: the keys are the same)."""
    conds, params = _source_filters(run.source, dialect(house).in_list)
    staging = Path(run.plan_path).with_suffix(".staging.duckdb")
    staging.unlink(missing_ok=True)
    try:
        with duckdb.connect(str(staging)) as con:
            con.execute("SET memory_limit = ?", [PLAN_MEMORY])
            con.execute("SET threads = ?", [PLAN_THREADS])
            con.execute("SET TimeZone = 'UTC'")
            con.execute(_STAGED_EVENTS)
            query = _CLICKHOUSE_EVENTS.format(where=" AND ".join(conds))
            for batch in house.arrow_batches(query, params):
                con.register("_part", batch)
                con.execute(
                    "INSERT INTO events SELECT (key_hi::UHUGEINT << 64) | key_lo::UHUGEINT,"
                    " event_id, trace_id, event_type, timestamp, metrics, event_details, dataset,"
                    " source_file, source_line FROM _part"
                )
                con.unregister("_part")
            select = _PLAN_SELECT.format(
                order="dataset, source_file, source_line, event_key",
                line="source_line",
                where="true",
            )
            run.planned = _copy_plan(con, run, select, _plan_params(run))
    finally:
        for leftover in (staging, staging.with_suffix(".duckdb.wal")):
            leftover.unlink(missing_ok=True)
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


# -- dry run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DryRun:
    """What a run would send, looked at before sending; as_dict() is `--dry-run --json`."""

    run_id: str
    source: str  # the source's label
    events: int  # planned
    traces: int
    invalid: int  # source records that are not valid events (dead letters)
    duplicates: int  # repeated source records, left out
    by_type: dict[str, int]
    first_time: str | None  # event time span, ISO
    last_time: str | None
    estimated_s: float | None  # the duration the pacing implies (None: endpoint-bound)
    first_bodies: list[dict[str, Any]]  # as they would be sent
    invalid_reasons: list[dict[str, Any]]  # the first invalid records: line and reason

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def dry_run(store: Store, run: Run, first: int = 5) -> DryRun:
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
        ).fetchall()[0]
        traces = fetch_scalar(
            con, "SELECT count(DISTINCT trace_id) FROM read_parquet(?)", [run.plan_path]
        )
        by_type = con.execute(
            "SELECT event_type, count(*) FROM read_parquet(?) GROUP BY 1 ORDER BY 2 DESC, 1",
            [run.plan_path],
        ).fetchall()
    shaper = Shaper(run, dt.datetime.now(dt.UTC).timestamp() * 1000)
    bodies: list[dict[str, Any]] = []
    for chunk in read_plan(run.plan_path):
        bodies = [shaper.body(p) for p in chunk[:first]]
        break
    return DryRun(
        run_id=run.run_id,
        source=run.source.label,
        events=events,
        traces=traces,
        invalid=run.invalid,
        duplicates=run.duplicates,
        by_type=dict(by_type),
        first_time=_iso_ms(first_ts),
        last_time=_iso_ms(last_ts),
        estimated_s=estimate_seconds(run.pacing, events, (timed_ms or 0) / 1000),
        first_bodies=bodies,
        invalid_reasons=invalid_reasons(store, run.run_id),
    )


def estimate_seconds(pacing: Pacing, events: int, timed_s: float) -> float | None:
    """How long sending should take: the slowest of the rate cap and the original timing."""
    parts = []
    if pacing.rate:
        parts.append(events / pacing.rate)
    if pacing.speed:
        parts.append(timed_s / pacing.speed)
    return round(max(parts), 1) if parts else None


def _iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


# -- the body sent ----------------------------------------------------------------------------


class Shaper:
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
        first: int | None = fetch_scalar(con, "SELECT min(ts) FROM read_parquet(?)", [path])
        return first
