"""Traces: find a trace, read its events as LangWatch's Events tab does, compare two traces."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import streamlit as st

from eventlens import analytics, charts, traces, view
from eventlens.analytics import SeriesQuery
from eventlens.traces import TraceSearch
from eventlens.ui import cache
from eventlens.ui.errors import guarded
from eventlens.ui.format import md_escape
from eventlens.ui.scope import left_out_note, test_data_checkbox
from eventlens.ui.state import get_store, require_router
from eventlens.ui.tables import counts_config
from eventlens.words import counted

require_router()
store = get_store()
ss = st.session_state

st.title("Traces")
st.caption(
    "Find a trace by its id, dataset, event types, an event detail or time; read its events "
    "with their metrics and details; compare it with another trace. The URL names the open "
    "trace (and the comparison), so a link opens them again."
)

# -- state: from the URL on arrival, then from the widgets ---------------------------------------


def seed_widgets(v: view.TracesView) -> None:
    """Put a view into the widgets' session state."""
    s = v.search
    ss.t_text, ss.t_exact, ss.t_ds, ss.t_test, ss.t_types = (
        s.text,
        s.exact,
        list(s.datasets),
        s.include_test,
        list(s.event_types),
    )
    ss.t_dk, ss.t_dv = s.detail_key, s.detail_value or ""
    ss.t_sort, ss.t_desc, ss.t_page, ss.t_tz = s.sort, s.descending, v.page, v.tz
    ss.t_days = (
        (
            pd.Timestamp(s.start).tz_convert(v.tz).date(),
            (pd.Timestamp(s.end).tz_convert(v.tz) - pd.Timedelta(milliseconds=1)).date(),
        )
        if s.start and s.end
        else ()
    )
    ss.t_trace, ss.t_trace_ds = v.trace, v.trace_dataset
    ss.t_compare, ss.t_compare_ds = v.compare or "", v.compare_dataset


if "t_text" not in ss:
    params = st.query_params.to_dict() or ss.get("traces_params", {})
    arrived, warnings = view.traces_from_params(params)
    arrived, more = view.check_traces_against_store(store, arrived)
    ss.traces_warnings = warnings + more
    seed_widgets(arrived)
    ss.t_keep_page = True  # the link's page number belongs to the link's search

for message in ss.get("traces_warnings", []):
    st.warning(md_escape(message), icon=":material/link_off:")

key = cache.version()
if store.event_count() == 0:
    st.info("The store holds no events yet. Load an export on the Data page.")
    st.stop()

# -- search --------------------------------------------------------------------------------------

with st.container(border=True):
    s1, s2, s3 = st.columns([2.2, 0.8, 1])
    s1.text_input("trace_id", key="t_text", placeholder="a trace_id, or its beginning")
    s2.checkbox("Exact match", key="t_exact", help="Off: every trace_id that starts with it.")
    s3.selectbox("Time zone", analytics.time_zones(store), key="t_tz")
    f1, f2 = st.columns(2)
    f1.multiselect("Datasets", store.dataset_names(), key="t_ds", placeholder="all but test data")
    types_all = cache.event_types(key, tuple(ss.t_ds), bool(ss.t_test))
    ss.t_types = [t for t in ss.t_types if t in types_all]
    f2.multiselect("Has an event of type", types_all, key="t_types", placeholder="any event type")
    days = list(ss.get("t_days") or [])
    st.date_input(
        f"Active on these days ({ss.t_tz}; empty: any time)",
        key="t_days",
        min_value=min([dt.date(1900, 1, 1), *days]),
        max_value=max([dt.date(2100, 12, 31), *days]),
    )
    d1, d2, d3, d4 = st.columns([1, 1, 1, 0.8])
    detail_keys = cache.detail_keys(
        key, SeriesQuery(datasets=tuple(ss.t_ds), include_test=bool(ss.t_test))
    )
    if ss.t_dk not in detail_keys:
        ss.t_dk = None
    d1.selectbox(
        "Has an event with detail", detail_keys, key="t_dk", index=None, placeholder="any detail"
    )
    d2.text_input("equal to", key="t_dv", disabled=not ss.t_dk)
    d3.selectbox("Sort by", list(traces.SORTS), key="t_sort", format_func=traces.SORT_LABELS.get)
    d4.toggle("Descending", key="t_desc")
    test_data_checkbox("t_test", bool(ss.t_ds))
    left_out_note("t_test", bool(ss.t_ds), "above")


def day_range() -> tuple[dt.datetime | None, dt.datetime | None]:
    """The chosen days as instants in the chosen zone (None: any time, or not yet picked)."""
    days = ss.get("t_days") or ()
    if len(days) != 2:
        return None, None
    start = analytics.local_to_instant(store, dt.datetime.combine(days[0], dt.time()), ss.t_tz)
    end_day = dt.datetime.combine(days[1] + dt.timedelta(days=1), dt.time())
    return start, analytics.local_to_instant(store, end_day, ss.t_tz)


start, end = day_range()
search = TraceSearch(
    text=ss.t_text.strip(),
    exact=bool(ss.t_exact),
    datasets=tuple(ss.t_ds),
    include_test=bool(ss.t_test),
    event_types=tuple(ss.t_types),
    detail_key=ss.t_dk or None,
    detail_value=ss.t_dv if ss.t_dk else None,
    start=start,
    end=end,
    sort=ss.t_sort,
    descending=bool(ss.t_desc),
)
if ss.get("t_last_search") != search:  # a new search starts on its first page
    if "t_last_search" in ss and not ss.get("t_keep_page"):
        ss.t_page = 1
    ss.t_last_search = search
ss.t_keep_page = False


def publish() -> None:
    """Mirror the page's state into the URL (and remember it for the next visit)."""
    current = view.TracesView(
        search=search,
        page=int(ss.t_page),
        tz=ss.t_tz,
        trace=ss.get("t_trace"),
        trace_dataset=ss.get("t_trace_ds"),
        compare=(ss.get("t_compare") or "").strip() or None,
        compare_dataset=ss.get("t_compare_ds"),
    )
    params = view.traces_to_params(current)
    ss.traces_params = params
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)


with guarded("the trace list"):
    found, total = cache.trace_search(key, search, traces.PAGE_SIZE, 0)
    pages = max(1, -(-total // traces.PAGE_SIZE))
    ss.t_page = min(max(1, int(ss.t_page)), pages)
    if ss.t_page > 1:
        found, total = cache.trace_search(
            key, search, traces.PAGE_SIZE, (ss.t_page - 1) * traces.PAGE_SIZE
        )
    p1, p2 = st.columns([3, 1])
    p1.caption(
        f"{total:,} {'trace matches' if total == 1 else 'traces match'}; page {ss.t_page:,}"
        f" of {pages:,}, {traces.PAGE_SIZE} a page."
    )
    p2.number_input(
        "Page", min_value=1, max_value=pages, key="t_page", label_visibility="collapsed"
    )
    if found.empty:
        st.info("No trace matches. Loosen the search, or check the dataset and event types.")
    else:
        shown = found.assign(
            first_time=found["first_time"].dt.tz_convert(ss.t_tz),
            last_time=found["last_time"].dt.tz_convert(ss.t_tz),
            event_types=found["event_types"].map(", ".join),
        )
        shown = shown.rename(
            columns={
                "first_time": "first event",
                "last_time": "last event",
                "duration_ms": "duration ms",
                "event_types": "event types",
            }
        )
        picked = st.dataframe(
            shown,
            key=f"t_list_{hash((search, ss.t_page))}",
            on_select="rerun",
            selection_mode="single-row",
            hide_index=True,
            width="stretch",
            column_config=counts_config(shown),
        )
        rows = picked.selection.rows if picked else []
        if rows:
            chosen = found.iloc[rows[0]]
            if (chosen["trace_id"], chosen["dataset"]) != (ss.get("t_trace"), ss.get("t_trace_ds")):
                ss.t_trace, ss.t_trace_ds = chosen["trace_id"], chosen["dataset"]
                ss.t_compare, ss.t_compare_ds = "", None
publish()

# -- one trace -----------------------------------------------------------------------------------

trace_id = ss.get("t_trace")
if not trace_id:
    st.caption("Choose a trace in the list to read its events.")
    st.stop()

copies = traces.copies(store, trace_id)
if not copies:
    st.warning(
        f"No such trace: {md_escape(trace_id)}. Search for it above (the list matches the "
        "beginning of a trace_id).",
        icon=":material/search_off:",
    )
    if st.button("Close it"):
        ss.t_trace = ss.t_trace_ds = None
        publish()
        st.rerun()
    st.stop()


def copy_label(c: traces.Copy) -> str:
    return f"{c.dataset} ({counted(c.events, 'event')}{', test data' if c.test else ''})"


def copy_picker(label: str, found: list[traces.Copy], state: str) -> traces.Copy:
    """The dataset whose copy of a trace id to read; a choice when several datasets hold it.

    Each dataset's copy is a trace of its own (a replay's copy is not the original), so two are
    never merged; the page says which one it shows.
    """
    chosen = traces.choose_copy(found, ss.get(state))
    # The URL names the dataset only where there is a choice: one copy keeps links short.
    wanted = chosen.dataset if len(found) > 1 else None
    if ss.get(state) != wanted:
        ss[state] = wanted
    if len(found) > 1:
        st.selectbox(
            label,
            [c.dataset for c in found],
            key=state,
            format_func={c.dataset: copy_label(c) for c in found}.get,
            help="Each dataset holds its own copy of this trace id (a replay, a second export); "
            "they are never merged into one trace.",
        )
        chosen = traces.choose_copy(found, ss[state])
    return chosen


tz = ss.t_tz
st.subheader(f"Trace {trace_id}", anchor=False)
if len(copies) > 1:
    st.info(
        f"This trace id is in {len(copies)} datasets: "
        + ", ".join(md_escape(copy_label(c)) for c in copies)
        + ". Each is read on its own; choose which below.",
        icon=":material/call_split:",
    )
copy = copy_picker("Dataset", copies, "t_trace_ds")
publish()
events = traces.events(store, trace_id, copy.dataset)
info = traces.summarise(events)

with guarded("the trace"):
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Events", f"{info['events']:,}")
    m2.metric("Span", f"{info['span_ms'] / 1000:,.1f} s")
    m3.metric("Event types", len(info["types"]))
    m4.metric("Dataset", copy.dataset + (" (test)" if copy.test else ""))
    if (meta := traces.metadata(store, trace_id, copy.dataset)) is not None:
        fields = meta.fields()
        st.markdown(
            "**From LangWatch:** "
            + (
                " · ".join(f"{name} **{md_escape(value)}**" for name, value in fields.items())
                if fields
                else "no user, thread, customer or labels"
            )
            + (
                f" · updated {pd.Timestamp(meta.updated_at).tz_convert(tz):%Y-%m-%d %H:%M:%S}"
                if meta.updated_at is not None
                else ""
            )
        )
    if info["first"] is None:
        st.caption("None of its events has a timestamp, so it has no span or timeline.")
    else:
        first_local = pd.Timestamp(info["first"]).tz_convert(tz)
        last_local = pd.Timestamp(info["last"]).tz_convert(tz)
        untimed = counted(info["untimed"], "event")
        st.caption(
            f"From {first_local:%Y-%m-%d %H:%M:%S} to {last_local:%Y-%m-%d %H:%M:%S} ({tz}). "
            + ", ".join(f"{md_escape(t)} {n}" for t, n in info["types"].items())
            + (f". {untimed} without a timestamp." if info["untimed"] else ".")
        )
    st.plotly_chart(
        charts.trace_timeline(events, tz), key="t_timeline", config={"displaylogo": False}
    )

    st.markdown("**Events**")
    local = events.assign(timestamp=events["timestamp"].dt.tz_convert(tz))
    wide = traces.shares_keys(events)
    table = traces.wide_table(local) if wide else traces.compact_table(local)
    shared = {} if wide else traces.shared_details(events)
    st.caption(
        "One row per event, a column per metric and detail (the events share their keys)."
        if wide
        else "One row per event with its metrics and details (the events carry different keys)."
        + (
            " The same on every event that has them: "
            + ", ".join(f"{md_escape(k)}={md_escape(v)}" for k, v in shared.items())
            + "."
            if shared
            else ""
        )
        + " Long values are cut; select a row to read them whole."
    )
    picked_event = st.dataframe(
        table.rename(columns={"offset_ms": "+ms"}),
        key=f"t_events_{copy.dataset}|{trace_id}",  # a new table (and selection) per copy
        on_select="rerun",
        selection_mode="single-row",
        hide_index=True,
        width="stretch",
        column_config={"+ms": st.column_config.NumberColumn(format="%.0f")},
    )
    chosen_rows = picked_event.selection.rows if picked_event else []
    number = chosen_rows[0] if chosen_rows else 0
    event = events.iloc[number]

    with st.expander(
        f"Event {number + 1}: {event['event_type']} (full values, send it again)",
        expanded=bool(chosen_rows),
    ):
        body = traces.body(event, trace_id)
        left, right = st.columns(2)
        with left:
            st.caption("Metrics and details in full (shown as text, never as HTML)")
            st.code(json.dumps(body, indent=2, ensure_ascii=False), language="json")
        with right:
            st.caption("The same event as a curl command (the key stays in $LANGWATCH_API_KEY).")
            st.code(traces.curl(body), language="bash")
            if st.button("Edit and resend on the Submit page", key="t_to_submit"):
                ss.s_load = body  # Submit puts a pending body into its form
                st.switch_page("pages/submit.py")

    a1, a2 = st.columns(2)
    a1.download_button(
        "Download this trace as JSONL (track_event bodies)",
        traces.jsonl(events, trace_id),
        file_name=f"{trace_id}.jsonl"[:120],
        mime="application/x-ndjson",
    )
    if a2.button(
        "Replay this trace",
        key="t_replay",
        help="Opens the Replay page with this trace as the source.",
    ):
        st.switch_page("pages/replay.py", query_params={"trace": trace_id, "dataset": copy.dataset})

# -- compare -------------------------------------------------------------------------------------

st.subheader("Compare with another trace", anchor=False)
others = [t for t in found["trace_id"].tolist() if t != trace_id] if not found.empty else []
c1, c2 = st.columns([2, 1])
c1.text_input(
    "trace_id to compare with",
    key="t_compare",
    placeholder=f"e.g. {others[0]}" if others else "a trace_id",
)
if others:
    # A callback: the text input above is already drawn, so its value can only change
    # before the next run starts.
    c2.button(
        "Use the next trace in the list",
        on_click=lambda: ss.update(t_compare=others[0]),
    )
other = (ss.get("t_compare") or "").strip()
b_copies = traces.copies(store, other) if other else []
if b_copies and not ss.get("t_compare_ds"):
    # B from A's dataset, as two traces of one export usually are; but A's own id from
    # another dataset first (a replay against its original).
    same = [c for c in b_copies if (c.dataset == copy.dataset) != (other == trace_id)]
    ss.t_compare_ds = (same or b_copies)[0].dataset
b_copy = copy_picker("B's dataset", b_copies, "t_compare_ds") if b_copies else None
publish()
if other:
    with guarded("the comparison"):
        if b_copy is None:
            st.warning(f"No such trace: {md_escape(other)}.", icon=":material/search_off:")
        else:
            b_events = traces.events(store, other, b_copy.dataset)
            result = traces.compare(events, b_events)
            if not result.differs:
                st.success("Same event types in the same order; metric changes are listed below.")
            else:
                notes = []
                if result.only_a:
                    notes.append("only in A: " + ", ".join(result.only_a))
                if result.only_b:
                    notes.append("only in B: " + ", ".join(result.only_b))
                if result.count_changes:
                    notes.append(
                        "counts differ: "
                        + ", ".join(f"{t} {a}→{b}" for t, (a, b) in result.count_changes.items())
                    )
                if not result.same_order:
                    notes.append("the events come in a different order")
                st.warning(md_escape("; ".join(notes)), icon=":material/compare_arrows:")
            st.plotly_chart(
                charts.compare_timeline(events, b_events, trace_id, other),
                key="t_compare_chart",
                config={"displaylogo": False},
            )
            styled = (
                result.table.rename(
                    columns={
                        "a_offset_ms": "A +ms",
                        "a_type": "A event",
                        "b_offset_ms": "B +ms",
                        "b_type": "B event",
                        "same_type": "same type",
                        "metrics": "metric changes (A → B)",
                    }
                )
                .style.apply(
                    lambda row: (
                        ["" if row["same type"] else "background-color: rgba(228, 87, 86, 0.18)"]
                        * len(row)
                    ),
                    axis=1,
                )
                .format({"A +ms": "{:,.0f}", "B +ms": "{:,.0f}"}, na_rep="")
            )
            st.caption(
                f"A = {md_escape(trace_id)} in {md_escape(copy.dataset)}, B = {md_escape(other)}"
                f" in {md_escape(b_copy.dataset)}; the i-th events of each, "
                "side by side. Rows in red: different event types at that step."
            )
            st.dataframe(styled, hide_index=True, width="stretch")
