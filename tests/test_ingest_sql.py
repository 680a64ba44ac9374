"""The ingest SQL as text: what the fast path filters on, and every user value bound, in order."""

from __future__ import annotations

import json
import re

import pytest

from eventlens import model
from eventlens.ingest import sql
from eventlens.ingest import typed as typed_sql
from eventlens.ingest.sql import LineNumbers, Query, Source
from eventlens.ingest.typed import FileColumn, typed_rows
from eventlens.store import Store

# A file whose dataset, name and hash would break any statement they were spliced into.
HOSTILE = Source("d'; DROP TABLE events; --", 'it\'s "here" ?.jsonl', "0' OR '1'='1")
# CSV numbering after a malformed line: it binds the skipped lines' thresholds.
CSV_LINES = LineNumbers("rowid + 2 + len(list_filter(?::BIGINT[], lambda t: t <= rowid))", ([1],))
BATCH = 42
# A Parquet file with STRUCT columns (field names bound as map keys) at a hostile path.
TYPED = typed_rows(
    "f'; DROP TABLE events; --.parquet",
    10,
    [
        FileColumn("trace_id", "VARCHAR"),
        FileColumn("type", "VARCHAR"),
        FileColumn("metrics", 'STRUCT("x ""y""" DOUBLE)', (('x "y"', "DOUBLE"),)),
        FileColumn("details", "STRUCT(k VARCHAR)", (("k", "VARCHAR"),)),
    ],
)
assert TYPED is not None

STATEMENTS: dict[str, Query] = {
    "insert_clean": sql.insert_clean(CSV_LINES, 0, 10, HOSTILE, BATCH),
    "count_repeats": sql.count_repeats(BATCH),
    "delete_repeats": sql.delete_repeats(BATCH),
    "batch_summary": sql.batch_summary(BATCH),
    "left_over": sql.left_over(CSV_LINES, 0, 10, BATCH),
    "normalise": sql.normalise(CSV_LINES, "line", 0, 10, only_left=True),
    "expand_containers": sql.expand_containers("element"),
    "insert_checked": sql.insert_checked(HOSTILE, BATCH, first_copy_only=True),
    "insert_typed": typed_sql.insert_typed(TYPED, 0, 10, HOSTILE, BATCH),
    "duplicates_by_type": typed_sql.duplicates_by_type(TYPED, 0, 10, BATCH),
    "stage_rejected": typed_sql.stage_rejected(TYPED, 0, 10),
    "reject_failures": sql.reject_failures("line", HOSTILE),
    "first_malformed": sql.first_malformed(1000),
    "reject_malformed_after": sql.reject_malformed_after("line", HOSTILE, 12),
}


def placeholders(text: str) -> int:
    """The `?`s of a statement outside its string literals and comments (regexes hold `?`s)."""
    return re.findall(r"'(?:[^']|'')*'|--[^\n]*|\?", text).count("?")


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_a_statement_binds_one_value_per_placeholder(name):
    text, params = STATEMENTS[name]
    assert placeholders(text) == len(params)


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_user_values_are_bound_never_spliced(name):
    text, params = STATEMENTS[name]
    for value in (*HOSTILE, TYPED.path):
        assert value not in text
    if name in ("insert_clean", "insert_checked", "insert_typed"):
        assert params[:3] == [HOSTILE.dataset, HOSTILE.file, BATCH]
    if name.startswith("reject"):
        assert params[:3] == list(HOSTILE)


def test_the_fast_path_insert_binds_in_the_order_of_its_placeholders(store):
    """The insert's own values come first, then the line numbering's (a CSV's skipped lines)."""
    body = json.dumps({"trace_id": "t", "event_type": "x", "metrics": {"n": 1}})
    with store.cursor() as cur:
        cur.execute("CREATE TEMP TABLE _src AS SELECT unnest([?, ?]) AS raw", [body, body + " "])
        inserted = cur.execute(*sql.insert_clean(CSV_LINES, 0, 2, HOSTILE, BATCH)).fetchone()[0]
        rows = cur.execute(
            "SELECT dataset, source_file, source_line, batch_id FROM events ORDER BY source_line"
        ).fetchall()
    assert inserted == 2  # the same fields twice: the fast path leaves repeats to a later step
    # Row 0 is line 2 (after the header); row 1 comes after the skipped line 3, so line 4.
    assert rows == [
        (HOSTILE.dataset, HOSTILE.file, 2, BATCH),
        (HOSTILE.dataset, HOSTILE.file, 4, BATCH),
    ]


def test_the_fast_path_filters_on_one_column():
    where = sql.clean_events_sql("SELECT 1").rsplit("WHERE", 1)[1]
    assert where.split() == ["quick"]


def test_the_quick_check_is_one_coalesce_expression():
    """DuckDB pushes a filter's bare conjuncts down into the scan, where json_transform would
    run a second time; inside one coalesce(...) the quick check is not split into conjuncts."""
    text = sql.fields_sql("SELECT 1")
    quick = model.sql_quick_valid()
    assert text.count(quick) == 1
    assert f"status = 'ok' AND coalesce(NOT is_container AND {quick}, false)" in text


def test_the_fast_path_parses_each_record_once():
    text = STATEMENTS["insert_clean"].text
    assert text.count("json_transform(") == 1
    assert text.count(model.sql_quick_valid()) == 1


@pytest.mark.parametrize(("first_copy_only", "window"), [(True, 1), (False, 0)])
def test_the_full_path_pays_for_the_dedupe_window_only_when_asked(first_copy_only, window):
    text = sql.insert_checked(HOSTILE, BATCH, first_copy_only=first_copy_only).text
    assert text.count("QUALIFY row_number()") == window


def test_table_columns_are_quoted_and_their_keys_bound():
    columns = [
        ("trace_id", "VARCHAR"),
        ("Event_Type", "VARCHAR"),
        ("metrics.it's", "VARCHAR"),
        ('details."x"', "VARCHAR"),
    ]
    text, params = sql.columns_json_sql(columns, text_cells=True)
    assert params == ["it's", '"x"']
    assert placeholders(text) == 2
    assert '"metrics.it\'s"' in text and '"details.""x"""' in text  # identifiers, quoted
    with Store(":memory:") as s:
        s.execute(
            'CREATE TABLE t (trace_id VARCHAR, Event_Type VARCHAR, "metrics.it\'s"'
            ' VARCHAR, "details.""x""" VARCHAR)'
        )
        s.execute("INSERT INTO t VALUES ('t1', 'click', '2.5', 'v')")
        (raw,) = s.rows(f"SELECT {text} FROM t", params)[0]
    assert json.loads(raw) == {
        "trace_id": "t1",
        "event_type": "click",
        "metrics": {"it's": 2.5},
        "event_details": {'"x"': "v"},
    }


def test_a_table_without_event_columns_has_no_sql():
    assert sql.columns_json_sql([("name", "VARCHAR"), ("size", "BIGINT")], text_cells=True) == (
        None,
        [],
    )
