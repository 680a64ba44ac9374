"""A ClickHouse database of events, through ClickHouse's own client (clickhouse-connect).

The same client talks to a server over HTTP(S) and, for `chdb:///path`, to ClickHouse's engine
inside this process (chDB), which is how the tests run it. Queries are written with `?`
placeholders, as for DuckDB; `bind()` turns each into a typed server-side parameter
(`{p0:String}`), so a user's value never becomes SQL text here either.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventlens.clickhouse import schema
from eventlens.clickhouse.explore_sql import CLICKHOUSE, LEFT_OUT_DATASETS
from eventlens.errors import first_line
from eventlens.location import Location
from eventlens.store import Store, StoreError

if TYPE_CHECKING:
    import pandas as pd

    from eventlens.ingest.results import LoadResult

INSTALL_HINT = (
    "ClickHouse support is an optional part of eventlens: install it with"
    " `uv sync --extra clickhouse` (or `pip install 'eventlens[clickhouse]'`)."
)
# As DuckDB reads the shared SQL: a LEFT JOIN's missing side reads NULL (ClickHouse's default
# is 0 or ''), and a column's name wins over a SELECT alias of the same name in WHERE and
# aggregates (`... AS series` over a column `series`).
QUERY_SETTINGS = {"join_use_nulls": 1, "prefer_column_name_to_alias": 1}
SEND_ROWS = 500_000  # events sent to ClickHouse per insert
KEY = "bitOr(bitShiftLeft(toUInt128(key_hi), 64), toUInt128(key_lo))"  # the halves joined
# The catalogue row last: if a delete stops half-way, the dataset is still listed to delete again.
TABLES_BY_DATASET = (
    ("events", "dataset"),
    ("files", "dataset"),
    ("trace_summary", "dataset"),
    ("rejects", "dataset"),
    ("trace_metadata", "dataset"),
    ("pull_cursors", "dataset"),
    ("datasets", "name"),
)
# Store.dataset_records' columns, in its order; `FINAL` reads each dataset's latest row.
DATASETS_SQL = """
    SELECT d.name AS dataset, d.test AS test, coalesce(e.events, 0) AS events,
           d.rejects AS rejects, d.duplicates AS duplicates, coalesce(e.traces, 0) AS traces,
           coalesce(e.event_types, 0) AS event_types, e.first_event AS first_event,
           e.last_event AS last_event, d.files AS files, d.loaded_at AS loaded_at,
           d.content_hash AS content_hash
    FROM datasets AS d FINAL
    LEFT JOIN (
        SELECT dataset, count() AS events, uniqExact(trace_id) AS traces,
               uniqExact(event_type) AS event_types,
               min(timestamp) AS first_event, max(timestamp) AS last_event
        FROM events GROUP BY dataset
    ) AS e ON e.dataset = d.name
    ORDER BY loaded_at DESC, dataset
"""
EVENT_COLUMNS = (
    "event_key", "event_id", "trace_id", "event_type", "timestamp", "metrics", "event_details",
    "dataset", "source_file", "source_line", "batch_id",
)  # fmt: skip
REJECT_COLUMNS = (
    "dataset", "file", "file_hash", "line", "location", "reason", "raw", "trace_id", "rejected_at",
)  # fmt: skip
_PLACEHOLDER = re.compile(r"'(?:[^'\\]|\\.|'')*'|\?")


def _type_of(value: Any) -> str:
    """The ClickHouse type a Python value is bound as (lists are of text: dataset names, event
    types, trace ids, detail values)."""
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, int):
        return "Int64"
    if isinstance(value, float):
        return "Float64"
    if isinstance(value, dt.datetime):
        return "DateTime64(3, 'UTC')"
    if isinstance(value, list | tuple):
        return "Array(String)"
    if value is None:
        return "Nullable(String)"
    return "String"


def _value_of(value: Any) -> Any:
    if isinstance(value, dt.datetime):  # bound as UTC wall time, to the millisecond
        utc = value.astimezone(dt.UTC) if value.tzinfo else value
        return utc.replace(tzinfo=None, microsecond=utc.microsecond // 1000 * 1000)
    if isinstance(value, tuple):
        return list(value)
    return value


def bind(sql: str, params: Sequence[Any] | None) -> tuple[str, dict[str, Any]]:
    """The query with each `?` (outside string literals) as `{pN:Type}`, and the values."""
    values = list(params or [])
    bound: dict[str, Any] = {}

    def replace(match: re.Match[str]) -> str:
        if match.group(0) != "?":
            return match.group(0)  # a string literal, kept as it is
        n = len(bound)
        if n >= len(values):
            raise ValueError("more ? placeholders than parameters")
        bound[f"p{n}"] = _value_of(values[n])
        return f"{{p{n}:{_type_of(values[n])}}}"

    text = _PLACEHOLDER.sub(replace, sql)
    if len(bound) != len(values):
        raise ValueError(f"{len(values)} parameters for {len(bound)} placeholders")
    return text, bound


def utc_now() -> dt.datetime:
    """Now as the UTC wall time a DateTime64(..., 'UTC') column takes."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def utc_from_ms(ms: float) -> dt.datetime:
    """Epoch milliseconds (a float from JSON) as a UTC wall time, rounded to the millisecond half
    away from zero as DuckDB's round() does where the same events go into DuckDB (times are
    positive: floor(x + 0.5))."""
    return _EPOCH + dt.timedelta(milliseconds=math.floor(ms + 0.5))


_EPOCH = dt.datetime(1970, 1, 1)


def _utc_aware(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


class ClickHouseStore:
    """Events in a ClickHouse database, with the parts of Store's interface that the pages, pulls
    and the CLI's load, series, info and delete use: queries (rows, scalar, df),
    the catalogue (datasets, test marks, rejects, version), load() and delete_dataset()."""

    engine = "clickhouse"

    dialect = CLICKHOUSE  # the SQL of analytics' questions that differs from DuckDB's

    def __init__(self, location: Location) -> None:
        try:
            import clickhouse_connect
        except ImportError:
            raise StoreError(INSTALL_HINT) from None
        self.location = location
        self.path = location.display  # what messages name (never the password)
        self.read_only = False
        self.write_lock = threading.RLock()
        # Called with a dataset's name once it is deleted: a sandbox's own bookkeeping of the
        # dataset it copies here goes with it (stores.sandbox_stores).
        self.on_delete: list[Callable[[str], None]] = []
        self._client: Any  # the driver's client, then the same behind _Guarded
        if location.interface == "chdb":
            _check_chdb_folder_free(location.path)
        try:
            if location.interface == "chdb":
                dsn = f"chdb://{location.path}"
                if location.database != "default":  # a name checked by location.parse
                    clickhouse_connect.get_client(dsn=dsn).command(
                        f"CREATE DATABASE IF NOT EXISTS {location.database}"
                    )
                self._client = clickhouse_connect.get_client(dsn=dsn, database=location.database)
            else:
                self._client = clickhouse_connect.get_client(
                    host=location.host,
                    port=location.port,
                    username=location.user,
                    password=location.password,
                    database=location.database,
                    secure=location.interface == "https",
                    # No session: a client with one refuses concurrent queries, and the app's
                    # page sessions share this one from their own threads. Nothing here needs
                    # session state (load's work tables have names of their own).
                    autogenerate_session_id=False,
                )
            for statement in schema.single_node():
                self._client.command(statement)
            self._client = _Guarded(self._client, self.path, location.password)
        except Exception as exc:  # the driver's errors vary by interface; say which store
            reason = _scrubbed(exc, location.password)
            raise StoreError(f"Cannot open the ClickHouse store {self.path}: {reason}") from None

    # -- queries, with ? placeholders ------------------------------------------------------

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        text, bound = bind(sql, params)
        result = self._client.query(text, parameters=bound, settings=QUERY_SETTINGS)
        return [tuple(_utc_aware(v) for v in row) for row in result.result_rows]

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def df(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        import pandas as pd

        text, bound = bind(sql, params)
        frame = self._client.query_df(text, parameters=bound, settings=QUERY_SETTINGS)
        if frame.columns.empty:  # no rows come back without their columns: ask for them
            described = self._client.query(
                f"DESCRIBE ({text})", parameters=bound, settings=QUERY_SETTINGS
            )
            frame = pd.DataFrame(columns=[row[0] for row in described.result_rows])
        for column in frame.columns:  # DateTime64(3, 'UTC') comes back without its zone
            if pd.api.types.is_datetime64_dtype(frame[column]):
                frame[column] = frame[column].dt.tz_localize("UTC").dt.as_unit("us")  # as DuckDB
        return frame

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        text, bound = bind(sql, params)
        self._client.command(text, parameters=bound, settings=QUERY_SETTINGS)

    def arrow_batches(self, sql: str, params: Sequence[Any] | None = None) -> Iterator[Any]:
        """The rows as Arrow record batches, streamed (a whole result is never held at once)."""
        text, bound = bind(sql, params)
        with self._client.query_arrow_stream(
            text, parameters=bound, settings=QUERY_SETTINGS
        ) as stream:
            yield from stream

    def command(self, sql: str) -> None:
        """A statement without values (DDL of tables named by eventlens itself)."""
        self._client.command(sql)

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        """Rows sent as data in ClickHouse's native format, never as SQL text."""
        if rows:
            self._client.insert(table, rows, column_names=list(columns))

    # -- catalogue ---------------------------------------------------------------------------

    def event_count(self) -> int:
        return int(self.scalar("SELECT count() FROM events"))

    def is_empty(self) -> bool:
        return not self.rows("SELECT 1 FROM events LIMIT 1")

    def version(self) -> tuple[int, int, tuple[str, ...], None]:
        """A token that changes whenever events are added or removed or a dataset's test mark
        changes (Store.version's, for the app's caches)."""
        count, batch = self.rows("SELECT count(), coalesce(max(batch_id), 0) FROM events")[0]
        return int(count), int(batch), tuple(self.test_datasets()), None

    def test_datasets(self) -> list[str]:
        return [r[0] for r in self.rows("SELECT name FROM datasets FINAL WHERE test ORDER BY name")]

    def left_out_datasets(self) -> dict[str, int]:
        """The test datasets that "all datasets" leaves out now, with their events."""
        rows = self.rows(
            f"SELECT name, events FROM datasets FINAL WHERE name IN ({LEFT_OUT_DATASETS})"
            " ORDER BY name"
        )
        return {str(name): int(events) for name, events in rows}

    def mark_test_data(self, name: str, test: bool = True) -> None:
        """Mark a dataset as test data, or as analysis data: its row written anew."""
        with self.write_lock:
            if name not in self.dataset_names():
                raise StoreError(f"no dataset named {name!r}")
            self.execute(
                "INSERT INTO datasets SELECT name, files, content_hash, loaded_at, events,"
                " rejects, duplicates, ?, now64(6) FROM datasets FINAL WHERE name = ?",
                [test, name],
            )

    def datasets(self) -> pd.DataFrame:
        """Datasets with their files, counts and time range, newest first (Store.datasets)."""
        return self.df(DATASETS_SQL)

    def rejects(
        self,
        dataset: str | None = None,
        file: str | None = None,
        reason: str | None = None,
        limit: int = 10_000,
    ) -> pd.DataFrame:
        """Rejected rows with their reasons, filtered by dataset, file and words in the reason."""
        conds, params = ["TRUE"], []
        for value, cond in (
            (dataset, "dataset = ?"),
            (file, "file = ?"),
            (reason, "positionCaseInsensitiveUTF8(reason, ?) > 0"),
        ):
            if value is not None:
                conds.append(cond)
                params.append(value)
        return self.df(
            "SELECT dataset, file, location, reason, raw, line FROM rejects"
            f" WHERE {' AND '.join(conds)} ORDER BY rejected_at DESC, file, line LIMIT ?",
            [*params, limit],
        )

    def reject_files(self, dataset: str | None = None) -> list[str]:
        """The files that have rejected rows, optionally in one dataset."""
        where, params = ("TRUE", []) if dataset is None else ("dataset = ?", [dataset])
        rows = self.rows(f"SELECT DISTINCT file FROM rejects WHERE {where} ORDER BY file", params)
        return [r[0] for r in rows]

    def dataset_names(self) -> list[str]:
        return [r[0] for r in self.rows("SELECT name FROM datasets FINAL ORDER BY name")]

    def dataset_records(self) -> list[dict[str, Any]]:
        """One dict per dataset with the keys and order of Store.dataset_records."""
        result = self._client.query(DATASETS_SQL, settings=QUERY_SETTINGS)
        return [
            {name: _utc_aware(v) for name, v in zip(result.column_names, row, strict=True)}
            for row in result.result_rows
        ]

    def delete_dataset(self, name: str) -> int:
        """Delete a dataset's events, rejects, summary and catalogue rows; the events removed.
        ClickHouse's lightweight DELETE, waited for (no transaction: a failure half-way leaves
        the catalogue row, so the command can be run again)."""
        with self.write_lock:
            removed = int(self.scalar("SELECT count() FROM events WHERE dataset = ?", [name]))
            for table, column in TABLES_BY_DATASET:
                # Table and column names come from this constant list, never from the user.
                self.execute(f"DELETE FROM {table} WHERE {column} = ?", [name])
            for deleted in self.on_delete:
                deleted(name)
        return removed

    # -- writing -----------------------------------------------------------------------------

    def load(self, paths: Iterable[str], dataset: str | None = None, **options: Any) -> LoadResult:
        """Load files exactly as into DuckDB (the same checks, rejects with their lines), then
        send the valid events to ClickHouse in bulk as Arrow. An event already in ClickHouse (the
        same key: (trace_id, event_id), else its content) is counted as a duplicate, and a
        reject already kept is not kept twice, so loading a file again adds nothing."""
        from eventlens.ingest import load_files

        with self.write_lock, Store(":memory:") as staging:
            result = load_files(staging, list(paths), dataset, summarise=False, **options)
            if result.loaded:
                inserted = self._insert_events(staging)
                for file in result.files:
                    new = inserted.get(file.path, 0)
                    file.duplicates += file.loaded - new
                    file.loaded = new
            self._insert_rejects(staging)
            self._record_files(staging, result)
            self.write_dataset_row(result.dataset)
        return result

    def _insert_events(self, staging: Store) -> dict[str, int]:
        """Copy the staged events into `events` but those already there, SEND_ROWS at a time
        (a whole 10M-event load held at once took 11.7 GB); the new ones per file."""
        import pyarrow as pa

        # This load's rows are told apart by batch_id: microseconds since the epoch, so that two
        # processes loading at once (ClickHouse takes both) do not pick the same next number.
        batch = time.time_ns() // 1000
        suffix = uuid.uuid4().hex  # names of our own, never user text
        temp, seen = f"_load_{suffix}", f"_seen_{suffix}"
        # The keys stored before this load, as a Set read once: the staged events hold no
        # repeats of their own (ingest dropped them), so only these can be duplicates.
        self._client.command(f"CREATE TABLE {seen} ENGINE = Set AS SELECT event_key FROM events")
        self._client.command(f"CREATE TABLE {temp} ({schema.STAGED_COLUMNS}) ENGINE = Memory")
        try:
            with staging.cursor() as cur:
                # The 128-bit key as two 64-bit halves: Arrow has no such integer, and DuckDB's
                # UHUGEINT to text cast took 7 s per 100k events.
                reader = cur.sql(
                    "SELECT (event_key >> 64)::UBIGINT AS key_hi,"
                    " (event_key & 18446744073709551615::UHUGEINT)::UBIGINT AS key_lo, event_id,"
                    " trace_id, event_type, timestamp, metrics, event_details, dataset,"
                    " source_file, source_line FROM events"
                ).to_arrow_reader(SEND_ROWS)
                for part in reader:
                    self._client.insert_arrow(temp, pa.Table.from_batches([part]))
                    self.execute(
                        f"INSERT INTO events SELECT {KEY}, event_id, trace_id, event_type,"
                        " timestamp, metrics, event_details, dataset, source_file, source_line, ?"
                        f" FROM {temp} WHERE {KEY} NOT IN {seen}",
                        [batch],
                    )
                    self._client.command(f"TRUNCATE TABLE {temp}")
        finally:
            self._client.command(f"DROP TABLE IF EXISTS {temp}")
            self._client.command(f"DROP TABLE IF EXISTS {seen}")
        rows = self.rows(
            "SELECT source_file, count() FROM events WHERE batch_id = ? GROUP BY source_file",
            [batch],
        )
        return {str(file): int(n) for file, n in rows}

    def _insert_rejects(self, staging: Store) -> None:
        rejects = staging.rows(
            "SELECT dataset, file, file_hash, line, location, reason, raw, trace_id FROM rejects"
        )
        if not rejects:
            return
        kept = {
            (f, int(line) if line is not None else None)
            for f, line in self.rows(
                "SELECT file_hash, line FROM rejects WHERE dataset = ?", [rejects[0][0]]
            )
        }
        now = utc_now()
        fresh = [(*r, now) for r in rejects if (r[2], r[3]) not in kept]
        if fresh:
            self.insert("rejects", fresh, REJECT_COLUMNS)

    def add_events(self, dataset: str, rows: Sequence[dict[str, Any]]) -> None:
        """Store events made outside a load (the sandbox's accepted ones: key, event_id,
        trace_id, event_type, ts in epoch ms, metrics and details as dicts), but those whose key
        the dataset holds: a batch sent twice (a retry after a failure half-way) is stored once.
        """
        keys = [str(row["key"]) for row in rows]
        held = {
            key
            for (key,) in self.rows(
                "SELECT toString(event_key) FROM events WHERE dataset = ?"
                " AND has(?, toString(event_key))",
                [dataset, keys],
            )
        }
        batch = time.time_ns() // 1000
        fresh = [
            (
                int(row["key"]),
                row["event_id"],
                row["trace_id"],
                row["event_type"],
                utc_from_ms(row["ts"]),
                row["metrics"],
                row["details"],
                dataset,
                None,
                None,
                batch,
            )
            for row in rows
            if str(row["key"]) not in held
        ]
        with self.write_lock:
            self.insert("events", fresh, EVENT_COLUMNS)

    def _record_files(self, staging: Store, result: LoadResult) -> None:
        """One `files` row per file of this load (its sha256 from the staging store), with the
        counts as they ended in ClickHouse."""
        digests = {
            path: (sha, fmt)
            for path, sha, fmt in staging.rows("SELECT path, sha256, format FROM files")
        }
        now = utc_now()
        rows = [
            (result.dataset, f.path, *digests[f.path], now, f.loaded, f.rejected, f.duplicates)
            for f in result.files
            if f.path in digests
        ]
        self.insert(
            "files",
            rows,
            ["dataset", "path", "sha256", "format", "loaded_at", "loaded", "rejected",
             "duplicates"],
        )  # fmt: skip

    def write_dataset_row(
        self,
        dataset: str,
        content_hash: str | None = None,
        test: bool | None = None,
        files: list[str] | None = None,
    ) -> None:
        """Write the dataset's catalogue row anew (ReplacingMergeTree keeps the latest), as
        DuckDB's ingest does: from its loaded files (their paths, duplicates, and sha256 over
        their sha256 as the content hash) unless `files` or `content_hash` are given (pulls,
        the sandbox), its counts, and its test mark (kept unless given)."""
        paths, hashes, duplicates = self.rows(
            "SELECT arraySort(groupUniqArray(path)), groupUniqArray(sha256), sum(duplicates)"
            " FROM files WHERE dataset = ?",
            [dataset],
        )[0]
        files = (
            files
            or list(paths)
            or [
                r[0]
                for r in self.rows(
                    "SELECT DISTINCT source_file FROM events WHERE dataset = ? AND source_file"
                    " IS NOT NULL ORDER BY 1",
                    [dataset],
                )
            ]
        )
        if content_hash is None:
            digest = "\n".join(sorted(set(hashes)))
            content_hash = hashlib.sha256(digest.encode()).hexdigest() if hashes else ""
        events = int(self.scalar("SELECT count() FROM events WHERE dataset = ?", [dataset]))
        if not events and not files:
            return
        rejects = int(self.scalar("SELECT count() FROM rejects WHERE dataset = ?", [dataset]))
        marked = self.scalar("SELECT any(test) FROM datasets FINAL WHERE name = ?", [dataset])
        test = bool(marked) if test is None else test
        now = utc_now()
        self.insert(
            "datasets",
            [(dataset, files, content_hash, now, events, rejects, int(duplicates or 0),
              bool(test), now)],
            ["name", "files", "content_hash", "loaded_at", "events", "rejects", "duplicates",
             "test", "revision"],
        )  # fmt: skip

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ClickHouseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Guarded:
    """The driver's client with its errors as StoreError sentences that name the store: a query
    or insert that fails later (a server gone, a table made by another version) then reaches
    a person as one sentence, like every other eventlens error, not as a traceback."""

    def __init__(self, client: Any, store: str, password: str) -> None:
        self._client, self._store, self._password = client, store, password

    def __getattr__(self, name: str) -> Any:
        from clickhouse_connect.driver.exceptions import ClickHouseError

        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except ClickHouseError as exc:
                raise StoreError(
                    f"The ClickHouse store {self._store} failed: {_scrubbed(exc, self._password)}"
                ) from None

        return call


# The chDB folders this process has opened: chDB takes a folder in one process at a time (it
# locks the folder's `status` file), and any number of stores of this process within it.
_CHDB_FOLDERS: set[str] = set()


def _check_chdb_folder_free(path: str) -> None:
    """Say in one sentence that another process holds a chDB folder (the app, most often),
    rather than let chDB fail with 'Error initializing EmbeddedServer'."""
    folder = os.path.realpath(path)
    status = Path(folder) / "status"
    if folder not in _CHDB_FOLDERS and status.is_file():
        with open(status, "rb") as held:
            try:
                fcntl.flock(held, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                raise StoreError(
                    f"The chDB folder {path} is in use by another eventlens process (is the app"
                    " running?): chDB opens a folder in one process at a time. Stop it, or keep"
                    " the events on a ClickHouse server (clickhouse://host:8123/db), which many"
                    " processes share."
                ) from None
            fcntl.flock(held, fcntl.LOCK_UN)
    _CHDB_FOLDERS.add(folder)


def _scrubbed(exc: Exception, password: str) -> str:
    """The error's first line, the password masked (a driver may echo what it was given)."""
    reason = first_line(exc)
    return reason.replace(password, "***") if password else reason
