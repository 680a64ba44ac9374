"""`eventlens series`: a chart's series as CSV, in a time zone, with usage errors as exit 2."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re

import pytest

from eventlens.cli import main
from eventlens.ingest import load_files
from eventlens.sandbox import Sandbox
from eventlens.store import Store

AMS = "Europe/Amsterdam"


def ms(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp() * 1000)


def event(
    trace: str, etype: str, when: int, ms_value: float | None = None, plan: str | None = None
):
    return {
        "trace_id": trace,
        "event_type": etype,
        "metrics": {} if ms_value is None else {"ms": ms_value},
        "event_details": {} if plan is None else {"plan": plan},
        "timestamp": when,
    }


# 2024-10-27 is the day Amsterdam repeats 02:00-03:00 (00:00-02:00 UTC).
WEB = [
    event("t1", "click", ms(2024, 10, 27, 0, 10), 100, "pro"),  # 02:10 CEST
    event("t1", "view", ms(2024, 10, 27, 0, 20), None, "free"),  # 02:20 CEST
    event("t2", "click", ms(2024, 10, 27, 0, 40), 200.5, "free"),  # 02:40 CEST
    event("t2", "click", ms(2024, 10, 27, 1, 15)),  # 02:15 CET
    event("t3", "view", ms(2024, 10, 27, 1, 30), None, "team"),  # 02:30 CET
    event("t3", "=1+2", ms(2024, 10, 27, 1, 45), 10, "pro"),  # 02:45 CET
    event("t4", "view", ms(2024, 10, 27, 2, 10), None, "enterprise"),  # 03:10 CET
    event("t1", "click", ms(2024, 10, 27, 3, 0), 50, "pro"),  # 04:00 CET
]
APP = [event("t9", "click", ms(2024, 10, 26, 21, 30), 70, "free")]  # 23:30 CEST


@pytest.fixture(scope="module")
def series_db(tmp_path_factory) -> str:
    """A store file with 8 'web' events around the DST change and 1 'app' event before."""
    folder = tmp_path_factory.mktemp("series_db")
    path = str(folder / "events.duckdb")
    with Store(path) as store:
        for name, bodies in (("web", WEB), ("app", APP)):
            src = folder / f"{name}.jsonl"
            src.write_text("".join(json.dumps(b) + "\n" for b in bodies), encoding="utf-8")
            assert load_files(store, [src], name).loaded == len(bodies)
    return path


@pytest.fixture
def run(runner, series_db):
    """Run `eventlens series --db DB ARGS...`; returns the click Result."""

    def invoke(*args: str):
        return runner.invoke(main, ["series", "--db", series_db, *args])

    return invoke


def rows(result) -> list[list[str]]:
    """The CSV rows of a successful run, header included."""
    assert result.exit_code == 0, result.output
    return list(csv.reader(io.StringIO(result.stdout)))


def test_header_and_hours_in_time_zone(run):
    """Buckets carry their UTC offset in --tz; the repeated hour is two rows."""
    assert rows(run("--by", "none", "--bucket", "1h", "--tz", AMS)) == [
        ["bucket", "series", "value"],
        ["2024-10-26T23:00:00+02:00", "all events", "1"],
        ["2024-10-27T00:00:00+02:00", "all events", "0"],
        ["2024-10-27T01:00:00+02:00", "all events", "0"],
        ["2024-10-27T02:00:00+02:00", "all events", "3"],
        ["2024-10-27T02:00:00+01:00", "all events", "3"],
        ["2024-10-27T03:00:00+01:00", "all events", "1"],
        ["2024-10-27T04:00:00+01:00", "all events", "1"],
    ]


def test_utc_is_the_default_zone(run):
    """Without --tz buckets are UTC, written with +00:00."""
    out = rows(run("--by", "none", "--bucket", "1d"))
    assert out[1:] == [
        ["2024-10-26T00:00:00+00:00", "all events", "1"],
        ["2024-10-27T00:00:00+00:00", "all events", "8"],
    ]


@pytest.mark.parametrize("agg", ["count", "traces"])
def test_counts_are_integers(run, agg):
    """count and traces print whole numbers, without a decimal point."""
    out = rows(run("--agg", agg, "--bucket", "15m", "--tz", AMS))
    values = [r[2] for r in out[1:]]
    assert values and all(re.fullmatch(r"\d+", v) for v in values)
    assert "0" in values


def test_traces_counts_distinct_traces(run):
    """--agg traces counts each trace once per bucket."""
    out = rows(run("--agg", "traces", "--by", "none", "--bucket", "1d", "--tz", "UTC"))
    assert out[1:] == [
        ["2024-10-26T00:00:00+00:00", "all events", "1"],
        ["2024-10-27T00:00:00+00:00", "all events", "4"],
    ]


def test_empty_metric_buckets_print_empty_values(run):
    """With --metric (average by default) an empty bucket prints nothing, not 0."""
    assert rows(run("--metric", "ms", "--by", "none", "--bucket", "1h", "--tz", AMS)) == [
        ["bucket", "series", "value"],
        ["2024-10-26T23:00:00+02:00", "all events", "70"],
        ["2024-10-27T00:00:00+02:00", "all events", ""],
        ["2024-10-27T01:00:00+02:00", "all events", ""],
        ["2024-10-27T02:00:00+02:00", "all events", "150.25"],
        ["2024-10-27T02:00:00+01:00", "all events", "10"],
        ["2024-10-27T03:00:00+01:00", "all events", ""],
        ["2024-10-27T04:00:00+01:00", "all events", "50"],
    ]


@pytest.mark.parametrize(
    ("agg", "value"), [("sum", "360.5"), ("avg", "90.125"), ("max", "200.5"), ("median", "75")]
)
def test_metric_aggregations(run, agg, value):
    """--agg with --metric aggregates the metric's values."""
    args = ("--metric", "ms", "--agg", agg, "--by", "none", "--bucket", "1d", "--dataset", "web")
    assert rows(run(*args))[1:] == [["2024-10-27T00:00:00+00:00", "all events", value]]


def test_count_ignores_metric(run):
    """--agg count with --metric still counts every event."""
    out = rows(run("--agg", "count", "--metric", "ms", "--by", "none", "--bucket", "1d"))
    assert [r[2] for r in out[1:]] == ["1", "8"]


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        ("1", [["other", "5"], ["pro", "3"]]),
        ("2", [["free", "2"], ["other", "3"], ["pro", "3"]]),
        (
            "5",
            [["(none)", "1"], ["enterprise", "1"], ["free", "2"], ["pro", "3"], ["team", "1"]],
        ),
    ],
)
def test_by_detail_with_top(run, top, expected):
    """--by detail:KEY keeps the --top values; the rest is 'other', a missing key '(none)'."""
    args = ("--by", "detail:plan", "--top", top, "--bucket", "1d", "--tz", AMS, "--dataset", "web")
    out = rows(run(*args))
    assert {r[0] for r in out[1:]} == {"2024-10-27T00:00:00+02:00"}
    assert [r[1:] for r in out[1:]] == expected


def test_type_filter(run):
    """--type keeps only the named event types (repeatable)."""
    out = rows(run("--type", "view", "--bucket", "1d"))
    assert out[1:] == [["2024-10-27T00:00:00+00:00", "view", "3"]]
    out = rows(run("--type", "view", "--type", "click", "--bucket", "1d"))
    assert sorted({r[1] for r in out[1:]}) == ["click", "view"]


def test_dataset_filter(run):
    """--dataset keeps only the named datasets."""
    out = rows(run("--dataset", "app", "--bucket", "1d", "--tz", AMS))
    assert out[1:] == [["2024-10-26T00:00:00+02:00", "click", "1"]]


def test_start_and_end_without_offset_are_read_in_tz(run):
    """A date-time without an offset is local to --tz; with one it is taken as given."""
    local = rows(
        run("--by", "none", "--bucket", "1h", "--tz", AMS,
            "--start", "2024-10-27T01:00", "--end", "2024-10-27T03:00")
    )  # fmt: skip
    assert local[1:] == [
        ["2024-10-27T01:00:00+02:00", "all events", "0"],
        ["2024-10-27T02:00:00+02:00", "all events", "3"],
        ["2024-10-27T02:00:00+01:00", "all events", "3"],
    ]
    explicit = rows(
        run("--by", "none", "--bucket", "1h", "--tz", AMS,
            "--start", "2024-10-27T01:00+02:00", "--end", "2024-10-27T03:00+01:00")
    )  # fmt: skip
    assert explicit == local
    in_utc = rows(
        run("--by", "none", "--bucket", "1h", "--tz", "UTC",
            "--start", "2024-10-27T01:00", "--end", "2024-10-27T03:00")
    )  # fmt: skip
    assert in_utc[1:] == [
        ["2024-10-27T01:00:00+00:00", "all events", "3"],
        ["2024-10-27T02:00:00+00:00", "all events", "1"],
    ]


def test_start_and_end_as_dates(run):
    """Plain dates are local midnights; the end is exclusive."""
    out = rows(run("--by", "none", "--bucket", "1d", "--tz", AMS,
                   "--start", "2024-10-27", "--end", "2024-10-28"))  # fmt: skip
    assert out[1:] == [["2024-10-27T00:00:00+02:00", "all events", "8"]]


def test_too_many_buckets_note_on_stderr(run):
    """A bucket that would give too many points is widened, with a note on stderr."""
    result = run("--by", "none", "--bucket", "1m", "--start", "2024-10-20", "--end", "2024-10-30")
    out = rows(result)
    assert len(out) == 1 + 10 * 24 * 12
    assert out[1][0] == "2024-10-20T00:00:00+00:00" and out[2][0] == "2024-10-20T00:05:00+00:00"
    assert "note: 1 min buckets would give more than 5,000 points" in result.stderr
    assert "note:" not in result.stdout


def test_formula_series_names_are_neutralised(run):
    """A series name a spreadsheet would run as a formula is written with a leading '."""
    out = rows(run("--bucket", "1d", "--type", "=1+2"))
    assert out[1:] == [["2024-10-27T00:00:00+00:00", "'=1+2", "1"]]
    assert "'=1+2" in {r[1] for r in rows(run("--bucket", "1d"))}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tz", "Mars/Olympus_Mons"], "unknown time zone"),
        (["--tz", "x'); DROP TABLE events; --"], "unknown time zone"),
        (["--start", "2024-10-27", "--tz", "Mars/Olympus_Mons"], "unknown time zone"),
        (["--agg", "p95"], "--metric"),
        (["--agg", "sum"], "--metric"),
        (["--start", "yesterday"], "ISO"),
        (["--end", "2024-13-01"], "ISO"),
        (["--start", "2024-10-28", "--end", "2024-10-27"], "before its end"),
        (["--by", "plan"], "unknown split"),
        (["--bucket", "2h"], "2h"),
        (["--agg", "mode"], "mode"),
        (["--top", "0"], "--top"),
    ],
)
def test_usage_errors_exit_2(run, series_db, args, message):
    """Bad options exit 2 with a message and no traceback, and leave the store as it was."""
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    with Store(series_db) as store:
        assert store.event_count() == len(WEB) + len(APP)


def test_empty_store_prints_only_the_header(runner, db_path):
    """A store without events prints the header and nothing else."""
    result = runner.invoke(main, ["series", "--db", db_path])
    assert rows(result) == [["bucket", "series", "value"]]


def test_test_data_is_left_out_unless_included(runner, tmp_path):
    """As on the Explore page: the sandbox's events count only with --include-test or by name;
    `info` says which datasets are test data."""
    path = str(tmp_path / "mixed.duckdb")
    with Store(path) as store:
        src = tmp_path / "web.jsonl"
        src.write_text("".join(json.dumps(b) + "\n" for b in WEB), encoding="utf-8")
        load_files(store, [src], "web")
        Sandbox(store).insert([event("qa", "click", ms(2024, 10, 27, 0, 5), 1)])

    def total(*args: str) -> int:
        result = runner.invoke(main, ["series", "--db", path, "--by", "none", *args])
        return sum(int(r[2]) for r in rows(result)[1:])

    assert total() == 8
    assert total("--include-test") == 9
    assert total("--dataset", "sandbox") == 1
    info = json.loads(runner.invoke(main, ["info", "--db", path, "--json"]).output)
    assert {d["dataset"]: d["test"] for d in info["datasets"]} == {"web": False, "sandbox": True}
    text = runner.invoke(main, ["info", "--db", path]).output
    assert "sandbox (test data): 1 event, 1 trace, 1 event type, 0 rejected" in text
