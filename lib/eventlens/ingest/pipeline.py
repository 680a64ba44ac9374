"""load_files, and one file's trip through it: detect, stage, insert the clean, check the rest.

Each stage is a function of the cursor and what the stages before it produced (the reader's
Staged, the file's Source, the LoadOptions); the SQL it runs comes from sql.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from eventlens.ingest import sql
from eventlens.ingest import typed as typed_sql
from eventlens.ingest.detect import Detected, NotAnExport, detect
from eventlens.ingest.options import CHUNK_RECORDS, MAX_LINE_BYTES, LoadOptions
from eventlens.ingest.readers import DOCUMENT_TOO_LARGE, READERS, Staged
from eventlens.ingest.results import FileResult, LoadResult
from eventlens.ingest.sql import Source
from eventlens.ingest.typed import TypedRows
from eventlens.store import Store, fetch_scalar

DETAILED_JSON_ERRORS = 1_000  # malformed lines explained by Python's parser, the rest generically
_WORK_TABLES = ("_src", "_norm", "_left")  # the pipeline's temp tables; readers name their own

log = logging.getLogger(__name__)


def default_dataset_name(paths: Sequence[str | os.PathLike[str]]) -> str:
    """A dataset name from the first file's name without its extensions."""
    name = Path(paths[0]).name if paths else "events"
    name = re.sub(r"(\.(gz|jsonl|ndjson|json|csv|tsv|parquet|txt))+$", "", name, flags=re.I)
    return name or "events"


def load_files(
    store: Store,
    paths: Iterable[str | os.PathLike[str]],
    dataset: str | None = None,
    display_names: Sequence[str] | None = None,
    *,
    max_line_bytes: int | None = None,
    chunk_records: int | None = None,
    fast_path: bool = True,
    summarise: bool = True,
) -> LoadResult:
    """Load files into one dataset; a bad file or row is reported, never raised.

    max_line_bytes (default MAX_LINE_BYTES) sizes the JSONL read buffers; chunk_records
    (default CHUNK_RECORDS) is how many records are checked and inserted at a time; with
    fast_path off every record takes the full path (tests compare the two). With summarise
    off the trace summary and key catalogue are left behind: for a throwaway staging store whose
    events go elsewhere (ClickHouseStore.load; 11 s of a 10M-event load).
    """
    files = [str(p) for p in paths]
    names = list(display_names) if display_names else files
    dataset = (dataset or "").strip() or _first_export_name(files, names)
    options = LoadOptions(
        max_line_bytes or MAX_LINE_BYTES, chunk_records or CHUNK_RECORDS, fast_path
    )
    before = store.last_batch()
    results = [
        _load_one(store, p, name, dataset, options) for p, name in zip(files, names, strict=True)
    ]
    _update_dataset(store, dataset)
    if summarise and any(r.loaded for r in results):
        store.refresh_traces(after_batch=before)
    return LoadResult(dataset, results)


def _first_export_name(paths: Sequence[str], names: Sequence[str]) -> str:
    """The default dataset name: the first file that is an export, not one that loads nothing."""
    for path, name in zip(paths, names, strict=True):
        try:
            detect(path)
        except (NotAnExport, OSError):
            continue
        return default_dataset_name([name])
    return default_dataset_name(names)


def _load_one(store: Store, path: str, name: str, dataset: str, options: LoadOptions) -> FileResult:
    """What loading one file did; a failure is a sentence in FileResult.error."""
    started = time.perf_counter()
    detected: Detected | None = None
    try:
        if not os.path.isfile(path):
            raise NotAnExport("no such file" if not os.path.exists(path) else "not a file")
        detected = detect(path)
        # Hash the file on a thread while DuckDB reads it (both release the GIL).
        with ThreadPoolExecutor(1) as pool, store.write_lock, store.cursor() as cur:
            digest = pool.submit(file_sha256, path)
            result = _load_file(cur, path, name, dataset, digest, detected, options)
    except NotAnExport as exc:
        result = _failed(name, detected, f"{name}: {exc}")
    except OSError as exc:
        result = _failed(name, detected, f"{name}: cannot read it ({exc.strerror or exc})")
    except duckdb.Error as exc:
        message = _duckdb_message(exc, detected, options.max_line_bytes)
        result = _failed(name, detected, f"{name}: {message}")
        result.record_too_long = _too_long(exc)
        result.out_of_memory = isinstance(exc, duckdb.OutOfMemoryException)
    except Exception as exc:  # a bug of ours: still a sentence for the user, details in the log
        log.exception("loading %s failed", name)
        result = _failed(
            name, detected, f"{name}: it could not be loaded ({type(exc).__name__}: {exc})"
        )
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _failed(name: str, detected: Detected | None, error: str) -> FileResult:
    """A file that loaded nothing (its transaction was rolled back), with the reason."""
    return FileResult(path=name, format=detected.label if detected else None, error=error)


def file_sha256(path: str) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


# How DuckDB's errors say a line (read_csv) or a JSON value (read_json_objects) was too long.
_LINE_TOO_LONG = "maximum line size"
_VALUE_TOO_LONG = '"maximum_object_size"'


def _too_long(exc: Exception) -> bool:
    """Whether DuckDB refused a line or a JSON value for its size."""
    text = str(exc).lower()
    return _LINE_TOO_LONG in text or _VALUE_TOO_LONG in text


def _size_words(n: int) -> str:
    mb = n / (1024 * 1024)
    return f"{round(mb, 1):g} MB" if mb >= 1 else f"{round(n / 1024):g} KB"


def _duckdb_message(exc: Exception, detected: Detected | None, max_line_bytes: int) -> str:
    """DuckDB's error as one plain sentence, without its error-class prefix."""
    reader = READERS[detected.kind] if detected else None
    full = str(exc).strip()
    text = full.splitlines()[0] if full else type(exc).__name__
    text = re.sub(r"^[A-Za-z ]+Error: ", "", text)
    if _LINE_TOO_LONG in full.lower():  # said further down; the first line only numbers it
        where = re.search(r"CSV Error on Line: (\d+)", full)
        line = f"line {where.group(1)}" if where else "a line"
        return f"{line} is longer than {_size_words(max_line_bytes)}"
    if _VALUE_TOO_LONG in full:
        # DuckDB names the size it could read: about twice what it was told.
        read = re.search(r"\(>(\d+) bytes\)", full)
        size = _size_words(int(read.group(1)) + 1) if read else "the limit"
        return f"{reader.too_large if reader else DOCUMENT_TOO_LARGE} {size}"
    what = (reader and reader.read_as) or (detected.label if detected else "an export")
    return f"it could not be read as {what} ({text})"


# -- one file, on one cursor; its writes form one transaction -------------------------------------


def _load_file(
    cur: duckdb.DuckDBPyConnection,
    path: str,
    name: str,
    dataset: str,
    digest: Future[str],
    detected: Detected,
    options: LoadOptions,
) -> FileResult:
    """Stage the file, then insert and check its records and file its result, all or nothing."""
    reader = READERS[detected.kind]
    try:
        # Staging happens outside the transaction: a committed temp table numbers its rows
        # from 0 in file order, which is what gives every record its line number.
        staged = reader.stage(cur, path, detected, options)
        source = Source(dataset, name, digest.result())
        cur.execute("BEGIN TRANSACTION")
        try:
            _replace_earlier_rejects(cur, source, staged)
            added = _insert_chunks(cur, source, staged, options)
            result = _summarise(cur, source, detected.label, added, bool(staged.rejects))
            _record_file(cur, source, result)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
    finally:
        _drop_tables(cur, (*_WORK_TABLES, *reader.temp_tables))
    return result


def _drop_tables(cur: duckdb.DuckDBPyConnection, tables: Sequence[str]) -> None:
    """Drop the tables that exist, in one call (each call costs ~0.3 ms, a small file's ~1%)."""
    cur.execute("; ".join(f"DROP TABLE IF EXISTS {table}" for table in tables))


@dataclass(frozen=True)
class _Added:
    """What inserting some records did: events stored, valid events that were stored already,
    the valid events by type as (event_type, count, first time, last time), and how many
    rejects it wrote."""

    loaded: int = 0
    duplicates: int = 0
    by_type: tuple[tuple[Any, int, Any, Any], ...] = ()
    rejected: int = 0

    def __add__(self, other: _Added) -> _Added:
        return _Added(
            self.loaded + other.loaded,
            self.duplicates + other.duplicates,
            self.by_type + other.by_type,
            self.rejected + other.rejected,
        )


def _insert_chunks(
    cur: duckdb.DuckDBPyConnection, source: Source, staged: Staged, options: LoadOptions
) -> _Added:
    """Insert the file's events a chunk of records at a time; what all the chunks added.

    Chunks bound the memory a big file needs; repeats across chunks are caught because each
    chunk's inserts are visible to the next one's anti-join.
    """
    total, explained = _Added(), 0
    chunk = options.chunk_records
    for start in range(0, max(staged.records, 1), chunk):
        stop = min(start + chunk, staged.records)
        if staged.typed is not None:
            clean = _insert_typed(cur, source, staged.typed, start, stop)
        elif options.fast_path:
            clean = _insert_clean(cur, source, staged, start, stop)
        else:
            clean = _Added()
        total += clean
        if clean.loaded + clean.duplicates == stop - start:
            continue
        # The records the fast path left: rejects, duplicates, containers, oddities.
        if staged.typed is not None:  # its rejects, all of _src, made by _insert_typed
            left = stop - start - clean.loaded - clean.duplicates
            rest = Staged(staged.unit, left, typed_sql.LEFT_LINES)
            counts = _normalise(cur, rest, 0, sql.ALL_ROWIDS, only_left=False)
        else:
            rest = staged
            counts = _normalise(cur, staged, start, stop, only_left=clean.loaded > 0)
        if start == 0 and clean.loaded == 0 and clean.duplicates == 0:
            _check_is_export(cur, rest, counts)
        explained, rejected = _write_rejects(cur, source, staged.unit, explained, counts)
        total += _insert_checked(cur, source, counts) + _Added(rejected=rejected)
        _drop_tables(cur, ("_norm", "_left", "_src") if staged.typed else ("_norm", "_left"))
    return total


def _next_batch(cur: duckdb.DuckDBPyConnection) -> int:
    """A new batch id: the events one insert adds carry it."""
    return int(fetch_scalar(cur, "SELECT nextval('event_batches')"))


# -- the fast path --------------------------------------------------------------------------------


def _insert_clean(
    cur: duckdb.DuckDBPyConnection, source: Source, staged: Staged, start: int, stop: int
) -> _Added:
    """Insert the clean, new events of records start..stop in one pass; list the rest in _left.

    Most records of a real export are clean events: for them one statement parses, checks,
    builds the maps and inserts, with nothing staged. A repeat within the chunk is taken
    out again afterwards, so it and every record not inserted here go through
    _normalise, which explains rejects and counts duplicates.
    """
    batch = _next_batch(cur)
    insert = sql.insert_clean(staged.lines, start, stop, source, batch)
    inserted = fetch_scalar(cur, *insert)
    if not inserted:
        return _Added()
    inserted -= _drop_repeats(cur, batch, inserted)
    by_type = tuple(cur.execute(*sql.batch_summary(batch)).fetchall())
    if inserted < stop - start:
        cur.execute(*sql.left_over(staged.lines, start, stop, batch))
    return _Added(int(inserted), 0, by_type)


def _drop_repeats(cur: duckdb.DuckDBPyConnection, batch: int, inserted: int) -> int:
    """Delete the later copies of an event inserted twice by one batch of `inserted` events;
    returns how many."""
    if inserted < 2:  # nothing to repeat
        return 0
    repeats = fetch_scalar(cur, *sql.count_repeats(batch))
    if repeats:
        cur.execute(*sql.delete_repeats(batch))
    return int(repeats)


def _insert_typed(
    cur: duckdb.DuckDBPyConnection, source: Source, typed: TypedRows, start: int, stop: int
) -> _Added:
    """Insert the valid, new events of Parquet rows start..stop from their typed columns (typed.py).

    The valid rows it did not insert are duplicates, counted by type here; the rows that fail
    the typed check are staged as JSON text in _src for the full path to reject.
    """
    batch = _next_batch(cur)
    inserted = int(fetch_scalar(cur, *typed_sql.insert_typed(typed, start, stop, source, batch)))
    by_type: tuple[tuple[Any, int, Any, Any], ...] = ()
    if inserted:
        inserted -= _drop_repeats(cur, batch, inserted)
        by_type = tuple(cur.execute(*sql.batch_summary(batch)).fetchall())
    duplicates = 0
    if inserted < stop - start:
        dups = cur.execute(*typed_sql.duplicates_by_type(typed, start, stop, batch)).fetchall()
        duplicates = sum(int(n) for _, n, _, _ in dups)
        by_type += tuple(dups)
        if inserted + duplicates < stop - start:
            cur.execute(*typed_sql.stage_rejected(typed, start, stop))
    return _Added(inserted, duplicates, by_type)


# -- the full path --------------------------------------------------------------------------------


def _normalise(
    cur: duckdb.DuckDBPyConnection, staged: Staged, start: int, stop: int, *, only_left: bool
) -> sql.NormCounts:
    """Create _norm for records start..stop (or those in _left): checked events, and the rest's
    status, with the events nested in containers expanded; what it holds, counted."""
    cur.execute(*sql.normalise(staged.lines, staged.unit, start, stop, only_left=only_left))
    counts = sql.NormCounts(*cur.execute(sql.NORM_COUNTS).fetchall()[0])
    if counts.containers:
        cur.execute(*sql.expand_containers(staged.unit))
        counts = sql.NormCounts(*cur.execute(sql.NORM_COUNTS).fetchall()[0])
    return counts


def _check_is_export(
    cur: duckdb.DuckDBPyConnection, staged: Staged, counts: sql.NormCounts
) -> None:
    """A file none of whose records looks like an event is not an event export."""
    records, bad_json = counts.records, counts.malformed
    if records == 0:
        raise NotAnExport("it holds no records")
    if counts.eventish or staged.rejects:
        return
    if bad_json == records:
        raise NotAnExport(f"it is not an event export: none of its {records} records is JSON")
    if counts.events == 0 and bad_json == 0:
        raise NotAnExport(
            "it is not an event export: no record holds an event or a trace with events"
        )
    if counts.events and bad_json == 0:
        keys = _sample_keys(cur)
        raise NotAnExport(
            "it is not an event export: no record has trace_id, event_type or metrics"
            + (f" (the first record's keys: {keys})" if keys else "")
        )


def _sample_keys(cur: duckdb.DuckDBPyConnection) -> str:
    raw = cur.execute(
        "SELECT raw FROM _src WHERE rowid = (SELECT min(rid) FROM _norm WHERE status = 'ok')"
    ).fetchone()
    try:
        return ", ".join(list(json.loads(raw[0]))[:10]) if raw else ""
    except (ValueError, TypeError):
        return ""


def _replace_earlier_rejects(
    cur: duckdb.DuckDBPyConnection, source: Source, staged: Staged
) -> None:
    """Loading the same file again replaces its earlier rejects instead of doubling them."""
    cur.execute(
        "DELETE FROM rejects WHERE dataset = ? AND file_hash = ?", [source.dataset, source.sha256]
    )
    if staged.rejects:
        cur.executemany(
            sql.INSERT_REJECT,
            [
                sql.reject_values(source, line, f"{staged.unit} {line}", why, raw)
                for line, why, raw in staged.rejects
            ],
        )


def _write_rejects(
    cur: duckdb.DuckDBPyConnection,
    source: Source,
    unit: str,
    explained: int,
    counts: sql.NormCounts,
) -> tuple[int, int]:
    """Reject _norm's failures; returns how many malformed records Python has explained so far
    and how many rejects this wrote. (A statement with nothing to write is not run.)"""
    rejected = 0
    if counts.failures:
        rejected = int(fetch_scalar(cur, *sql.reject_failures(unit, source)))
    if not counts.malformed:
        return explained, rejected
    # Python's parser explains the first malformed records; the rest get a plain reason.
    room = DETAILED_JSON_ERRORS - explained
    bad = cur.execute(*sql.first_malformed(room)).fetchall() if room > 0 else []
    if bad:
        cur.executemany(
            sql.INSERT_REJECT,
            [
                sql.reject_values(source, rec, f"{unit} {rec}", _json_error(raw), raw)
                for rec, raw in bad
            ],
        )
    rejected += len(bad)
    if len(bad) == max(room, 0):
        after = bad[-1][0] if bad else -1
        rejected += int(fetch_scalar(cur, *sql.reject_malformed_after(unit, source, after)))
    return explained + len(bad), rejected


def _json_error(raw: str) -> str:
    """Why a line is not JSON, in the words of Python's parser."""
    try:
        json.loads(raw)
    except ValueError as exc:
        msg = getattr(exc, "msg", str(exc))
        col = getattr(exc, "colno", None)
        return f"not valid JSON: {msg}" + (f" (column {col})" if col else "")
    return "not valid JSON"


def _insert_checked(
    cur: duckdb.DuckDBPyConnection, source: Source, counts: sql.NormCounts
) -> _Added:
    """Insert _norm's valid events not stored yet; the rest of them are duplicates."""
    valid, distinct = counts.valid, counts.distinct_valid
    batch = _next_batch(cur)  # taken even for none, so later batches keep their numbers
    if not valid:  # nothing to insert or summarise (~10 ms of planning for a file's rejects)
        return _Added()
    # Repeats inside a chunk are rare; pay for the window only when there are some.
    insert = sql.insert_checked(source, batch, first_copy_only=distinct < valid)
    inserted = int(fetch_scalar(cur, *insert))
    by_type = cur.execute(
        "SELECT event_type, count(*), min(timestamp), max(timestamp) FROM _norm"
        " WHERE status = 'ok' AND problem IS NULL GROUP BY event_type"
    ).fetchall()
    return _Added(inserted, int(valid) - inserted, tuple(by_type))


# -- the file's result ----------------------------------------------------------------------------


def _summarise(
    cur: duckdb.DuckDBPyConnection,
    source: Source,
    label: str,
    added: _Added,
    reader_rejected: bool,
) -> FileResult:
    """The file's result: what its chunks added, its event types by count, its rejects."""
    where = [source.dataset, source.sha256]
    rejected, top_reasons, first_rejects = 0, [], []
    # The file's earlier rejects were deleted in this transaction, so with none written
    # since there are none to read (three queries, ~3 ms of a clean file's ~35 ms).
    if added.rejected or reader_rejected:
        rejected = fetch_scalar(
            cur, "SELECT count(*) FROM rejects WHERE dataset = ? AND file_hash = ?", where
        )
        # One reject may break several rules; count each rule on its own.
        top_reasons = [
            (str(reason), int(n))
            for reason, n in cur.execute(
                "SELECT part, count(*) AS n FROM (SELECT unnest(string_split(reason, '; '))"
                " AS part FROM rejects WHERE dataset = ? AND file_hash = ?)"
                " GROUP BY part ORDER BY n DESC, part LIMIT 10",
                where,
            ).fetchall()
        ]
        first_rejects = cur.execute(
            "SELECT location, reason FROM rejects WHERE dataset = ? AND file_hash = ?"
            " ORDER BY line LIMIT 10",
            where,
        ).fetchall()
    event_types: dict[str, int] = {}
    for event_type, n, _first, _last in added.by_type:
        event_types[str(event_type)] = event_types.get(str(event_type), 0) + int(n)
    return FileResult(
        path=source.file,
        format=label,
        loaded=added.loaded,
        rejected=int(rejected),
        duplicates=added.duplicates,
        top_reasons=top_reasons,
        first_rejects=first_rejects,
        first_event=min(filter(None, (_iso(row[2]) for row in added.by_type)), default=None),
        last_event=max(filter(None, (_iso(row[3]) for row in added.by_type)), default=None),
        event_types=dict(sorted(event_types.items(), key=lambda kv: (-kv[1], kv[0]))),
    )


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _record_file(cur: duckdb.DuckDBPyConnection, source: Source, result: FileResult) -> None:
    cur.execute(
        "INSERT INTO files VALUES (?, ?, ?, ?, now(), ?, ?, ?)",
        [*source, result.format, result.loaded, result.rejected, result.duplicates],
    )


def _update_dataset(store: Store, dataset: str) -> None:
    """Refresh a dataset's catalogue row from its files and events."""
    with store.write_lock, store.cursor() as cur:
        row = cur.execute(
            "SELECT list(DISTINCT path ORDER BY path), list(sha256 ORDER BY sha256),"
            " sum(duplicates) FROM files WHERE dataset = ?",
            [dataset],
        ).fetchone()
        if not row or not row[0]:
            return
        files, hashes, duplicates = row
        content_hash = hashlib.sha256("\n".join(sorted(set(hashes))).encode()).hexdigest()
        cur.execute(
            """
            INSERT INTO datasets (name, files, content_hash, loaded_at, events, rejects,
                                  duplicates)
            SELECT ?, ?, ?, now(),
                   (SELECT count(*) FROM events WHERE dataset = ?),
                   (SELECT count(*) FROM rejects WHERE dataset = ?), ?
            ON CONFLICT (name) DO UPDATE SET  -- keeps the dataset's test mark
                files = excluded.files, content_hash = excluded.content_hash,
                loaded_at = excluded.loaded_at, events = excluded.events,
                rejects = excluded.rejects, duplicates = excluded.duplicates
            """,
            [dataset, files, content_hash, dataset, dataset, int(duplicates or 0)],
        )
