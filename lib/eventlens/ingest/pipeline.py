"""load_files: each file staged, its clean events inserted, the rest checked, all in one go."""

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

from eventlens.ingest.detect import ACCEPTED_FORMATS, Detected, NotAnExport, detect
from eventlens.ingest.results import FileResult, LoadResult
from eventlens.ingest.sql import (
    IS_CONTAINER,
    SPEC,
    clean_events_sql,
    columns_json_sql,
    events_sql,
    insert_sql,
)
from eventlens.store import Store

MAX_LINE_BYTES = 32 * 1024 * 1024  # also the largest element of a JSON array
MAX_DOCUMENT_BYTES = 1024 * 1024 * 1024  # the largest single JSON document (trace, search)
MIN_OBJECT_BYTES = 16 * 1024 * 1024  # DuckDB reads JSON values up to at least this anyway
CHUNK_RECORDS = 2_000_000  # records checked and inserted at a time
RAW_KEEP_CHARS = 10_000  # how much of a rejected record the rejects table keeps
DETAILED_JSON_ERRORS = 1_000  # malformed lines explained by Python's parser, the rest generically

log = logging.getLogger(__name__)

_TEMP_TABLES = ("_cells", "_src", "_norm", "_left", "_csv_errors", "_csv_scans")
# Tests turn the fast path off to check that it stores exactly what the full path stores.
FAST_PATH = True


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
) -> LoadResult:
    """Load files into one dataset; a bad file or row is reported, never raised.

    max_line_bytes (default MAX_LINE_BYTES) sizes the JSONL read buffers; chunk_records
    (default CHUNK_RECORDS) is how many records are checked and inserted at a time.
    """
    paths = [str(p) for p in paths]
    names = list(display_names) if display_names else paths
    dataset = (dataset or "").strip() or _first_export_name(paths, names)
    sizes = _Sizes(max_line_bytes or MAX_LINE_BYTES, chunk_records or CHUNK_RECORDS)
    before = store.last_batch()
    results = [
        _load_one(store, p, name, dataset, sizes) for p, name in zip(paths, names, strict=True)
    ]
    _update_dataset(store, dataset)
    if any(r.loaded for r in results):
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


@dataclass(frozen=True)
class _Sizes:
    max_line_bytes: int
    chunk_records: int


def _load_one(store: Store, path: str, name: str, dataset: str, sizes: _Sizes) -> FileResult:
    result = FileResult(path=name)
    started = time.perf_counter()
    try:
        if not os.path.isfile(path):
            raise NotAnExport("no such file" if not os.path.exists(path) else "not a file")
        detected = detect(path)
        result.format = detected.label
        # Hash the file on a thread while DuckDB reads it (both release the GIL).
        with ThreadPoolExecutor(1) as pool, store.write_lock, store.cursor() as cur:
            digest = pool.submit(file_sha256, path)
            _FileLoad(cur, path, name, digest, dataset, detected, result, sizes).run()
    except NotAnExport as exc:
        result = _failed(result, f"{name}: {exc}")
    except OSError as exc:
        result = _failed(result, f"{name}: cannot read it ({exc.strerror or exc})")
    except duckdb.Error as exc:
        message = _duckdb_message(exc, result.format, sizes.max_line_bytes)
        result = _failed(result, f"{name}: {message}")
        result.record_too_long = _too_long(exc)
        result.out_of_memory = isinstance(exc, duckdb.OutOfMemoryException)
    except Exception as exc:  # a bug of ours: still a sentence for the user, details in the log
        log.exception("loading %s failed", name)
        result = _failed(result, f"{name}: it could not be loaded ({type(exc).__name__}: {exc})")
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _failed(result: FileResult, error: str) -> FileResult:
    """A file that loaded nothing (its transaction was rolled back), with the reason."""
    return FileResult(path=result.path, format=result.format, error=error)


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


def _document_bytes(path: str, gzip: bool) -> int:
    """An upper bound of a JSON document's size (DuckDB allocates buffers of about twice it)."""
    size = os.path.getsize(path)
    if gzip:  # gzip's trailer holds the (last member's) size, mod 2**32
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            isize = int.from_bytes(fh.read(4), "little")
        size = isize if isize >= size else MAX_DOCUMENT_BYTES
    return min(MAX_DOCUMENT_BYTES, max(size + 1, MIN_OBJECT_BYTES))


def _duckdb_message(exc: Exception, fmt: str | None, max_line_bytes: int) -> str:
    """DuckDB's error as one plain sentence, without its error-class prefix."""
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
        if (fmt or "").startswith("json-array"):
            return f"an element of the array is longer than {size}"
        return f"the JSON document is larger than {size}"
    what = {"json-array": "a JSON array", "json-document": "JSON", "csv": "CSV"}.get(
        (fmt or "").split("+")[0], fmt or "an export"
    )
    return f"it could not be read as {what} ({text})"


class _FileLoad:
    """One file's trip through the pipeline, on one cursor; its writes form one transaction."""

    def __init__(
        self,
        cur: duckdb.DuckDBPyConnection,
        path: str,
        name: str,
        digest: Future[str],
        dataset: str,
        detected: Detected,
        result: FileResult,
        sizes: _Sizes,
    ):
        self.cur, self.path, self.name, self._digest = cur, path, name, digest
        self.dataset, self.detected, self.result, self.sizes = dataset, detected, result, sizes
        self.csv_rejects: list[tuple[int, str, str]] = []  # (line, reason, raw)
        self.csv_skipped: list[int] = []
        self.line_params: list[Any] = []
        self.line_expr = "rowid + 1"
        self.explained = 0  # malformed records explained with Python's parser so far

    @property
    def digest(self) -> str:
        """The file's sha256 (waits for the hashing thread the first time)."""
        return self._digest.result()

    def run(self) -> None:
        cur = self.cur
        try:
            # Staging happens outside the transaction: a committed temp table numbers its rows
            # from 0 in file order, which is what gives every record its line number.
            self._stage_records()
            records = cur.execute("SELECT count(*) FROM _src").fetchone()[0]
            cur.execute("BEGIN TRANSACTION")
            try:
                self._clear_earlier_rejects()
                # Chunks bound the memory a big file needs; repeats across chunks are caught
                # because each chunk's inserts are visible to the next one's anti-join.
                chunk = self.sizes.chunk_records
                for start in range(0, max(records, 1), chunk):
                    stop = min(start + chunk, records)
                    clean = self._insert_clean(start, stop) if FAST_PATH else 0
                    if clean == stop - start:
                        continue
                    # The records the fast path left: rejects, duplicates, containers, oddities.
                    self._normalise(start, stop, only_left=clean > 0)
                    if start == 0 and clean == 0:
                        self._check_is_export()
                    self._write_rejects()
                    self._insert_events()
                    cur.execute("DROP TABLE _norm")
                    cur.execute("DROP TABLE IF EXISTS _left")
                self._summarise()
                self._record_file()
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        finally:
            for table in _TEMP_TABLES:
                cur.execute(f"DROP TABLE IF EXISTS {table}")

    # -- 1. one JSON record per line / element / row -------------------------------------------

    def _stage_records(self) -> None:
        """Create _src(raw): each record's JSON text, in file order."""
        kind, comp = self.detected.kind, "gzip" if self.detected.gzip else "none"
        cur, p = self.cur, self.path
        if kind == "jsonl":
            # Each line as text, so a malformed line is kept (and reported) with its number.
            # An explicit buffer: with a large max_line_size DuckDB would allocate 1 GB buffers.
            longest = self.sizes.max_line_bytes
            cur.execute(
                "CREATE TEMP TABLE _src AS SELECT raw FROM read_csv(?, columns={'raw': 'VARCHAR'},"
                " header=false, delim='\x01', quote='', escape='', auto_detect=false,"
                f" strict_mode=false, max_line_size={int(longest)},"
                f" buffer_size={2 * int(longest)}, compression=?)",
                [p, comp],
            )
        elif kind in ("json-array", "json-document"):
            # DuckDB's buffers are about twice maximum_object_size: an array's elements are
            # events (a line's limit), a document is one value as large as the file.
            if kind == "json-array":
                layout, largest = "array", max(self.sizes.max_line_bytes, MIN_OBJECT_BYTES)
            else:
                layout, largest = "unstructured", _document_bytes(p, self.detected.gzip)
            cur.execute(
                "CREATE TEMP TABLE _src AS SELECT json::VARCHAR AS raw FROM read_json_objects(?,"
                f" format='{layout}', compression=?, maximum_object_size={int(largest)})",
                [p, comp],
            )
        elif kind == "csv":
            cur.execute(
                "CREATE TEMP TABLE _cells AS SELECT * FROM read_csv(?, header=true,"
                " all_varchar=true, store_rejects=true, rejects_table='_csv_errors',"
                " rejects_scan='_csv_scans', compression=?)",
                [p, comp],
            )
            self._csv_structure_rejects()
            self._columns_to_json("_cells", text_cells=True)
            self.line_expr = "rowid + 2"  # the header is line 1
            if self.csv_skipped:
                # Lines DuckDB skipped as malformed shift the numbering of the rows after them.
                self.line_expr += " + len(list_filter(?::BIGINT[], lambda t: t <= rowid))"
                self.line_params = [self.csv_skipped]
        else:
            cur.execute("CREATE TEMP TABLE _cells AS SELECT * FROM read_parquet(?)", [p])
            self._columns_to_json("_cells", text_cells=False)

    def _csv_structure_rejects(self) -> None:
        """Rows DuckDB's CSV reader could not split into the header's columns."""
        rows = self.cur.execute(
            # DuckDB logs one error per missing column; one reject per line is what happened.
            "SELECT line, first(error_type ORDER BY column_idx), first(error_message ORDER BY"
            " column_idx), first(csv_line) FROM _csv_errors GROUP BY line ORDER BY line"
        ).fetchall()
        self.csv_rejects = [
            (line, f"CSV: {_csv_error_words(kind, msg)}", raw) for line, kind, msg, raw in rows
        ]
        # Thresholds so that good row i sits at line i + 2 + (#skipped lines before it).
        self.csv_skipped = [int(line) - j - 2 for j, (line, *_rest) in enumerate(rows)]

    def _columns_to_json(self, table: str, *, text_cells: bool) -> None:
        """Create _src(raw) from a CSV or Parquet table, one JSON object per row."""
        columns = self.cur.execute(
            "SELECT column_name, column_type FROM (DESCRIBE " + table + ")"
        ).fetchall()
        sql, params = columns_json_sql(columns, text_cells=text_cells)
        if sql is None:
            names = ", ".join(c for c, _ in columns[:12])
            raise NotAnExport(
                f"it is not an event export: no trace_id or event_type column (columns: {names})."
                f" {ACCEPTED_FORMATS}"
            )
        self.cur.execute(f"CREATE TEMP TABLE _src AS SELECT {sql} AS raw FROM {table}", params)
        self.cur.execute(f"DROP TABLE {table}")

    # -- 2. events out of records, normalised and checked, one chunk at a time -----------------

    def _insert_clean(self, start: int, stop: int) -> int:
        """Insert the clean, new events of records start..stop in one pass; returns how many.

        Most records of a real export are clean events: for them one statement parses, checks,
        builds the maps and inserts, with nothing staged. A repeat within the chunk is taken
        out again afterwards, so it and every record not inserted here go through
        _normalise, which explains rejects and counts duplicates.
        """
        cur = self.cur
        batch = cur.execute("SELECT nextval('event_batches')").fetchone()[0]
        records = f"""
            SELECT {self.line_expr} AS rec, rowid AS rid, 0::BIGINT AS sub, NULL AS loc,
                   'ok' AS status, NULL::JSON AS ctx_trace, NULL::VARCHAR AS ev_raw,
                   try(json_transform(raw, '{SPEC}')) AS f
            FROM _src WHERE rowid >= {int(start)} AND rowid < {int(stop)}
        """
        fresh = f"""(
            SELECT * FROM ({clean_events_sql(records)}) v
            WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_key = v.event_key)
        )"""
        inserted = cur.execute(
            insert_sql(fresh),
            [self.dataset, self.name, batch, *self.line_params],  # in the order they appear
        ).fetchone()[0]
        if not inserted:
            return 0
        inserted -= self._drop_repeats(batch)
        for event_type, n, first, last in cur.execute(
            "SELECT event_type, count(*), min(timestamp), max(timestamp) FROM events"
            " WHERE batch_id = ? GROUP BY event_type",
            [batch],
        ).fetchall():
            self._count(event_type, n, first, last)
        self.result.loaded += int(inserted)
        if inserted < stop - start:
            cur.execute(
                f"CREATE TEMP TABLE _left AS SELECT rid FROM (SELECT rowid AS rid,"
                f" {self.line_expr} AS rec FROM _src WHERE rowid >= {int(start)}"
                f" AND rowid < {int(stop)}) s WHERE NOT EXISTS (SELECT 1 FROM events e"
                " WHERE e.batch_id = ? AND e.source_line = s.rec)",
                [*self.line_params, batch],
            )
        return int(inserted)

    def _drop_repeats(self, batch: int) -> int:
        """Delete the later copies of an event inserted twice by one batch; returns how many."""
        cur = self.cur
        repeats = cur.execute(
            "SELECT count(*) - count(DISTINCT event_key) FROM events WHERE batch_id = ?", [batch]
        ).fetchone()[0]
        if repeats:
            cur.execute(
                "DELETE FROM events e USING (SELECT event_key, source_line FROM events"
                " WHERE batch_id = ? QUALIFY row_number() OVER (PARTITION BY event_key"
                " ORDER BY source_line) > 1) d WHERE e.batch_id = ?"
                " AND e.event_key = d.event_key AND e.source_line = d.source_line",
                [batch, batch],
            )
        return int(repeats)

    def _count(self, event_type: Any, n: int, first: Any, last: Any) -> None:
        """Add valid events (inserted or duplicate) to the file's summary."""
        r = self.result
        r.event_types[str(event_type)] = r.event_types.get(str(event_type), 0) + int(n)
        r.first_event = min(filter(None, [r.first_event, _iso(first)]), default=None)
        r.last_event = max(filter(None, [r.last_event, _iso(last)]), default=None)

    def _normalise(self, start: int, stop: int, *, only_left: bool = False) -> None:
        """Create _norm for records start..stop: typed, checked events, and the rest's status.

        With only_left, just the records the fast path did not insert (listed in _left).
        """
        unit = self.detected.unit
        left = " AND rowid IN (SELECT rid FROM _left)" if only_left else ""
        # One parse per record: its state, and the fields of the ones that are objects.
        records = f"""
            SELECT rec, rid, status, CASE WHEN status = 'ok'
                   THEN json_transform(raw, '{SPEC}') END AS f
            FROM (
                SELECT {self.line_expr} AS rec, rowid AS rid, raw,
                       CASE WHEN raw IS NULL OR trim(raw) = '' THEN 'blank'
                            WHEN NOT json_valid(raw) THEN 'invalid'
                            WHEN ltrim(raw, ' \t\r\ufeff')[1] <> '{{' THEN 'not_object'
                            ELSE 'ok' END AS status
                FROM _src WHERE rowid >= {int(start)} AND rowid < {int(stop)}{left}
            )
        """
        plain = f"""
            SELECT rec, rid, 0::BIGINT AS sub, '{unit} ' || rec AS loc,
                   CASE WHEN status = 'ok' AND {IS_CONTAINER} THEN 'container' ELSE status END
                       AS status,
                   NULL::JSON AS ctx_trace, NULL::VARCHAR AS ev_raw, f
            FROM ({records})
        """
        self.cur.execute(
            f"CREATE TEMP TABLE _norm AS {events_sql(plain)}", self.line_params or None
        )
        if self.cur.execute("SELECT count(*) FROM _norm WHERE status = 'container'").fetchone()[0]:
            self._expand_containers()

    def _expand_containers(self) -> None:
        """Add the events nested in trace documents, search rows and search responses."""
        unit = self.detected.unit
        parents = (
            f"SELECT n.rec, n.rid, json_transform(s.raw, '{SPEC}') AS f FROM _norm n"
            " JOIN (SELECT rowid AS rid, raw FROM _src) s ON s.rid = n.rid"
            " WHERE n.status = 'container'"
        )
        nested = f"""
            SELECT rec, rid, sub, '{unit} ' || rec || ', event ' || sub AS loc, 'ok' AS status,
                   ctx_trace, ev AS ev_raw, json_transform(ev, '{SPEC}') AS f
            FROM (
                SELECT rec, rid, f.trace_id AS ctx_trace, unnest(evs)::VARCHAR AS ev,
                       generate_subscripts(evs, 1) AS sub
                FROM (SELECT rec, rid, f, json_extract(f.events, '$[*]') AS evs FROM ({parents})
                      WHERE json_type(f.events) = 'ARRAY' AND f.event_type IS NULL)
            )
            UNION ALL
            SELECT rec, rid, tno * 1000000 + sub,
                   '{unit} ' || rec || ', trace ' || tno || ', event ' || sub, 'ok',
                   ctx_trace, ev, json_transform(ev, '{SPEC}')
            FROM (
                SELECT rec, rid, tno, json_extract(tr, '$.trace_id') AS ctx_trace,
                       unnest(evs)::VARCHAR AS ev, generate_subscripts(evs, 1) AS sub
                FROM (
                    SELECT rec, rid, tno, tr, json_extract(tr, '$.events[*]') AS evs
                    FROM (
                        SELECT rec, rid, unnest(trs) AS tr, generate_subscripts(trs, 1) AS tno
                        FROM (SELECT rec, rid, json_extract(f.traces, '$[*]') AS trs
                              FROM ({parents}) WHERE json_type(f.traces) = 'ARRAY')
                    )
                )
            )
        """
        self.cur.execute(f"INSERT INTO _norm {events_sql(nested)}")

    def _check_is_export(self) -> None:
        """A file none of whose records looks like an event is not an event export."""
        events, eventish, records, bad_json = self.cur.execute(
            "SELECT count(*) FILTER (WHERE status = 'ok'),"
            " count(*) FILTER (WHERE status = 'ok' AND has_event_fields),"
            " count(*) FILTER (WHERE status <> 'blank' AND sub = 0),"
            " count(*) FILTER (WHERE status = 'invalid') FROM _norm"
        ).fetchone()
        if records == 0:
            raise NotAnExport("it holds no records")
        if eventish or self.csv_rejects:
            return
        if bad_json == records:
            raise NotAnExport(f"it is not an event export: none of its {records} records is JSON")
        if events == 0 and bad_json == 0:
            raise NotAnExport(
                "it is not an event export: no record holds an event or a trace with events"
            )
        if events and bad_json == 0:
            keys = self._sample_keys()
            raise NotAnExport(
                "it is not an event export: no record has trace_id, event_type or metrics"
                + (f" (the first record's keys: {keys})" if keys else "")
            )

    def _sample_keys(self) -> str:
        raw = self.cur.execute(
            "SELECT raw FROM _src WHERE rowid = (SELECT min(rid) FROM _norm WHERE status = 'ok')"
        ).fetchone()
        try:
            return ", ".join(list(json.loads(raw[0]))[:10]) if raw else ""
        except (ValueError, TypeError):
            return ""

    # -- 3. rejects ----------------------------------------------------------------------------

    def _clear_earlier_rejects(self) -> None:
        """Loading the same file again replaces its earlier rejects instead of doubling them."""
        self.cur.execute(
            "DELETE FROM rejects WHERE dataset = ? AND file_hash = ?", [self.dataset, self.digest]
        )
        if self.csv_rejects:
            self.cur.executemany(
                "INSERT INTO rejects (dataset, file, file_hash, line, location, reason, raw)"
                " VALUES (?, ?, ?, ?, ?, ?, left(?, ?))",
                [
                    (
                        self.dataset,
                        self.name,
                        self.digest,
                        line,
                        f"line {line}",
                        why,
                        raw,
                        RAW_KEEP_CHARS,
                    )
                    for line, why, raw in self.csv_rejects
                ],
            )

    def _write_rejects(self) -> None:
        cur, unit, keep = self.cur, self.detected.unit, RAW_KEEP_CHARS
        base = [self.dataset, self.name, self.digest]
        cur.execute(
            f"""
            INSERT INTO rejects (dataset, file, file_hash, line, location, reason, raw)
            SELECT ?, ?, ?, n.rec, n.loc,
                   CASE WHEN n.status = 'not_object'
                        THEN 'expected a JSON object (one event), got ' ||
                             CASE json_type(s.raw) WHEN 'ARRAY' THEN 'an array'
                                  WHEN 'VARCHAR' THEN 'a string' WHEN 'NULL' THEN 'null'
                                  WHEN 'BOOLEAN' THEN 'a boolean' ELSE 'a number' END
                        ELSE n.problem END,
                   left(coalesce(n.ev_raw, s.raw), {keep})
            FROM _norm n LEFT JOIN (SELECT rowid AS rid, raw FROM _src) s ON s.rid = n.rid
            WHERE n.problem IS NOT NULL OR n.status = 'not_object'
            """,
            base,
        )
        invalid = (
            "SELECT n.rec, s.raw FROM _norm n JOIN (SELECT rowid AS rid, raw FROM _src) s"
            " ON s.rid = n.rid WHERE n.status = 'invalid'"
        )
        # Python's parser explains the first malformed records; the rest get a plain reason.
        room = DETAILED_JSON_ERRORS - self.explained
        bad = cur.execute(f"{invalid} ORDER BY n.rec LIMIT {room}").fetchall() if room > 0 else []
        self.explained += len(bad)
        if bad:
            cur.executemany(
                "INSERT INTO rejects (dataset, file, file_hash, line, location, reason, raw)"
                " VALUES (?, ?, ?, ?, ?, ?, left(?, ?))",
                [(*base, rec, f"{unit} {rec}", _json_error(raw), raw, keep) for rec, raw in bad],
            )
        if len(bad) == max(room, 0):
            after = bad[-1][0] if bad else -1
            cur.execute(
                "INSERT INTO rejects (dataset, file, file_hash, line, location, reason, raw)"
                f" SELECT ?, ?, ?, rec, '{unit} ' || rec, 'not valid JSON', left(raw, {keep})"
                f" FROM ({invalid}) WHERE rec > ?",
                [*base, after],
            )

    # -- 4. events -----------------------------------------------------------------------------

    def _insert_events(self) -> None:
        cur = self.cur
        valid, distinct = cur.execute(
            "SELECT count(*), count(DISTINCT event_key) FROM _norm WHERE problem IS NULL"
            " AND status = 'ok'"
        ).fetchone()
        # Repeats inside a chunk are rare; pay for the window only when there are some.
        first_copy = (
            "QUALIFY row_number() OVER (PARTITION BY event_key ORDER BY rec, sub) = 1"
            if distinct < valid
            else ""
        )
        fresh = f"""(
            SELECT * FROM _norm v
            WHERE status = 'ok' AND problem IS NULL
              AND NOT EXISTS (SELECT 1 FROM events e WHERE e.event_key = v.event_key)
            {first_copy}
        )"""
        batch = cur.execute("SELECT nextval('event_batches')").fetchone()[0]
        inserted = cur.execute(
            insert_sql(fresh),
            [self.dataset, self.name, batch],
        ).fetchone()[0]
        for event_type, n, first, last in cur.execute(
            "SELECT event_type, count(*), min(timestamp), max(timestamp) FROM _norm"
            " WHERE status = 'ok' AND problem IS NULL GROUP BY event_type"
        ).fetchall():
            self._count(event_type, n, first, last)
        self.result.loaded += int(inserted)
        self.result.duplicates += int(valid) - int(inserted)

    def _summarise(self) -> None:
        """The file's reject counts and reasons, and its event types by count."""
        cur, where = self.cur, [self.dataset, self.digest]
        r = self.result
        r.event_types = dict(sorted(r.event_types.items(), key=lambda kv: (-kv[1], kv[0])))
        r.rejected = int(
            cur.execute(
                "SELECT count(*) FROM rejects WHERE dataset = ? AND file_hash = ?", where
            ).fetchone()[0]
        )
        # One reject may break several rules; count each rule on its own.
        r.top_reasons = [
            (str(reason), int(n))
            for reason, n in cur.execute(
                "SELECT part, count(*) AS n FROM (SELECT unnest(string_split(reason, '; '))"
                " AS part FROM rejects WHERE dataset = ? AND file_hash = ?)"
                " GROUP BY part ORDER BY n DESC, part LIMIT 10",
                where,
            ).fetchall()
        ]
        r.first_rejects = cur.execute(
            "SELECT location, reason FROM rejects WHERE dataset = ? AND file_hash = ?"
            " ORDER BY line LIMIT 10",
            where,
        ).fetchall()

    def _record_file(self) -> None:
        r = self.result
        self.cur.execute(
            "INSERT INTO files VALUES (?, ?, ?, ?, now(), ?, ?, ?)",
            [self.dataset, self.name, self.digest, r.format, r.loaded, r.rejected, r.duplicates],
        )


def _json_error(raw: str) -> str:
    """Why a line is not JSON, in the words of Python's parser."""
    try:
        json.loads(raw)
    except ValueError as exc:
        msg = getattr(exc, "msg", str(exc))
        col = getattr(exc, "colno", None)
        return f"not valid JSON: {msg}" + (f" (column {col})" if col else "")
    return "not valid JSON"


def _csv_error_words(kind: str, message: str) -> str:
    return {
        "MISSING COLUMNS": "the line has fewer columns than the header",
        "TOO MANY COLUMNS": "the line has more columns than the header",
        "UNQUOTED VALUE": "a value has a stray quote",
        "LINE SIZE OVER MAXIMUM": "the line is too long",
        "INVALID ENCODING": "the line is not valid UTF-8",
    }.get(kind, message.splitlines()[0] if message else kind.lower())


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
