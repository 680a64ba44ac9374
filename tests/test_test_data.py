"""Test data (the sandbox, datasets marked so) is kept apart from analysis: one rule in the store,
followed by Explore's queries, the trace list and the CLI; a trace id in two datasets is two
traces."""

from __future__ import annotations

import duckdb
import pytest

from eventlens import analytics, traces
from eventlens.analytics import SeriesQuery
from eventlens.ingest import load_files
from eventlens.sandbox import Sandbox
from eventlens.store import Store, StoreError
from eventlens.traces import TraceSearch

DAY = 86_400_000
T0 = 1_700_000_000_000  # 2023-11-14


def body(trace: str, n: int, when: int, event_type: str = "llm_call") -> dict:
    return {
        "trace_id": trace,
        "event_id": f"{trace}-{n}",
        "event_type": event_type,
        "timestamp": when,
        "metrics": {"latency_ms": 100.0 + n},
        "event_details": {"model": "m"},
    }


@pytest.fixture
def mixed(store, write_bodies):
    """'prod': 30 days of two traces; the sandbox: a copy of trace a (a replay) and a QA event
    sent a year later, as Submit's 'now' would be."""
    prod = [body("a", i, T0 + i * DAY) for i in range(15)]
    prod += [body("b", i, T0 + i * DAY + 1, "search") for i in range(15, 30)]
    load_files(store, [write_bodies(prod, "prod.jsonl")], "prod")
    sandbox = Sandbox(store)
    sandbox.insert([body("a", i, T0 + i * DAY) for i in range(15)])
    sandbox.insert([body("qa", 0, T0 + 365 * DAY, "qa_check")])
    sandbox.flush()
    return store


def test_the_sandbox_is_test_data_and_a_loaded_dataset_is_not(mixed):
    assert mixed.test_datasets() == ["sandbox"]
    assert mixed.left_out_datasets() == {"sandbox": 16}
    assert dict(mixed.rows("SELECT name, test FROM datasets")) == {"prod": False, "sandbox": True}


def test_all_datasets_leaves_test_data_out_of_every_explore_question(mixed):
    q = SeriesQuery()
    # The range is prod's 30 days, not stretched to the QA event a year later.
    first, last = analytics.resolve_range(mixed, q)
    assert (last - first).days == 29
    assert analytics.headline(mixed, q)["current"]["events"] == 30
    assert analytics.series(mixed, q).frame["events"].sum() == 30
    assert analytics.event_types(mixed) == ["llm_call", "search"]
    assert "qa_check" in analytics.event_types(mixed, include_test=True)
    everything = SeriesQuery(include_test=True)
    assert analytics.headline(mixed, everything)["current"]["events"] == 46
    # Naming the dataset counts it, whatever include_test says.
    named = SeriesQuery(datasets=("sandbox",))
    assert analytics.headline(mixed, named)["current"]["events"] == 16


def test_the_trace_list_leaves_test_data_out_unless_asked(mixed):
    found, total = traces.search(mixed, TraceSearch())
    assert total == 2 and set(found["dataset"]) == {"prod"}
    found, total = traces.search(mixed, TraceSearch(include_test=True))
    assert total == 4 and sorted(found["dataset"]) == ["prod", "prod", "sandbox", "sandbox"]
    found, total = traces.search(mixed, TraceSearch(datasets=("sandbox",)))
    assert total == 2


def test_a_store_of_only_test_data_shows_it(store):
    sandbox = Sandbox(store)
    sandbox.insert([body("qa", 0, T0)])
    assert store.left_out_datasets() == {}
    assert analytics.headline(store, SeriesQuery())["current"]["events"] == 1
    assert traces.search(store, TraceSearch())[1] == 1


def test_marking_a_dataset_as_test_data_and_back(mixed):
    before = mixed.version()
    mixed.mark_test_data("prod")
    assert mixed.version() != before  # cached results follow the mark
    # Nothing but test data now: all of it is shown.
    assert mixed.left_out_datasets() == {}
    mixed.mark_test_data("sandbox", False)
    assert mixed.left_out_datasets() == {"prod": 30}
    assert analytics.headline(mixed, SeriesQuery())["current"]["events"] == 16
    with pytest.raises(StoreError, match="no dataset named 'nope'"):
        mixed.mark_test_data("nope")


def test_loading_into_a_test_dataset_again_keeps_its_mark(mixed, write_bodies):
    mixed.mark_test_data("prod")
    load_files(mixed, [write_bodies([body("c", 99, T0)], "more.jsonl")], "prod")
    assert mixed.test_datasets() == ["prod", "sandbox"]


def test_a_store_made_before_test_data_marks_its_sandbox(tmp_path):
    path = str(tmp_path / "old.duckdb")
    with duckdb.connect(path) as con:  # the datasets table as it was
        con.execute(
            "CREATE TABLE datasets (name VARCHAR PRIMARY KEY, files VARCHAR[] NOT NULL,"
            " content_hash VARCHAR NOT NULL, loaded_at TIMESTAMPTZ NOT NULL, events BIGINT"
            " NOT NULL, rejects BIGINT NOT NULL, duplicates BIGINT NOT NULL)"
        )
        con.execute(
            "INSERT INTO datasets VALUES ('sandbox', [], 'x', now(), 0, 0, 0),"
            " ('prod', [], 'y', now(), 0, 0, 0)"
        )
    with pytest.raises(StoreError, match="made by an older eventlens"):
        Store(path, read_only=True)
    with Store(path) as store:
        assert store.test_datasets() == ["sandbox"]
    with Store(path, read_only=True) as store:  # brought up to date: read-only works now
        assert store.test_datasets() == ["sandbox"]


# -- a trace id in several datasets ------------------------------------------------------------


def test_each_datasets_copy_of_a_trace_id_is_read_on_its_own(mixed):
    copies = traces.copies(mixed, "a")
    assert copies == [traces.Copy("prod", 15, False), traces.Copy("sandbox", 15, True)]
    assert len(traces.events(mixed, "a", "prod")) == 15  # not 30: nothing is merged
    assert traces.choose_copy(copies, None).dataset == "prod"  # analysis data first
    assert traces.choose_copy(copies, "sandbox").dataset == "sandbox"
    assert traces.choose_copy(copies, "gone").dataset == "prod"
    assert traces.copies(mixed, "nope") == [] and traces.choose_copy([], None) is None


def test_the_traces_behind_a_point_name_their_dataset(mixed):
    q = SeriesQuery(include_test=True)
    start, end = analytics.resolve_range(mixed, q)
    behind = analytics.traces_for(mixed, q, start, end)
    rows = sorted(zip(behind["trace_id"], behind["dataset"], behind["events"], strict=True))
    assert rows == [
        ("a", "prod", 15),
        ("a", "sandbox", 15),
        ("b", "prod", 15),
        ("qa", "sandbox", 1),
    ]
