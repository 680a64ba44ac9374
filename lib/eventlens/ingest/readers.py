"""One reader per record layout, in a registry: each stages a file as JSON text, a row a record
(or, for a Parquet file whose types allow it, leaves its rows to the typed path: typed.py).

Modelled on datasette's output renderers (datasette/app.py, _register_renderers): each format
registers once, with what the rest of a load needs to know about it, and the load looks its
reader up by the detected kind instead of branching on the kind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import duckdb

from eventlens.ingest.detect import ACCEPTED_FORMATS, Detected, Kind, NotAnExport
from eventlens.ingest.options import LoadOptions
from eventlens.ingest.sql import LineNumbers, columns_json_sql
from eventlens.ingest.typed import TypedRows, file_columns, typed_rows
from eventlens.store import fetch_scalar

MAX_DOCUMENT_BYTES = 1024 * 1024 * 1024  # the largest single JSON document (trace, search)
MIN_OBJECT_BYTES = 16 * 1024 * 1024  # DuckDB reads JSON values up to at least this anyway
DOCUMENT_TOO_LARGE = "the JSON document is larger than"


@dataclass(frozen=True)
class Staged:
    """What a reader left in the temp table _src(raw): one JSON text per record, in file order."""

    unit: str  # what a record's number counts, for locations: line, element, document, row
    records: int
    lines: LineNumbers = LineNumbers()
    # Records the reader itself refused, as (line, reason, raw): CSV lines that did not split.
    rejects: tuple[tuple[int, str, str], ...] = ()
    # Set, nothing is staged: the records are the file's rows, read by the typed path.
    typed: TypedRows | None = None


Stage = Callable[[duckdb.DuckDBPyConnection, str, Detected, LoadOptions], Staged]


@dataclass(frozen=True)
class Reader:
    """A layout's stage function and how a failed read of it is put into words."""

    kind: Kind
    stage: Stage
    read_as: str | None  # "it could not be read as <read_as>"; None: the format's label
    too_large: str  # how a JSON value past DuckDB's maximum_object_size is named
    temp_tables: tuple[str, ...]  # its own temp tables besides _src, dropped after the load


READERS: dict[str, Reader] = {}


def reader(
    kind: Kind,
    *,
    read_as: str | None = None,
    too_large: str = DOCUMENT_TOO_LARGE,
    temp_tables: tuple[str, ...] = (),
) -> Callable[[Stage], Stage]:
    """Register the decorated function as the reader of `kind`; a second one is an error."""

    def register(stage: Stage) -> Stage:
        if kind in READERS:
            raise ValueError(f"a reader for {kind} is registered already")
        READERS[kind] = Reader(kind, stage, read_as, too_large, temp_tables)
        return stage

    return register


def _compression(detected: Detected) -> str:
    return "gzip" if detected.gzip else "none"


@reader("jsonl")
def _jsonl(
    cur: duckdb.DuckDBPyConnection, path: str, detected: Detected, options: LoadOptions
) -> Staged:
    # Each line as text, so a malformed line is kept (and reported) with its number.
    # An explicit buffer: with a large max_line_size DuckDB would allocate 1 GB buffers.
    longest = options.max_line_bytes
    # CREATE TABLE AS answers with its row count: no count(*) after it.
    records = fetch_scalar(
        cur,
        "CREATE TEMP TABLE _src AS SELECT raw FROM read_csv(?, columns={'raw': 'VARCHAR'},"
        " header=false, delim='\x01', quote='', escape='', auto_detect=false,"
        f" strict_mode=false, max_line_size={int(longest)},"
        f" buffer_size={2 * int(longest)}, compression=?)",
        [path, _compression(detected)],
    )
    return Staged("line", int(records))


# DuckDB's buffers are about twice maximum_object_size: an array's elements are events (a
# line's limit), a document is one value as large as the file.
@reader("json-array", read_as="a JSON array", too_large="an element of the array is longer than")
def _json_array(
    cur: duckdb.DuckDBPyConnection, path: str, detected: Detected, options: LoadOptions
) -> Staged:
    largest = max(options.max_line_bytes, MIN_OBJECT_BYTES)
    return Staged("element", _read_json_objects(cur, path, detected, "array", largest))


@reader("json-document", read_as="JSON")
def _json_document(
    cur: duckdb.DuckDBPyConnection, path: str, detected: Detected, options: LoadOptions
) -> Staged:
    largest = _document_bytes(path, detected.gzip)
    return Staged("document", _read_json_objects(cur, path, detected, "unstructured", largest))


def _read_json_objects(
    cur: duckdb.DuckDBPyConnection, path: str, detected: Detected, layout: str, largest: int
) -> int:
    """Create _src from a file's JSON values; returns how many it holds."""
    return int(
        fetch_scalar(
            cur,
            "CREATE TEMP TABLE _src AS SELECT json::VARCHAR AS raw FROM read_json_objects(?,"
            f" format='{layout}', compression=?, maximum_object_size={int(largest)})",
            [path, _compression(detected)],
        )
    )


def _document_bytes(path: str, gzip: bool) -> int:
    """An upper bound of a JSON document's size (DuckDB allocates buffers of about twice it)."""
    size = os.path.getsize(path)
    if gzip:  # gzip's trailer holds the (last member's) size, mod 2**32
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            isize = int.from_bytes(fh.read(4), "little")
        size = isize if isize >= size else MAX_DOCUMENT_BYTES
    return min(MAX_DOCUMENT_BYTES, max(size + 1, MIN_OBJECT_BYTES))


@reader("csv", read_as="CSV", temp_tables=("_cells", "_csv_errors", "_csv_scans"))
def _csv(
    cur: duckdb.DuckDBPyConnection, path: str, detected: Detected, options: LoadOptions
) -> Staged:
    cur.execute(
        "CREATE TEMP TABLE _cells AS SELECT * FROM read_csv(?, header=true,"
        " all_varchar=true, store_rejects=true, rejects_table='_csv_errors',"
        " rejects_scan='_csv_scans', compression=?)",
        [path, _compression(detected)],
    )
    rejects = _csv_structure_rejects(cur)
    records = _columns_to_json(cur, "_cells", text_cells=True)
    lines = LineNumbers("rowid + 2")  # the header is line 1
    if rejects:
        # Lines DuckDB skipped as malformed shift the numbering of the rows after them:
        # thresholds so that good row i sits at line i + 2 + (#skipped lines before it).
        skipped = [int(line) - j - 2 for j, (line, *_rest) in enumerate(rejects)]
        lines = LineNumbers(
            lines.sql + " + len(list_filter(?::BIGINT[], lambda t: t <= rowid))", (skipped,)
        )
    return Staged("line", records, lines, rejects)


def _csv_structure_rejects(cur: duckdb.DuckDBPyConnection) -> tuple[tuple[int, str, str], ...]:
    """Rows DuckDB's CSV reader could not split into the header's columns."""
    rows = cur.execute(
        # DuckDB logs one error per missing column; one reject per line is what happened.
        "SELECT line, first(error_type ORDER BY column_idx), first(error_message ORDER BY"
        " column_idx), first(csv_line) FROM _csv_errors GROUP BY line ORDER BY line"
    ).fetchall()
    return tuple(
        (line, f"CSV: {_csv_error_words(kind, msg)}", raw) for line, kind, msg, raw in rows
    )


def _csv_error_words(kind: str, message: str) -> str:
    return {
        "MISSING COLUMNS": "the line has fewer columns than the header",
        "TOO MANY COLUMNS": "the line has more columns than the header",
        "UNQUOTED VALUE": "a value has a stray quote",
        "LINE SIZE OVER MAXIMUM": "the line is too long",
        "INVALID ENCODING": "the line is not valid UTF-8",
    }.get(kind, message.splitlines()[0] if message else kind.lower())


@reader("parquet", temp_tables=("_cells",))
def _parquet(
    cur: duckdb.DuckDBPyConnection, path: str, detected: Detected, options: LoadOptions
) -> Staged:
    described = cur.execute("SELECT * FROM read_parquet(?) LIMIT 0", [path]).description
    columns = file_columns(described or [])
    if options.fast_path:
        rows = int(fetch_scalar(cur, "SELECT count(*) FROM read_parquet(?)", [path]))
        typed = typed_rows(path, rows, columns)
        if typed is not None:
            return Staged("row", rows, typed=typed)
    cur.execute("CREATE TEMP TABLE _cells AS SELECT * FROM read_parquet(?)", [path])
    return Staged("row", _columns_to_json(cur, "_cells", text_cells=False))


def _columns_to_json(cur: duckdb.DuckDBPyConnection, table: str, *, text_cells: bool) -> int:
    """Create _src(raw) from a CSV or Parquet table, one JSON object per row; returns how many."""
    columns = cur.execute(
        "SELECT column_name, column_type FROM (DESCRIBE " + table + ")"
    ).fetchall()
    sql, params = columns_json_sql(columns, text_cells=text_cells)
    if sql is None:
        names = ", ".join(c for c, _ in columns[:12])
        raise NotAnExport(
            f"it is not an event export: no trace_id or event_type column (columns: {names})."
            f" {ACCEPTED_FORMATS}"
        )
    records = fetch_scalar(
        cur, f"CREATE TEMP TABLE _src AS SELECT {sql} AS raw FROM {table}", params
    )
    cur.execute(f"DROP TABLE {table}")
    return int(records)
