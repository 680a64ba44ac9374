"""Parquet's typed fast path: rows go from the file's own columns into `events`, no JSON text.

A Parquet file whose column types settle most of LangWatch's rules takes it (typed_rows says
whether one does): trace_id, event_type and event_id VARCHAR; metrics a MAP(VARCHAR, number) or
a STRUCT of numbers; event_details a MAP(VARCHAR, VARCHAR) or a STRUCT of VARCHAR; timestamp a
number (epoch ms), TIMESTAMP or DATE. Each chunk of rows is read straight from the file, numbered
by read_parquet's file_row_number (row n is file_row_number + 1, as the JSON path's rowid + 1),
and the rows that pass model.sql_typed_valid are inserted with the columns the JSON path would
have stored for them, the event key included. The valid rows it did not insert are duplicates
(their key was stored, by an earlier load or an earlier row), counted by type from the typed
columns. The rows that fail the check are turned into JSON text exactly as the JSON path stages
them (sql.columns_json_sql), only those, and take the full path, so their rejects read as before.
The typed check passes exactly the events the JSON rules pass (tests/test_model.py), so no row
the full path would insert is left to it.

The key of an event without event_id hashes the JSON texts of its fields as the JSON path has
them (sql.columns_sql); the typed path builds those texts with the same SQL, and only for such
rows. Any other file, or a load with the fast path off, takes the JSON path for every row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from eventlens import model
from eventlens.ingest.sql import (
    EVENT_COLUMNS,
    ColumnRoles,
    LineNumbers,
    Query,
    Source,
    column_roles,
    columns_json_sql,
    ident,
    object_json,
    present_entries,
    scalar_json,
    timestamp_json,
    timestamp_ms,
)

INTEGER_TYPES = frozenset(
    ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
)
NUMBER_TYPES = INTEGER_TYPES | {"FLOAT", "DOUBLE"}
ROW = "file_row_number"  # read_parquet's number of a row in its file, from 0
PREFIX = "__el_"  # the typed fields' prefix, beside the file's own columns
_P = PREFIX
# The rows the typed insert left, staged as JSON text with their row in the file.
LEFT_LINES = LineNumbers("_row + 1")
# The stored timestamp, rounded to the millisecond as the JSON path stores it.
TIMESTAMP = f"epoch_ms(round({_P}timestamp)::BIGINT)::TIMESTAMPTZ"


class FileColumn(NamedTuple):
    """A Parquet column as DuckDB reads it: name, type, and a MAP's or STRUCT's (name, type)s."""

    name: str
    type: str
    children: tuple[tuple[str, str], ...] = ()


def file_columns(description: list[tuple[Any, ...]]) -> list[FileColumn]:
    """A query's columns (a DB-API description: name, DuckDB type, ...) as FileColumns."""
    return [
        FileColumn(
            str(name),
            str(dtype),
            tuple((n, str(t)) for n, t in dtype.children) if dtype.id in ("map", "struct") else (),
        )
        for name, dtype, *_ in description
    ]


@dataclass(frozen=True)
class TypedRows:
    """A Parquet file that takes the typed path: its rows and the SQL they take."""

    path: str
    rows: int
    fields: str  # the typed fields of a row, named __el_*, from the file's columns
    params: tuple[Any, ...]  # what `fields` binds (STRUCT field names as map keys)
    content: str  # the text the JSON path hashes for an event without event_id
    json: str  # a row as the JSON text the JSON path stages for it
    json_params: tuple[Any, ...]


def typed_rows(path: str, rows: int, columns: list[FileColumn]) -> TypedRows | None:
    """The typed path for a Parquet file with these columns; None when their types rule it out."""
    names = {c.name.lower() for c in columns}
    if ROW in names or any(n.startswith(_P) for n in names):
        return None  # the typed SQL's own names would clash with the file's
    roles = column_roles([(c.name, c.type) for c in columns])
    by_name = {c.name: c for c in columns}
    fields = _fields(roles, by_name)
    json, json_params = columns_json_sql([(c.name, c.type) for c in columns], text_cells=False)
    if fields is None or json is None:
        return None
    select, params = fields
    return TypedRows(path, rows, select, params, _content(roles), json, tuple(json_params))


def _fields(
    roles: ColumnRoles, by_name: dict[str, FileColumn]
) -> tuple[str, tuple[Any, ...]] | None:
    """The SELECT list of a row's typed fields, or None when a column's type does not fit."""

    def typed(role: tuple[str, str] | None) -> FileColumn | None:
        return by_name[role[0]] if role else None

    trace_id, event_type = typed(roles.trace_id), typed(roles.event_type)
    event_id, ts = typed(roles.event_id), typed(roles.timestamp)
    metrics, details = typed(roles.metrics), typed(roles.event_details)
    if not (trace_id and event_type and metrics) or (details is None and roles.flat_details):
        return None
    if any(c and c.type != "VARCHAR" for c in (trace_id, event_type, event_id)):
        return None
    timestamp = _timestamp(ts)
    metrics_map = _map(metrics, NUMBER_TYPES, "DOUBLE")
    details_map = _map(details, {"VARCHAR"}, "VARCHAR") if details else ("NULL", ())
    if timestamp is None or metrics_map is None or details_map is None:
        return None
    select = ", ".join(
        (
            f"{ident(trace_id.name)} AS {_P}trace_id",
            f"{ident(event_type.name)} AS {_P}event_type",
            f"{ident(event_id.name) if event_id else 'NULL'}::VARCHAR AS {_P}event_id",
            f"{timestamp} AS {_P}timestamp",
            f"{metrics_map[0]} AS {_P}metrics",
            f"({details_map[0]})::MAP(VARCHAR, VARCHAR) AS {_P}details",
        )
    )
    return select, metrics_map[1] + details_map[1]


def _timestamp(column: FileColumn | None) -> str | None:
    """A timestamp column as epoch ms (DOUBLE, as the JSON path reads it); None: no fit."""
    if column is None:
        return "NULL::DOUBLE"
    c = ident(column.name)
    if column.type in NUMBER_TYPES:
        return f"{c}::DOUBLE"
    if column.type.startswith(("TIMESTAMP", "DATE")):
        return f"{timestamp_ms(c)}::DOUBLE"
    return None


def _map(
    column: FileColumn, value_types: set[str] | frozenset[str], target: str
) -> tuple[str, tuple[Any, ...]] | None:
    """A MAP or STRUCT column as MAP(VARCHAR, target) of its present entries (None: no fit).

    A null entry means absent, as the JSON path's conversion has it.
    """
    c = ident(column.name)
    kind = column.type.split("(", 1)[0]
    if kind == "MAP":
        (_, key_type), (_, value_type) = column.children
        if key_type != "VARCHAR" or value_type not in value_types:
            return None
        present = present_entries(c)
        return (present if value_type == target else f"({present})::MAP(VARCHAR, {target})"), ()
    if kind == "STRUCT" and column.children:
        if any(t not in value_types for _, t in column.children):
            return None
        entries = ", ".join(
            f"{{'key': ?::VARCHAR, 'value': {c}.{ident(name)}::{target}}}"
            for name, _ in column.children
        )
        return (
            f"CASE WHEN {c} IS NOT NULL THEN map_from_entries(list_filter([{entries}],"
            " lambda e: e.value IS NOT NULL)) END",
            tuple(name for name, _ in column.children),
        )
    return None


def _content(roles: ColumnRoles) -> str:
    """What the JSON path's key hashes for an event without event_id (sql.columns_sql): the
    JSON texts of trace_id, event_type, timestamp, metrics and details, absent ones skipped."""
    texts = [
        scalar_json(roles.trace_id, False, numeric=False) if roles.trace_id else None,
        scalar_json(roles.event_type, False, numeric=False) if roles.event_type else None,
        timestamp_json(roles.timestamp, False) if roles.timestamp else None,
        object_json(roles.metrics) if roles.metrics else None,
        object_json(roles.event_details) if roles.event_details else None,
    ]
    return "'content' || chr(0) || concat_ws(chr(0), " + ", ".join(t for t in texts if t) + ")"


def valid_sql() -> str:
    """LangWatch's rules over a row's typed fields (model.sql_typed_valid)."""
    return model.sql_typed_valid(
        trace_id=f"{_P}trace_id",
        event_type=f"{_P}event_type",
        metrics=f"{_P}metrics",
        timestamp=f"{_P}timestamp",
    )


def chunk_sql(typed: TypedRows, start: int, stop: int) -> str:
    """Rows start..stop of the file with their typed fields (binds typed.params, then the path)."""
    return (
        f"SELECT *, {typed.fields} FROM read_parquet(?, file_row_number=true)"
        f" WHERE {ROW} >= {int(start)} AND {ROW} < {int(stop)}"
    )


def event_key_sql(typed: TypedRows) -> str:
    """A row's event key, as sql.columns_sql makes it: md5 of 'id', trace_id and event_id, or,
    only for a row without event_id, of the JSON texts of its fields (typed.content)."""
    return (
        f"CASE WHEN {_P}event_id IS NOT NULL"
        f" THEN md5_number('id' || chr(0) || {_P}trace_id || chr(0) || {_P}event_id)"
        f" ELSE md5_number({typed.content}) END"
    )


def insert_typed(typed: TypedRows, start: int, stop: int, source: Source, batch: int) -> Query:
    """The typed fast path: one INSERT of the valid events of rows start..stop not stored yet.

    The columns are the JSON path's (sql.columns_sql, sql.maps_sql): the maps without absent
    entries (details an empty map when absent), the timestamp rounded to the millisecond, the
    key md5('id', trace_id, event_id), or of the fields' JSON texts when there is no event_id.
    """
    return Query(
        f"""
    INSERT INTO events ({EVENT_COLUMNS})
    SELECT event_key, event_id, trace_id, event_type, timestamp, metrics, event_details, ?, ?,
           rec, ?
    FROM (
        SELECT {ROW} + 1 AS rec, {_P}trace_id AS trace_id, {_P}event_id AS event_id,
               {_P}event_type AS event_type,
               {TIMESTAMP} AS timestamp,
               {_P}metrics AS metrics,
               coalesce({_P}details, MAP()::MAP(VARCHAR, VARCHAR)) AS event_details,
               {event_key_sql(typed)} AS event_key
        FROM ({chunk_sql(typed, start, stop)})
        WHERE coalesce({valid_sql()}, false)
    ) v
    WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_key = v.event_key)
    """,
        [source.dataset, source.file, batch, *typed.params, typed.path],
    )


def duplicates_by_type(typed: TypedRows, start: int, stop: int, batch: int) -> Query:
    """The valid rows start..stop that batch did not insert, by type: (event_type, count, first
    timestamp, last timestamp). Each is a duplicate: its key was stored, by an earlier load or
    as an earlier row of the chunk (the typed insert inserts every valid row it can)."""
    return Query(
        f"SELECT {_P}event_type, count(*), min({TIMESTAMP}), max({TIMESTAMP})"
        f" FROM ({chunk_sql(typed, start, stop)}) s WHERE coalesce({valid_sql()}, false)"
        " AND NOT EXISTS (SELECT 1 FROM events e WHERE e.batch_id = ?"
        f" AND e.source_line = s.{ROW} + 1) GROUP BY {_P}event_type",
        [*typed.params, typed.path, batch],
    )


def stage_rejected(typed: TypedRows, start: int, stop: int) -> Query:
    """Create _src(_row, raw): rows start..stop that fail the typed check, as JSON text, in order,
    for the full path to reject with its reasons.

    _src is made inside the load's transaction, so its rowids do not start at 0: the rows' own
    numbers are in _row (LEFT_LINES).
    """
    return Query(
        f"CREATE TEMP TABLE _src AS SELECT {ROW} AS _row, {typed.json} AS raw"
        f" FROM ({chunk_sql(typed, start, stop)})"
        f" WHERE NOT coalesce({valid_sql()}, false) ORDER BY {ROW}",
        [*typed.json_params, *typed.params, typed.path],
    )
