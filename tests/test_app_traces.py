"""The Traces page, driven through Streamlit's AppTest (no browser).

The page is opened as a browser opens `/traces?...`: the query parameters are set and the page
is switched to before the first run, so app.py's router runs the Traces page straight away.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from apptest_helpers import metric, ok, one_dataframe, plain, run_app, select_row
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/traces.py"
CAPTION = re.compile(r"^([\d,]+) traces? match(?:es)?; page ([\d,]+) of ([\d,]+), 50 a page\.$")
SECRET = "sk-lw-THIS-IS-A-SECRET-0123456789abcdef"


pytestmark = pytest.mark.usefixtures("app_error_details")


@pytest.fixture(scope="module")
def db(sample_copy) -> str:
    """This module's copy of the sample store (made once per session, as a first start does)."""
    return str(sample_copy)


@pytest.fixture
def open_page(db, monkeypatch):
    """Open /traces with these query parameters, as a browser's first request would."""
    monkeypatch.setenv("EVENTLENS_DB", db)

    return lambda params=None: run_app(params, PAGE)


@pytest.fixture(scope="module")
def listed(db) -> pd.DataFrame:
    """The first page of the default trace list (newest first), read once per module."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EVENTLENS_DB", db)
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.switch_page(PAGE)
        at.run()
        ok(at)
        return trace_list(at)
    finally:
        mp.undo()


# -- helpers -----------------------------------------------------------------------------------


def warnings(at: AppTest) -> list[str]:
    return [plain(w.value) for w in at.warning]


def params(at: AppTest) -> dict[str, str]:
    return {k: at.query_params[k] for k in at.query_params}


def counts(at: AppTest) -> tuple[int, int, int]:
    """(traces that match, this page, pages) from the list's caption."""
    found = [m for c in at.caption if (m := CAPTION.match(plain(c.value)))]
    assert len(found) == 1, f"no 'N traces match' caption in {[c.value for c in at.caption]}"
    total, page, pages = (int(g.replace(",", "")) for g in found[0].groups())
    return total, page, pages


def list_element(at: AppTest):
    return one_dataframe(at, lambda id_: "-t_list_" in id_, "trace list")


def trace_list(at: AppTest) -> pd.DataFrame:
    return list_element(at).value


def events_element(at: AppTest, trace_id: str):
    return one_dataframe(
        at, lambda id_: id_.endswith(f"|{trace_id}"), f"events table of {trace_id}"
    )


def headings(at: AppTest) -> list[str]:
    return [s.value for s in at.subheader]


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def rendered_text(at: AppTest) -> str:
    """Every element's protobuf as text (labels, values, code, table data, chart specs)."""
    out: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(out)


# -- the list ----------------------------------------------------------------------------------


def test_the_page_renders_and_lists_the_newest_traces(open_page):
    at = open_page()
    ok(at)
    assert [t.value for t in at.title] == ["Traces"]
    total, page, pages = counts(at)
    assert total >= 1_000  # the sample: 50,000 events in a few thousand traces
    assert (page, pages) == (1, -(-total // 50))
    shown = trace_list(at)
    assert len(shown) == 50
    assert {"trace_id", "dataset", "events", "first event", "last event", "event types"} <= set(
        shown.columns
    )
    assert shown["trace_id"].str.startswith("trace_").all()
    assert shown["last event"].is_monotonic_decreasing  # newest first by default
    assert any("Choose a trace in the list" in c.value for c in at.caption)
    assert not at.warning
    assert params(at) == {}  # the default view needs no parameters
    assert not [s for s in headings(at) if s.startswith("Trace ")]


def test_typing_a_prefix_narrows_the_list_and_the_url(open_page, listed):
    at = open_page()
    total, _, _ = counts(at)
    prefix = listed["trace_id"].iloc[0][:8]  # "trace_" and two hex digits
    at.text_input(key="t_text").input(prefix).run()
    ok(at)
    narrowed, _, _ = counts(at)
    assert 0 < narrowed < total
    assert trace_list(at)["trace_id"].str.startswith(prefix).all()
    assert params(at) == {"q": prefix}

    # An exact match of a whole id finds that one trace.
    whole = listed["trace_id"].iloc[0]
    at.text_input(key="t_text").input(whole).run()
    at.checkbox(key="t_exact").check().run()
    ok(at)
    assert counts(at)[0] == 1
    assert trace_list(at)["trace_id"].tolist() == [whole]
    assert params(at) == {"q": whole, "exact": "1"}

    # A prefix nothing starts with: an empty list and a message, no exception.
    at.checkbox(key="t_exact").uncheck()
    at.text_input(key="t_text").input("no-trace-starts-like-this").run()
    ok(at)
    assert counts(at)[0] == 0
    assert any("No trace matches" in i.value for i in at.info)


def test_an_event_type_filter_keeps_traces_with_that_type(open_page):
    at = open_page()
    total, _, _ = counts(at)
    types = at.multiselect(key="t_types")
    assert "checkout" in types.options
    types.select("checkout").run()
    ok(at)
    narrowed, _, _ = counts(at)
    assert 0 < narrowed < total
    shown = trace_list(at)
    assert shown["event types"].map(lambda t: "checkout" in t.split(", ")).all()
    assert params(at) == {"types": '["checkout"]'}


def test_a_dataset_filter_goes_into_the_url(open_page):
    at = open_page()
    total, _, _ = counts(at)
    at.multiselect(key="t_ds").select("sample").run()
    ok(at)
    assert counts(at)[0] == total  # the sample is the only dataset
    assert set(trace_list(at)["dataset"]) == {"sample"}
    assert params(at) == {"ds": '["sample"]'}


def test_a_detail_filter_narrows_the_list(open_page):
    at = open_page()
    total, _, _ = counts(at)
    at.selectbox(key="t_dk").set_value("country").run()
    at.text_input(key="t_dv").input("NL").run()
    ok(at)
    narrowed, _, _ = counts(at)
    assert 0 < narrowed < total
    assert params(at) == {"dk": "country", "dv": "NL"}
    # The first trace listed has an event from NL.
    first = trace_list(at)["trace_id"].iloc[0]
    opened = open_page({"trace": first})
    ok(opened)
    table = events_element(opened, first).value
    if "detail.country" in table.columns:
        assert (table["detail.country"] == "NL").any()
    else:  # on its own row, or said once above the table when every event has it
        in_rows = table["details"].str.contains("country=NL", regex=False).any()
        assert in_rows or any("country=NL" in plain(c.value) for c in opened.caption)


def test_sort_and_page_controls_update_the_url(open_page):
    at = open_page()
    _, _, pages = counts(at)
    at.selectbox(key="t_sort").set_value("events").run()
    ok(at)
    assert params(at) == {"sort": "events"}
    assert trace_list(at)["events"].is_monotonic_decreasing

    at.toggle(key="t_desc").set_value(False).run()
    ok(at)
    assert params(at) == {"sort": "events", "asc": "1"}
    assert trace_list(at)["events"].is_monotonic_increasing

    first_page = trace_list(at)["trace_id"].tolist()
    at.number_input(key="t_page").set_value(3).run()
    ok(at)
    assert counts(at)[1:] == (3, pages)
    assert params(at) == {"sort": "events", "asc": "1", "page": "3"}
    assert not set(trace_list(at)["trace_id"]) & set(first_page)

    # A new search starts on its first page again.
    at.selectbox(key="t_sort").set_value("duration").run()
    ok(at)
    assert counts(at)[1] == 1
    assert params(at) == {"sort": "duration", "asc": "1"}
    assert trace_list(at)["duration ms"].is_monotonic_increasing


def test_a_link_sets_the_list_controls(open_page, listed):
    prefix = listed["trace_id"].iloc[0][:7]
    link = {"q": prefix, "sort": "events", "asc": "1", "page": "2", "tz": "Europe/Amsterdam"}
    at = open_page(link)
    ok(at)
    assert not at.warning
    assert at.text_input(key="t_text").value == prefix
    assert at.selectbox(key="t_sort").value == "events"
    assert at.toggle(key="t_desc").value is False
    assert at.selectbox(key="t_tz").value == "Europe/Amsterdam"
    assert counts(at)[1] == 2
    shown = trace_list(at)
    assert shown["trace_id"].str.startswith(prefix).all()
    assert str(shown["last event"].dt.tz) == "Europe/Amsterdam"
    assert params(at) == link  # the page writes the same link back


def test_a_day_range_link_filters_and_round_trips(open_page, listed):
    day = listed["last event"].iloc[0].tz_convert("UTC").date()
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    link = {"from": start.isoformat(), "to": end.isoformat()}
    at = open_page(link)
    ok(at)
    assert not at.warning
    assert at.date_input(key="t_days").value == (day, day)
    shown = trace_list(at)
    assert len(shown) > 0
    assert (shown["last event"] >= pd.Timestamp(start)).all()
    assert (shown["first event"] < pd.Timestamp(end)).all()
    assert params(at) == link


# -- one trace ---------------------------------------------------------------------------------


def test_a_trace_link_opens_the_trace(open_page, listed):
    trace_id = listed["trace_id"].iloc[0]
    at = open_page({"trace": trace_id})
    ok(at)
    assert headings(at) == [f"Trace {trace_id}", "Compare with another trace"]
    events = int(metric(at, "Events").replace(",", ""))
    assert events == int(listed["events"].iloc[0])
    assert re.fullmatch(r"[\d,]+\.\d s", metric(at, "Span"))
    assert int(metric(at, "Event types")) == len(listed["event types"].iloc[0].split(", "))
    assert metric(at, "Dataset") == "sample"
    table = events_element(at, trace_id).value
    assert len(table) >= events
    assert {"timestamp", "+ms", "event_type"} <= set(table.columns)
    assert len(at.get("plotly_chart")) == 1  # the timeline
    body = json.loads(at.code[0].value)
    assert body["trace_id"] == trace_id
    assert {"event_type", "metrics", "event_details", "timestamp"} <= set(body)
    curl = at.code[1].value
    assert curl.startswith("curl -X POST https://app.langwatch.ai/api/track_event")
    assert '-H "X-Auth-Token: $LANGWATCH_API_KEY"' in curl
    assert trace_id in curl
    assert params(at) == {"trace": trace_id}


def test_the_api_key_never_reaches_the_page(open_page, listed, monkeypatch):
    monkeypatch.setenv("LANGWATCH_API_KEY", SECRET)
    trace_id, other = listed["trace_id"].iloc[:2]
    at = open_page({"trace": trace_id, "compare": other})
    ok(at)
    assert "$LANGWATCH_API_KEY" in at.code[1].value
    assert "Compare with another trace" in headings(at)
    text = rendered_text(at)
    assert "$LANGWATCH_API_KEY" in text  # the walk does see the curl command
    assert SECRET not in text
    assert SECRET not in json.dumps(params(at))
    assert all(SECRET not in str(v) for v in at.session_state._state._state.filtered_state.values())


def test_choosing_a_row_in_the_list_opens_that_trace(open_page, listed):
    other = listed["trace_id"].iloc[5]
    at = open_page({"compare": other})
    ok(at)
    shown = trace_list(at)
    select_row(at, list_element(at), 2)
    ok(at)
    chosen = shown["trace_id"].iloc[2]
    assert headings(at)[0] == f"Trace {chosen}"
    events_element(at, chosen)
    # A new trace starts without a comparison.
    assert params(at) == {"trace": chosen}
    assert at.text_input(key="t_compare").value == ""
    # The trace stays open across a plain rerun and a change of the search.
    at.run()
    at.selectbox(key="t_sort").set_value("events").run()
    ok(at)
    assert headings(at)[0] == f"Trace {chosen}"
    assert params(at) == {"trace": chosen, "sort": "events"}


def test_choosing_an_event_shows_it_in_full(open_page, listed):
    trace_id = listed.sort_values("events", ascending=False)["trace_id"].iloc[0]
    at = open_page({"trace": trace_id})
    ok(at)
    table = events_element(at, trace_id).value
    last = len(table) - 1
    number = int(table["event"].iloc[last]) if "event" in table.columns else last + 1
    select_row(at, events_element(at, trace_id), last)
    ok(at)
    expander = next(e for e in at.expander if e.label.startswith("Event "))
    assert expander.label.startswith(f"Event {number}: ")
    body = json.loads(at.code[0].value)
    assert expander.label == f"Event {number}: {body['event_type']} (full values, send it again)"


def test_a_comparison_link_shows_the_comparison(open_page, listed):
    a, b = listed["trace_id"].iloc[0], listed["trace_id"].iloc[1]
    at = open_page({"trace": a, "compare": b})
    ok(at)
    assert at.text_input(key="t_compare").value == b
    assert len(at.warning) + len(at.success) == 1
    comparison = at.dataframe[-1].value
    assert {"step", "A event", "B event", "same type"} <= set(comparison.columns)
    assert len(comparison) == max(int(listed["events"].iloc[0]), int(listed["events"].iloc[1]))
    assert len(at.get("plotly_chart")) == 2  # the timeline and the comparison
    assert any(
        plain(c.value).startswith(f"A = {a} in sample, B = {b} in sample") for c in at.caption
    )
    assert params(at) == {"trace": a, "compare": b}


def test_a_trace_compared_with_itself_is_the_same(open_page, listed):
    a = listed["trace_id"].iloc[0]
    at = open_page({"trace": a, "compare": a})
    ok(at)
    assert [s.value for s in at.success] == [
        "Same event types in the same order; metric changes are listed below."
    ]
    assert at.dataframe[-1].value["same type"].all()


def test_typing_a_comparison_and_an_unknown_one(open_page, listed):
    a, b = listed["trace_id"].iloc[0], listed["trace_id"].iloc[3]
    at = open_page({"trace": a})
    ok(at)
    assert not at.warning and not at.success
    at.text_input(key="t_compare").input(b).run()
    ok(at)
    assert params(at) == {"trace": a, "compare": b}
    assert len(at.warning) + len(at.success) == 1
    at.text_input(key="t_compare").input("no-such-trace").run()
    ok(at)
    assert warnings(at) == ["No such trace: no-such-trace."]
    assert headings(at)[0] == f"Trace {a}"


def test_the_next_trace_button_compares_with_the_next_trace(open_page, listed):
    a = listed["trace_id"].iloc[0]
    at = open_page({"trace": a})
    ok(at)
    button(at, "Use the next trace in the list").click().run()
    ok(at)
    b = listed["trace_id"].iloc[1]
    assert params(at) == {"trace": a, "compare": b}
    assert at.text_input(key="t_compare").value == b


def test_an_unknown_trace_warns_and_can_be_closed(open_page):
    at = open_page({"trace": "no-such-trace"})
    ok(at)
    assert warnings(at) == [
        "No such trace: no-such-trace. Search for it above (the list matches the beginning "
        "of a trace_id)."
    ]
    assert headings(at) == []
    assert counts(at)[0] >= 1_000  # the list still works
    assert params(at) == {"trace": "no-such-trace"}
    button(at, "Close it").click().run()
    ok(at)
    assert not at.warning
    assert params(at) == {}


def test_an_odd_trace_id_is_shown_as_text(open_page):
    odd = "**bold** <b>x</b> [link](http://example.com) `code`"
    at = open_page({"trace": odd})
    ok(at)
    assert warnings(at)[0].startswith(f"No such trace: {odd}.")


# -- hand-edited links -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "link, named",
    [
        (
            {"page": "abc", "sort": "bogus", "tz": "Mars/Base", "ds": "notjson"},
            ["page='abc'", "sort='bogus'", "Mars/Base", "ds='notjson'"],
        ),
        (
            {"exact": "yes", "asc": "2", "types": "[1, 2]", "from": "yesterday"},
            ["exact='yes'", "asc='2'", "types=", "from='yesterday'"],
        ),
        (
            {"page": "0", "from": "2025-01-02T00:00:00", "to": "2025-01-03T00:00:00+00:00"},
            ["page='0'", "from='2025-01-02T00:00:00'"],
        ),
        (
            {"from": "2025-01-03T00:00:00+00:00", "to": "2025-01-02T00:00:00+00:00"},
            ["from='2025-01-03T00:00:00+00:00'"],
        ),
    ],
    ids=["page-sort-tz-ds", "flags-types-from", "page-0-naive-from", "from-after-to"],
)
def test_a_hand_edited_link_warns_and_still_renders(open_page, link, named):
    at = open_page(link)
    ok(at)
    shown = warnings(at)
    for name in named:
        assert any(name in w for w in shown), f"no warning names {name}: {shown}"
    assert counts(at)[0] >= 1_000
    assert len(trace_list(at)) == 50
    # The page writes back only what it used: the defaults need no parameters.
    assert not set(params(at)) & {"page", "sort", "tz", "ds", "exact", "asc", "types"}
    # The controls still work after the fallbacks.
    at.selectbox(key="t_sort").set_value("events").run()
    ok(at)
    assert params(at).get("sort") == "events"


def test_a_page_beyond_the_last_shows_the_last_page(open_page):
    at = open_page({"page": "99999"})
    ok(at)
    total, page, pages = counts(at)
    assert page == pages == -(-total // 50)
    assert params(at) == {"page": str(pages)}


def test_unknown_names_in_a_link_are_left_out_and_the_page_renders(open_page):
    at = open_page({"ds": '["nosuch"]', "types": '["nosuch"]', "dk": "nosuch", "dv": "x"})
    ok(at)
    assert at.multiselect(key="t_ds").value == []
    assert at.multiselect(key="t_types").value == []
    assert at.selectbox(key="t_dk").value is None
    assert counts(at)[0] >= 1_000
    assert params(at) == {}


@pytest.mark.parametrize(
    "link, named",
    [
        ({"ds": '["nosuch"]'}, "nosuch"),
        ({"types": '["nosuch_type"]'}, "nosuch_type"),
        ({"dk": "nosuch_key", "dv": "x"}, "nosuch_key"),
    ],
    ids=["dataset", "event-type", "detail-key"],
)
def test_unknown_names_in_a_link_are_named_in_a_warning(open_page, link, named):
    at = open_page(link)
    ok(at)
    assert any(named in w for w in warnings(at)), warnings(at)


def test_a_link_followed_later_in_the_session_keeps_its_page(open_page, listed):
    prefix = listed["trace_id"].iloc[0][:7]
    at = open_page()
    at.text_input(key="t_text").input("trace_0" if prefix != "trace_0" else "trace_1").run()
    ok(at)
    at.switch_page("pages/explore.py").run()
    ok(at)
    for name in list(at.query_params):
        del at.query_params[name]
    at.query_params.update({"q": prefix, "page": "2"})
    at.switch_page(PAGE).run()
    ok(at)
    assert at.text_input(key="t_text").value == prefix
    assert counts(at)[1] == 2
    assert params(at) == {"q": prefix, "page": "2"}


def test_a_link_from_explore_opens_the_trace_in_the_same_session(open_page, listed):
    """Explore's st.page_link(..., query_params={"trace": id}) in a session that had another
    trace open: the link's trace wins, the old one and its comparison are gone."""
    a, b = listed["trace_id"].iloc[0], listed["trace_id"].iloc[1]
    at = open_page({"trace": a, "compare": listed["trace_id"].iloc[2]})
    ok(at)
    at.switch_page("pages/explore.py").run()
    ok(at)
    for name in list(at.query_params):
        del at.query_params[name]
    at.query_params["trace"] = b
    at.switch_page(PAGE).run()
    ok(at)
    assert headings(at)[0] == f"Trace {b}"
    assert params(at) == {"trace": b}


def test_coming_back_without_a_link_restores_the_last_view(open_page, listed):
    a = listed["trace_id"].iloc[0]
    at = open_page({"trace": a, "sort": "events"})
    ok(at)
    at.switch_page("pages/explore.py").run()
    ok(at)
    for name in list(at.query_params):
        del at.query_params[name]
    at.switch_page(PAGE).run()
    ok(at)
    assert headings(at)[0] == f"Trace {a}"
    assert params(at) == {"trace": a, "sort": "events"}
