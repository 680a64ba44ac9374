"""The ingest SQL: the pieces both paths are built from, and the statements a load runs.

The pieces (records' fields, checked events, their stored columns and maps) are shared by the
fast path's one-pass insert and the full path's checks, so both store the same columns the same
way. Each statement comes as a Query, its text with the values it binds: a user value (dataset,
file name, hash, a key from a file's column names) is always a `?`; only constants are spliced
(numbers, the unit word, SQL built here, a file's column names quoted as identifiers).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

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
EVENT_COLUMNS = (
    "event_key, event_id, trace_id, event_type, timestamp, metrics, event_details, dataset,"
    " source_file, source_line, batch_id"
)


class LineNumbers(NamedTuple):
    """SQL giving a staged record its number in the file (line, element, row) from its rowid.

    A committed temp table numbers its rows from 0 in insertion order, so a reader that stages
    in file order gets `rowid + 1`; params are what the SQL binds, in order.
    """

    sql: str = "rowid + 1"
    params: tuple[Any, ...] = ()


# A rowid range holding every row: a table made inside a transaction numbers its rows from
# DuckDB's MAX_ROW_ID, not 0 (typed.py's rows left for the full path).
ALL_ROWIDS = 2**63 - 1


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
    once, on insert (see maps_sql), so they are materialised only in the events table. Each
    layer computes what the ones above read more than once (entry pairs, entries, the rules'
    metric values) as a column: DuckDB binds an expression wherever it is written, and
    planning this statement is most of what a small file's load costs.
    """
    rule_values = ",\n".join(
        f"CASE WHEN _skip THEN NULL ELSE {value} END AS {column}"
        for column, value in model.sql_rule_values().items()
    )
    return f"""
    SELECT rec, rid, sub, loc, status, ev_raw, has_event_fields, event_type, problem, quick,
           CASE WHEN ok THEN j_metrics END AS j_metrics,
           CASE WHEN ok THEN j_details END AS j_details,
           {columns_sql("ok")}
    FROM (
        SELECT *, status = 'ok' AND problem IS NULL AS ok
        FROM (
            SELECT *, CASE WHEN _skip THEN NULL ELSE {model.sql_problems()} END AS problem
            FROM (
                SELECT *, {rule_values}
                FROM (
                    SELECT *,
                           CASE WHEN _skip THEN NULL
                                ELSE {last_entries_sql("_metric_pairs")} END AS metric_entries,
                           CASE WHEN _skip THEN NULL
                                ELSE {last_entries_sql("_detail_pairs")} END AS detail_entries
                    FROM (
                        SELECT *,
                               CASE WHEN _skip THEN NULL
                                    ELSE {entry_pairs_sql("j_metrics")} END AS _metric_pairs,
                               CASE WHEN _skip THEN NULL
                                    ELSE {entry_pairs_sql("j_details")} END AS _detail_pairs
                        FROM (
                            SELECT *, status <> 'ok' OR quick AS _skip
                            FROM ({fields_sql(source)})
                        )
                    )
                )
            )
        )
    )
    """


def entries_map_sql(pairs: str, value: str) -> str:
    """A MAP from a column of entry pairs (entry_pairs_sql); `value` converts one entry's JSON."""
    return (
        f"map_from_entries(list_transform(coalesce({last_entries_sql(pairs)}, []),"
        f" lambda e: {{'key': e.key, 'value': {value}}}))"
    )


Column = tuple[str, str]  # a table's column: its name in the file and its DuckDB type


class ColumnRoles(NamedTuple):
    """Which columns of a CSV or Parquet table hold each event field (None: no such column).

    Names match case-insensitively; the first alias found wins (KEY_COLUMNS, TIMESTAMP_COLUMNS,
    OBJECT_COLUMNS). A whole metrics/details column (JSON text, MAP or STRUCT) is used before
    flat `metrics.<key>` columns, which are listed as (key, column).
    """

    trace_id: Column | None
    event_type: Column | None
    event_id: Column | None
    timestamp: Column | None
    metrics: Column | None
    event_details: Column | None
    flat_metrics: tuple[tuple[str, Column], ...]
    flat_details: tuple[tuple[str, Column], ...]


TIMESTAMP_COLUMNS = ("timestamp", "timestamps.started_at", "started_at")
OBJECT_COLUMNS = {"metrics": ("metrics",), "event_details": ("event_details", "details")}


def column_roles(columns: Sequence[Column]) -> ColumnRoles:
    """The columns that hold each event field; columns_json_sql and the typed path share it."""
    by_name = {name.lower(): (name, dtype) for name, dtype in columns}

    def col(*names: str) -> Column | None:
        return next((by_name[n] for n in names if n in by_name), None)

    def flat(names: tuple[str, ...]) -> tuple[tuple[str, Column], ...]:
        prefixes = tuple(n + "." for n in names)
        return tuple(
            (name[len(p) :], (name, dtype))
            for name, dtype in columns
            for p in prefixes
            if name.lower().startswith(p) and len(name) > len(p)
        )

    return ColumnRoles(
        trace_id=col(*KEY_COLUMNS["trace_id"]),
        event_type=col(*KEY_COLUMNS["event_type"]),
        event_id=col("event_id"),
        timestamp=col(*TIMESTAMP_COLUMNS),
        metrics=col(*OBJECT_COLUMNS["metrics"]),
        event_details=col(*OBJECT_COLUMNS["event_details"]),
        flat_metrics=flat(OBJECT_COLUMNS["metrics"]),
        flat_details=flat(OBJECT_COLUMNS["event_details"]),
    )


def columns_json_sql(
    columns: Sequence[Column], *, text_cells: bool
) -> tuple[str | None, list[Any]]:
    """SQL building one JSON event per row from CSV or Parquet columns (None: no event columns).

    Column names come from the file, so they are quoted as identifiers; metric and detail keys are
    bound as parameters. CSV cells are text: a numeric cell becomes a number, an empty cell is
    absent. Parquet cells keep their types, so a string metric is rejected as LangWatch would.
    """
    roles = column_roles(columns)
    if roles.trace_id is None and roles.event_type is None:
        return None, []
    parts: list[str] = []
    params: list[Any] = []
    for key in ("trace_id", "event_type", "event_id"):
        found = getattr(roles, key)
        if found:
            parts.append(f"'{key}', {scalar_json(found, text_cells, numeric=False)}")
    if roles.timestamp:
        parts.append(f"'timestamp', {timestamp_json(roles.timestamp, text_cells)}")
    for key, whole, flat, numeric in (
        ("metrics", roles.metrics, roles.flat_metrics, True),
        ("event_details", roles.event_details, roles.flat_details, False),
    ):
        if whole:
            parts.append(f"'{key}', {object_json(whole)}")
        elif flat:
            entries = ", ".join(
                f"{{'key': ?, 'value': {scalar_json(c, text_cells, numeric=numeric)}}}"
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
    return "json_object(" + ", ".join(parts) + ")::VARCHAR", params


def ident(name: str) -> str:
    """A column name from a file, quoted as a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def scalar_json(column: Column, text_cells: bool, *, numeric: bool) -> str:
    """A scalar cell as JSON (NULL: absent); a CSV cell that reads as a number, as a number."""
    name, dtype = column
    c = ident(name)
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


def timestamp_json(column: Column, text_cells: bool) -> str:
    """A timestamp cell as JSON: epoch ms for a TIMESTAMP or DATE (or a CSV date text)."""
    name, dtype = column
    c = ident(name)
    if dtype.upper().startswith(("TIMESTAMP", "DATE")):
        return f"to_json({timestamp_ms(c)})"
    if not text_cells or dtype.upper() != "VARCHAR":
        return f"to_json({c})"
    t = f"trim({c})"
    return (
        f"CASE WHEN nullif({t}, '') IS NULL THEN NULL "
        f"WHEN TRY_CAST({t} AS DOUBLE) IS NOT NULL THEN to_json(TRY_CAST({t} AS DOUBLE)) "
        f"WHEN TRY_CAST({t} AS TIMESTAMPTZ) IS NOT NULL "
        f"THEN to_json(epoch_ms(TRY_CAST({t} AS TIMESTAMPTZ))) ELSE to_json({c}) END"
    )


def timestamp_ms(col: str) -> str:
    """A TIMESTAMP or DATE column's epoch milliseconds (NULL for infinity)."""
    return f"epoch_ms({col}::TIMESTAMPTZ)"


def present_entries(map_col: str) -> str:
    """A MAP without its null entries (they mean absent); the map itself when it has none."""
    return (
        f"CASE WHEN list_count(map_values({map_col})) = cardinality({map_col}) THEN {map_col}"
        f" ELSE map_from_entries(list_filter(map_entries({map_col}),"
        " lambda e: e.value IS NOT NULL)) END"
    )


def object_json(column: Column) -> str:
    """A metrics/details column: JSON text, or a MAP/STRUCT whose null entries mean absent."""
    name, dtype = column
    c = ident(name)
    if dtype.upper() in ("VARCHAR", "JSON"):
        return (
            f"CASE WHEN nullif(trim({c}), '') IS NULL THEN NULL "
            f"WHEN json_valid({c}) THEN {c}::JSON ELSE to_json({c}) END"
        )
    if dtype.upper().startswith("MAP"):
        return f"to_json({present_entries(c)})"
    if dtype.upper().startswith("STRUCT"):
        return (
            f"to_json(map_from_entries(list_filter(map_entries(TRY_CAST(to_json({c}) AS"
            " MAP(VARCHAR, JSON))), lambda e: json_type(e.value) <> 'NULL')))"
        )
    return f"to_json({c})"


def entry_pairs_sql(col: str) -> str:
    """A metrics/details JSON value's key/value pairs as written (an object, or the older list
    form), repeats and missing keys included; last_entries_sql makes them entries."""
    return (
        f"CASE json_type({col}) "
        f"WHEN 'OBJECT' THEN list_transform(list_zip(json_keys({col}), json_extract({col}, '$.*')),"
        " lambda z: {'key': z[1], 'value': z[2]}) "
        f"WHEN 'ARRAY' THEN TRY_CAST({col} AS STRUCT(key VARCHAR, value JSON)[]) END"
    )


def last_entries_sql(pairs: str) -> str:
    """A metrics/details value's entries from its pairs (entry_pairs_sql, as a column).

    A key given twice keeps its last value, as JSON.parse (and so LangWatch) does; entries
    without a key cannot form a map, so the value counts as malformed (NULL). The pairs are a
    column because this reads them six times: inlined, DuckDB bound them six times (~5 ms
    more to plan each statement building entries).
    """
    last_wins = (
        f"list_filter({pairs}, lambda e, i: NOT list_contains(list_transform("
        f"list_slice({pairs}, i + 1, 2147483647), lambda x: x.key), e.key))"
    )
    return (
        f"CASE WHEN list_bool_or(list_transform({pairs}, lambda e: e.key IS NULL)) THEN NULL "
        f"WHEN len(list_distinct(list_transform({pairs}, lambda e: e.key))) < len({pairs}) "
        f"THEN {last_wins} ELSE {pairs} END"
    )


def maps_sql(table: str) -> str:
    """Rows of `table` with their stored maps, metrics and event_details, added.

    A clean event casts straight to MAP; a cast that fails (a key given twice) and every other
    event build the map from entries, the last of a repeated key winning. (CASE, not coalesce:
    only CASE leaves the entries unbuilt for the rows that do not need them.)
    """
    return f"""
    SELECT *,
           CASE WHEN cast_metrics IS NOT NULL THEN cast_metrics
                ELSE {entries_map_sql("_metric_pairs", "e.value::DOUBLE")} END AS metrics,
           CASE WHEN cast_details IS NOT NULL THEN cast_details
                ELSE {entries_map_sql("_detail_pairs", "e.value ->> '$'")}::MAP(VARCHAR, VARCHAR)
           END AS event_details
    FROM (
        SELECT *,
               CASE WHEN cast_metrics IS NULL THEN {entry_pairs_sql("j_metrics")} END
                   AS _metric_pairs,
               CASE WHEN cast_details IS NULL THEN {entry_pairs_sql("j_details")} END
                   AS _detail_pairs
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
    )
    """


# ---------------------------------------------------------------------------------------------
# The statements of a load: SQL text and the values it binds, built together
# ---------------------------------------------------------------------------------------------

RAW_KEEP_CHARS = 10_000  # how much of a rejected record the rejects table keeps

INSERT_REJECT = (
    "INSERT INTO rejects (dataset, file, file_hash, line, location, reason, raw)"
    " VALUES (?, ?, ?, ?, ?, ?, left(?, ?))"
)


class Query(NamedTuple):
    """A statement and the values it binds, in the order of its `?`s: cur.execute(*query)."""

    text: str
    params: list[Any]


class Source(NamedTuple):
    """The file a load's events and rejects are filed under."""

    dataset: str
    file: str  # the name shown for it (an upload's own name, not its temp path)
    sha256: str


def reject_values(source: Source, line: int, location: str, reason: str, raw: str) -> tuple:
    """The values of one INSERT_REJECT."""
    return (*source, line, location, reason, raw, RAW_KEEP_CHARS)


def insert_events(rows: str, source: Source, batch: int, rows_params: Sequence[Any] = ()) -> Query:
    """An INSERT of `rows`' events (a parenthesised query or a table) with their maps."""
    return Query(
        f"""
    INSERT INTO events ({EVENT_COLUMNS})
    SELECT event_key, event_id, trace_id, event_type, timestamp, metrics, event_details, ?, ?,
           rec, ?
    FROM ({maps_sql(rows)})
    """,
        # In the order they appear: the SELECT list's, then those inside rows.
        [source.dataset, source.file, batch, *rows_params],
    )


def insert_clean(lines: LineNumbers, start: int, stop: int, source: Source, batch: int) -> Query:
    """The fast path: one INSERT of the clean events among records start..stop not stored yet.

    It parses each record, keeps those that pass the quick check, builds the maps and the
    identity key, and inserts, with nothing staged in between.
    """
    records = f"""
        SELECT {lines.sql} AS rec, rowid AS rid, 0::BIGINT AS sub, NULL AS loc,
               'ok' AS status, NULL::JSON AS ctx_trace, NULL::VARCHAR AS ev_raw,
               try(json_transform(raw, '{SPEC}')) AS f
        FROM _src WHERE rowid >= {int(start)} AND rowid < {int(stop)}
    """
    fresh = f"""(
        SELECT * FROM ({clean_events_sql(records)}) v
        WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_key = v.event_key)
    )"""
    return insert_events(fresh, source, batch, lines.params)


def count_repeats(batch: int) -> Query:
    """How many events a batch inserted twice (the fast path does not dedupe within a chunk)."""
    return Query(
        "SELECT count(*) - count(DISTINCT event_key) FROM events WHERE batch_id = ?", [batch]
    )


def delete_repeats(batch: int) -> Query:
    """Delete the later copies of an event a batch inserted twice; the first in the file stays."""
    return Query(
        "DELETE FROM events e USING (SELECT event_key, source_line FROM events"
        " WHERE batch_id = ? QUALIFY row_number() OVER (PARTITION BY event_key"
        " ORDER BY source_line) > 1) d WHERE e.batch_id = ?"
        " AND e.event_key = d.event_key AND e.source_line = d.source_line",
        [batch, batch],
    )


def batch_summary(batch: int) -> Query:
    """A batch's events by type: (event_type, count, first timestamp, last timestamp)."""
    return Query(
        "SELECT event_type, count(*), min(timestamp), max(timestamp) FROM events"
        " WHERE batch_id = ? GROUP BY event_type",
        [batch],
    )


def left_over(lines: LineNumbers, start: int, stop: int, batch: int) -> Query:
    """Create _left: the records start..stop the fast path's batch did not insert."""
    return Query(
        f"CREATE TEMP TABLE _left AS SELECT rid FROM (SELECT rowid AS rid,"
        f" {lines.sql} AS rec FROM _src WHERE rowid >= {int(start)}"
        f" AND rowid < {int(stop)}) s WHERE NOT EXISTS (SELECT 1 FROM events e"
        " WHERE e.batch_id = ? AND e.source_line = s.rec)",
        [*lines.params, batch],
    )


def normalise(lines: LineNumbers, unit: str, start: int, stop: int, *, only_left: bool) -> Query:
    """Create _norm for records start..stop: typed, checked events, and the rest's status.

    With only_left, just the records the fast path did not insert (listed in _left).
    """
    left = " AND rowid IN (SELECT rid FROM _left)" if only_left else ""
    # One parse per record: its state, and the fields of the ones that are objects.
    records = f"""
        SELECT rec, rid, status, CASE WHEN status = 'ok'
               THEN json_transform(raw, '{SPEC}') END AS f
        FROM (
            SELECT {lines.sql} AS rec, rowid AS rid, raw,
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
    return Query(f"CREATE TEMP TABLE _norm AS {events_sql(plain)}", list(lines.params))


def expand_containers(unit: str) -> Query:
    """Add to _norm the events nested in trace documents, search rows and search responses."""
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
    return Query(f"INSERT INTO _norm {events_sql(nested)}", [])


class NormCounts(NamedTuple):
    """What _norm holds (NORM_COUNTS): the rows the later steps of a chunk act on, counted."""

    containers: int  # records holding events, to expand
    events: int  # records (or nested events) that are JSON objects
    eventish: int  # those with any event field
    records: int  # records that are not blank
    malformed: int  # records that are not JSON
    valid: int  # events that pass every rule
    distinct_valid: int  # their distinct identities
    failures: int  # rows reject_failures rejects


# One scan of _norm for every count a chunk's later steps need (each query costs ~1 ms).
NORM_COUNTS = """
    SELECT count(*) FILTER (WHERE status = 'container'),
           count(*) FILTER (WHERE status = 'ok'),
           count(*) FILTER (WHERE status = 'ok' AND has_event_fields),
           count(*) FILTER (WHERE status <> 'blank' AND sub = 0),
           count(*) FILTER (WHERE status = 'invalid'),
           count(*) FILTER (WHERE problem IS NULL AND status = 'ok'),
           count(DISTINCT event_key) FILTER (WHERE problem IS NULL AND status = 'ok'),
           count(*) FILTER (WHERE problem IS NOT NULL OR status = 'not_object')
    FROM _norm
"""


def insert_checked(source: Source, batch: int, *, first_copy_only: bool) -> Query:
    """The full path's INSERT: _norm's valid events whose identity is not stored yet.

    first_copy_only keeps the first of repeats within the chunk; the window it takes costs, so
    only a chunk known to hold repeats asks for it.
    """
    first_copy = (
        "QUALIFY row_number() OVER (PARTITION BY event_key ORDER BY rec, sub) = 1"
        if first_copy_only
        else ""
    )
    fresh = f"""(
        SELECT * FROM _norm v
        WHERE status = 'ok' AND problem IS NULL
          AND NOT EXISTS (SELECT 1 FROM events e WHERE e.event_key = v.event_key)
        {first_copy}
    )"""
    return insert_events(fresh, source, batch)


def reject_failures(unit: str, source: Source) -> Query:
    """Reject _norm's events that broke a rule and its records that are not objects."""
    return Query(
        f"""
        INSERT INTO rejects (dataset, file, file_hash, line, location, reason, raw)
        SELECT ?, ?, ?, n.rec, n.loc,
               CASE WHEN n.status = 'not_object'
                    THEN 'expected a JSON object (one event), got ' ||
                         CASE json_type(s.raw) WHEN 'ARRAY' THEN 'an array'
                              WHEN 'VARCHAR' THEN 'a string' WHEN 'NULL' THEN 'null'
                              WHEN 'BOOLEAN' THEN 'a boolean' ELSE 'a number' END
                    ELSE n.problem END,
               left(coalesce(n.ev_raw, s.raw), {RAW_KEEP_CHARS})
        FROM _norm n LEFT JOIN (SELECT rowid AS rid, raw FROM _src) s ON s.rid = n.rid
        WHERE n.problem IS NOT NULL OR n.status = 'not_object'
        """,
        list(source),
    )


_MALFORMED = (
    "SELECT n.rec, s.raw FROM _norm n JOIN (SELECT rowid AS rid, raw FROM _src) s"
    " ON s.rid = n.rid WHERE n.status = 'invalid'"
)


def first_malformed(limit: int) -> Query:
    """The first `limit` records of _norm that are not JSON: (number, raw text)."""
    return Query(f"{_MALFORMED} ORDER BY n.rec LIMIT {int(limit)}", [])


def reject_malformed_after(unit: str, source: Source, after: int) -> Query:
    """Reject, with a plain reason, the records that are not JSON after record `after`."""
    return Query(
        "INSERT INTO rejects (dataset, file, file_hash, line, location, reason, raw)"
        f" SELECT ?, ?, ?, rec, '{unit} ' || rec, 'not valid JSON', left(raw, {RAW_KEEP_CHARS})"
        f" FROM ({_MALFORMED}) WHERE rec > ?",
        [*source, after],
    )
