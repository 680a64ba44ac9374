"""Format detection and loading: every export shape, bad rows, dedupe, types, and no tracebacks."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from ingest_helpers import load_both_ways

from eventlens import ingest, model
from eventlens.ingest import Detected, LoadResult, NotAnExport, detect, load_files
from eventlens.ingest.readers import READERS
from eventlens.store import Store

# Every sample file holding the same 120 events, with the layout detect() should report.
FORMAT_KINDS = {
    "events.json": "json-array",
    "events.ndjson": "jsonl",
    "stored_events.jsonl": "jsonl",
    "legacy_keyvalue.jsonl": "jsonl",
    "search_response.json": "json-document",
    "flat.csv": "csv",
    "json_columns.csv": "csv",
    "events_map.parquet": "parquet",
    "events_struct.parquet": "parquet",
}
ALL_FORMAT_KINDS = {
    **FORMAT_KINDS,
    "trace_document.json": "json-document",
    "bad_lines.jsonl": "jsonl",
}

GOOD = {"trace_id": "t1", "event_type": "click", "metrics": {"n": 1}}


def good(i: int, **extra) -> dict:
    return {**GOOD, "event_id": f"e{i}", **extra}


def gzip_copy(src: Path, dest: Path) -> Path:
    dest.write_bytes(gzip.compress(src.read_bytes(), mtime=0))
    return dest


# -- detect ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind"), sorted(ALL_FORMAT_KINDS.items()))
def test_detect_sample_formats(formats_dir, name, kind):
    assert detect(formats_dir / name) == Detected(kind, gzip=False)


@pytest.mark.parametrize(
    ("name", "kind"), sorted((n, k) for n, k in ALL_FORMAT_KINDS.items() if k != "parquet")
)
@pytest.mark.parametrize("gz_suffix", [True, False], ids=["gz-name", "plain-name"])
def test_detect_gzip_by_content(formats_dir, tmp_path, name, kind, gz_suffix):
    """Compression is told from the magic bytes, with or without a .gz name."""
    path = gzip_copy(formats_dir / name, tmp_path / (name + (".gz" if gz_suffix else "")))
    detected = detect(path)
    assert detected == Detected(kind, gzip=True)
    assert detected.label == f"{kind}+gzip"


def test_detect_gzipped_parquet_is_refused(formats_dir, tmp_path):
    path = gzip_copy(formats_dir / "events_map.parquet", tmp_path / "events.parquet.gz")
    with pytest.raises(NotAnExport, match="Parquet"):
        detect(path)


def test_detect_empty_file(write_text):
    with pytest.raises(NotAnExport, match="empty"):
        detect(write_text("", "empty.jsonl"))


def test_detect_empty_gzip(tmp_path):
    path = tmp_path / "empty.jsonl.gz"
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(NotAnExport, match="empty"):
        detect(path)


def test_detect_broken_gzip(tmp_path):
    path = tmp_path / "broken.jsonl.gz"
    path.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    with pytest.raises(NotAnExport, match="gzip"):
        detect(path)


def test_detect_only_blank_lines(write_text):
    with pytest.raises(NotAnExport, match="blank"):
        detect(write_text("\n  \n\t\n", "blank.jsonl"))


def test_detect_binary_garbage(tmp_path):
    path = tmp_path / "garbage.jsonl"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(NotAnExport, match="binary"):
        detect(path)


def test_detect_toml(write_text):
    toml = '[project]\nname = "eventlens"\nversion = "0.1.0"\n\n[tool.ruff]\nline-length = 100\n'
    with pytest.raises(NotAnExport, match="not an event export"):
        detect(write_text(toml, "pyproject.toml"))


UX_NOTES = (
    "The upload flow felt slow on the first try, and it was not clear which formats it takes.\n"
    "\n"
    "Users said the page should explain, in plain words, why a file was refused; several of\n"
    "them, including support, tried a text file first.\n"
    "\n"
    "Next week: the Explore page, the chart, and the leaderboard.\n"
)


def test_every_sample_format_file_has_its_expected_layout(formats_dir):
    """The header check for CSV must not lose any shape the project ships a sample of."""
    assert sorted(p.name for p in formats_dir.iterdir()) == sorted(ALL_FORMAT_KINDS)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        (UX_NOTES, "ux-notes.txt"),  # commas on its first line: it used to pass for CSV
        ("hello\nworld\n", "notes.txt"),  # one column of text
        ("name,size,owner\nreport.pdf,12,ann\n", "files.csv"),  # a table of something else
        ("a;b\n1;2\n", "things.csv"),
        ("trace_id\nt1\n", "ids.csv"),  # one column: not a CSV header
    ],
    ids=["prose", "one-column-text", "csv-without-event-columns", "semicolons", "one-column-csv"],
)
def test_detect_refuses_text_that_is_not_an_event_csv(write_text, text, name):
    with pytest.raises(NotAnExport) as refused:
        detect(write_text(text, name))
    message = str(refused.value)
    assert message.startswith("it is not an event export: its first line is neither JSON nor")
    assert ingest.ACCEPTED_FORMATS in message  # and what would have been accepted


def test_detect_quotes_the_start_of_the_first_line(write_text):
    with pytest.raises(
        NotAnExport, match='it begins "The upload flow felt slow on the first try, and'
    ):
        detect(write_text(UX_NOTES, "ux-notes.txt"))


@pytest.mark.parametrize(
    "header",
    [
        "trace_id,event_type,metrics.n",
        "Trace_ID,Event_Type,metrics",  # names are matched as the CSV reader does, any case
        '"trace_id","event_type","metrics"',
        "trace_id\tevent_type\tmetrics",
        "trace_id;event_type;metrics",
        "trace_id|event_type|metrics",
        "event_id, trace_id, type",  # `type` is read as the event type; spaces are trimmed
        "timestamp,event_type",  # without trace_id: loads, and its rows say what is missing
    ],
)
def test_detect_csv_by_an_event_header(write_text, header):
    assert detect(write_text(header + "\n", "events.txt")) == Detected("csv")


def test_a_prose_file_loads_nothing_and_leaves_no_dataset(write_text, store):
    result = load_files(store, [write_text(UX_NOTES, "ux-notes.txt")])
    (only,) = result.files
    assert only.format is None  # not "csv"
    assert only.error.startswith(f"{only.path}: it is not an event export")
    assert (result.loaded, result.rejected, result.duplicates) == (0, 0, 0)
    assert store.datasets().empty
    assert store.scalar("SELECT count(*) FROM files") == 0


def test_the_default_dataset_is_named_after_the_first_export_not_a_failed_file(
    write_text, formats_dir, store
):
    notes = write_text(UX_NOTES, "ux-notes.txt")
    result = load_files(store, [notes, formats_dir / "events.ndjson"])
    assert result.dataset == "events"
    assert store.datasets()["dataset"].tolist() == ["events"]
    # The names shown (an upload's own name, not its temp path) are the ones used.
    result = load_files(store, [notes, formats_dir / "events.json"], None, ["a.txt", "b.json"])
    assert result.dataset == "b"


def test_detect_parquet_name_with_text_content(formats_dir, tmp_path):
    path = tmp_path / "events.parquet"
    shutil.copy(formats_dir / "events.ndjson", path)
    with pytest.raises(NotAnExport, match="Parquet"):
        detect(path)


def test_detect_ignores_a_misleading_extension(formats_dir, tmp_path):
    path = tmp_path / "events.csv"
    shutil.copy(formats_dir / "events.ndjson", path)
    assert detect(path).kind == "jsonl"


# -- loading the sample formats -------------------------------------------------------------------


@pytest.fixture(scope="module")
def ndjson_store(formats_dir) -> Iterator[tuple[Store, LoadResult]]:
    """events.ndjson loaded once, under its default dataset name, into a store that the tests
    only read: the store and the LoadResult."""
    with Store(":memory:") as s:
        yield s, load_files(s, [formats_dir / "events.ndjson"])


@pytest.fixture(scope="module")
def loaded_formats(formats_dir, event_rows, ndjson_store) -> dict[str, tuple]:
    """Each sample format loaded once into its own store: (FileResult, events, events sans id)."""
    s, result = ndjson_store
    out = {"events.ndjson": (result.files[0], event_rows(s), event_rows(s, with_event_id=False))}
    for name in [*FORMAT_KINDS, "trace_document.json"]:
        if name == "events.ndjson":
            continue
        with Store(":memory:") as s:
            result = load_files(s, [formats_dir / name]).files[0]
            out[name] = (result, event_rows(s), event_rows(s, with_event_id=False))
    return out


@pytest.mark.parametrize("name", sorted(FORMAT_KINDS))
def test_each_120_event_format_loads_fully(loaded_formats, name):
    result = loaded_formats[name][0]
    assert result.error is None
    assert (result.loaded, result.rejected, result.duplicates) == (120, 0, 0)
    assert result.format == FORMAT_KINDS[name]


def test_trace_document_loads_its_events(loaded_formats):
    result, rows, _ = loaded_formats["trace_document.json"]
    assert (result.loaded, result.rejected, result.error) == (40, 0, None)
    assert len({row[1] for row in rows}) == 1  # one trace


@pytest.mark.parametrize("name", sorted(n for n in FORMAT_KINDS if n != "search_response.json"))
def test_formats_give_the_same_events_as_ndjson(loaded_formats, name):
    assert loaded_formats[name][1] == loaded_formats["events.ndjson"][1]


def test_search_response_gives_the_same_events_without_ids(loaded_formats):
    assert all(row[0] is None for row in loaded_formats["search_response.json"][1])
    assert loaded_formats["search_response.json"][2] == loaded_formats["events.ndjson"][2]


def test_trace_document_events_are_a_subset_of_ndjson(loaded_formats):
    assert loaded_formats["trace_document.json"][1] < loaded_formats["events.ndjson"][1]


@pytest.mark.parametrize("name", ["events.ndjson", "json_columns.csv", "search_response.json"])
def test_gzip_copy_loads_the_same(
    formats_dir, tmp_path, loaded_formats, load, store, event_rows, name
):
    result = load(gzip_copy(formats_dir / name, tmp_path / (name + ".gz")))
    assert (result.loaded, result.format) == (120, FORMAT_KINDS[name] + "+gzip")
    assert event_rows(store) == loaded_formats[name][1]


# -- bad_lines.jsonl ------------------------------------------------------------------------------

BAD_LINES = {
    3: "not valid JSON",
    6: f"trace_id: {model.MSG_REQUIRED}",
    9: "metrics.amount: " + model.MSG_METRIC_NUMBER.format(got="string"),
    12: "event_details.product_id: " + model.MSG_DETAIL_STRING.format(got="number"),
    15: "metrics.vote: "
    + model.MSG_PREDEFINED_RANGE.format(
        range="a number from -1 to 1", type="thumbs_up_down", value="5"
    ),
    18: "metrics.text_length: "
    + model.MSG_PREDEFINED_RANGE.format(
        range="a number greater than 0", type="selected_text", value="0"
    ),
    21: "metrics.finished: "
    + model.MSG_PREDEFINED_MISSING.format(type="waited_to_finish", range="a number from 0 to 1"),
    24: "expected a JSON object (one event), got an array",
}


@pytest.fixture(scope="module")
def bad_lines_store(formats_dir):
    """bad_lines.jsonl loaded once into a store that the tests below only read."""
    with Store(":memory:") as s:
        result = load_files(s, [formats_dir / "bad_lines.jsonl"]).files[0]
        yield s, result


def test_bad_lines_counts(bad_lines_store):
    _, result = bad_lines_store
    assert result.error is None
    assert (result.loaded, result.rejected, result.duplicates) == (20, 8, 1)


def test_bad_lines_rejects_have_line_numbers_and_reasons(bad_lines_store, rejects):
    got = dict(rejects(bad_lines_store[0]))
    assert sorted(got) == sorted(BAD_LINES)
    assert got[3].startswith(BAD_LINES[3] + ": ")  # then Python's parser message
    assert {line: got[line] for line in BAD_LINES if line != 3} == {
        line: reason for line, reason in BAD_LINES.items() if line != 3
    }


def test_bad_lines_rejects_keep_location_and_raw(bad_lines_store, formats_dir):
    lines = (formats_dir / "bad_lines.jsonl").read_text().splitlines()
    rows = bad_lines_store[0].rows("SELECT line, location, raw, file FROM rejects ORDER BY line")
    for line, location, raw, file in rows:
        assert location == f"line {line}"
        assert raw == lines[line - 1]
        assert file.endswith("bad_lines.jsonl")


def test_bad_lines_top_reasons(bad_lines_store):
    store, result = bad_lines_store
    reasons = {r for (r,) in store.rows("SELECT reason FROM rejects")}
    assert 1 <= len(result.top_reasons) <= 8
    assert all(count == 1 and reason in reasons for reason, count in result.top_reasons)


def test_loading_twice_adds_nothing(formats_dir, load, store):
    path = formats_dir / "bad_lines.jsonl"
    load(path)
    again = load(path)
    assert (again.loaded, again.rejected, again.duplicates) == (0, 8, 21)
    assert store.event_count() == 20
    assert store.scalar("SELECT count(*) FROM rejects") == 8


def test_loading_twice_keeps_dataset_counts(formats_dir, store):
    path = formats_dir / "bad_lines.jsonl"
    load_files(store, [path], "d")
    load_files(store, [path], "d")
    (row,) = store.datasets().itertuples()
    assert (row.events, row.rejects) == (20, 8)


def test_events_remember_their_source_line(bad_lines_store):
    lines = bad_lines_store[0].rows("SELECT source_line FROM events ORDER BY source_line")
    assert [n for (n,) in lines][:4] == [1, 2, 4, 5]
    assert all(n not in BAD_LINES for (n,) in lines)


# -- JSONL details --------------------------------------------------------------------------------


def test_blank_lines_keep_line_numbers(write_lines, load, rejects, store):
    path = write_lines(
        [json.dumps(good(1)), "", json.dumps({**GOOD, "metrics": "x"}), "   ", "{oops", ""]
    )
    result = load(path)
    assert (result.loaded, result.rejected) == (1, 2)
    assert [line for line, _ in rejects(store)] == [3, 5]


def test_crlf_line_endings(write_text, load):
    text = "".join(json.dumps(good(i)) + "\r\n" for i in range(3))
    result = load(write_text(text))
    assert (result.loaded, result.rejected) == (3, 0)


def test_bom_is_ignored(write_text, load):
    result = load(write_text("\ufeff" + json.dumps(good(1)) + "\n"))
    assert (result.loaded, result.rejected) == (1, 0)


def test_duplicates_within_a_file_by_event_id(write_bodies, load, store):
    result = load(write_bodies([good(1), good(1, metrics={"n": 2}), good(2)]))
    assert (result.loaded, result.duplicates) == (2, 1)
    assert store.scalar("SELECT metrics['n'] FROM events WHERE event_id = 'e1'") == 1.0


def test_duplicates_without_event_id_by_content(write_bodies, load):
    result = load(write_bodies([GOOD, GOOD, {**GOOD, "metrics": {"n": 2}}]))
    assert (result.loaded, result.duplicates) == (2, 1)


def test_same_event_id_in_other_trace_is_not_a_duplicate(write_bodies, load):
    result = load(write_bodies([good(1), good(1, trace_id="t2")]))
    assert (result.loaded, result.duplicates) == (2, 0)


def test_legacy_keyvalue_lists(write_bodies, load, store):
    b = {
        **GOOD,
        "metrics": [{"key": "a", "value": 1.5}],
        "event_details": [{"key": "d", "value": "x"}],
    }
    assert load(write_bodies([b])).loaded == 1
    assert store.rows("SELECT metrics, event_details FROM events") == [({"a": 1.5}, {"d": "x"})]


def test_whole_file_not_json_named_jsonl(write_lines, load, store):
    result = load(write_lines(["{this is not json", "{neither is this", "{nor this"]))
    assert result.error is not None
    assert "not an event export" in result.error
    assert (result.loaded, result.rejected) == (0, 0)
    assert store.scalar("SELECT count(*) FROM rejects") == 0


def test_plain_text_named_jsonl(write_lines, load):
    result = load(write_lines(["hello there", "just some notes"]))
    assert "not an event export" in result.error


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ('[{"a": 1}]\n', "things.json"),
        ('{"foo": 1}\n{"foo": 2}\n', "things.jsonl"),
        ('{\n  "foo": {"bar": 1}\n}\n', "thing.json"),
        ("a,b\n1,2\n", "things.csv"),
    ],
)
def test_non_event_json_is_a_file_level_error(write_text, load, store, text, name):
    result = load(write_text(text, name))
    assert "not an event export" in result.error
    assert (result.loaded, result.rejected) == (0, 0)
    assert store.scalar("SELECT count(*) FROM rejects") == 0


def test_unicode_and_long_detail_round_trip(write_bodies, load, store):
    long_text = ("ünïcødé 🚀 " * 2000)[:20_000]
    b = {
        "trace_id": "trace_ü",
        "event_type": "klick_✓",
        "metrics": {"länge": 2.5},
        "event_details": {"note": long_text, "emoji": "🚀", "quote": 'say "hi"\n'},
    }
    assert load(write_bodies([b])).loaded == 1
    ((trace_id, event_type, metrics, details),) = store.rows(
        "SELECT trace_id, event_type, metrics, event_details FROM events"
    )
    assert (trace_id, event_type, metrics) == ("trace_ü", "klick_✓", {"länge": 2.5})
    assert details == b["event_details"]
    assert len(details["note"]) == 20_000


def test_null_detail_value_is_kept(write_bodies, load, store):
    load(write_bodies([{**GOOD, "event_details": {"a": None, "b": "x"}}]))
    assert store.scalar("SELECT event_details FROM events") == {"a": None, "b": "x"}


# -- timestamps -----------------------------------------------------------------------------------


def test_events_without_timestamp_have_null_timestamp(write_bodies, load, store):
    result = load(write_bodies([good(1), good(2, timestamp=None)]))
    assert result.loaded == 2
    assert store.scalar("SELECT count(*) FROM events WHERE timestamp IS NULL") == 2
    assert result.first_event is None


@pytest.mark.parametrize(
    ("ts", "expected_ms"),
    [(1_717_200_001_234.4, 1_717_200_001_234), (1_717_200_001_234.6, 1_717_200_001_235)],
)
def test_float_timestamp_rounds_to_ms(write_bodies, load, store, ts, expected_ms):
    load(write_bodies([good(1, timestamp=ts)]))
    assert store.scalar("SELECT epoch_ms(timestamp) FROM events") == expected_ms


def test_timestamps_are_utc_timestamptz_with_ms_precision(write_bodies, load, store):
    bodies = [good(i, timestamp=1_717_200_001_000 + i * 1.37) for i in range(50)]
    load(write_bodies(bodies))
    assert store.scalar("SELECT DISTINCT typeof(timestamp) FROM events") == (
        "TIMESTAMP WITH TIME ZONE"
    )
    assert store.scalar("SELECT count(*) FROM events WHERE epoch_us(timestamp) % 1000 <> 0") == 0
    value = store.scalar("SELECT timestamp FROM events WHERE event_id = 'e0'")
    assert value == dt.datetime(2024, 6, 1, 0, 0, 1, tzinfo=dt.UTC)
    assert value.utcoffset() == dt.timedelta(0)


def test_time_range_in_result_is_iso_utc(write_bodies, load):
    result = load(write_bodies([good(1, timestamp=1_717_200_001_234), good(2, timestamp=0)]))
    assert result.first_event == "1970-01-01T00:00:00.000Z"
    assert result.last_event == "2024-06-01T00:00:01.234Z"


def test_timestamp_range_limits_load(write_bodies, load, store):
    bodies = [
        good(1, timestamp=model.MIN_TIMESTAMP_MS),
        good(2, timestamp=model.MAX_TIMESTAMP_MS),
        good(3, timestamp=model.MAX_TIMESTAMP_MS + 1),
    ]
    result = load(write_bodies(bodies))
    assert (result.loaded, result.rejected, result.error) == (2, 1, None)


# -- CSV ------------------------------------------------------------------------------------------


def test_csv_row_with_too_few_columns(write_lines, load, store, rejects):
    path = write_lines(
        ["trace_id,event_type,metrics.n", "t,a,1", "t,b", "t,c,3", "t,d,4"], "events.csv"
    )
    result = load(path)
    assert (result.loaded, result.rejected) == (3, 1)
    ((line, reason),) = rejects(store)
    assert line == 3
    assert reason.startswith("CSV:") and "fewer columns" in reason
    assert store.rows("SELECT source_line FROM events ORDER BY 1") == [(2,), (4,), (5,)]


def test_csv_row_missing_several_columns(write_lines, load, store, rejects):
    path = write_lines(
        ["trace_id,event_type,metrics.n,timestamp", "t,a,1,", "t,b", "t,c,x,", "t,d,4,"],
        "events.csv",
    )
    result = load(path)
    assert (result.loaded, result.rejected) == (2, 2)
    assert [line for line, _ in rejects(store)] == [3, 4]


def test_csv_row_with_too_many_columns(write_lines, load, rejects, store):
    path = write_lines(["trace_id,event_type,metrics.n", "t,a,1", "t,b,2,9", "t,c,3"], "e.csv")
    result = load(path)
    assert (result.loaded, result.rejected) == (2, 1)
    assert [line for line, _ in rejects(store)] == [3]


def test_csv_non_numeric_metric_cell(write_lines, load, rejects, store):
    path = write_lines(["trace_id,event_type,metrics.amount", "t,a,1.5", "t,b,abc"], "e.csv")
    result = load(path)
    assert (result.loaded, result.rejected) == (1, 1)
    assert rejects(store) == [
        (3, "metrics.amount: " + model.MSG_METRIC_NUMBER.format(got="string"))
    ]


def test_csv_empty_cells_are_absent(write_lines, load, store):
    path = write_lines(
        ["trace_id,event_type,metrics.a,metrics.b,event_details.d", "t,x,1,,", "t,y,,2,v"], "e.csv"
    )
    assert load(path).loaded == 2
    assert store.rows("SELECT metrics, event_details FROM events ORDER BY event_type") == [
        ({"a": 1.0}, {}),
        ({"b": 2.0}, {"d": "v"}),
    ]


def test_csv_without_metric_columns_has_empty_metrics(write_lines, load, store):
    path = write_lines(["trace_id,event_type", "t,x"], "e.csv")
    assert load(path).loaded == 1
    assert store.scalar("SELECT metrics FROM events") == {}


def test_csv_iso_timestamp(write_lines, load, store):
    path = write_lines(
        ["trace_id,event_type,timestamp", "t,a,2024-06-01T00:00:01.234Z", "t,b,1717200001234"],
        "e.csv",
    )
    result = load(path)
    assert (result.loaded, result.rejected) == (2, 0)
    assert store.rows("SELECT DISTINCT epoch_ms(timestamp) FROM events") == [(1_717_200_001_234,)]


def test_csv_text_timestamp_is_rejected(write_lines, load, rejects, store):
    path = write_lines(["trace_id,event_type,timestamp", "t,a,yesterday"], "e.csv")
    load(path)
    assert rejects(store) == [(2, "timestamp: " + model.MSG_TIMESTAMP.format(got="string"))]


# -- the store's shape ----------------------------------------------------------------------------


def test_events_column_types(ndjson_store):
    types = dict(ndjson_store[0].rows("SELECT column_name, column_type FROM (DESCRIBE events)"))
    assert {
        name: types.get(name)
        for name in (
            "event_id",
            "trace_id",
            "event_type",
            "timestamp",
            "metrics",
            "event_details",
            "dataset",
            "source_file",
        )
    } == {
        "event_id": "VARCHAR",
        "trace_id": "VARCHAR",
        "event_type": "VARCHAR",
        "timestamp": "TIMESTAMP WITH TIME ZONE",
        "metrics": "MAP(VARCHAR, DOUBLE)",
        "event_details": "MAP(VARCHAR, VARCHAR)",
        "dataset": "VARCHAR",
        "source_file": "VARCHAR",
    }


def test_dataset_catalogue_row(formats_dir, store):
    paths = [formats_dir / "events.ndjson", formats_dir / "bad_lines.jsonl"]
    result = load_files(store, paths, "mixed")
    assert result.dataset == "mixed"
    (row,) = store.datasets().itertuples()
    assert row.dataset == "mixed"
    assert sorted(row.files) == sorted(str(p) for p in paths)
    # bad_lines' 20 good lines are also in events.ndjson
    assert (row.events, row.rejects, row.duplicates) == (120, 8, 21)
    assert len(row.content_hash) == 64


def test_dataset_content_hash_is_stable(formats_dir):
    a, b = formats_dir / "events.ndjson", formats_dir / "flat.csv"
    hashes = []
    for paths in ([a, b], [b, a]):
        with Store(":memory:") as s:
            load_files(s, paths, "d")
            hashes.append(s.scalar("SELECT content_hash FROM datasets"))
    with Store(":memory:") as s:
        load_files(s, [a], "d")
        other = s.scalar("SELECT content_hash FROM datasets")
    assert hashes[0] == hashes[1]
    assert other != hashes[0]


def test_default_dataset_name_from_first_file(ndjson_store):
    assert ndjson_store[1].dataset == "events"


def test_files_table_records_each_file(formats_dir, store):
    load_files(store, [formats_dir / "events.json", formats_dir / "flat.csv"], "d")
    rows = store.rows("SELECT format, loaded, rejected, duplicates FROM files ORDER BY path")
    assert rows == [("json-array", 120, 0, 0), ("csv", 0, 0, 120)]


def test_load_result_as_dict(bad_lines_store):
    out = LoadResult("d", [bad_lines_store[1]]).as_dict()
    json.dumps(out)
    assert (out["loaded"], out["rejected"], out["duplicates"]) == (20, 8, 1)
    assert out["files"][0]["top_reasons"][0].keys() == {"reason", "count"}


# -- never a traceback ----------------------------------------------------------------------------


def test_directory_path(tmp_path, load):
    result = load(tmp_path)
    assert result.error and "not a file" in result.error
    assert result.loaded == 0


def test_missing_path(tmp_path, load):
    result = load(tmp_path / "nope.jsonl")
    assert result.error and "no such file" in result.error


def test_unreadable_file(formats_dir, tmp_path, load):
    path = tmp_path / "locked.jsonl"
    shutil.copy(formats_dir / "events.ndjson", path)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as a user (root) who can read a mode-000 file")
        result = load(path)
        assert result.error and "cannot read" in result.error
    finally:
        path.chmod(0o644)


def test_bad_file_does_not_stop_the_others(formats_dir, tmp_path, store):
    result = load_files(store, [tmp_path / "missing.jsonl", formats_dir / "events.ndjson"], "d")
    assert [f.error is None for f in result.files] == [False, True]
    assert result.loaded == 120
    assert len(result.failed_files) == 1


def test_toml_array_of_tables_is_an_error_not_a_traceback(write_text, load):
    result = load(write_text('[[bin]]\nname = "x"\npath = "src/main.rs"\n', "Cargo.toml"))
    assert result.error
    assert result.loaded == 0


def test_gzip_with_text_garbage_inside(tmp_path, load):
    path = tmp_path / "junk.jsonl.gz"
    path.write_bytes(gzip.compress(b"\x00\x01\x02 binary junk" * 100))
    result = load(path)
    assert result.error and result.loaded == 0


def test_truncated_gzip(formats_dir, tmp_path, load):
    data = gzip.compress((formats_dir / "events.ndjson").read_bytes())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    result = load(path)
    assert result.error or result.loaded < 120


def test_duplicate_metric_key_keeps_the_last_value(write_lines, load, store):
    """JSON.parse, and so LangWatch, keeps the last of a repeated key."""
    lines = [
        json.dumps(good(1)),
        '{"trace_id":"t","event_type":"x","metrics":{"a":1,"a":2},"event_id":"e2"}',
    ]
    result = load(write_lines(lines))
    assert (result.error, result.loaded, result.rejected) == (None, 2, 0)
    assert store.scalar("SELECT metrics['a'] FROM events WHERE event_id = 'e2'") == 2.0


def test_duplicate_detail_key_keeps_the_last_value(write_lines, load, store):
    line = (
        '{"trace_id":"t","event_type":"x","metrics":{},"event_details":{"k":"a","k":"b","j":"c"}}'
    )
    result = load(write_lines([line]))
    assert (result.loaded, result.rejected) == (1, 0)
    details = store.scalar("SELECT event_details FROM events")
    assert details == {"k": "b", "j": "c"}


def test_small_chunks_give_the_same_result(formats_dir, tmp_path):
    """A file checked a few records at a time loads, rejects and dedupes as in one go."""

    def run(chunk: int) -> tuple:
        with Store(":memory:") as s:
            path = formats_dir / "bad_lines.jsonl"
            r = load_files(s, [path, path], "d", chunk_records=chunk).files
            rows = s.rows("SELECT line, reason FROM rejects ORDER BY line")
            lines = s.rows("SELECT source_line FROM events ORDER BY source_line")
        return [(f.loaded, f.rejected, f.duplicates) for f in r], rows, lines

    whole = run(1_000_000)
    assert whole[0] == [(20, 8, 1), (0, 8, 21)]
    assert run(7) == whole  # the chunk size asked for by the caller (replay plans this way)


def test_a_line_longer_than_max_line_bytes_fails_the_file_and_says_so(write_lines, store):
    short = json.dumps({"trace_id": "t", "event_type": "x", "metrics": {}})
    long = json.dumps(
        {"trace_id": "t2", "event_type": "x", "metrics": {}, "event_details": {"n": "x" * 90_000}}
    )
    path = write_lines([short, long, short])
    result = load_files(store, [path], "d", max_line_bytes=65_536).files[0]
    assert result.record_too_long and result.loaded == 0
    assert result.error == f"{path}: line 2 is longer than 64 KB"
    assert store.event_count() == 0
    # Under the default limit the same file loads (the repeat of line 1 is a duplicate).
    again = load_files(store, [path], "d").files[0]
    assert (again.loaded, again.duplicates, again.record_too_long) == (2, 1, False)


def test_json_arrays_and_documents_load_under_a_small_memory_limit(formats_dir):
    """Their buffers follow the element limit or the document's size, not a fixed 1 GB
    (which made DuckDB ask for 2 GiB and fail under any smaller memory_limit)."""
    for name in ("events.json", "trace_document.json", "search_response.json"):
        with Store(":memory:") as s:
            s.execute("SET memory_limit = '160MB'")  # the default 32 MB elements: 64 MB buffers
            result = load_files(s, [formats_dir / name], name).files[0]
            assert result.error is None and result.loaded > 0, name


def test_an_array_element_longer_than_max_line_bytes_is_named(write_text, store):
    elements = [{"trace_id": f"t{i}", "event_type": "x", "metrics": {}} for i in range(3000)]
    elements[5]["event_details"] = {"n": "x" * 33_600_000}
    path = write_text(json.dumps(elements), name="events.json")
    # DuckDB reads values up to 16 MB whatever it is told, in buffers twice that: the limit
    # named is what it could read.
    result = load_files(store, [path], "d", max_line_bytes=65_536).files[0]
    assert result.record_too_long and result.loaded == 0
    assert result.error == f"{path}: an element of the array is longer than 32 MB"
    assert load_files(store, [path], "d").files[0].loaded == 3000


def test_an_unexpected_error_is_a_sentence_not_a_traceback(monkeypatch, store, formats_dir):
    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setitem(READERS, "jsonl", replace(READERS["jsonl"], stage=broken))
    result = load_files(store, [formats_dir / "events.ndjson"]).files[0]
    assert (
        result.error
        == f"{formats_dir / 'events.ndjson'}: it could not be loaded (RuntimeError: boom)"
    )
    assert store.event_count() == 0


def test_a_blank_dataset_name_falls_back_to_the_file_name(store, formats_dir):
    assert load_files(store, [formats_dir / "events.ndjson"], "   ").dataset == "events"


# -- the fast path (one-pass insert of clean events) against the full path ------------------------


@pytest.mark.parametrize("name", sorted(ALL_FORMAT_KINDS))
def test_fast_path_stores_what_the_full_path_stores(formats_dir, name):
    """Each sample format, loaded twice (so the second load is all duplicates)."""
    path = formats_dir / name
    both = load_both_ways([path, path])
    assert both[True] == both[False]
    assert both[True][0][0]["loaded"] > 0


def test_fast_path_matches_in_small_chunks_with_repeats(write_lines):
    """Repeats inside a chunk and across chunks, among clean, odd and bad records."""
    lines = [
        json.dumps(good(1)),
        json.dumps(good(2)),
        json.dumps(good(1, metrics={"n": 9})),  # a repeat in the same chunk: the first copy wins
        '{"trace_id":"t1","event_type":"click","metrics":{"n":1,"n":2}}',  # repeated key
        "not json",
        json.dumps(good(3, metrics={"n": "1"})),  # rejected
        json.dumps(good(2)),  # a repeat from an earlier chunk
        json.dumps({**GOOD, "event_details": {"url": "https://x.test/a:b"}}),
        json.dumps(good(4)),
        json.dumps(good(4)),
    ]
    path = write_lines(lines)
    for chunk in (3, 4, 100):
        both = load_both_ways([path], chunk)
        assert both[True] == both[False]
        (summary,) = both[True][0]
        assert (summary["loaded"], summary["rejected"], summary["duplicates"]) == (5, 2, 3)
        kept = {row[1]: row[9] for row in both[True][1] if row[1]}
        assert kept == {"e1": 1, "e2": 2, "e4": 9}


def test_fast_path_takes_clean_events(ndjson_store):
    """The fast path is really used: a clean file's events come from one batch."""
    store, loaded = ndjson_store
    result = loaded.files[0]
    assert result.loaded == 120
    assert store.scalar("SELECT count(DISTINCT batch_id) FROM events") == 1
