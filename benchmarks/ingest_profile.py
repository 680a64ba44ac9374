"""Where a Parquet load's time goes: bench_ingest --parquet FILE --profile.

1. Loads the file once with eventlens.ingest.load_files into a fresh store in this process, every
   statement the load runs timed (each cursor the Store hands out is wrapped), and the close
   (DuckDB's checkpoint) too.
2. Runs the typed insert once more into another fresh store under DuckDB's profiler and prints
   its operators with their time (CPU summed over threads) and rows.
3. Times the typed insert's pieces on their own over the file: reading it with the typed fields,
   the typed check, and the event key (md5 of the JSON texts for rows without event_id).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.data import remove_db
from benchmarks.harness import short_sql
from eventlens.ingest import load_files
from eventlens.ingest import typed as typed_sql
from eventlens.ingest.sql import Source
from eventlens.ingest.typed import TypedRows, file_columns, typed_rows
from eventlens.store import Store

SHOWN_MS = 5.0  # statements faster than this are summed, not listed


class _TimedCursor:
    """A Store cursor that records how long each execute() took (a DuckDB cursor cannot be
    patched: it is a C extension type)."""

    def __init__(self, cur: Any, log: list[tuple[float, str]]) -> None:
        self._cur, self._log = cur, log

    def execute(self, sql: str, params: Any = None) -> Any:
        started = time.perf_counter()
        out = self._cur.execute(sql, params)
        self._log.append((time.perf_counter() - started, sql))
        return out

    def __enter__(self) -> _TimedCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cur.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


def _timed_load(parquet: Path, db: Path) -> None:
    """Step 1: the load, statement by statement."""
    remove_db(db)
    log: list[tuple[float, str]] = []
    started = time.perf_counter()
    store = Store(db)
    opened = time.perf_counter()
    plain = Store.cursor
    Store.cursor = lambda self: _TimedCursor(plain(self), log)  # type: ignore[method-assign,assignment,return-value]
    try:
        result = load_files(store, [parquet], "bench")
    finally:
        Store.cursor = plain  # type: ignore[method-assign]
    loaded = time.perf_counter()
    store.close()
    closed = time.perf_counter()
    remove_db(db)
    print(
        f"load_files in this process: {loaded - opened:.2f} s ({result.loaded:,} loaded, "
        f"{result.rejected:,} rejected, {result.duplicates:,} duplicates); opening the store "
        f"{opened - started:.2f} s, closing it (checkpoint) {closed - loaded:.2f} s"
    )
    shown = [(s, sql) for s, sql in log if s * 1000 >= SHOWN_MS]
    for seconds, sql in shown:
        print(f"  {seconds:7.3f} s  {short_sql(sql)}")
    rest = sum(s for s, _ in log) - sum(s for s, _ in shown)
    print(f"  {rest:7.3f} s  the other {len(log) - len(shown)} statements")
    outside = (loaded - opened) - sum(s for s, _ in log)
    print(f"  {outside:7.3f} s  outside statements (Python, the file's sha256 wait)")


def _typed(store: Store, parquet: Path) -> TypedRows:
    with store.cursor() as cur:
        query = cur.execute("SELECT * FROM read_parquet(?) LIMIT 0", [str(parquet)])
        columns = file_columns(query.description or [])
        rows = cur.execute("SELECT count(*) FROM read_parquet(?)", [str(parquet)]).fetchone()
        typed = typed_rows(str(parquet), int(rows[0]) if rows else 0, columns)
    if typed is None:
        raise SystemExit(f"{parquet}: its column types do not allow the typed path")
    return typed


def _operators(parquet: Path, db: Path) -> None:
    """Step 2: the typed insert under DuckDB's profiler."""
    remove_db(db)
    with Store(db) as store, tempfile.NamedTemporaryFile(suffix=".json") as out:
        typed = _typed(store, parquet)
        query = typed_sql.insert_typed(typed, 0, typed.rows, Source("bench", "f", "h"), 1)
        with store.cursor() as cur:
            cur.execute("PRAGMA enable_profiling = 'json'")
            cur.execute("SET profiling_output = ?", [out.name])
            started = time.perf_counter()
            cur.execute(*query)
            wall = time.perf_counter() - started
            cur.execute("PRAGMA disable_profiling")
        profile = json.loads(Path(out.name).read_text())
    remove_db(db)
    cpu = profile.get("query", {}).get("cpu_time", 0.0)
    print(f"\nthe typed insert alone: {wall:.2f} s wall, {cpu:.2f} s CPU; its operators:")

    def walk(node: dict[str, Any], depth: int) -> None:
        rows = node.get("intermediate_rows")
        print(
            f"  {node.get('timing', 0):7.3f} s  {'  ' * depth}{node.get('name')}"
            + (f" ({rows:,} rows)" if rows else "")
        )
        for child in node.get("children", []):
            walk(child, depth + 1)

    for node in profile.get("operator", []):
        walk(node, 0)


def _pieces(parquet: Path) -> None:
    """Step 3: the typed insert's pieces, each over the whole file."""
    with Store(":memory:") as store:
        typed = _typed(store, parquet)
        chunk = typed_sql.chunk_sql(typed, 0, typed.rows)
        params = [*typed.params, typed.path]
        key = typed_sql.event_key_sql(typed)
        pieces = {
            "read the file with the typed fields": (
                f"SELECT max({typed_sql.PREFIX}trace_id), max({typed_sql.PREFIX}event_type),"
                f" max({typed_sql.PREFIX}timestamp), max(cardinality({typed_sql.PREFIX}metrics)),"
                f" max(cardinality({typed_sql.PREFIX}details)) FROM ({chunk})"
            ),
            "... and the typed check": (
                f"SELECT count(*) FROM ({chunk}) WHERE coalesce({typed_sql.valid_sql()}, false)"
            ),
            "... and the event key": f"SELECT max({key}) FROM ({chunk})",
        }
        print("\nthe typed insert's pieces over the file (each a query of its own):")
        with store.cursor() as cur:
            for label, sql in pieces.items():
                started = time.perf_counter()
                cur.execute(sql, params).fetchall()
                print(f"  {time.perf_counter() - started:7.3f} s  {label}")


def print_profile(parquet: Path, db: Path) -> None:
    """Where the load of `parquet` goes, in three views (see the module's docstring)."""
    print(f"\nprofile: eventlens load of {parquet}")
    _timed_load(parquet, db)
    _operators(parquet, db)
    _pieces(parquet)
