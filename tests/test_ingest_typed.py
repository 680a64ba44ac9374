"""Parquet's typed fast path against the JSON path: the same events, keys, rows and rejects.

Each fixture mixes clean rows with every kind of bad row a typed file can hold (nulls,
non-finite metrics, predefined metrics out of range or absent, timestamps out of range) and
repeats (with and without event_id), and is loaded with the fast path on (typed) and off (every
row as JSON text through the full path, as before the typed path existed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from ingest_helpers import load_both_ways, write_parquet

from eventlens import model
from eventlens.ingest import load_files, sql
from eventlens.ingest import typed as typed_sql
from eventlens.ingest.typed import FileColumn, file_columns, typed_rows
from eventlens.store import Store

MAP_NUM = pa.map_(pa.string(), pa.float64())
MAP_STR = pa.map_(pa.string(), pa.string())
NAN, INF = math.nan, math.inf
TS = 1_717_200_001_234
ODD = "it's q\"uo\\te\n\x01 é 😀 \u2028"  # quotes, escapes, control characters, non-ASCII

# (trace_id, event_type, timestamp, event_id, metrics, event_details): clean, bad and repeated.
ROWS: list[tuple[Any, ...]] = [
    ("t1", "llm_call", TS, "e1", {"latency_ms": 402.4, "tokens": 891.0}, {"model": "gpt"}),
    ("t1", "llm_call", TS + 1, None, {"latency_ms": 1.5}, {"model": "gpt", "n": None}),
    ("t1", "llm_call", TS + 1, None, {"latency_ms": 1.5}, {"model": "gpt", "n": None}),  # repeat
    ("t1", "llm_call", TS + 9, "e1", {"latency_ms": 9.0}, None),  # repeats e1: the first stays
    (None, "llm_call", TS, None, {"a": 1.0}, None),  # no trace_id
    ("", "llm_call", TS, None, {"a": 1.0}, None),  # the empty trace_id is a string
    ("t2", None, TS, "e2", {"a": 1.0}, None),  # no event_type
    ("t2", "x", TS, "e3", None, None),  # no metrics
    ("t2", "x", TS, "e4", {}, {}),  # empty metrics and details
    ("t2", "x", TS, "e5", {"a": NAN}, None),
    ("t2", "x", TS, "e6", {"a": INF, "b": -INF}, None),
    ("t2", "x", TS, "e7", {"a": 1.0, "b": None}, {"k": None}),  # null entries are absent
    ("t3", "thumbs_up_down", TS, "e8", {"vote": 1.0}, {"feedback": "good"}),
    ("t3", "thumbs_up_down", TS, "e9", {"vote": 2.0}, None),
    ("t3", "thumbs_up_down", TS, "e10", {"vote": None}, None),
    ("t3", "thumbs_up_down", TS, None, {"other": 1.0}, None),
    ("t3", "selected_text", TS, "e11", {"text_length": 0.0}, None),
    ("t3", "waited_to_finish", TS, "e12", {"finished": 0.5}, None),
    ("t4", "x", None, None, {"a": -0.0}, None),  # no timestamp
    ("t4", "x", model.MIN_TIMESTAMP_MS, "e13", {"a": 1e300}, None),
    ("t4", "x", model.MAX_TIMESTAMP_MS, "e14", {"a": 1e-7}, None),
    ("t4", "x", model.MIN_TIMESTAMP_MS - 1, "e15", {"a": 1.0}, None),
    ("t4", "x", model.MAX_TIMESTAMP_MS + 1, "e16", {"a": 1.0}, None),
    ("t4", "x", -1, None, {"a": 0.1 + 0.2}, None),
    (ODD, ODD, TS, None, {ODD: 2.0**64}, {ODD: ODD}),  # content key over escaped JSON text
    (ODD, "x", TS, ODD, {"a": 1.0}, {"b": ""}),
    (None, None, None, None, None, None),  # nothing at all
    ("t1", "llm_call", TS + 1, None, {"latency_ms": 1.5}, {"model": "gpt"}),  # repeats row 2
]


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(col) for col in zip(*rows, strict=True)]


def map_file(path: Path, rows: list[tuple[Any, ...]] = ROWS) -> Path:
    trace, etype, ts, eid, metrics, details = _columns(rows)
    return write_parquet(
        path,
        {
            "trace_id": (pa.string(), trace),
            "event_type": (pa.string(), etype),
            "timestamp": (pa.int64(), ts),
            "event_id": (pa.string(), eid),
            "metrics": (MAP_NUM, metrics),
            "event_details": (MAP_STR, details),
        },
    )


def struct_file(path: Path) -> Path:
    """STRUCT columns under the aliases (type, details), a TIMESTAMP column, no event_id."""
    trace, etype, ts, _eid, metrics, details = _columns(ROWS)
    metric_keys = sorted({k for m in metrics if m for k in m})
    detail_keys = sorted({k for d in details if d for k in d})
    return write_parquet(
        path,
        {
            "trace_id": (pa.string(), trace),
            "type": (pa.string(), etype),
            "timestamp": (pa.timestamp("ms", tz="UTC"), ts),
            "metrics": (
                pa.struct([(k, pa.float64()) for k in metric_keys]),
                [None if m is None else {k: m.get(k) for k in metric_keys} for m in metrics],
            ),
            "details": (
                pa.struct([(k, pa.string()) for k in detail_keys]),
                [None if d is None else {k: d.get(k) for k in detail_keys} for d in details],
            ),
        },
    )


def other_types_file(path: Path) -> Path:
    """Integer and float metrics, a DOUBLE timestamp with fractions, no details column."""
    return write_parquet(
        path,
        {
            "Trace_Id": (pa.string(), ["t", "t", "t", "t", "t", None]),
            "event_type": (pa.string(), ["a", "b", "thumbs_up_down", "c", "c", "d"]),
            "started_at": (pa.float64(), [TS + 0.5, TS - 0.5, 1.4, NAN, INF, 0.0]),
            "event_id": (pa.string(), [None, "i1", None, None, None, None]),
            "metrics": (
                pa.map_(pa.string(), pa.int64()),
                [{"n": 2**62}, {"n": -1}, {"vote": -1}, {"n": None}, {}, {"n": 1}],
            ),
            "float_metrics": (pa.map_(pa.string(), pa.float32()), [{"f": 0.1}] * 6),
        },
    )


def float_metrics_file(path: Path) -> Path:
    return write_parquet(
        path,
        {
            "trace_id": (pa.string(), ["t", "t", "t"]),
            "event_type": (pa.string(), ["a", "a", "a"]),
            "metrics": (pa.map_(pa.string(), pa.float32()), [{"f": 0.1}, {"f": NAN}, {"f": 3.0}]),
        },
    )


FIXTURES = {
    "map": map_file,
    "struct": struct_file,
    "other_types": other_types_file,
    "float_metrics": float_metrics_file,
}


@pytest.mark.parametrize("chunk", [1_000_000, 4])
@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_typed_path_stores_what_the_json_path_stores(tmp_path, name, chunk):
    """Events (keys, rows, maps, timestamps), rejects and summaries, loaded twice."""
    path = FIXTURES[name](tmp_path / f"{name}.parquet")
    both = load_both_ways([path, path], chunk)
    assert both[True] == both[False]
    first, again = both[True][0]
    assert first["loaded"] > 0 and again["loaded"] == 0
    assert again["duplicates"] == first["loaded"] + first["duplicates"]


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_the_fixtures_take_the_typed_path(tmp_path, monkeypatch, name):
    """No row goes through the JSON fast path; the clean ones are inserted in one batch."""
    path = FIXTURES[name](tmp_path / f"{name}.parquet")

    def json_fast_path(*args: Any) -> None:
        raise AssertionError("a Parquet row took the JSON fast path")

    monkeypatch.setattr(sql, "insert_clean", json_fast_path)
    with Store(":memory:") as s:
        result = load_files(s, [path]).files[0]
        assert result.error is None and result.loaded > 0
        first_batch = s.scalar("SELECT min(batch_id) FROM events")
        typed = s.scalar("SELECT count(*) FROM events WHERE batch_id = ?", [first_batch])
    assert typed == result.loaded  # the full path inserted none: every valid row was typed


def test_rejects_keep_their_row_numbers_and_reasons(tmp_path):
    path = map_file(tmp_path / "e.parquet")
    with Store(":memory:") as s:
        result = load_files(s, [path]).files[0]
        rejects = dict(s.rows("SELECT line, reason FROM rejects"))
        locations = {loc for (loc,) in s.rows("SELECT location FROM rejects")}
    assert (result.loaded, result.rejected, result.duplicates) == (13, 12, 3)
    assert sorted(rejects) == [5, 7, 8, 10, 11, 14, 15, 16, 17, 22, 23, 27]
    assert rejects[5] == "trace_id: " + model.MSG_REQUIRED
    assert rejects[7] == "event_type: " + model.MSG_REQUIRED
    assert rejects[8] == "metrics: " + model.MSG_METRICS_REQUIRED
    assert rejects[14].startswith("metrics.vote: must be a number from -1 to 1")
    assert rejects[10] == "metrics.a: " + model.MSG_METRIC_NUMBER.format(got="infinity")
    assert rejects[16] == rejects[15]  # a null entry is absent
    assert rejects[22] == rejects[23] == "timestamp: " + model.MSG_TIMESTAMP_RANGE
    assert locations == {f"row {line}" for line in rejects}


def test_reloading_a_typed_file_adds_nothing(tmp_path):
    path = map_file(tmp_path / "e.parquet")
    with Store(":memory:") as s:
        first = load_files(s, [path]).files[0]
        keys = s.rows("SELECT event_key, source_line FROM events ORDER BY source_line")
        again = load_files(s, [path]).files[0]
        assert s.rows("SELECT event_key, source_line FROM events ORDER BY source_line") == keys
        assert s.scalar("SELECT count(*) FROM rejects") == first.rejected  # replaced, not doubled
    assert (again.loaded, again.rejected) == (0, first.rejected)
    assert again.duplicates == first.loaded + first.duplicates
    assert again.event_types == first.event_types


@pytest.mark.parametrize("event_id", [None, "e1"])
def test_the_same_event_in_jsonl_has_the_same_key(tmp_path, write_lines, event_id):
    """A JSONL line holding the event as the Parquet row's JSON text is a duplicate of it."""
    row = ("t1", "llm_call", TS, event_id, {"latency_ms": 402.4, "k": 2.5}, {"model": ODD})
    path = map_file(tmp_path / "e.parquet", [row])
    body = {
        "trace_id": "t1",
        "event_type": "llm_call",
        **({"event_id": event_id} if event_id else {}),
        "timestamp": TS,
        "metrics": {"latency_ms": 402.4, "k": 2.5},
        "event_details": {"model": ODD},
    }
    jsonl = write_lines([json.dumps(body, ensure_ascii=False, separators=(",", ":"))])
    with Store(":memory:") as s:
        assert load_files(s, [path]).files[0].loaded == 1
        again = load_files(s, [jsonl]).files[0]
    assert (again.loaded, again.duplicates) == (0, 1)


@pytest.mark.parametrize(
    ("columns", "why"),
    [
        ({"trace_id": pa.int64()}, "trace_id not text"),
        ({"metrics": pa.map_(pa.string(), pa.string())}, "metrics of text"),
        ({"metrics": pa.map_(pa.string(), pa.decimal128(10, 2))}, "decimal metrics"),
        ({"metrics": pa.string()}, "metrics as JSON text"),
        ({"event_details": pa.map_(pa.string(), pa.int64())}, "details of numbers"),
        ({"timestamp": pa.string()}, "timestamp as text"),
        ({"metrics": None}, "no metrics column"),
    ],
)
def test_a_file_whose_types_do_not_fit_takes_the_json_path(tmp_path, scratch_store, columns, why):
    base: dict[str, Any] = {
        "trace_id": pa.string(),
        "event_type": pa.string(),
        "timestamp": pa.int64(),
        "metrics": MAP_NUM,
        "event_details": MAP_STR,
    }
    base.update(columns)
    values = {
        "trace_id": {pa.int64(): 7},
        "metrics": {pa.string(): '{"a": 1}'},
        "timestamp": {pa.string(): "1717200001234"},
    }
    spec = {
        name: (kind, [values.get(name, {}).get(kind, _sample(kind))] * 3)
        for name, kind in base.items()
        if kind is not None
    }
    path = write_parquet(tmp_path / "e.parquet", spec)
    described = _described(scratch_store, path)
    assert typed_rows(str(path), 3, described) is None, why
    both = load_both_ways([path])
    assert both[True] == both[False]


def _sample(kind: Any) -> Any:
    if pa.types.is_map(kind):
        return {"a": "x" if pa.types.is_string(kind.item_type) else 1}
    return {pa.string(): "t", pa.int64(): TS}[kind]


@pytest.fixture(scope="module")
def scratch_store() -> Iterator[Store]:
    """A store only used to read files' column types (it holds nothing)."""
    with Store(":memory:") as s:
        yield s


def _described(store: Store, path: Path) -> list[FileColumn]:
    with store.cursor() as cur:
        found = cur.execute("SELECT * FROM read_parquet(?) LIMIT 0", [str(path)]).description
    return file_columns(found)


def test_typed_rows_reads_the_roles_json_reads(tmp_path):
    """Aliases and case as columns_json_sql has them; flat details beside typed metrics, or a
    column named like the typed SQL's own, leave the file to the JSON path."""
    cols = [
        FileColumn("Trace_ID", "VARCHAR"),
        FileColumn("type", "VARCHAR"),
        FileColumn("metrics", "MAP(VARCHAR, BIGINT)", (("key", "VARCHAR"), ("value", "BIGINT"))),
    ]
    assert typed_rows("f", 1, cols) is not None
    assert typed_rows("f", 1, [*cols, FileColumn("details.k", "VARCHAR")]) is None
    assert typed_rows("f", 1, [*cols, FileColumn("file_row_number", "BIGINT")]) is None
    assert typed_rows("f", 1, [*cols, FileColumn("__el_x", "BIGINT")]) is None
    assert typed_rows("f", 1, cols[1:]) is None  # no trace_id column


def test_struct_field_names_are_quoted_and_bound(tmp_path):
    name = 'it\'s "odd"; --'
    cols = [
        FileColumn("trace_id", "VARCHAR"),
        FileColumn("event_type", "VARCHAR"),
        FileColumn("metrics", f"STRUCT({name!r} DOUBLE)", ((name, "DOUBLE"),)),
    ]
    typed = typed_rows("f'; DROP TABLE events; --", 1, cols)
    assert typed is not None and typed.params == (name,)
    query = typed_sql.insert_typed(typed, 0, 1, sql.Source("d", "f", "h"), 1)
    assert "DROP TABLE" not in query.text
    assert query.params[-1] == typed.path


def _rows_file(path: Path, rows: list[tuple[Any, ...]]) -> Path:
    return (
        map_file(path, rows)
        if rows
        else write_parquet(
            path,
            {
                "trace_id": (pa.string(), []),
                "event_type": (pa.string(), []),
                "timestamp": (pa.int64(), []),
                "event_id": (pa.string(), []),
                "metrics": (MAP_NUM, []),
                "event_details": (MAP_STR, []),
            },
        )
    )


NOTHING = (None, None, None, None, None, None)
GOOD_ROW = ("t", "x", TS, None, {"a": 1.0}, None)


@pytest.mark.parametrize(
    ("rows", "chunk"),
    [
        ([], 1_000_000),  # no rows at all
        ([NOTHING] * 3, 1_000_000),  # no row holds an event: not an export
        ([NOTHING, NOTHING, GOOD_ROW, GOOD_ROW], 2),  # the first chunk holds no event
        ([GOOD_ROW, NOTHING, NOTHING, NOTHING], 2),  # a later chunk holds no event
        ([(None, "x", TS, None, {"a": 1.0}, None)] * 2 + [GOOD_ROW], 2),  # chunk 1 all rejects
    ],
)
def test_files_with_no_events_or_chunks_without_any_match_the_json_path(tmp_path, rows, chunk):
    """Whether a file is an export, and what a chunk without a clean row reports, as before."""
    path = _rows_file(tmp_path / "e.parquet", rows)
    both = load_both_ways([path, path], chunk)
    assert both[True] == both[False]
