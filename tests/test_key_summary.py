"""The key catalogue (key_summary): Explore's metric and detail key lists read from it are the
lists a scan of every event's maps gives, after every kind of write: loads, deletes, a store
made before it, pulls, and the sandbox before and after its summary catches up. The trace
summary follows the same marker: a load while the sandbox's summary waits counts once."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
from langwatch_fake import FakeLangWatch, event
from test_sync import run

from eventlens import analytics, sandbox
from eventlens.analytics import SeriesQuery
from eventlens.ingest import load_files
from eventlens.store import Store

# The lists as they were computed before key_summary: every event's map keys in scope.
ORACLE = """
    SELECT k, count(*) AS n FROM (SELECT unnest(map_keys({column})) AS k FROM events
    WHERE {where}) GROUP BY k ORDER BY n DESC, k
"""

SCOPES = [
    SeriesQuery(),
    SeriesQuery(include_test=True),
    SeriesQuery(datasets=("a",)),
    SeriesQuery(datasets=("b", "sandbox")),
    SeriesQuery(event_types=("search",)),
    SeriesQuery(datasets=("a", "langwatch"), event_types=("llm_call", "thumbs", "nope")),
    SeriesQuery(include_test=True, event_types=("page_view",)),
]


def oracle(store: Store, q: SeriesQuery, column: str) -> list[str]:
    where, params = analytics._where(q)
    return [r[0] for r in store.rows(ORACLE.format(column=column, where=where), params)]


def assert_lists_match(store: Store) -> None:
    for q in SCOPES:
        assert analytics.metric_keys(store, q) == oracle(store, q, "metrics"), q
        assert analytics.detail_keys(store, q) == oracle(store, q, "event_details"), q


def bodies(n: int, seed: int, *, timestamps: bool = True) -> list[dict[str, Any]]:
    """Track-event bodies whose keys vary with the type and the position."""
    out = []
    types = itertools.cycle(("page_view", "search", "llm_call"))
    for i in range(n):
        kind = next(types)
        body: dict[str, Any] = {
            "trace_id": f"t{seed}_{i % 7}",
            "event_id": f"e{seed}_{i}",
            "event_type": kind,
            "metrics": {f"m{(i + seed) % 5}": 1.0, **({"latency_ms": 2.0} if i % 3 else {})},
            "event_details": {f"d{(i * seed) % 4}": "x", **({"page": "/"} if i % 2 else {})},
        }
        if timestamps:
            body["timestamp"] = 1_700_000_000_000 + i
        out.append(body)
    return out


def test_the_lists_match_a_full_scan_after_loads_and_deletes(store, write_bodies):
    assert_lists_match(store)  # empty
    first = write_bodies(bodies(40, 1), "one.jsonl")
    load_files(store, [first], "a")
    assert_lists_match(store)
    load_files(store, [first], "a")  # the same file again: nothing counted twice
    assert store.scalar("SELECT sum(events) FROM key_summary WHERE map = 'metrics'") == 40 + 26
    assert_lists_match(store)
    load_files(store, [write_bodies(bodies(30, 2), "two.jsonl")], "b")
    assert_lists_match(store)
    # Events without a timestamp are stored but not analysed: not counted either.
    undated = write_bodies(bodies(20, 3, timestamps=False), "three.jsonl")
    load_files(store, [undated], "b")
    assert store.scalar("SELECT count(*) FROM events WHERE timestamp IS NULL")
    assert_lists_match(store)
    store.mark_test_data("b")
    assert_lists_match(store)
    store.delete_dataset("a")
    assert not store.scalar("SELECT count(*) FROM key_summary WHERE dataset = 'a'")
    assert_lists_match(store)
    store.refresh_traces(None)  # the rebuild gives the same catalogue
    assert_lists_match(store)


def test_a_store_with_events_but_no_catalogue_builds_it_on_open(db_path, write_bodies):
    with Store(db_path) as store:
        load_files(store, [write_bodies(bodies(40, 1))], "a")
        before = store.rows("SELECT * FROM key_summary ORDER BY ALL")
        store.execute("DELETE FROM key_summary")  # as a store made before it
    with Store(db_path) as store:
        assert store.rows("SELECT * FROM key_summary ORDER BY ALL") == before
        assert_lists_match(store)
        store.execute("DELETE FROM key_summary_batch")  # built but never marked: rebuilt
    with Store(db_path) as store:
        assert store.rows("SELECT * FROM key_summary ORDER BY ALL") == before
    with Store(db_path, read_only=True) as store:
        assert_lists_match(store)
    with Store(db_path) as store:  # made before the catalogue, then opened read-only: a scan
        store.execute("DROP TABLE key_summary; DROP TABLE key_summary_batch")
    with Store(db_path, read_only=True) as store:
        assert_lists_match(store)


def test_pulls_that_replace_traces_keep_the_counts(store, write_bodies):
    load_files(store, [write_bodies(bodies(20, 1))], "a")
    server = FakeLangWatch()
    for i in range(5):
        server.put(f"t{i}", [event(ts=1_700_000_000_000 + i), event("thumbs", up=1.0)], 100 + i)
    run(store, server)
    assert_lists_match(store)
    server.now = 2_000_000
    server.put("t1", [event(ts=1_700_000_009_000, cost=2.0)], 1_500_000)  # loses latency_ms
    server.put("t3", [], 1_500_001)  # loses every event
    server.put("t9", [event("new", tokens=3.0)], 1_500_002)
    run(store, server)
    assert_lists_match(store)
    counts = dict(
        store.rows(
            "SELECT key, sum(events) FROM key_summary WHERE dataset = 'langwatch' GROUP BY key"
        )
    )
    assert counts == {"latency_ms": 3, "up": 3, "cost": 1, "tokens": 1}


def hold_sandbox_summary(box: sandbox.Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox's summary waits, as it does for up to REFRESH_S while its queue is busy."""

    def later(before: int) -> None:
        if box._unsummarised is None:
            box._unsummarised = before

    monkeypatch.setattr(box, "_refresh_traces", later)


@pytest.mark.parametrize("path", [":memory:", "file"])
def test_the_sandbox_lists_are_right_before_and_after_its_summary_catches_up(
    tmp_path, monkeypatch, write_bodies, path
):
    store = Store(":memory:" if path == ":memory:" else tmp_path / "s.duckdb")
    load_files(store, [write_bodies(bodies(30, 1))], "a")
    box = sandbox.Sandbox(store, "k")
    assert all(box.insert(bodies(12, 5)))  # idle: summarised at once
    assert_lists_match(store)
    hold_sandbox_summary(box, monkeypatch)
    fresh = bodies(9, 6)
    for body in fresh:
        body["event_id"] = uuid.uuid4().hex
        body["metrics"]["only_in_the_sandbox"] = 1.0
        body["event_details"] = {"new_detail": "y"}
    assert all(box.insert(fresh[:4]))
    assert all(box.insert(fresh[4:]))
    assert box._unsummarised is not None
    marked = Store.keys_through(store.cursor())
    assert marked is not None and marked < store.last_batch()  # the catalogue is behind
    assert "only_in_the_sandbox" in analytics.metric_keys(store, SeriesQuery(include_test=True))
    assert_lists_match(store)
    monkeypatch.undo()
    box.flush()
    assert Store.keys_through(store.cursor()) == store.last_batch()
    assert_lists_match(store)
    store.delete_dataset("sandbox")
    assert_lists_match(store)
    store.close()


def test_a_load_while_the_sandbox_summary_waits_counts_every_trace_once(
    store, monkeypatch, write_bodies
):
    """Before the marker, the load merged the sandbox's waiting batch and the sandbox's flush
    then merged it (and the load's) again: every such trace counted twice."""
    box = sandbox.Sandbox(store, "k")
    hold_sandbox_summary(box, monkeypatch)
    assert all(box.insert(bodies(6, 7)))
    load_files(store, [write_bodies(bodies(20, 8))], "a")
    assert all(box.insert(bodies(5, 9)))
    monkeypatch.undo()
    box.flush()
    expected = store.rows(
        "SELECT dataset, trace_id, count(*), min(timestamp), max(timestamp),"
        " list_sort(list(DISTINCT event_type)) FROM events GROUP BY ALL ORDER BY ALL"
    )
    summary = store.rows(
        "SELECT dataset, trace_id, events, first_time, last_time, event_types"
        " FROM trace_summary ORDER BY ALL"
    )
    assert summary == expected
    assert_lists_match(store)


def test_the_store_version_moves_when_the_sandbox_summary_catches_up(
    store, monkeypatch, write_bodies
):
    """Cached trace lists (keyed by the version) are read again once the summary has the
    sandbox's inserts, not only at the next write."""
    load_files(store, [write_bodies(bodies(10, 3))], "a")
    box = sandbox.Sandbox(store, "k")
    hold_sandbox_summary(box, monkeypatch)
    assert all(box.insert(bodies(4, 4)))
    stored = store.version()
    monkeypatch.undo()
    box.flush()
    assert store.version() != stored
    assert store.version() == store.version()  # and stays put while nothing changes
