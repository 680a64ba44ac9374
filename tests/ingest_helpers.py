"""What the ingest tests share: loading files both ways, Parquet files written by pyarrow, and
small in-memory stores built from event bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from replay_helpers import write_jsonl

from eventlens.ingest import load_files
from eventlens.store import Store


def store_holding(folder: Path, datasets: dict[str, list[dict[str, Any]]]) -> Store:
    """An in-memory store holding each dataset's bodies, loaded from a JSONL file in `folder`.
    For a module's read-only fixture (scope="module"): one load instead of one per test."""
    store = Store(":memory:")
    for name, bodies in datasets.items():
        result = load_files(store, [write_jsonl(folder / f"{name}.jsonl", bodies)], name)
        assert (result.loaded, result.rejected) == (len(bodies), 0)
    return store


def write_parquet(path: Path, columns: dict[str, tuple[Any, list[Any]]]) -> Path:
    """A Parquet file of the given columns, each (pyarrow type, values), written by pyarrow.

    A MAP column's values are dicts (None entries kept: they mean absent), a STRUCT's dicts too.
    """
    arrays = {}
    for name, (kind, values) in columns.items():
        if pa.types.is_map(kind):
            values = [None if v is None else list(v.items()) for v in values]
        arrays[name] = pa.array(values, type=kind)
    pq.write_table(pa.table(arrays), path)
    return path


def load_both_ways(paths: list[Path], chunk: int = 1_000_000) -> dict[bool, tuple]:
    """Load `paths` with the fast path on and off (for typed Parquet, the typed path); what
    each way stored and reported: the summaries, the events and the rejects, in order."""
    out = {}
    for fast in (True, False):
        with Store(":memory:") as s:
            files = load_files(s, paths, "d", chunk_records=chunk, fast_path=fast).files
            for f in files:
                f.seconds = 0.0
            events = s.rows(
                "SELECT event_key, event_id, trace_id, event_type, timestamp, metrics,"
                " event_details, dataset, source_file, source_line FROM events"
                " ORDER BY source_file, source_line, event_key"
            )
            rejects = s.rows(
                "SELECT file, line, location, reason, raw FROM rejects"
                " ORDER BY file, line, location"
            )
        out[fast] = ([f.as_dict() for f in files], events, rejects)
    return out
