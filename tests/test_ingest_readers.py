"""The registry of format readers: one per layout detect() tells, and what each says it staged."""

from __future__ import annotations

import pytest

from eventlens.ingest import LoadOptions, detect
from eventlens.ingest.detect import KINDS
from eventlens.ingest.readers import READERS, reader
from eventlens.ingest.sql import LineNumbers

# Each sample file: its layout, what its record numbers count and how many records it holds.
STAGED = {
    "bad_lines.jsonl": ("jsonl", "line", 29),
    "events.json": ("json-array", "element", 120),
    "events.ndjson": ("jsonl", "line", 120),
    "events_map.parquet": ("parquet", "row", 120),
    "events_struct.parquet": ("parquet", "row", 120),
    "flat.csv": ("csv", "line", 120),
    "json_columns.csv": ("csv", "line", 120),
    "legacy_keyvalue.jsonl": ("jsonl", "line", 120),
    "search_response.json": ("json-document", "document", 1),
    "stored_events.jsonl": ("jsonl", "line", 120),
    "trace_document.json": ("json-document", "document", 1),
}


def test_every_layout_detect_tells_has_exactly_one_reader():
    assert sorted(READERS) == sorted(KINDS)
    assert all(r.kind == kind for kind, r in READERS.items())


def test_the_sample_files_cover_every_reader(formats_dir):
    assert sorted(p.name for p in formats_dir.iterdir()) == sorted(STAGED)
    assert {kind for kind, _, _ in STAGED.values()} == set(READERS)


def test_a_second_reader_for_a_layout_is_refused():
    registered = READERS["jsonl"]
    with pytest.raises(ValueError, match="a reader for jsonl is registered already"):
        reader("jsonl")(registered.stage)
    assert READERS["jsonl"] is registered


@pytest.mark.parametrize("name", sorted(STAGED))
def test_a_reader_says_what_it_staged(formats_dir, store, name):
    path = formats_dir / name
    detected = detect(path)
    kind, unit, records = STAGED[name]
    assert detected.kind == kind
    found = READERS[kind]
    with store.cursor() as cur:
        staged = found.stage(cur, str(path), detected, LoadOptions())
        temporary = "SELECT table_name FROM duckdb_tables() WHERE temporary"
        tables = {t for (t,) in cur.execute(temporary).fetchall()}
        rows = cur.execute("SELECT count(*) FROM _src").fetchone()[0] if "_src" in tables else 0
    # A Parquet file with typed columns stages nothing: its rows are read by the typed path.
    typed = kind == "parquet"
    assert staged.typed.rows == records if typed else staged.typed is None
    assert (staged.unit, staged.records, rows) == (unit, records, 0 if typed else records)
    assert staged.lines == (LineNumbers("rowid + 2") if kind == "csv" else LineNumbers())
    assert staged.rejects == ()
    assert tables <= {"_src", *found.temp_tables}  # what the load drops afterwards


@pytest.mark.parametrize("name", ["events_map.parquet", "events_struct.parquet"])
def test_the_parquet_reader_stages_json_text_with_the_fast_path_off(formats_dir, store, name):
    """Off, every row takes the full path: the reader stages them all as JSON text."""
    path = formats_dir / name
    with store.cursor() as cur:
        staged = READERS["parquet"].stage(
            cur, str(path), detect(path), LoadOptions(fast_path=False)
        )
        rows = cur.execute("SELECT count(*) FROM _src").fetchone()[0]
    assert (staged.typed, staged.records, rows) == (None, 120, 120)


def test_the_csv_reader_reports_the_lines_it_could_not_split(write_lines, store):
    path = write_lines(["trace_id,event_type,metrics.n", "t,a,1", "t,b", "t,c,3"], "e.csv")
    with store.cursor() as cur:
        staged = READERS["csv"].stage(cur, str(path), detect(path), LoadOptions())
        lines = cur.execute(
            f"SELECT {staged.lines.sql} FROM _src ORDER BY rowid", list(staged.lines.params)
        ).fetchall()
    assert staged.records == 2
    assert staged.rejects == ((3, "CSV: the line has fewer columns than the header", "t,b"),)
    assert lines == [(2,), (4,)]  # the good rows keep their own line numbers
