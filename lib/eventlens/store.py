"""The DuckDB event store: one database file, its schema, and thread-safe access."""

from __future__ import annotations

import collections
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from eventlens import location, settings
from eventlens.errors import EventlensError

if TYPE_CHECKING:  # pandas loads on first use: the CLI's load path does not need it
    import pandas as pd

DEFAULT_DB = settings.DB.default
DB_ENV = settings.DB.name
STORE_HELP = (  # the commands' --db
    "The store: a DuckDB file (default ./eventlens.duckdb; ':memory:' for a throwaway one) or a"
    " ClickHouse URL (clickhouse://host:8123/db, https://..., chdb:///path)."
)
# An optional dataset filter: bind the dataset (or None for all) twice.
OPTIONAL_DATASET = "(CAST(? AS VARCHAR) IS NULL OR dataset = ?)"
# Test data (what Submit and Replay send to the sandbox, or a dataset marked so) is left out of
# "all datasets" wherever events are analysed, unless the store holds nothing else.
LEFT_OUT_DATASETS = (
    "SELECT name FROM datasets WHERE test AND EXISTS (SELECT 1 FROM datasets WHERE NOT test)"
)


def analysed_datasets_sql(column: str = "dataset") -> str:
    """A condition keeping the rows of `column` (a constant name) outside test datasets.

    NOT IN makes an anti-join on the few test datasets: on 1M events it cost the hourly p95
    series about 6%, where list_contains over a subquery's list cost about 15%.
    """
    return f"{column} NOT IN ({LEFT_OUT_DATASETS})"


MEMORY_ENV = settings.MEMORY_LIMIT.name
THREADS_ENV = settings.THREADS.name

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_key UHUGEINT NOT NULL,      -- identity: (trace_id, event_id), else a content hash
    event_id VARCHAR,
    trace_id VARCHAR NOT NULL,
    event_type VARCHAR NOT NULL,
    timestamp TIMESTAMPTZ,            -- UTC, millisecond precision
    metrics MAP(VARCHAR, DOUBLE) NOT NULL,
    event_details MAP(VARCHAR, VARCHAR),
    dataset VARCHAR NOT NULL,
    source_file VARCHAR,
    source_line BIGINT,
    batch_id BIGINT                   -- the insert that added the row (event_batches)
);
-- Stores made before batch_id existed gain it here.
ALTER TABLE events ADD COLUMN IF NOT EXISTS batch_id BIGINT;
CREATE SEQUENCE IF NOT EXISTS event_batches;
-- One row per (dataset, trace): what the trace list needs without grouping every event.
-- Kept up to date by refresh_traces() after each load and by delete_dataset().
CREATE TABLE IF NOT EXISTS trace_summary (
    dataset VARCHAR NOT NULL,
    trace_id VARCHAR NOT NULL,
    events BIGINT NOT NULL,
    first_time TIMESTAMPTZ,
    last_time TIMESTAMPTZ,
    event_types VARCHAR[] NOT NULL
);
-- How many events (with a timestamp, as analysis counts them) of each (dataset, event type)
-- carry each metric or detail key: the Explore page's key lists without reading every event's
-- maps (1.2 s at 10M events). Merged like trace_summary (merge_summary, delete_dataset), and
-- counting exactly the batches up to key_summary_batch.batch: analytics._map_keys adds the
-- events of later batches (not merged yet) from events itself.
CREATE TABLE IF NOT EXISTS key_summary (
    dataset VARCHAR NOT NULL,
    event_type VARCHAR NOT NULL,
    map VARCHAR NOT NULL,             -- 'metrics' or 'event_details'
    key VARCHAR NOT NULL,
    events BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS key_summary_batch (batch BIGINT NOT NULL);  -- one row, once built
-- Every event sent from the Submit page or `eventlens send`: never the key.
CREATE SEQUENCE IF NOT EXISTS submission_ids;
CREATE TABLE IF NOT EXISTS submissions (
    id BIGINT PRIMARY KEY DEFAULT nextval('submission_ids'),
    sent_at TIMESTAMPTZ NOT NULL,
    endpoint VARCHAR NOT NULL,
    body VARCHAR NOT NULL,             -- the request body as JSON
    outcome VARCHAR NOT NULL,
    status INTEGER,
    response VARCHAR,                  -- the answer as JSON, the key scrubbed
    latency_ms DOUBLE,
    message VARCHAR
);
CREATE TABLE IF NOT EXISTS templates (  -- event shapes saved on the Submit page
    name VARCHAR PRIMARY KEY,
    body VARCHAR NOT NULL,
    saved_at TIMESTAMPTZ NOT NULL
);
-- The traces that have an event with detail key = value, for the keys someone searched by
-- (built on the first search for a key, then kept up to date like trace_summary).
CREATE TABLE IF NOT EXISTS detail_index (
    key VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    dataset VARCHAR NOT NULL,
    trace_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS detail_index_keys (key VARCHAR PRIMARY KEY);
-- The sandbox's (trace_id, event_id) identities, indexed so dedupe does not scan the events.
CREATE TABLE IF NOT EXISTS sandbox_keys (event_key UHUGEINT PRIMARY KEY);
-- The sandbox's traces as LangWatch tracks them, for its read routes (sandbox_reads.py): when
-- each was first and last written (the sandbox's clock), its earliest event and its metadata.
CREATE TABLE IF NOT EXISTS sandbox_traces (
    trace_id VARCHAR PRIMARY KEY,
    inserted_at BIGINT NOT NULL,      -- epoch ms: the first event stored
    updated_at BIGINT NOT NULL,       -- epoch ms: the last event stored or metadata set
    started_at BIGINT,                -- epoch ms: the earliest event timestamp
    metadata JSON NOT NULL
);
-- Replay's journal: one row per run (its spec never holds the key) and one per event outcome
-- per session, written in small batches so that a resume after a crash sends only the rest.
CREATE TABLE IF NOT EXISTS replay_runs (
    run_id VARCHAR PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    source VARCHAR NOT NULL,          -- the file replayed, or 'store'
    spec VARCHAR NOT NULL,            -- JSON: filters, transforms, pacing, endpoint, key variable
    plan_path VARCHAR NOT NULL,       -- Parquet: the events in replay order
    planned BIGINT NOT NULL,          -- valid events in the plan
    invalid BIGINT NOT NULL,          -- source records that are not valid events
    duplicates BIGINT NOT NULL,       -- source records that repeat an earlier event
    state VARCHAR NOT NULL,           -- planned | running | paused | stopped | finished | failed
    message VARCHAR,
    sessions INTEGER NOT NULL,        -- how many times it was started or resumed
    elapsed_s DOUBLE NOT NULL,        -- time spent sending, over all sessions
    report VARCHAR                    -- JSON, written at the end of each session
);
CREATE TABLE IF NOT EXISTS replay_outcomes (
    run_id VARCHAR NOT NULL,
    session INTEGER NOT NULL,
    seq BIGINT NOT NULL,              -- position in the plan; source records not planned: -1, -2..
    event_type VARCHAR,
    outcome VARCHAR NOT NULL,         -- accepted | rejected | invalid | failed | unknown
    status INTEGER,
    attempts INTEGER NOT NULL,        -- requests made for it in this session
    latency_ms DOUBLE,                -- of the last request
    message VARCHAR,
    record VARCHAR,                   -- dead letters: the original event (or raw record)
    line BIGINT,                      -- where the event is in the source file, if known
    logged_at TIMESTAMPTZ NOT NULL
);
ALTER TABLE replay_outcomes ADD COLUMN IF NOT EXISTS line BIGINT;  -- journals made before it
CREATE TABLE IF NOT EXISTS rejects (
    dataset VARCHAR NOT NULL,
    file VARCHAR,
    file_hash VARCHAR,
    line BIGINT,                      -- line, element or row number, 1-based
    location VARCHAR,                 -- the same in words: 'line 12', 'element 3, event 2'
    reason VARCHAR NOT NULL,
    raw VARCHAR,
    rejected_at TIMESTAMPTZ DEFAULT current_timestamp,
    trace_id VARCHAR                  -- a pulled event's trace (see the ALTER below)
);
CREATE TABLE IF NOT EXISTS datasets (
    name VARCHAR PRIMARY KEY,
    files VARCHAR[] NOT NULL,
    content_hash VARCHAR NOT NULL,    -- sha256 over the sha256 of each loaded file
    loaded_at TIMESTAMPTZ NOT NULL,
    events BIGINT NOT NULL,
    rejects BIGINT NOT NULL,
    duplicates BIGINT NOT NULL,
    test BOOLEAN DEFAULT false        -- test data (see the ALTERs below)
);
-- Test data is kept apart from analysis (see LEFT_OUT_DATASETS); stores made before gain it, and
-- their sandbox dataset, which only ever held test traffic, becomes test data.
ALTER TABLE datasets ADD COLUMN IF NOT EXISTS test BOOLEAN;
UPDATE datasets SET test = (name = 'sandbox') WHERE test IS NULL;
ALTER TABLE datasets ALTER COLUMN test SET DEFAULT false;
-- A pulled event's reject names its trace, so that pulling the trace again replaces it.
ALTER TABLE rejects ADD COLUMN IF NOT EXISTS trace_id VARCHAR;
-- Pulls from LangWatch (sync/): one row per pull, and per (endpoint, dataset) where the next pull
-- starts, with the scroll in progress (its request and cursor: never the key).
CREATE TABLE IF NOT EXISTS pulls (
    pull_id VARCHAR PRIMARY KEY,
    endpoint VARCHAR NOT NULL,
    dataset VARCHAR NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    since_ms BIGINT,                  -- the window asked for, on the updated axis
    until_ms BIGINT,
    total_hits BIGINT,
    traces BIGINT NOT NULL,
    events BIGINT NOT NULL,
    added BIGINT NOT NULL,
    removed BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    pages BIGINT NOT NULL,
    updated_through_ms BIGINT,
    outcome VARCHAR NOT NULL,         -- running | done | failed (a dead "running" is interrupted)
    message VARCHAR,
    pid INTEGER                       -- the process that ran it
);
CREATE TABLE IF NOT EXISTS pull_cursors (
    endpoint VARCHAR NOT NULL,
    dataset VARCHAR NOT NULL,
    updated_through_ms BIGINT,        -- where the next pull starts (None: from the beginning)
    scroll VARCHAR,                   -- JSON: the unfinished scroll (request, cursor, mode)
    PRIMARY KEY (endpoint, dataset)
);
-- A pulled trace's metadata, replaced with the trace.
CREATE TABLE IF NOT EXISTS trace_metadata (
    dataset VARCHAR NOT NULL,
    trace_id VARCHAR NOT NULL,
    user_id VARCHAR,
    thread_id VARCHAR,
    customer_id VARCHAR,
    labels VARCHAR[],
    updated_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS files (
    dataset VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    format VARCHAR,
    loaded_at TIMESTAMPTZ NOT NULL,
    loaded BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    duplicates BIGINT NOT NULL
);
"""


def _schema_statements(schema: str) -> list[str]:
    """The statements of a schema text without its comments (no literal in it holds ';' or '--')."""
    text = re.sub(r"--[^\n]*", "", schema)
    return [" ".join(s.split()) for s in text.split(";") if s.strip()]


# What each kind of SCHEMA statement leaves in the catalogue, or (UPDATE) in the data.
_SCHEMA_FORMS = {
    "table": re.compile(r"CREATE TABLE IF NOT EXISTS (\w+) \(.*\)"),
    "sequence": re.compile(r"CREATE SEQUENCE IF NOT EXISTS (\w+)"),
    "column": re.compile(r"ALTER TABLE (\w+) ADD COLUMN IF NOT EXISTS (\w+) \w+"),
    "default": re.compile(r"ALTER TABLE (\w+) ALTER COLUMN (\w+) SET DEFAULT (\w+)"),
    "update": re.compile(r"UPDATE (\w+) SET .+ WHERE (.+)"),
}
_IN_MAIN = "database_name = current_database() AND schema_name = 'main'"
# The store's tables, sequences, and columns with their defaults, as 'table.column=default'.
# Lists compared in Python: the same test as IN lists and FILTERs in SQL took 3.5 ms, this 2.
CATALOGUE_SQL = (
    f"SELECT (SELECT list(table_name) FROM duckdb_tables() WHERE {_IN_MAIN}),"
    f" (SELECT list(sequence_name) FROM duckdb_sequences() WHERE {_IN_MAIN}),"
    " (SELECT list(table_name || '.' || column_name || '=' || coalesce(column_default, ''))"
    f" FROM duckdb_columns() WHERE {_IN_MAIN})"
)


@dataclass(frozen=True)
class _SchemaChecks:
    """What SCHEMA makes, to skip it on a store it would not change (9 ms of about 20
    statements on an up-to-date store, against 2 ms for CATALOGUE_SQL), and to make a new
    store with its CREATEs alone."""

    tables: frozenset[str]
    sequences: frozenset[str]
    columns: frozenset[str]  # 'table.column' that the ALTERs add
    defaults: frozenset[str]  # 'table.column=default' that the ALTERs set
    # A condition saying whether SCHEMA's UPDATEs have rows to change, and the UPDATEs.
    pending: str
    updates: str
    # A store of its own: the CREATEs (which have every column: the ALTERs find nothing to do)
    # and the key catalogue's marker of no events, as _merge_keys writes it; one transaction
    # (a new file: 29 ms where a commit per statement took 36).
    new_store: str

    def current(self, tables: list[str], sequences: list[str], columns: list[str]) -> bool:
        """Whether SCHEMA would change nothing in the catalogue CATALOGUE_SQL read."""
        return (
            self.tables <= set(tables)
            and self.sequences <= set(sequences)
            and self.columns <= {c.partition("=")[0] for c in columns}
            and self.defaults <= set(columns)
        )


def _schema_checks(schema: str) -> _SchemaChecks | None:
    """SCHEMA's checks; None when it has a statement they do not know (the store then runs
    SCHEMA on every open)."""
    found: dict[str, list[tuple[str, ...]]] = {form: [] for form in _SCHEMA_FORMS}
    statements = _schema_statements(schema)
    for statement in statements:
        for form, pattern in _SCHEMA_FORMS.items():
            if match := pattern.fullmatch(statement):
                found[form].append(match.groups())
                break
        else:
            return None
    creates = [s for s in statements if s.startswith("CREATE ")]
    pending = " OR ".join(f"EXISTS (FROM {t} WHERE {where})" for t, where in found["update"])
    return _SchemaChecks(
        tables=frozenset(t for (t,) in found["table"]),
        sequences=frozenset(s for (s,) in found["sequence"]),
        columns=frozenset(f"{t}.{c}" for t, c in found["column"]),
        defaults=frozenset(f"{t}.{c}={d}" for t, c, d in found["default"]),
        pending=pending or "false",
        updates=";".join(s for s in statements if s.startswith("UPDATE ")),
        new_store=";\n".join(
            ["BEGIN TRANSACTION", *creates, "INSERT INTO key_summary_batch VALUES (0)", "COMMIT"]
        ),
    )


_SCHEMA_CHECKS = _schema_checks(SCHEMA)


APP_MEMORY_SHARE = 4  # the app's store takes at most a quarter of the machine's memory
APP_MEMORY_FLOOR_MB = 1024


def app_memory_limit() -> str:
    """The app's DuckDB budget: a quarter of the machine's memory, at least 1 GB.

    DuckDB's own default, 80% of RAM, lets one big report take the machine from the browser
    showing it and from everything else the user runs; the app's process also holds Streamlit,
    pandas frames and the Plotly figures. Past the budget DuckDB spills to disk and goes on.
    """
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: a fixed 4 GB
        return "4096MB"
    return f"{max(APP_MEMORY_FLOOR_MB, total // APP_MEMORY_SHARE // 2**20)}MB"


# The datasets with their files, counts and time range, newest first (Store.datasets).
DATASETS_SQL = """
    SELECT d.name AS dataset, d.test, coalesce(e.events, 0) AS events, d.rejects,
           d.duplicates, coalesce(e.traces, 0) AS traces,
           coalesce(e.event_types, 0) AS event_types, e.first_event, e.last_event,
           d.files, d.loaded_at, d.content_hash
    FROM datasets d
    LEFT JOIN (
        SELECT dataset, count(*) AS events, count(DISTINCT trace_id) AS traces,
               count(DISTINCT event_type) AS event_types,
               min(timestamp) AS first_event, max(timestamp) AS last_event
        FROM events GROUP BY dataset
    ) e ON e.dataset = d.name
    ORDER BY d.loaded_at DESC, d.name
"""


class StoreError(EventlensError):
    """A store problem worded for a person (locked file, unreadable path)."""


def resolve_db_path(path: str | os.PathLike[str] | None = None) -> str:
    """The database to use: an explicit path, else $EVENTLENS_DB, else ./eventlens.duckdb."""
    if path is not None and str(path) != "":
        return str(path)
    return str(settings.DB.value())


def _thread_count(text: str) -> int:
    """EVENTLENS_THREADS as a number of threads, or a StoreError that says what is wrong."""
    count = int(text) if text.strip().isdigit() else 0
    if count < 1:
        raise StoreError(f"{THREADS_ENV}={text!r} is not a number of threads (try 1)")
    return count


class Store:
    """A DuckDB database of events; each call takes its own cursor, so threads may share it."""

    engine = "duckdb"  # ClickHouseStore's is "clickhouse": what the few engine checks read
    # A replay journal's (stores.replay_store): the ClickHouse store whose events "replay from
    # the store" reads. None: this store's own events.
    events_from: Any = None

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        read_only: bool = False,
        memory_limit: str | None = None,
    ):
        """`memory_limit` is DuckDB's budget when EVENTLENS_MEMORY_LIMIT is unset (None: DuckDB's
        own default, 80% of RAM); past it, sorts, joins and aggregations spill to disk.

        A file another Store of this process holds open shares that Store's DuckDB (DuckDB keeps
        one database per file and process), so it keeps its settings: memory_limit, threads and
        the environment's are not applied. That is a command the running app took over
        (eventlens.handoff): it runs with the app's budget, as the app's own pages do."""
        self.path = resolve_db_path(path)
        self.read_only = read_only
        if location.is_url(self.path):
            raise StoreError(
                f"{location.parse(self.path).display} is a ClickHouse store, and Store opens"
                " DuckDB files: open it with eventlens.stores.open_store"
            )
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            if not read_only and os.path.isfile(self.path) and os.path.getsize(self.path) == 0:
                os.remove(self.path)  # an empty file (touch, mktemp) holds nothing: start afresh
        threads = _thread_count(text) if (text := settings.THREADS.from_env()) else None
        self._file = None if self.path == ":memory:" else os.path.realpath(self.path)
        shared = _open_count(self._file) > 0
        try:
            self._con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.IOException as exc:
            raise StoreError(_open_error(self.path, exc)) from None
        # A write lock per store file and process: DuckDB allows one writer at a time per table
        # anyway, and serialising loads gives clear counts instead of transaction conflicts. The
        # app's own Store and a handed-off command's (eventlens.handoff) share it.
        self.write_lock = _write_lock(self._file)
        self._con.execute("SET GLOBAL TimeZone = 'UTC'")
        limit = None if shared else settings.MEMORY_LIMIT.from_env() or memory_limit
        if limit:
            try:
                self._con.execute("SET GLOBAL memory_limit = ?", [limit])
            except duckdb.Error:
                self._con.close()
                raise StoreError(
                    f"{MEMORY_ENV}={limit!r} is not a memory size DuckDB understands (try 2GB)"
                ) from None
        if threads and not shared:
            self._con.execute("SET GLOBAL threads = ?", [threads])
        if read_only:
            has_test, columns = self.rows(
                "SELECT count(*) FILTER (WHERE column_name = 'test'), count(*)"
                " FROM duckdb_columns() WHERE table_name = 'datasets'"
            )[0]
            if columns and not has_test:  # its schema cannot be brought up to date read-only
                self._con.close()
                raise StoreError(
                    f"The database {self.path} was made by an older eventlens: open it once"
                    " without read-only (any eventlens command does) to bring it up to date."
                )
        if not read_only:
            self._bring_up_to_date()
        _count_open(self._file, +1)
        self._closed = False

    def _bring_up_to_date(self) -> None:
        """Make the schema current and build the summaries a store made before them lacks."""
        checks = _SCHEMA_CHECKS
        if checks is None:
            self._con.execute(SCHEMA)
        else:
            # Each connect to ':memory:' is a new database: its catalogue need not be read.
            tables, sequences, columns = (
                (None, None, None) if self.path == ":memory:" else self.rows(CATALOGUE_SQL)[0]
            )
            if not checks.tables.intersection(tables or ()):  # no summary to build either
                self._con.execute(checks.new_store)
                return
            if not checks.current(tables or [], sequences or [], columns or []):
                self._con.execute(SCHEMA)
        # One query for what SCHEMA's UPDATEs (skipped on a current store) and the summaries of
        # a store made before them have to do (counts: 1.5 ms, where EXISTS took 2.4).
        to_update, traces, events, marked, keys = self.rows(
            f"SELECT {'false' if checks is None else checks.pending},"
            " (SELECT count(*) FROM trace_summary), (SELECT count(*) FROM events),"
            " (SELECT count(*) FROM key_summary_batch), (SELECT count(*) FROM key_summary)"
        )[0]
        if to_update and checks is not None:
            self._con.execute(checks.updates)
        without_traces = not traces and events
        without_keys = not marked or (not keys and events)
        if without_traces:
            self.refresh_traces()  # a store written before the trace summary existed
        elif without_keys:  # a store written before the key catalogue existed
            with self.write_lock, self.cursor() as cur:
                cur.execute("BEGIN TRANSACTION")
                try:
                    self._merge_keys(cur, None, _newest_batch(cur))
                    cur.execute("COMMIT")
                except Exception:
                    cur.execute("ROLLBACK")
                    raise

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A fresh cursor on the shared database; use one per call, never across threads."""
        return self._con.cursor()

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> None:
        """Run a statement whose result is not needed."""
        with self.cursor() as cur:
            cur.execute(sql, params)

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple]:
        """Run a query and return all its rows."""
        with self.cursor() as cur:
            return cur.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        """Run a query and return the first column of its first row (None when empty)."""
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def df(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        """Run a query and return its result as a DataFrame."""
        with self.cursor() as cur:
            return cur.execute(sql, params).df()

    def close(self) -> None:
        """Close the database (checkpointing it to the file)."""
        self._con.close()
        if not self._closed:
            self._closed = True
            _count_open(self._file, -1)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- catalogue -----------------------------------------------------------------------------

    def event_count(self) -> int:
        """How many events the store holds."""
        return int(self.scalar("SELECT count(*) FROM events"))

    def last_batch(self) -> int:
        """The newest insert batch id in events (0 when empty); loads after it are newer."""
        with self.cursor() as cur:
            return _newest_batch(cur)

    def refresh_traces(self, after_batch: int | None = None) -> None:
        """Bring the trace summary up to date with the events added after `after_batch`.

        Only the new events are read and merged into the traces' existing rows (loads only add
        events; delete_dataset removes a dataset's rows itself), so call it once per load: the
        same batches merged twice would count twice. None rebuilds it from scratch.
        """
        with self.write_lock, self.cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                if after_batch is None:
                    cur.execute(
                        "DELETE FROM trace_summary;"
                        " DELETE FROM key_summary_batch;"  # rebuilt from every event
                        " DELETE FROM detail_index WHERE key IN (SELECT key FROM detail_index_keys)"
                    )
                self.merge_summary(cur, after_batch)
                cur.execute("COMMIT")
            except Exception:
                cur.execute("ROLLBACK")
                raise

    def merge_summary(self, cur: duckdb.DuckDBPyConnection, after_batch: int | None) -> None:
        """Merge the events of the batches not merged yet into the trace summary, the detail
        index and the key catalogue, on the caller's cursor and inside its transaction (None:
        every event, a rebuild).

        Not merged yet means after the summaries' marker (key_summary_batch), not after the
        caller's after_batch, which is used only where no marker exists: a load or a pull
        merging while the sandbox has batches waiting (it merges at most every REFRESH_S) would
        otherwise merge those, and the sandbox merge the load's again, counting both twice.
        """
        # One query for the marker, the newest batch (the marker's next value: the caller's
        # transaction sees no other insert), the indexed keys and whether any trace is
        # summarised; each was a statement.
        through, newest, indexed, summarised = cur.execute(
            "SELECT (SELECT max(batch) FROM key_summary_batch),"
            " (SELECT coalesce(max(batch_id), 0) FROM events),"
            " (SELECT list(key) FROM detail_index_keys), EXISTS (FROM trace_summary)"
        ).fetchall()[0]
        if after_batch is not None and through is not None:
            if through == newest:  # no event after the marker: every step below adds nothing
                return
            after_batch = through
        new = (
            "SELECT dataset, trace_id, count(*) AS events, min(timestamp) AS first_time,"
            " max(timestamp) AS last_time, list_sort(list_distinct(list(event_type)))"
            " AS event_types FROM events"
            + ("" if after_batch is None else " WHERE batch_id > ?")
            + " GROUP BY dataset, trace_id"
        )
        params = [] if after_batch is None else [after_batch]
        # The new traces' rows are inserted, and merged into the rows of traces summarised
        # before: one statement where a temporary table, a delete, an insert and a drop took
        # 2 ms more. On 200k events a MERGE took 53 ms where they took 54-64 (its list sorted
        # per trace before the join: 72 after it); an insert into an empty summary, 27.
        if not summarised:
            cur.execute(f"INSERT INTO trace_summary {new}", params)
        else:
            cur.execute(
                f"""
                MERGE INTO trace_summary o USING ({new}) n
                ON o.dataset = n.dataset AND o.trace_id = n.trace_id
                WHEN MATCHED THEN UPDATE SET
                    events = n.events + o.events,
                    first_time = least(n.first_time, o.first_time),
                    last_time = greatest(n.last_time, o.last_time),
                    event_types = list_sort(list_distinct(list_concat(n.event_types,
                                                                      o.event_types)))
                WHEN NOT MATCHED THEN INSERT VALUES (n.dataset, n.trace_id, n.events,
                    n.first_time, n.last_time, n.event_types)
                """,
                params,
            )
        for key in indexed or []:
            self._index_detail(cur, key, after_batch)
        self._merge_keys(cur, through, newest)

    @staticmethod
    def keys_through(cur: duckdb.DuckDBPyConnection) -> int | None:
        """The batch up to which key_summary counts the events (None: it is not built)."""
        try:
            return fetch_scalar(cur, "SELECT max(batch) FROM key_summary_batch")
        except duckdb.CatalogException:  # a store made before it, opened read-only
            return None

    def _merge_keys(self, cur: duckdb.DuckDBPyConnection, through: int | None, newest: int) -> None:
        """Add the keys of the events after key_summary's marker `through` to it and move the
        marker to the newest batch `newest` (through None: count every event afresh).

        It follows its own marker, not the caller's after_batch, so every batch is counted
        once even when a pull or a load merges while the sandbox has batches not merged yet.
        """
        if through is None:
            cur.execute("DELETE FROM key_summary")
            self._count_keys(cur, "TRUE", [], 1)
        else:
            self._count_keys(cur, "batch_id > ?", [through], 1)
        cur.execute("DELETE FROM key_summary_batch")
        cur.execute("INSERT INTO key_summary_batch VALUES (?)", [newest])

    def forget_keys(self, cur: duckdb.DuckDBPyConnection, where: str, params: list[Any]) -> None:
        """Take the events `where` (a constant condition) keeps out of key_summary before the
        caller deletes them. Those after its marker were never counted; those without a batch
        (stored before batches existed) were, by the first build."""
        through = self.keys_through(cur)
        if through is not None:
            cond = f"({where}) AND (batch_id <= ? OR batch_id IS NULL)"
            self._count_keys(cur, cond, [*params, through], -1)

    @staticmethod
    def _count_keys(
        cur: duckdb.DuckDBPyConnection, where: str, params: list[Any], sign: int
    ) -> None:
        """Add (sign 1) or subtract (-1) the key counts of the events `where` keeps to/from
        key_summary; the table is small (datasets x event types x keys): rewritten whole."""
        counts = " UNION ALL ".join(
            f"SELECT dataset, event_type, '{column}' AS map, key, {int(sign)} * count(*) AS events"
            f" FROM (SELECT dataset, event_type, unnest(map_keys({column})) AS key FROM events"
            f" WHERE timestamp IS NOT NULL AND {where}) GROUP BY ALL"
            for column in ("metrics", "event_details")
        )
        try:
            cur.execute(
                "CREATE TEMP TABLE _keys AS SELECT dataset, event_type, map, key,"
                " sum(events)::BIGINT AS events FROM (SELECT * FROM key_summary"
                f" UNION ALL {counts}) GROUP BY ALL HAVING sum(events) > 0",
                params * 2,
            )
            cur.execute("DELETE FROM key_summary")
            cur.execute("INSERT INTO key_summary SELECT * FROM _keys")
        finally:
            cur.execute("DROP TABLE IF EXISTS _keys")

    def ensure_detail_index(self, key: str) -> bool:
        """Index which traces have an event with each value of detail `key`; False if read-only.

        The first call for a key reads every event once; refresh_traces keeps it current.
        """
        if self.scalar("SELECT count(*) FROM detail_index_keys WHERE key = ?", [key]):
            return True
        if self.read_only:
            return False
        with self.write_lock, self.cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                if not fetch_scalar(
                    cur, "SELECT count(*) FROM detail_index_keys WHERE key = ?", [key]
                ):
                    self._index_detail(cur, key, None)
                    cur.execute("INSERT INTO detail_index_keys VALUES (?)", [key])
                cur.execute("COMMIT")
            except Exception:
                cur.execute("ROLLBACK")
                raise
        return True

    @staticmethod
    def _index_detail(cur: duckdb.DuckDBPyConnection, key: str, after_batch: int | None) -> None:
        """Add the (value, dataset, trace) rows of detail `key` from events after a batch."""
        newer = "" if after_batch is None else " AND batch_id > ?"
        params: list[Any] = [key, key, key] + ([] if after_batch is None else [after_batch])
        cur.execute(
            f"""
            INSERT INTO detail_index
            SELECT DISTINCT ?, event_details[?] AS value, dataset, trace_id FROM events
            WHERE event_details[?] IS NOT NULL{newer}
            EXCEPT SELECT key, value, dataset, trace_id FROM detail_index
            ORDER BY value
            """,
            params,
        )

    def version(self) -> tuple[int, int, tuple[str, ...], int | None]:
        """A token that changes whenever events are added or removed, a dataset is marked as
        test data or not, or the summaries catch up with the events (for caches): the sandbox
        merges its inserts into the trace summary up to a second after storing them, and a
        trace list read in between would otherwise stay cached without them."""
        with self.cursor() as cur:
            count, batch, test = cur.execute(
                "SELECT count(*), coalesce(max(batch_id), 0),"
                " (SELECT list(name ORDER BY name) FROM datasets WHERE test) FROM events"
            ).fetchall()[0]
            summarised = self.keys_through(cur)
        return int(count), int(batch), tuple(test or ()), summarised

    def test_datasets(self) -> list[str]:
        """The datasets marked as test data, sorted."""
        return [r[0] for r in self.rows("SELECT name FROM datasets WHERE test ORDER BY name")]

    def left_out_datasets(self) -> dict[str, int]:
        """The test datasets that "all datasets" leaves out now, with their events (none when
        the store holds nothing else)."""
        rows = self.rows(
            f"SELECT name, events FROM datasets WHERE name IN ({LEFT_OUT_DATASETS}) ORDER BY name"
        )
        return {str(name): int(events) for name, events in rows}

    def mark_test_data(self, name: str, test: bool = True) -> None:
        """Mark a dataset as test data (left out of analysis by default), or as analysis data."""
        with self.write_lock:
            found = self.rows(
                "UPDATE datasets SET test = ? WHERE name = ? RETURNING name", [test, name]
            )
        if not found:
            raise StoreError(f"no dataset named {name!r}")

    def dataset_names(self) -> list[str]:
        """The datasets' names, sorted."""
        return [r[0] for r in self.rows("SELECT name FROM datasets ORDER BY name")]

    def is_empty(self) -> bool:
        """Whether the store holds no events and no datasets."""
        return self.event_count() == 0 and not self.scalar("SELECT count(*) FROM datasets")

    def datasets(self) -> pd.DataFrame:
        """Datasets with their files, counts and time range, newest first."""
        return self.df(DATASETS_SQL)

    def dataset_records(self) -> list[dict[str, Any]]:
        """datasets() as one dict per dataset, without pandas: `eventlens info` then does not
        import it (about 1.3 s of a 2.7 s command on the development machine)."""
        with self.cursor() as cur:
            cur.execute(DATASETS_SQL)
            names = [column[0] for column in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def delete_dataset(self, name: str) -> int:
        """Delete a dataset's events, rejects and catalogue rows; returns the events removed."""
        with self.write_lock, self.cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                removed = fetch_scalar(cur, "SELECT count(*) FROM events WHERE dataset = ?", [name])
                for table in (
                    "events",
                    "rejects",
                    "files",
                    "trace_summary",
                    "key_summary",
                    "detail_index",
                    "trace_metadata",
                    "pull_cursors",
                ):
                    # Table names are constants from this loop, never user input.
                    cur.execute(f"DELETE FROM {table} WHERE dataset = ?", [name])  # noqa: S608
                cur.execute("DELETE FROM datasets WHERE name = ?", [name])
                if name == "sandbox":  # its dedupe keys and traces go with it (see sandbox.py)
                    cur.execute("DELETE FROM sandbox_keys")
                    cur.execute("DELETE FROM sandbox_traces")
                cur.execute("COMMIT")
            except Exception:
                cur.execute("ROLLBACK")
                raise
        return int(removed)

    def rejects(
        self,
        dataset: str | None = None,
        file: str | None = None,
        reason: str | None = None,
        limit: int = 10_000,
    ) -> pd.DataFrame:
        """Rejected rows with their reasons, filtered by dataset, file and words in the reason."""
        return self.df(
            f"""
            SELECT dataset, file, location, reason, raw, line
            FROM rejects
            WHERE {OPTIONAL_DATASET}
              AND (CAST(? AS VARCHAR) IS NULL OR file = ?)
              AND (CAST(? AS VARCHAR) IS NULL OR contains(lower(reason), lower(?)))
            ORDER BY rejected_at DESC, file, line LIMIT ?
            """,
            [dataset, dataset, file, file, reason, reason, limit],
        )

    def reject_files(self, dataset: str | None = None) -> list[str]:
        """The files that have rejected rows, optionally in one dataset."""
        rows = self.rows(
            f"SELECT DISTINCT file FROM rejects WHERE {OPTIONAL_DATASET} ORDER BY file",
            [dataset, dataset],
        )
        return [r[0] for r in rows]


_WRITE_LOCKS: dict[str, threading.RLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _newest_batch(cur: duckdb.DuckDBPyConnection) -> int:
    """The newest insert batch id in events (0 when empty)."""
    return int(fetch_scalar(cur, "SELECT coalesce(max(batch_id), 0) FROM events"))


# How many Stores of this process hold each file open: a second one shares the first one's
# DuckDB, and so its settings (Store.__init__).
_OPEN_FILES: collections.Counter[str] = collections.Counter()


def _open_count(file: str | None) -> int:
    if file is None:  # each connect to ':memory:' is a database of its own
        return 0
    with _WRITE_LOCKS_GUARD:
        return _OPEN_FILES[file]


def _count_open(file: str | None, step: int) -> None:
    if file is not None:
        with _WRITE_LOCKS_GUARD:
            _OPEN_FILES[file] += step
            if _OPEN_FILES[file] <= 0:
                del _OPEN_FILES[file]


def _write_lock(file: str | None) -> threading.RLock:
    """The write lock of a store file (its real path); None, ':memory:', gets one of its own."""
    if file is None:  # each connect to ':memory:' is a database of its own
        return threading.RLock()
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(file, threading.RLock())


def fetch_scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first column of a query's first row (None when it has none), on a cursor or
    connection of the caller's own: one in a transaction, or a small DuckDB beside the store."""
    row = con.execute(sql, params).fetchone()
    return row[0] if row else None


def _open_error(path: str, exc: Exception) -> str:
    text = str(exc)
    if "lock" in text.lower():
        return (
            f"The database {path} is in use by another eventlens process (is the app running?). "
            "Stop it, or choose another file with --db or EVENTLENS_DB."
        )
    return f"Cannot open the database {path}: {text.splitlines()[0]}"
