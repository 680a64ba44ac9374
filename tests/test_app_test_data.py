"""Explore and Traces on a store where QA and a replay sent events to the sandbox: test data
stays out of the analysis unless asked for, and a trace id in two datasets is never merged."""

from __future__ import annotations

import pytest
from apptest_helpers import metric, ok, one_dataframe, plain, run_app
from streamlit.testing.v1 import AppTest

from eventlens import traces
from eventlens.sandbox import Sandbox
from eventlens.store import Store

TRACE = "trace_2a05fede30bdebc2"  # 40 events in the sample
NOW = 1_796_601_600_000  # 2026-12-07: a Submit's "now", a year after the sample

pytestmark = pytest.mark.usefixtures("app_error_details")


@pytest.fixture(scope="module")
def db(sample_copy) -> str:
    """The sample, plus what one Submit and a replay of one trace to the sandbox stored."""
    with Store(sample_copy) as store:
        sandbox = Sandbox(store)
        replayed = traces.events(store, TRACE, "sample")
        sandbox.insert([traces.body(row, TRACE) for _, row in replayed.iterrows()])
        sandbox.insert(
            [{"trace_id": "qa-1", "event_type": "add_to_cart", "metrics": {"amount": 1},
              "timestamp": NOW}]
        )  # fmt: skip
        sandbox.flush()
    return str(sample_copy)


@pytest.fixture
def open_page(db, monkeypatch):
    monkeypatch.setenv("EVENTLENS_DB", db)
    return lambda page=None, params=None: run_app(params, page)


def captions(at: AppTest) -> list[str]:
    return [plain(c.value) for c in at.caption]


def test_explore_leaves_test_data_out_and_says_how_to_count_it(open_page):
    at = open_page()
    ok(at)
    # The sample's 30 days, not stretched to the Submit a year later; the replay not counted.
    assert metric(at, "Events") == "50,000"
    assert metric(at, "Time range") == "30.0 days"
    assert any(
        c.startswith("Test data left out: sandbox (41 events, from Submit and Replay")
        and "Tick Include test data under Filters" in c
        for c in captions(at)
    )
    at.selectbox(key="x_range").set_value("30d").run()
    # The range counts back from the sample's newest event, not from the Submit's.
    assert int(metric(at, "Events").replace(",", "")) > 40_000
    at.selectbox(key="x_range").set_value("all").run()
    at.checkbox(key="x_test").check().run()
    ok(at)
    assert metric(at, "Events") == "50,041"
    assert at.query_params["test"] == "1"
    assert not any(c.startswith("Test data left out") for c in captions(at))


def test_a_trace_in_two_datasets_is_read_one_copy_at_a_time(open_page):
    at = open_page("pages/traces.py", {"trace": TRACE})
    ok(at)
    assert metric(at, "Events") == "40"  # not 80: the replay's copy is not merged in
    assert metric(at, "Dataset") == "sample"
    notes = [plain(i.value) for i in at.info]
    assert notes == [
        "This trace id is in 2 datasets: sample (40 events), sandbox (40 events, test data)."
        " Each is read on its own; choose which below."
    ]
    at.selectbox(key="t_trace_ds").set_value("sandbox").run()
    ok(at)
    assert metric(at, "Dataset") == "sandbox (test)"
    assert at.query_params["trace_ds"] == "sandbox"
    # Compared with itself: the other dataset's copy, event by event the same.
    at.text_input(key="t_compare").input(TRACE).run()
    ok(at)
    assert any(c.startswith(f"A = {TRACE} in sandbox, B = {TRACE} in sample") for c in captions(at))
    assert [s.value for s in at.success] == [
        "Same event types in the same order; metric changes are listed below."
    ]


def test_the_trace_list_leaves_test_data_out_unless_asked(open_page):
    at = open_page("pages/traces.py")
    ok(at)
    listed = one_dataframe(at, lambda id_: "-t_list_" in id_, "trace list").value
    assert set(listed["dataset"]) == {"sample"}
    assert any(c.startswith("Test data left out: sandbox") for c in captions(at))
    at.checkbox(key="t_test").check().run()
    ok(at)
    everything = one_dataframe(at, lambda id_: "-t_list_" in id_, "trace list").value
    assert "sandbox" in set(everything["dataset"])
