"""Traces: find a trace, read its events as LangWatch's Events tab does, compare two traces."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import streamlit as st

from eventlens import analytics, charts, traces, view
from eventlens.traces import TraceSearch
from eventlens.ui import cache
from eventlens.ui.errors import guarded
from eventlens.ui.format import md_escape
from eventlens.ui.state import get_store, require_router

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
    ss.t_text, ss.t_exact, ss.t_ds, ss.t_types = (
        s.text,
        s.exact,
        list(s.datasets),
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
    ss.t_trace, ss.t_compare = v.trace, v.compare or ""


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
    f1.multiselect("Datasets", store.dataset_names(), key="t_ds", placeholder="all datasets")
    types_all = cache.event_types(key, tuple(ss.t_ds))
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
    detail_keys = cache.detail_keys(key, tuple(ss.t_ds), ())
    if ss.t_dk not in detail_keys:
        ss.t_dk = None
    d1.selectbox(
        "Has an event with detail", detail_keys, key="t_dk", index=None, placeholder="any detail"
    )
    d2.text_input("equal to", key="t_dv", disabled=not ss.t_dk)
    d3.selectbox("Sort by", list(traces.SORTS), key="t_sort", format_func=traces.SORT_LABELS.get)
    d4.toggle("Descending", key="t_desc")


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
        compare=(ss.get("t_compare") or "").strip() or None,
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
        picked = st.dataframe(
            shown.rename(
                columns={
                    "first_time": "first event",
                    "last_time": "last event",
                    "duration_ms": "duration ms",
                    "event_types": "event types",
                }
            ),
            key=f"t_list_{hash((search, ss.t_page))}",
            on_select="rerun",
            selection_mode="single-row",
            hide_index=True,
            width="stretch",
        )
        rows = picked.selection.rows if picked else []
        if rows:
            chosen = found.iloc[rows[0]]["trace_id"]
            if chosen != ss.get("t_trace"):
                ss.t_trace, ss.t_compare = chosen, ""
publish()

# -- one trace -----------------------------------------------------------------------------------

trace_id = ss.get("t_trace")
if not trace_id:
    st.caption("Choose a trace in the list to read its events.")
    st.stop()

if not traces.exists(store, trace_id):
    st.warning(
        f"No such trace: {md_escape(trace_id)}. Search for it above (the list matches the "
        "beginning of a trace_id).",
        icon=":material/search_off:",
    )
    if st.button("Close it"):
        ss.t_trace = None
        publish()
        st.rerun()
    st.stop()

tz = ss.t_tz
events = traces.events(store, trace_id)
info = traces.summarise(events)
st.subheader(f"Trace {trace_id}", anchor=False)

with guarded("the trace"):
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Events", f"{info['events']:,}")
    m2.metric("Span", f"{info['span_ms'] / 1000:,.1f} s")
    m3.metric("Event types", len(info["types"]))
    m4.metric("Datasets", ", ".join(info["datasets"]))
    if info["first"] is None:
        st.caption("None of its events has a timestamp, so it has no span or timeline.")
    else:
        first_local = pd.Timestamp(info["first"]).tz_convert(tz)
        last_local = pd.Timestamp(info["last"]).tz_convert(tz)
        st.caption(
            f"From {first_local:%Y-%m-%d %H:%M:%S} to {last_local:%Y-%m-%d %H:%M:%S} ({tz}). "
            + ", ".join(f"{md_escape(t)} {n}" for t, n in info["types"].items())
            + (f". {info['untimed']} events have no timestamp." if info["untimed"] else ".")
        )
    st.plotly_chart(
        charts.trace_timeline(events, tz), key="t_timeline", config={"displaylogo": False}
    )

    st.markdown("**Events**")
    local = events.assign(timestamp=events["timestamp"].dt.tz_convert(tz))
    wide = traces.shares_keys(events)
    table = traces.wide_table(local) if wide else traces.long_table(local)
    st.caption(
        "One row per event, a column per metric and detail (the events share their keys)."
        if wide
        else "One row per metric or detail of each event (the events carry different keys)."
        " Long values are cut; select a row to read them whole."
    )
    picked_event = st.dataframe(
        table.rename(columns={"offset_ms": "+ms"}),
        key=f"t_events_{trace_id}",
        on_select="rerun",
        selection_mode="single-row",
        hide_index=True,
        width="stretch",
        column_config={"+ms": st.column_config.NumberColumn(format="%.0f")},
    )
    chosen_rows = picked_event.selection.rows if picked_event else []
    number = (
        (chosen_rows[0] if wide else int(table.iloc[chosen_rows[0]]["event"]) - 1)
        if chosen_rows
        else 0
    )
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
        params = {"trace": trace_id}
        if len(info["datasets"]) == 1:
            params["dataset"] = info["datasets"][0]
        st.switch_page("pages/replay.py", query_params=params)

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
publish()
other = (ss.get("t_compare") or "").strip()
if other:
    with guarded("the comparison"):
        if not traces.exists(store, other):
            st.warning(f"No such trace: {md_escape(other)}.", icon=":material/search_off:")
        else:
            b_events = traces.events(store, other)
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
                f"A = {md_escape(trace_id)}, B = {md_escape(other)}; the i-th events of each, "
                "side by side. Rows in red: different event types at that step."
            )
            st.dataframe(styled, hide_index=True, width="stretch")
