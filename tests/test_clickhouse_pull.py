"""Pulls from LangWatch into a ClickHouse store (chDB in this process) end as they do in DuckDB:
the same events, counts, rejects, metadata and cursor, page after page, across a kill, a second
pull and a pull of everything again. Each scenario runs on both engines against the same
LangWatch stand-in (tests/langwatch_fake.py)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx
import pytest
from langwatch_fake import (
    ENDPOINT,
    KEY,
    FakeLangWatch,
    asgi_app,
    change_three_traces,
    event,
    seven_traces,
)
from sandbox_server import serve_in_thread
from test_sync import expected, run

from eventlens import traces
from eventlens.cli import main
from eventlens.client import Target
from eventlens.location import parse
from eventlens.store import Store
from eventlens.sync import PullSpec, ReadClient, cursor, past_pulls, pull

pytest.importorskip("clickhouse_connect", reason="ClickHouse support is not installed")
pytest.importorskip("chdb", reason="chDB (ClickHouse in process) is not installed")

from eventlens.clickhouse.store import ClickHouseStore  # noqa: E402

_numbers = itertools.count()


@pytest.fixture
def house(chdb_url):
    with ClickHouseStore(parse(chdb_url(f"pull{next(_numbers)}"))) as s:
        yield s


@pytest.fixture
def duck():
    with Store(":memory:") as s:
        yield s


@pytest.fixture
def server() -> FakeLangWatch:
    return seven_traces()


def held(store: Any, dataset: str = "langwatch") -> dict[str, list[tuple]]:
    """The dataset's events per trace as comparable tuples, through the Traces page's reader."""
    out: dict[str, list[tuple]] = {}
    for trace_id in sorted({r[0] for r in store.rows("SELECT DISTINCT trace_id FROM events")}):
        frame = traces.events(store, trace_id, dataset)
        out[trace_id] = sorted(
            (
                row.event_type,
                int(row.timestamp.timestamp() * 1000),
                {k: v for k, v in row.metrics.items() if v is not None},
            )
            for row in frame.itertuples()
        )
    return out


def catalogue(store: Any) -> list[tuple]:
    """What the Data page lists for the pulled dataset, and its rejects."""
    return [
        (r["dataset"], r["events"], r["rejects"], r["traces"], list(r["files"]))
        for r in store.dataset_records()
    ] + [tuple(r) for r in store.rows("SELECT location, trace_id, reason FROM rejects")]


def both(duck: Store, house: ClickHouseStore, server: FakeLangWatch, **spec: Any) -> Any:
    """The same pull on both engines; their results must be equal."""
    a, b = run(duck, server, **spec), run(house, server, **spec)
    assert {**b.__dict__, "pull_id": ""} == {**a.__dict__, "pull_id": ""}
    assert held(house) == held(duck)
    assert catalogue(house) == catalogue(duck)
    # The same keys (md5 of dataset, trace and position), whichever way a page was written.
    assert sorted(house.rows("SELECT toString(event_key) FROM events")) == sorted(
        duck.rows("SELECT event_key::VARCHAR FROM events")
    )
    return b


def test_a_first_and_a_second_pull_replace_traces_as_on_duckdb(duck, house, server):
    first = both(duck, house, server)
    assert (first.traces, first.events, first.added, first.pages) == (7, 14, 14, 3)
    assert held(house) == {t: sorted(v) for t, v in expected(server).items()}
    change_three_traces(server)
    second = both(duck, house, server)
    assert (second.traces, second.added, second.removed) == (3, 2, 1)
    assert cursor(house, ENDPOINT, "langwatch") == cursor(duck, ENDPOINT, "langwatch")
    # The trace list reads the summary kept for the replaced traces.
    for store in (duck, house):
        frame, total = traces.search(store, traces.TraceSearch(datasets=("langwatch",)))
        assert total == 8 and int(frame["events"].sum()) == 15


def test_pulling_everything_again_changes_nothing(duck, house, server):
    both(duck, house, server)
    again = both(duck, house, server, full=True)
    assert (again.added, again.removed) == (0, 0)
    assert house.scalar("SELECT count() FROM events") == 14


def test_a_pull_killed_between_pages_continues_its_scroll_and_ends_exact(house, server):
    class Killed(BaseException):
        pass

    calls = {"n": 0}

    def dies_on_the_third(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 3:
            raise Killed()
        return server.handler(request)

    target = Target(endpoint=ENDPOINT, key=KEY, key_source="environment")
    dying = ReadClient(target, transport=httpx.MockTransport(dies_on_the_third))
    with pytest.raises(Killed):
        pull(house, PullSpec(endpoint=ENDPOINT, page_size=3), client=dying)
    saved = cursor(house, ENDPOINT, "langwatch")
    assert saved.scroll and saved.scroll["scroll_id"]
    assert len(held(house)) == 6
    server.requests.clear()
    result = run(house, server)
    assert server.requests[0]["scrollId"] == saved.scroll["scroll_id"]
    assert held(house) == {t: sorted(v) for t, v in expected(server).items()}
    assert result.traces == 1
    assert cursor(house, ENDPOINT, "langwatch").scroll is None
    assert list(past_pulls(house)["outcome"]) == ["done", "failed"]


def test_a_page_applied_twice_leaves_the_store_as_once(house, server):
    """What a kill after a page's rows but before its cursor leaves: the page applied again."""
    from eventlens.clickhouse import pulls
    from eventlens.sync.apply import CursorUpdate
    from eventlens.sync.mapping import from_full

    run(house, server)
    before = held(house), catalogue(house)
    page = [from_full(server.full(t, cap=None)) for t in ("t1", "t2")]
    pull_id = pulls.start(house, ENDPOINT, "langwatch", 0, 1)
    for _ in range(2):
        applied = pulls.apply_page(
            house,
            dataset="langwatch",
            endpoint=ENDPOINT,
            pull_id=pull_id,
            traces=page,
            total_hits=None,
            cursor=CursorUpdate(1_000_000, None),
        )
        assert (applied.events, applied.added, applied.removed) == (4, 0, 0)
    assert (held(house), catalogue(house)) == before
    assert house.scalar("SELECT sum(events) FROM trace_summary WHERE dataset = 'langwatch'") == 14


def test_rejects_and_metadata_are_replaced_with_their_trace(duck, house, server):
    server.put(
        "odd",
        [event(), {"event_type": "x", "timestamp": 1_700_000_000_001, "metrics": {"m": "high"}}],
        60,
        user_id="u'1",
        labels=["a", "b"],
    )
    result = both(duck, house, server)
    assert result.rejected == 1
    assert house.rows("SELECT location, trace_id FROM rejects") == [("trace odd, event 2", "odd")]
    for store in (duck, house):
        found = traces.metadata(store, "odd", "langwatch")
        assert found is not None and found.fields() == {"user_id": "u'1", "labels": "a, b"}
    # Fixed on the server, with other metadata: the next pull replaces both.
    server.traces["odd"]["events"][1]["metrics"] = {"m": 3.0}
    server.traces["odd"]["meta"] = {"customer_id": "c9"}
    server.traces["odd"]["updated"] = server.now = 3_000_000
    both(duck, house, server)
    assert house.scalar("SELECT count() FROM rejects") == 0
    found = traces.metadata(house, "odd", "langwatch")
    assert found is not None and found.fields() == {"customer_id": "c9"}
    assert traces.metadata(house, "odd' OR '1'='1", "langwatch") is None


def test_deleting_the_dataset_forgets_its_cursor_and_metadata(house, server):
    server.traces["t1"]["meta"] = {"user_id": "u1"}
    run(house, server)
    assert house.delete_dataset("langwatch") == 14
    assert cursor(house, ENDPOINT, "langwatch").updated_through_ms is None
    assert house.scalar("SELECT count() FROM trace_metadata") == 0
    server.requests.clear()
    run(house, server)
    assert server.requests[0]["startDate"] == 0  # from the beginning again
    assert house.scalar("SELECT count() FROM events") == 14


def test_the_command_pulls_into_clickhouse_and_never_keeps_the_key(runner, chdb_url, server):
    url = chdb_url("pull_command")
    with serve_in_thread(asgi_app(server)) as served:
        args = ["pull", "--db", url, "--endpoint", served, "--page-size", "3", "--json"]
        result = runner.invoke(main, args, env={"LANGWATCH_API_KEY": KEY})
        assert result.exit_code == 0, result.output
        assert json.loads(result.output.strip().splitlines()[-1])["added"] == 14
        refused = runner.invoke(main, args, env={"LANGWATCH_API_KEY": "wrong-" + KEY})
    assert refused.exit_code == 1 and "wrong-" not in refused.output
    with ClickHouseStore(parse(url)) as store:
        assert store.scalar("SELECT count() FROM events") == 14
        for table in ("pulls", "pull_cursors", "datasets", "events"):
            assert KEY not in repr(store.rows(f"SELECT * FROM {table}"))  # noqa: S608


def test_the_data_page_pulls_into_clickhouse(chdb_url, server, monkeypatch):
    """Pull now on the Data page of a chDB store: the pull runs, its row is listed as done,
    the dataset appears, and the typed key is in no table."""
    from apptest_helpers import run_app
    from test_app_data_pull import fill, past_pulls, pull_now

    url = chdb_url("pull_page")
    monkeypatch.setenv("EVENTLENS_DB", url)
    monkeypatch.delenv("LANGWATCH_API_KEY", raising=False)
    monkeypatch.delenv("LANGWATCH_ENDPOINT", raising=False)
    with serve_in_thread(asgi_app(server)) as served:
        at = run_app(page="pages/data.py")
        fill(at, served, KEY)
        session = pull_now(at)
    assert session is not None and session.result is not None, session and session.error
    assert session.result.added == 14
    past = past_pulls(at)
    assert list(past["outcome"]) == ["done"] and list(past["events"]) == [14]
    datasets = next(d.value for d in at.dataframe if "dataset" in d.value.columns)
    assert "langwatch" in set(datasets["dataset"])
    from eventlens.ui.state import get_store

    store = get_store()
    for table in ("pulls", "pull_cursors", "datasets"):
        assert KEY not in repr(store.rows(f"SELECT * FROM {table}"))  # noqa: S608
