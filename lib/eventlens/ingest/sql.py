"""The ingest SQL: records' fields, checked events, their stored columns and maps, the insert.

Both paths (the fast path's one-pass insert and the full path's checks) are built from the same
pieces here, so they store the same columns the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from eventlens import model
from eventlens.ingest.detect import KEY_COLUMNS

# The fields a record may carry, each kept as JSON text so types can be checked afterwards.
_FIELDS = (
    "trace_id",
    "event_type",
    "type",
    "metrics",
    "event_details",
    "details",
    "timestamp",
    "timestamps",
    "started_at",
    "event_id",
    "events",
    "traces",
)
SPEC = json.dumps({name: "JSON" for name in _FIELDS})
_EVENT_COLUMNS = (
    "event_key, event_id, trace_id, event_type, timestamp, metrics, event_details, dataset,"
    " source_file, source_line, batch_id"
)
# A record holding events rather than being one: a trace document, a search row or response.
IS_CONTAINER = (
    "((json_type(f.events) IS NOT DISTINCT FROM 'ARRAY' AND f.event_type IS NULL)"
    " OR json_type(f.traces) IS NOT DISTINCT FROM 'ARRAY')"
)


def fields_sql(source: str) -> str:
    """Records (rec, rid, sub, loc, status, ctx_trace, ev_raw, f) with each event field's JSON.

    Adds the quick check and the event_type; the field names of stored events, search rows and
    track_event bodies all map onto the same j_* columns here.
    """
    return f"""
    SELECT *,
           -- One COALESCE on purpose: DuckDB pushes a bare conjunct of this into the scan,
           -- where it would parse every record a second time.
           status = 'ok' AND coalesce(NOT is_container AND {model.sql_quick_valid()}, false)
               AS quick,
           CASE WHEN json_type(j_event_type) = 'VARCHAR' THEN j_event_type ->> '$' END
               AS event_type
    FROM (
        SELECT rec, rid, sub, loc, status, ev_raw,
               coalesce(f.trace_id, ctx_trace) AS j_trace_id,
               coalesce(f.event_type, f.type) AS j_event_type,
               f.metrics AS j_metrics,
               coalesce(f.event_details, f.details) AS j_details,
               coalesce(f.timestamp, json_extract(f.timestamps, '$.started_at'), f.started_at)
                   AS j_timestamp,
               f.event_id AS j_event_id,
               coalesce(f.trace_id, f.event_type, f.type, f.metrics, f.event_details, f.details)
                   IS NOT NULL AS has_event_fields,
               {IS_CONTAINER} AS is_container
        FROM ({source})
    )
    """


def columns_sql(ok: str) -> str:
    """The stored scalar columns of an event, for the rows where `ok` holds (NULL elsewhere)."""
    return f"""
           CASE WHEN {ok} THEN j_trace_id ->> '$' END AS trace_id,
           CASE WHEN {ok} THEN j_event_id ->> '$' END AS event_id,
           CASE WHEN {ok} AND json_type(j_timestamp) IN {model.SQL_JSON_NUMBER_TYPES}
                THEN epoch_ms(round(j_timestamp::DOUBLE)::BIGINT)::TIMESTAMPTZ END AS timestamp,
           CASE WHEN {ok} THEN md5_number(
               CASE WHEN json_type(j_event_id) = 'VARCHAR'
               THEN 'id' || chr(0) || (j_trace_id ->> '$') || chr(0) || (j_event_id ->> '$')
               -- No event_id: the event's fields as the file wrote them.
               ELSE 'content' || chr(0) || concat_ws(chr(0), j_trace_id, j_event_type,
                    j_timestamp, j_metrics, j_details) END) END AS event_key
    """


def clean_events_sql(source: str) -> str:
    """The events among records that pass the quick check, with their stored columns.

    This is the fast path: no rejects can come out of it, so nothing is staged, and the rows
    that do not pass (or are containers) are left for events_sql.
    """
    return f"""
    SELECT rec, sub, quick, event_type, j_metrics, j_details, {columns_sql("true")}
    FROM ({fields_sql(source)})
    WHERE quick
    """


def events_sql(source: str) -> str:
    """SQL turning records (rec, rid, sub, loc, status, ctx_trace, ev_raw, f) into checked events.

    Clean events take the quick check; the rest get the full one. Maps are not built here but
    once, on insert (see maps_sql), so they are materialised only in the events table.
    """
    return f"""
    SELECT rec, rid, sub, loc, status, ev_raw, has_event_fields, event_type, problem, quick,
           CASE WHEN ok THEN j_metrics END AS j_metrics,
           CASE WHEN ok THEN j_details END AS j_details,
           {columns_sql("ok")}
    FROM (
        SELECT *, status = 'ok' AND problem IS NULL AS ok
        FROM (
            SELECT *, CASE WHEN status <> 'ok' OR quick THEN NULL
                           ELSE {model.sql_problems()} END AS problem
            FROM (
                SELECT *,
                       CASE WHEN status <> 'ok' OR quick THEN NULL
                            ELSE {entries_sql("j_metrics")} END AS metric_entries,
                       CASE WHEN status <> 'ok' OR quick THEN NULL
                            ELSE {entries_sql("j_details")} END AS detail_entries
                FROM ({fields_sql(source)})
            )
        )
    )
    """


def entries_map_sql(col: str, value: str) -> str:
    """A MAP from a metrics/details JSON value's entries; `value` converts one entry's JSON."""
    return (
        f"map_from_entries(list_transform(coalesce({entries_sql(col)}, []),"
        f" lambda e: {{'key': e.key, 'value': {value}}}))"
    )


def columns_json_sql(
    columns: Sequence[tuple[str, str]], *, text_cells: bool
) -> tuple[str | None, list[Any]]:
    """SQL building one JSON event per row from CSV or Parquet columns (None: no event columns).

    Column names come from the file, so they are quoted as identifiers; metric and detail keys are
    bound as parameters. CSV cells are text: a numeric cell becomes a number, an empty cell is
    absent. Parquet cells keep their types, so a string metric is rejected as LangWatch would.
    """
    by_name = {name.lower(): (name, dtype) for name, dtype in columns}
    parts: list[str] = []
    params: list[Any] = []

    def col(*names: str) -> tuple[str, str] | None:
        return next((by_name[n] for n in names if n in by_name), None)

    for key, names in (*KEY_COLUMNS.items(), ("event_id", ("event_id",))):
        found = col(*names)
        if found:
            parts.append(f"'{key}', {_scalar_json(found, text_cells, numeric=False)}")
    ts = col("timestamp", "timestamps.started_at", "started_at")
    if ts:
        parts.append(f"'timestamp', {_timestamp_json(ts, text_cells)}")
    for key, names, prefixes, numeric in (
        ("metrics", ("metrics",), ("metrics.",), True),
        ("event_details", ("event_details", "details"), ("event_details.", "details."), False),
    ):
        whole = col(*names)
        flat = [
            (name[len(p) :], (name, dtype))
            for name, dtype in columns
            for p in prefixes
            if name.lower().startswith(p) and len(name) > len(p)
        ]
        if whole:
            parts.append(f"'{key}', {_object_json(whole)}")
        elif flat:
            entries = ", ".join(
                f"{{'key': ?, 'value': {_scalar_json(c, text_cells, numeric=numeric)}}}"
                for _, c in flat
            )
            params.extend(k for k, _ in flat)
            parts.append(
                f"'{key}', to_json(map_from_entries(list_filter([{entries}],"
                " lambda e: e.value IS NOT NULL)))"
            )
        elif key == "metrics":
            # A flat file without metric columns has no metrics: {} rather than missing.
            parts.append("'metrics', '{}'::JSON")
    if not any(p.startswith(("'trace_id'", "'event_type'")) for p in parts):
        return None, []
    return "json_object(" + ", ".join(parts) + ")::VARCHAR", params


def _ident(name: str) -> str:
    """A column name from a file, quoted as a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _scalar_json(column: tuple[str, str], text_cells: bool, *, numeric: bool) -> str:
    name, dtype = column
    c = _ident(name)
    if not text_cells:
        return f"to_json({c})"
    blank = f"nullif(trim({c}), '') IS NULL"
    if numeric:
        num = f"TRY_CAST(trim({c}) AS DOUBLE)"
        return (
            f"CASE WHEN {blank} THEN NULL WHEN isfinite({num}) THEN to_json({num}) "
            f"ELSE to_json({c}) END"
        )
    return f"CASE WHEN {blank} THEN NULL ELSE to_json({c}) END"


def _timestamp_json(column: tuple[str, str], text_cells: bool) -> str:
    name, dtype = column
    c = _ident(name)
    if dtype.upper().startswith(("TIMESTAMP", "DATE")):
        return f"to_json(epoch_ms({c}::TIMESTAMPTZ))"
    if not text_cells or dtype.upper() != "VARCHAR":
        return f"to_json({c})"
    t = f"trim({c})"
    return (
        f"CASE WHEN nullif({t}, '') IS NULL THEN NULL "
        f"WHEN TRY_CAST({t} AS DOUBLE) IS NOT NULL THEN to_json(TRY_CAST({t} AS DOUBLE)) "
        f"WHEN TRY_CAST({t} AS TIMESTAMPTZ) IS NOT NULL "
        f"THEN to_json(epoch_ms(TRY_CAST({t} AS TIMESTAMPTZ))) ELSE to_json({c}) END"
    )


def _object_json(column: tuple[str, str]) -> str:
    """A metrics/details column: JSON text, or a MAP/STRUCT whose null entries mean absent."""
    name, dtype = column
    c = _ident(name)
    if dtype.upper() in ("VARCHAR", "JSON"):
        return (
            f"CASE WHEN nullif(trim({c}), '') IS NULL THEN NULL "
            f"WHEN json_valid({c}) THEN {c}::JSON ELSE to_json({c}) END"
        )
    if dtype.upper().startswith("MAP"):
        present = f"list_filter(map_entries({c}), lambda e: e.value IS NOT NULL)"
        return f"to_json(map_from_entries({present}))"
    if dtype.upper().startswith("STRUCT"):
        return (
            f"to_json(map_from_entries(list_filter(map_entries(TRY_CAST(to_json({c}) AS"
            " MAP(VARCHAR, JSON))), lambda e: json_type(e.value) <> 'NULL')))"
        )
    return f"to_json({c})"


def entries_sql(col: str) -> str:
    """A metrics/details JSON value as key/value entries: an object, or the older list form.

    A key given twice keeps its last value, as JSON.parse (and so LangWatch) does; entries
    without a key cannot form a map, so the value counts as malformed.
    """
    entries = (
        f"CASE json_type({col}) "
        f"WHEN 'OBJECT' THEN list_transform(list_zip(json_keys({col}), json_extract({col}, '$.*')),"
        " lambda z: {'key': z[1], 'value': z[2]}) "
        f"WHEN 'ARRAY' THEN TRY_CAST({col} AS STRUCT(key VARCHAR, value JSON)[]) END"
    )
    last_wins = (
        f"list_filter(({entries}), lambda e, i: NOT list_contains(list_transform("
        f"list_slice(({entries}), i + 1, 2147483647), lambda x: x.key), e.key))"
    )
    return (
        f"CASE WHEN list_bool_or(list_transform(({entries}), lambda e: e.key IS NULL)) THEN NULL "
        f"WHEN len(list_distinct(list_transform(({entries}), lambda e: e.key))) < len({entries}) "
        f"THEN {last_wins} ELSE {entries} END"
    )


def insert_sql(table: str) -> str:
    """An INSERT of `table`'s events; binds dataset, source file and batch id."""
    return f"""
    INSERT INTO events ({_EVENT_COLUMNS})
    SELECT event_key, event_id, trace_id, event_type, timestamp, metrics, event_details, ?, ?,
           rec, ?
    FROM ({maps_sql(table)})
    """


def maps_sql(table: str) -> str:
    """Rows of `table` with their stored maps, metrics and event_details, added.

    A clean event casts straight to MAP; a cast that fails (a key given twice) and every other
    event build the map from entries, the last of a repeated key winning. (CASE, not coalesce:
    only CASE leaves the entries unbuilt for the rows that do not need them.)
    """
    return f"""
    SELECT *,
           CASE WHEN cast_metrics IS NOT NULL THEN cast_metrics
                ELSE {entries_map_sql("j_metrics", "e.value::DOUBLE")} END AS metrics,
           CASE WHEN cast_details IS NOT NULL THEN cast_details
                ELSE {entries_map_sql("j_details", "e.value ->> '$'")}::MAP(VARCHAR, VARCHAR)
           END AS event_details
    FROM (
        SELECT *,
               CASE WHEN quick THEN TRY_CAST(j_metrics AS MAP(VARCHAR, DOUBLE)) END
                   AS cast_metrics,
               CASE WHEN quick AND (j_details IS NULL OR j_details::VARCHAR = 'null')
                    THEN MAP()::MAP(VARCHAR, VARCHAR)
                    WHEN quick THEN TRY_CAST(j_details AS MAP(VARCHAR, VARCHAR)) END
                   AS cast_details
        FROM {table}
    )
    """
