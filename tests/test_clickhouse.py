"""The store on ClickHouse (chDB in this process) gives the same answers as on DuckDB.

The same seeded events as test_series.py (DST changes in Amsterdam, events on bucket
boundaries, events without a time, three datasets) are loaded into both engines; every query
below runs on both and the frames must be equal. Skipped, with the reason, where the optional
ClickHouse dependencies are not installed (`.ci/run` installs them).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from replay_helpers import write_jsonl
from test_series import AUTUMN, AUTUMN_SHORT, SPRING, SPRING_SHORT, make_bodies

from eventlens import analytics, stores, traces
from eventlens.analytics import DetailFilter, SeriesQuery, Threshold
from eventlens.clickhouse.store import ClickHouseStore, bind
from eventlens.ingest import load_files
from eventlens.location import LocationError, parse
from eventlens.store import Store, StoreError
from eventlens.traces import TraceSearch

pytest.importorskip("clickhouse_connect", reason="ClickHouse support is not installed")
pytest.importorskip("chdb", reason="chDB (ClickHouse in process) is not installed")

AMS = "Europe/Amsterdam"


def both_engines(
    folder: Path, url: str, datasets: dict[str, list[dict]]
) -> Iterator[tuple[Store, ClickHouseStore]]:
    """Each dataset's bodies in an in-memory DuckDB and in a chDB store, loaded the same way
    (for a module's fixture)."""
    duck = Store(":memory:")
    house = ClickHouseStore(parse(url))
    for dataset, rows in datasets.items():
        path = write_jsonl(folder / f"{dataset}.jsonl", rows)
        assert load_files(duck, [path], dataset).loaded == len(rows)
        assert house.load([path], dataset).loaded == len(rows)
    yield duck, house
    duck.close()
    house.close()


@pytest.fixture(scope="module")
def engines(tmp_path_factory, chdb_url) -> Iterator[tuple[Store, ClickHouseStore]]:
    """The seeded events in both engines."""
    yield from both_engines(tmp_path_factory.mktemp("generated"), chdb_url("seeded"), make_bodies())


def same(engines, q: SeriesQuery) -> analytics.SeriesResult:
    """series() on both engines: equal range, bucket, frames (and previous period)."""
    duck, house = engines
    a, b = analytics.series(duck, q), analytics.series(house, q)
    assert (b.start, b.end, b.bucket, b.without_timestamp) == (
        a.start,
        a.end,
        a.bucket,
        a.without_timestamp,
    )
    pd.testing.assert_frame_equal(b.frame, a.frame, check_dtype=False, rtol=1e-9)
    if q.previous:
        assert a.previous is not None and b.previous is not None
        pd.testing.assert_frame_equal(b.previous, a.previous, check_dtype=False, rtol=1e-9)
    return a


def ranged(bucket: str, period=(AUTUMN, AUTUMN_SHORT), **kw) -> SeriesQuery:
    start, end = period[1] if bucket == "1m" else period[0]
    return SeriesQuery(bucket=bucket, start=start, end=end, **kw)


@pytest.mark.parametrize("agg", analytics.AGGREGATIONS)
@pytest.mark.parametrize("bucket", ["15m", "1d"])
def test_every_measure(engines, agg, bucket):
    """Counts, distinct traces, sums, averages, extremes and interpolated percentiles."""
    metric = "amount" if agg in analytics.METRIC_AGGREGATIONS else None
    frame = same(engines, ranged(bucket, agg=agg, metric=metric, tz=AMS)).frame
    assert not frame.empty


@pytest.mark.parametrize("bucket", analytics.BUCKETS[1:])
@pytest.mark.parametrize(
    ("tz", "period"),
    [
        (AMS, (AUTUMN, AUTUMN_SHORT)),  # the repeated hour
        (AMS, (SPRING, SPRING_SHORT)),  # the skipped hour
        ("Asia/Kolkata", (AUTUMN, AUTUMN_SHORT)),  # half-hour offset
        ("UTC", (AUTUMN, AUTUMN_SHORT)),
        ("America/New_York", (AUTUMN, AUTUMN_SHORT)),
    ],
)
def test_every_bucket_in_every_zone(engines, tz, period, bucket):
    """Fixed and calendar buckets, empty buckets included, across DST changes."""
    same(
        engines,
        ranged(
            bucket, period, agg="p95", metric="score" if period[0] == SPRING else "amount", tz=tz
        ),
    )


# Calendar edges outside the seeded data (tests/test_series.py checks them against the rules):
# Pacific/Apia skipped 2011-12-30, and Havana's midnight came twice on 2020-11-01.
ZONE_EDGES = {
    "Pacific/Apia": [1577577600000 + day * 86_400_000 for day in range(3)],  # 29-31 Dec 2019
    "America/Havana": [1604201400000 + i * 600_000 for i in range(18)],  # from 23:30 on 31 Oct
}


def edge_dataset(zone: str) -> str:
    return zone.split("/")[-1].lower()


@pytest.fixture(scope="module")
def edge_engines(tmp_path_factory, chdb_url) -> Iterator[tuple[Store, ClickHouseStore]]:
    """ZONE_EDGES' events in both engines, a dataset per zone."""
    datasets = {
        edge_dataset(zone): [
            {"trace_id": "t", "event_type": "tick", "metrics": {}, "timestamp": t} for t in times
        ]
        for zone, times in ZONE_EDGES.items()
    }
    yield from both_engines(tmp_path_factory.mktemp("edges"), chdb_url("edges"), datasets)


@pytest.mark.parametrize("bucket", ["1d", "1w", "1mo"])
@pytest.mark.parametrize("tz", ZONE_EDGES)
def test_calendar_buckets_at_a_zone_s_edges(edge_engines, tz, bucket):
    """A skipped day and a repeated midnight bucket alike on both engines."""
    q = SeriesQuery(bucket=bucket, tz=tz, split="none", datasets=(edge_dataset(tz),))
    assert same(edge_engines, q).frame["value"].sum() == len(ZONE_EDGES[tz])


@pytest.mark.parametrize("split", ["none", "event_type", "detail:product", "detail:country"])
def test_splits_and_the_top_values(engines, split):
    same(engines, ranged("1h", agg="count", split=split, top=3, tz=AMS))


@pytest.mark.parametrize(
    "change",
    [
        {"datasets": ("app",)},
        {"event_types": ("search", "llm_call")},
        {"details": (DetailFilter("country", "=", "NL"),)},
        {"details": (DetailFilter("country", "!=", "NL"),)},  # without the key counts as !=
        {"thresholds": (Threshold("latency_ms", ">=", 400.0),)},
        {"include_test": True},
    ],
)
def test_filters(engines, change):
    same(
        engines, dataclasses.replace(ranged("1h", agg="avg", metric="latency_ms", tz=AMS), **change)
    )


@pytest.mark.parametrize("agg", analytics.CUMULATIVE_AGGREGATIONS)
def test_cumulative(engines, agg):
    metric = "amount" if agg in analytics.METRIC_AGGREGATIONS else None
    same(
        engines,
        ranged("1d", agg=agg, metric=metric, tz=AMS, cumulative=True, split="detail:country"),
    )


def test_previous_period_and_rolling_mean(engines):
    same(engines, ranged("1h", agg="median", metric="latency_ms", tz=AMS, previous=True, rolling=3))


@pytest.mark.parametrize("bucket", ["auto", "1h", "1w"])
def test_the_whole_range_and_events_without_a_time(engines, bucket):
    """No start and end: the range comes from the data; the untimed events are counted."""
    result = same(engines, SeriesQuery(agg="count", bucket=bucket, tz=AMS))
    assert result.without_timestamp == 4


def test_a_range_with_no_events(engines):
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    result = same(engines, SeriesQuery(start=start, end=start + dt.timedelta(days=1), bucket="1h"))
    assert result.frame.empty


def test_reloading_a_file_adds_nothing(tmp_path, chdb_url):
    path = tmp_path / "events.jsonl"
    lines = [
        json.dumps({"trace_id": "t1", "event_type": "a", "metrics": {"x": 1}, "timestamp": 1}),
        "not json",
        json.dumps({"trace_id": "t1", "event_type": "a", "metrics": {"x": "1"}}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with ClickHouseStore(parse(chdb_url("reload"))) as house:
        first = house.load([path], "d")
        again = house.load([path], "d")
        assert (first.loaded, first.rejected) == (1, 2)
        assert (again.loaded, again.duplicates) == (0, 1)
        assert house.event_count() == 1
        assert house.scalar("SELECT count() FROM rejects") == 2
        records = house.dataset_records()
        assert [(r["dataset"], r["events"], r["rejects"], r["duplicates"]) for r in records] == [
            ("d", 1, 2, 1)
        ]


# -- the store's location and its parameters --------------------------------------------------


def test_locations_and_the_password_never_shown(monkeypatch):
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", "s3cret")
    loc = parse("clickhouse://ana@db.example:9000/events")
    assert (loc.engine, loc.interface, loc.host, loc.port, loc.database, loc.user) == (
        "clickhouse",
        "http",
        "db.example",
        9000,
        "events",
        "ana",
    )
    assert loc.password == "s3cret"
    assert "s3cret" not in loc.display + repr(loc)
    cloud = parse("https://u:p%40ss@abc.clickhouse.cloud/default")
    assert (cloud.interface, cloud.port, cloud.password) == ("https", 8443, "p@ss")
    assert "p@ss" not in cloud.display + repr(cloud)
    assert parse("chdb:///data/ch").path == "/data/ch"
    assert parse("chdb:///data/ch?database=qa").database == "qa"
    assert parse("events.duckdb").engine == "duckdb"
    for bad in ("postgres://x/y", "clickhouse:///db", "chdb://", "clickhouse://h/a;b"):
        with pytest.raises(LocationError):
            parse(bad)


def test_every_value_is_a_typed_server_side_parameter():
    sql, params = bind(
        "SELECT ? , '?' , ? FROM t WHERE has(?, x) AND ts >= ?",
        ["x'); DROP TABLE events; --", 1.5, ["a"], dt.datetime(2024, 1, 1, 0, 0, 0, 1234, dt.UTC)],
    )
    assert sql == (
        "SELECT {p0:String} , '?' , {p1:Float64} FROM t WHERE has({p2:Array(String)}, x)"
        " AND ts >= {p3:DateTime64(3, 'UTC')}"
    )
    assert params["p0"] == "x'); DROP TABLE events; --"
    assert params["p3"] == dt.datetime(2024, 1, 1, 0, 0, 0, 1000)


# -- the command line on a ClickHouse store ---------------------------------------------------


def test_load_and_series_commands_answer_as_on_duckdb(runner, formats_dir, chdb_url, tmp_path):
    from eventlens.cli import main

    bad_lines = str(formats_dir / "bad_lines.jsonl")
    url, duck = chdb_url("cli"), str(tmp_path / "d.duckdb")
    outputs = []
    for db in (url, duck):
        loaded = runner.invoke(main, ["load", bad_lines, "--db", db, "--json"])
        assert loaded.exit_code == 0, loaded.output
        outputs.append(json.loads(loaded.output))
        series = ["series", "--db", db, "--bucket", "1d", "--tz", "Asia/Kolkata", "--start"]
        outputs.append(runner.invoke(main, [*series, "2025-11-01"]).output)
    ch_load, ch_series, duck_load, duck_series = outputs
    assert (ch_load["loaded"], ch_load["rejected"]) == (duck_load["loaded"], duck_load["rejected"])
    assert ch_series == duck_series and ch_series.count("\n") > 3
    again = json.loads(runner.invoke(main, ["load", bad_lines, "--db", url, "--json"]).output)
    assert again["loaded"] == 0 and again["duplicates"] == ch_load["loaded"] + ch_load["duplicates"]


def test_info_and_delete_answer_as_on_duckdb(runner, formats_dir, chdb_url, tmp_path):
    from eventlens.cli import main

    files = [str(formats_dir / "bad_lines.jsonl"), str(formats_dir / "events.ndjson")]
    answers = []
    for db in (chdb_url("info"), str(tmp_path / "d.duckdb")):
        for name, path in zip(("one", "two"), files, strict=True):
            assert runner.invoke(main, ["load", path, "--db", db, "--dataset", name]).exit_code == 0
        info = json.loads(runner.invoke(main, ["info", "--db", db, "--json"]).output)
        deleted = json.loads(runner.invoke(main, ["delete", "one", "--db", db, "--json"]).output)
        after = json.loads(runner.invoke(main, ["info", "--db", db, "--json"]).output)
        answers.append((info, deleted, after))
    (ch, ch_deleted, ch_after), (duck, duck_deleted, duck_after) = answers
    keep = (
        "dataset", "test", "events", "traces", "event_types", "rejects", "duplicates",
        "first_event", "files",
    )  # fmt: skip
    for a, b in ((ch, duck), (ch_after, duck_after)):
        assert a["events"] == b["events"]
        assert [{k: d[k] for k in keep} for d in a["datasets"]] == [
            {k: d[k] for k in keep} for d in b["datasets"]
        ]
    assert ch_deleted == duck_deleted and ch_deleted["events_removed"] > 0
    assert [d["dataset"] for d in ch_after["datasets"]] == ["two"]


def test_an_unreachable_server_is_one_sentence_and_never_shows_the_password(runner, monkeypatch):
    from eventlens.cli import main

    monkeypatch.setenv("CLICKHOUSE_PASSWORD", "s3cret-pw")
    url = "clickhouse://ana:also-secret@127.0.0.1:1/x"
    with pytest.raises(StoreError, match="is a ClickHouse store, and Store opens DuckDB files"):
        Store(url)  # the library's guard: never a DuckDB file named after the URL
    for command in ("info", "sandbox", "replay"):
        args = [command, *(["store"] if command == "replay" else []), "--db", url]
        unreachable = runner.invoke(main, args)
        assert unreachable.exit_code == 2, (command, unreachable.output)
        assert "Cannot open the ClickHouse store" in unreachable.output
        assert "s3cret" not in unreachable.output and "also-secret" not in unreachable.output
    app = runner.invoke(main, ["ui", "--db", url])  # said before any server starts
    assert app.exit_code == 2 and "Cannot open the ClickHouse store" in app.output
    assert "s3cret" not in app.output and "also-secret" not in app.output


def test_the_cluster_ddl_shards_events_by_trace():
    from eventlens.clickhouse import schema

    statements = schema.cluster("main", "analytics")
    assert all(" ON CLUSTER `main` " in s for s in statements)
    events = next(s for s in statements if "Distributed(" in s)
    assert "`analytics`.events " in events and "cityHash64(trace_id)" in events
    made = {s.split(" ON CLUSTER")[0].rsplit(".", 1)[1]: s for s in statements}
    assert {t for t, s in made.items() if "ReplicatedMergeTree(" in s} == {
        "events_local",
        "rejects",
        "files",
        "trace_metadata",
    }
    for table in ("datasets", "pulls", "pull_cursors"):  # the latest revision of a row wins
        assert "ReplicatedReplacingMergeTree(" in made[table] and "revision)" in made[table]
    assert any("trace_summary_local" in s and "Distributed(" in s for s in statements)
    with pytest.raises(ValueError, match="not a cluster or database name"):
        schema.cluster("main`; DROP TABLE events; --")


# -- the trace list ---------------------------------------------------------------------------


def _listed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    frame["event_types"] = frame["event_types"].map(lambda v: list(v))
    return frame


@pytest.mark.parametrize(
    "search",
    [
        TraceSearch(),
        *(TraceSearch(sort=sort, descending=d) for sort in traces.SORTS for d in (True, False)),
        TraceSearch(text="tr-01"),
        TraceSearch(text="tr-010", exact=True),
        TraceSearch(datasets=("app", "spring")),
        TraceSearch(event_types=("search",), include_test=True),
        TraceSearch(start=AUTUMN_SHORT[0], end=AUTUMN_SHORT[1]),
        TraceSearch(detail_key="product", detail_value="sku-00"),
    ],
    ids=repr,
)
def test_the_trace_list_and_its_count(engines, search):
    duck, house = engines
    for offset in (0, 40):
        (a, a_total), (b, b_total) = (
            traces.search(store, search, limit=25, offset=offset) for store in (duck, house)
        )
        assert b_total == a_total > 0
        pd.testing.assert_frame_equal(_listed(b), _listed(a), check_dtype=False)


# -- the rest of Explore's questions ------------------------------------------------------------


EXPLORE_QUERIES = [
    ranged("1h", agg="count", tz=AMS),
    ranged("1d", agg="p90", metric="latency_ms", tz=AMS, split="detail:product", top=3),
    dataclasses.replace(
        ranged("15m", agg="avg", metric="amount", tz="Asia/Kolkata"),
        details=(DetailFilter("country", "!=", "DE"),),
        event_types=("add_to_cart", "llm_call"),
    ),
    SeriesQuery(agg="traces", datasets=("web",), include_test=True),
]


@pytest.mark.parametrize("q", EXPLORE_QUERIES, ids=lambda q: f"{q.agg}-{q.split}")
def test_headline_leaderboard_and_key_lists(engines, q):
    duck, house = engines
    a, b = analytics.headline(duck, q), analytics.headline(house, q)
    for period in ("current", "previous"):  # sums may differ in the last bits (their order)
        value = a[period].pop("value")
        assert b[period].pop("value") == (value if value is None else pytest.approx(value))
        assert b[period] == a[period]
    assert {k: v for k, v in b.items() if k not in ("current", "previous")} == {
        k: v for k, v in a.items() if k not in ("current", "previous")
    }
    for key in ("product", "country"):
        pd.testing.assert_frame_equal(
            analytics.leaderboard(house, q, key),
            analytics.leaderboard(duck, q, key),
            check_dtype=False,
            rtol=1e-9,
        )
    for keys in (analytics.metric_keys, analytics.detail_keys):
        assert keys(house, q) == keys(duck, q)
    assert analytics.event_types(house, q.datasets, q.include_test) == analytics.event_types(
        duck, q.datasets, q.include_test
    )


@pytest.mark.parametrize("q", EXPLORE_QUERIES, ids=lambda q: f"{q.agg}-{q.split}")
def test_the_traces_behind_a_selection(engines, q):
    """traces_for over the busiest bucket of the chart, and over two of its series."""
    duck, house = engines
    frame = analytics.series(duck, q).frame
    busiest = frame.sort_values(["events", "bucket"], ascending=[False, True]).iloc[0]
    start, end = busiest["bucket"].to_pydatetime(), busiest["bucket_end"].to_pydatetime()
    for names in (None, sorted(frame["series"].unique())[:2]):
        a = analytics.traces_for(duck, q, start, end, names)
        b = analytics.traces_for(house, q, start, end, names)
        assert len(a) > 0
        pd.testing.assert_frame_equal(_listed_series(b), _listed_series(a), check_dtype=False)


def _listed_series(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    frame["series"] = frame["series"].map(lambda v: list(v))
    return frame


def test_one_trace_its_copies_and_events(engines):
    duck, house = engines
    for trace_id in ("tr-000", "tr-001", "tr-123", "no-such-trace"):
        assert traces.copies(house, trace_id) == traces.copies(duck, trace_id)
        for dataset in (None, "web"):
            a, b = traces.events(duck, trace_id, dataset), traces.events(house, trace_id, dataset)
            pd.testing.assert_frame_equal(b, a, check_dtype=False)
    assert traces.metadata(house, "tr-000", "web") is None  # loaded, not pulled


# -- the app on ClickHouse --------------------------------------------------------------------


def test_the_app_runs_explore_traces_data_and_submit_on_clickhouse(engines, chdb_url, monkeypatch):
    """Explore's default and p95 views, the trace list, one trace, the Data, Submit and Replay
    pages from the seeded chDB database."""
    from apptest_helpers import metric, ok, run_app

    monkeypatch.setenv("EVENTLENS_DB", chdb_url("seeded"))
    explore = run_app()
    ok(explore)
    assert metric(explore, "Events") == "3,200"  # every timed event (4 have no time)
    p95 = run_app({"agg": "p95", "metric": "latency_ms", "by": "detail:product", "tz": AMS})
    ok(p95)
    assert any(m.label == "p95 of latency_ms" for m in p95.metric)
    listed = run_app(page="pages/traces.py")
    ok(listed)
    assert any("traces match" in c.value for c in listed.caption)
    one = run_app({"trace": "tr-001"}, page="pages/traces.py")
    ok(one)
    assert any(s.value.startswith("Trace tr-001") for s in one.subheader)
    data = run_app(page="pages/data.py")
    ok(data)
    assert "From LangWatch" in [h.value for h in data.subheader]  # pulls: test_clickhouse_pull
    assert {"web", "app", "spring"} <= set(data.dataframe[0].value["dataset"])
    submit = run_app(page="pages/submit.py")
    ok(submit)
    endpoints = next(s for s in submit.selectbox if s.label == "Endpoint")
    assert endpoints.value == "embedded sandbox (this app)"  # test_clickhouse_sandbox.py
    replay = run_app(page="pages/replay.py")  # runs there: tests/test_clickhouse_replay.py
    ok(replay)
    assert {"web", "app", "spring"} <= set(replay.multiselect(key="r_datasets").options)


# -- the Data page's questions ------------------------------------------------------------------


@pytest.mark.parametrize("dataset", [None, "web"])
def test_overview_and_profiles(engines, dataset):
    duck, house = engines
    assert analytics.overview(house, dataset) == analytics.overview(duck, dataset)
    a, b = analytics.event_type_profile(duck, dataset), analytics.event_type_profile(house, dataset)
    pd.testing.assert_frame_equal(b, a, check_dtype=False)
    for event_type in ("search", "llm_call"):
        for profile in (analytics.metric_profile, analytics.detail_profile):
            pd.testing.assert_frame_equal(
                profile(house, event_type, dataset),
                profile(duck, event_type, dataset),
                check_dtype=False,
                rtol=1e-9,
            )


def test_rejects_test_marks_and_the_version(formats_dir, chdb_url, tmp_path):
    bad_lines, other = formats_dir / "bad_lines.jsonl", formats_dir / "events.ndjson"
    house = ClickHouseStore(parse(chdb_url("marks")))
    duck = Store(tmp_path / "d.duckdb")
    for store in (house, duck):
        stores.load(store, [bad_lines], "bad")
        stores.load(store, [other], "good")
    for dataset, file, reason in [(None, None, None), ("bad", None, "REQUIRED"), (None, "x", None)]:
        pd.testing.assert_frame_equal(
            house.rejects(dataset, file, reason).reset_index(drop=True),
            duck.rejects(dataset, file, reason).reset_index(drop=True),
            check_dtype=False,
        )
    assert house.reject_files() == duck.reject_files() and house.reject_files("good") == []
    before = house.version()
    for store in (house, duck):
        store.mark_test_data("bad")
    assert house.version() != before
    assert house.test_datasets() == duck.test_datasets() == ["bad"]
    assert house.left_out_datasets() == duck.left_out_datasets()
    assert [r["loaded_at"] for r in house.dataset_records() if r["dataset"] == "bad"]
    house.mark_test_data("bad", False)
    assert house.test_datasets() == []
    with pytest.raises(StoreError, match="no dataset named 'nope'"):
        house.mark_test_data("nope")
    house.close()
    duck.close()


def test_a_server_is_reached_without_a_session_and_with_tls_for_https(monkeypatch):
    """The app's threads share one client: without a session id it takes concurrent queries."""
    import clickhouse_connect

    calls = []

    class Stop(Exception):
        pass

    def fake_client(**kwargs):
        calls.append(kwargs)
        raise Stop("no server here")

    monkeypatch.setattr(clickhouse_connect, "get_client", fake_client)
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", "pw-from-env")
    for url in ("clickhouse://ana@db.internal/events", "https://abc.clickhouse.cloud/events"):
        with pytest.raises(StoreError, match="Cannot open the ClickHouse store"):
            ClickHouseStore(parse(url))
    assert [(c["host"], c["port"], c["secure"]) for c in calls] == [
        ("db.internal", 8123, False),
        ("abc.clickhouse.cloud", 8443, True),
    ]
    assert all(c["autogenerate_session_id"] is False for c in calls)
    assert all(c["password"] == "pw-from-env" and c["database"] == "events" for c in calls)


def _stored(store, dataset: str) -> set[tuple]:
    """A dataset's events as hashable tuples (trace, id, type, time, metrics, details, line)."""
    rows = store.rows(
        "SELECT trace_id, event_id, event_type, timestamp, metrics, event_details, source_line"
        " FROM events WHERE dataset = ?",
        [dataset],
    )
    return {
        (t, e, k, ts, tuple(sorted(dict(m).items())), tuple(sorted(dict(d or {}).items())), n)
        for t, e, k, ts, m, d, n in rows
    }


def test_every_export_format_loads_as_into_duckdb(formats_dir, chdb_url, tmp_path):
    """Each sample format (JSONL, JSON, CSV, Parquet, search responses...) gives the same loaded,
    rejected and duplicate counts, the same events with their lines, and the same rejects."""
    files = sorted(p for p in formats_dir.iterdir() if p.is_file())
    assert len(files) >= 8
    house = ClickHouseStore(parse(chdb_url("formats")))
    duck = Store(tmp_path / "formats.duckdb")
    for path in files:
        name = path.name
        a, b = stores.load(duck, [path], name), stores.load(house, [path], name)
        assert (b.loaded, b.rejected, b.duplicates) == (a.loaded, a.rejected, a.duplicates), name
        assert _stored(house, name) == _stored(duck, name), name
        rejects = "SELECT line, reason FROM rejects WHERE dataset = ? ORDER BY line, reason"
        assert house.rows(rejects, [name]) == duck.rows(rejects, [name]), name
    # The catalogue: files, duplicates and the content hash (sha256 over the files' sha256),
    # after a second load of one file into another's dataset too.
    stores.load(duck, [files[0]], files[1].name)
    stores.load(house, [files[0]], files[1].name)
    keep = ("dataset", "events", "rejects", "duplicates", "files", "content_hash", "test")
    catalogue = [[{k: r[k] for k in keep} for r in s.dataset_records()] for s in (duck, house)]
    assert sorted(catalogue[1], key=str) == sorted(catalogue[0], key=str)
    assert all(r["content_hash"] for r in catalogue[1])
    house.close()
    duck.close()


# -- the Submit page's history ------------------------------------------------------------------


def test_the_submit_history_and_templates_keep_no_key(chdb_url):
    from eventlens import history
    from eventlens.client import Outcome, SendResult, Target

    house = ClickHouseStore(parse(chdb_url("history")))
    target = Target("https://staging.example", key="sk-very-secret", key_source="typed")
    body = {"trace_id": "t1", "event_type": "x", "metrics": {"n": 1}, "note": "sk-very-secret"}
    answer = SendResult(Outcome.ACCEPTED, "accepted", 200, {"message": "ok"}, 12.5, sent=True)
    first = history.record(house, target, body, answer)
    second = history.record(house, target, {**body, "trace_id": "t2"}, answer)
    past = history.recent(house)
    assert list(past["id"]) == [second, first]
    assert history.body_of(house, first)["trace_id"] == "t1"
    assert "sk-very-secret" not in " ".join(map(str, past.astype(str).to_numpy().ravel()))
    history.save_template(house, "shape", {"event_type": "a"})
    history.save_template(house, "shape", {"event_type": "b"})  # replaces the first
    history.save_template(house, "other", {"event_type": "c"})
    assert history.templates(house) == {"other": {"event_type": "c"}, "shape": {"event_type": "b"}}
    history.delete_template(house, "shape")
    assert list(history.templates(house)) == ["other"]
    house.close()


def test_a_failure_after_opening_is_one_sentence(runner, formats_dir, chdb_url):
    """A table made by another version (here a datasets table without its revision column):
    the load says which store failed and why, exit 2, no traceback."""
    from eventlens.cli import main

    url = chdb_url("older")
    with ClickHouseStore(parse(url)) as house:
        house.execute("DROP TABLE datasets")
        house.execute("CREATE TABLE datasets (name String) ENGINE = MergeTree ORDER BY name")
    result = runner.invoke(main, ["load", str(formats_dir / "events.ndjson"), "--db", url])
    assert result.exit_code == 2
    assert f"The ClickHouse store {parse(url).display} failed:" in result.output
    assert "Traceback" not in result.output


def test_a_chdb_folder_held_by_another_process_is_named(chdb_url):
    """chDB opens a folder in one process at a time: the second process is told who holds it."""
    import subprocess
    import sys

    url = chdb_url("held")
    folder = parse(url).path
    # This process holds its chDB folder (a second process to hold one took about 3 s to start).
    with ClickHouseStore(parse(url)):
        other = subprocess.run(
            [sys.executable, "-m", "eventlens.cli", "info", "--db", f"chdb://{folder}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert other.returncode == 2
    assert f"The chDB folder {folder} is in use by another eventlens process" in other.stderr
    assert "Traceback" not in other.stderr


# -- a second terminal on a chDB folder ---------------------------------------------------------


def test_handoff_keys_and_the_form_a_held_chdb_url_is_sent_in(tmp_path, monkeypatch):
    from eventlens.location import handoff_key, held_form

    monkeypatch.chdir(tmp_path)
    assert handoff_key("chdb://data/ch?database=prod") == str(tmp_path / "data" / "ch")
    assert handoff_key("events.duckdb") == str(tmp_path / "events.duckdb")
    assert handoff_key(":memory:") is None
    assert handoff_key("clickhouse://ana@ch.internal:8123/events") is None  # takes every process
    held = str(tmp_path / "data" / "ch")
    assert held_form("chdb://data/ch?database=prod", held) == f"chdb://{held}?database=prod"
    assert held_form("chdb://data/ch", held) == f"chdb://{held}"
    assert held_form("events.duckdb", "/abs/events.duckdb") == "/abs/events.duckdb"


def test_a_second_terminal_runs_its_commands_in_the_app_holding_a_chdb_folder(
    tmp_path, formats_dir
):
    """chDB opens a folder in one process: with `eventlens ui` holding one, `load`, `info` and
    `series` from another process are handed to the app (as for a DuckDB file) and answer."""
    from test_handoff import start_ui, stop

    from eventlens.cli import main

    url = f"chdb://{tmp_path / 'held'}?database=shop"  # not this process's chDB folder
    proc, published, _ = start_ui(url, tmp_path)
    try:
        assert published.store == str(tmp_path / "held")
        runner = CliRunner()
        load = [
            "load",
            str(formats_dir / "events.ndjson"),
            "--db",
            url,
            "--dataset",
            "nd",
            "--json",
        ]
        loaded = runner.invoke(main, load)
        assert loaded.exit_code == 0, loaded.output
        assert json.loads(loaded.output.strip().splitlines()[-1])["loaded"] == 120
        info = runner.invoke(main, ["info", "--db", url, "--json"])
        assert info.exit_code == 0, info.output
        datasets = {d["dataset"]: d["events"] for d in json.loads(info.output)["datasets"]}
        assert datasets["nd"] == 120  # beside the sample data the app loaded on first start
        series = runner.invoke(main, ["series", "--db", url, "--dataset", "nd"])
        assert series.exit_code == 0, series.output
        assert series.output.startswith("bucket,") and len(series.output.splitlines()) > 1
    finally:
        stop(proc)
