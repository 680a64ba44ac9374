"""Submit: fill in one event, see every rule it breaks before sending, send it, keep a history."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd
import streamlit as st

from eventlens import analytics, client, form, history, model, traces
from eventlens.ui.errors import guarded
from eventlens.ui.format import md_escape
from eventlens.ui.state import get_store, require_router
from eventlens.ui.target import target_picker
from eventlens.words import counted

require_router()
store = get_store()
ss = st.session_state

st.title("Submit")
st.caption(
    "Send one test event to POST /api/track_event. It is checked against LangWatch's rules "
    "as you type and is not sent while it breaks one. Every send is kept below, without the key."
)


def split_url(url: str) -> tuple[str, str]:
    """A sent-to URL as (endpoint, route)."""
    for route in client.PATHS:
        if url.endswith(route):
            return url[: -len(route)], route
    return url, client.PATHS[0]


def load_into_form(body: dict, choice: str = "other") -> None:
    """Put a body's fields into the form's widgets (before they are drawn); `choice` is the
    event type picked in the list, "other" to show the body's own as free text."""
    ss.s_trace = str(body.get("trace_id", ""))
    ss.s_type_choice = ss.s_type_shown = choice
    ss.s_type_text = str(body.get("event_type", "")) if choice == "other" else ""
    ss.s_filled = form.Tables.of(body)
    fill_tables(ss.s_filled)
    ss.s_event_id = str(body.get("event_id") or "")
    ss.pop("s_switch_note", None)


def fill_tables(tables: form.Tables) -> None:
    """Put rows into the metrics and event_details tables (before they are drawn)."""
    ss.s_metrics_base = pd.DataFrame(list(tables.metrics), columns=["metric", "value"])
    ss.s_details_base = pd.DataFrame(list(tables.details), columns=["detail", "value"])
    ss.s_rows = tables
    for key in ("s_metrics", "s_details"):
        ss.pop(key, None)


def change_type(before: str, after: str) -> None:
    """Fill the form for a newly picked event type (before its free text and tables are drawn)."""
    if after == "other":  # the free text starts from the type that was picked; tables stay
        if before != "other":
            ss.s_type_text = before
        return
    ss.s_type_text = ""
    offered = form.offer(store, after)
    switched = form.switch(ss.s_rows, ss.s_filled, offered)
    fill_tables(switched.tables)
    ss.s_filled = offered
    ss.s_switch_note = (after, switched.kept)


def switch_note(event_type: str, kept: tuple[str, ...]) -> str:
    """Where the rows just filled in come from, and which of the user's rows stayed."""
    if rule := model.PREDEFINED_RULES.get(event_type):
        source = "its rule's metric" + (" and optional detail" if rule.detail else "")
    else:
        source = "the keys most of its stored events carry (median or most common values)"
    note = f"Filled in for {event_type} with {source}."
    if kept:
        note += f" Kept {counted(len(kept), 'row')} you wrote: {', '.join(kept)}."
    return md_escape(note)


def show_answer(last: dict, current: bool) -> None:
    """The answer to the last send: in full when it is about the event in the form, else a
    muted line, so an old "accepted" never sits under Send as if it were about this event."""
    shown, url = last["answer"], last["url"]
    if not current:
        origin = "from the history" if last["from_history"] else "before your edits"
        status = f", HTTP {shown['status']}" if shown["status"] else ""
        st.caption(
            md_escape(f"Last send ({origin}): {shown['outcome']}{status} — see History below.")
        )
        return
    kind = {
        "accepted": st.success,
        "invalid": st.error,
        "rejected": st.error,
        "unauthorized": st.error,
        "forbidden": st.error,
    }.get(shown["outcome"], st.warning)
    latency = f" in {shown['latency_ms']:.0f} ms" if shown["latency_ms"] is not None else ""
    status = f"HTTP {shown['status']}, " if shown["status"] else ""
    kind(md_escape(f"{shown['outcome']}: {status}{shown['message']}{latency} ({url})"))
    if shown["response"] is not None:
        st.code(json.dumps(shown["response"], indent=2, ensure_ascii=False), language="json")


def last_send(
    result: client.SendResult, url: str, body: dict, *, now: bool, from_history: bool
) -> dict:
    """What the page keeps of a send to show its answer: the answer, and the event it is about."""
    return {
        "answer": result.as_dict(),
        "url": url,
        "body": body,
        "now": now,
        "from_history": from_history,
    }


def rows(frame: pd.DataFrame, as_value: Callable[[object], object]) -> form.Rows:
    """A table's rows that have a key, as (key, value), with None for an empty value."""
    return tuple(
        (str(key), None if pd.isna(value) else as_value(value))
        for key, value in frame.itertuples(index=False)
        if pd.notna(key) and str(key)
    )


def pairs_editor(caption: str, key: str, value: object) -> pd.DataFrame:
    """An editable key/value table, seeded from session state `<key>_base`."""
    st.caption(caption)
    return st.data_editor(
        ss[f"{key}_base"],
        key=key,
        num_rows="dynamic",
        hide_index=True,
        width="stretch",
        column_config={"value": value},
    )


if "s_trace" not in ss:
    load_into_form(
        {
            "trace_id": f"trace_{secrets.token_hex(8)}",
            "event_type": "add_to_cart",
            "metrics": {"amount": 17.5},
            "event_details": {"product_id": "sku_1"},
        },
        choice="add_to_cart",
    )
if pending := ss.pop("s_load", None):  # "load into the form" from the history, last run
    load_into_form(pending)

# -- where to -------------------------------------------------------------------------------------

with st.container(border=True):
    st.markdown("**Where to**")
    target = target_picker(
        "s_",
        "With no LANGWATCH_ENDPOINT configured, events go to the sandbox served by this "
        "app, which stores them as dataset 'sandbox'.",
    )

# -- the event ----------------------------------------------------------------------------------

saved = history.templates(store)
with st.container(border=True):
    st.markdown("**The event**")
    if saved:
        l1, l2 = st.columns([3, 1])
        template = l1.selectbox("Start from a template", list(saved), key="s_template")
        if l2.button("Load template", key="s_template_load"):
            ss.s_load = saved[template]
            st.rerun()
    e1, e2, e3 = st.columns([2, 1, 1])
    e1.text_input("trace_id", key="s_trace")
    if e2.button("New trace_id", help="A fresh trace_<16 hex digits>"):
        ss.s_trace = f"trace_{secrets.token_hex(8)}"
        st.rerun()
    # QA's own traces (test data in the sandbox) are the ones most often sent to again.
    known, _ = traces.search(store, traces.TraceSearch(include_test=True), limit=100)
    picked = e3.selectbox(
        "or a loaded trace",
        [""] + known["trace_id"].tolist(),
        key="s_trace_pick",
        format_func=lambda t: t or "pick one",
    )
    if picked and picked != ss.get("s_trace_picked"):
        ss.s_trace_picked = picked
        ss.s_trace = picked
        st.rerun()

    seen = [
        t
        for t in analytics.event_types(store, include_test=True)
        if t not in model.PREDEFINED_RULES
    ]
    options = [*model.PREDEFINED_RULES, *seen, "other"]
    if ss.s_type_choice not in options:
        ss.s_type_choice = "other"
    y1, y2 = st.columns(2)
    y1.selectbox(
        "event_type",
        options,
        key="s_type_choice",
        format_func=lambda t: "other (type it)" if t == "other" else t,
        help="Picking a type fills the tables with its keys; rows you typed or changed stay.",
    )
    if ss.s_type_choice != ss.s_type_shown:
        change_type(ss.s_type_shown, ss.s_type_choice)
        ss.s_type_shown = ss.s_type_choice
    free = ss.s_type_choice == "other"
    y2.text_input(
        "event_type (free text)",
        key="s_type_text",
        disabled=not free,
        placeholder="type any event_type" if free else "type an event_type (choose 'other')",
    )
    event_type = ss.s_type_text if free else ss.s_type_choice
    if rule := model.PREDEFINED_RULES.get(event_type):
        st.info(
            f"{rule.event_type}: metrics.{rule.metric} is required, {rule.range_text}"
            f" ({rule.meaning})." + (f" Optional detail: {rule.detail}." if rule.detail else ""),
            icon=":material/rule:",
        )

    m1, m2 = st.columns(2)
    with m1:
        metrics = pairs_editor("metrics (numbers)", "s_metrics", st.column_config.NumberColumn())
    with m2:
        details = pairs_editor("event_details (text)", "s_details", st.column_config.TextColumn())
    ss.s_rows = form.Tables(rows(metrics, float), rows(details, str))
    if note := ss.get("s_switch_note"):
        st.caption(switch_note(*note))
    w1, w2, w3, w4 = st.columns([1, 1, 1, 1.2])
    when = w1.radio(
        "timestamp",
        ["now", "pick", "none"],
        key="s_when",
        horizontal=True,
        help="none: the server uses its own time",
    )
    zone = w4.selectbox(
        "in time zone",
        analytics.time_zones(store),
        key="s_zone",
        index=analytics.time_zones(store).index("UTC"),
    )
    day = w2.date_input("date", key="s_day", disabled=when != "pick")
    clock = w3.time_input("time", key="s_clock", step=60, disabled=when != "pick")
    st.text_input("event_id (optional: makes a resend idempotent)", key="s_event_id")


body: dict = {"trace_id": ss.s_trace, "event_type": event_type, "metrics": dict(ss.s_rows.metrics)}
if ss.s_rows.details:
    body["event_details"] = dict(ss.s_rows.details)
if when == "now":
    body["timestamp"] = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
elif when == "pick":
    instant = analytics.local_to_instant(store, dt.datetime.combine(day, clock), zone)
    body["timestamp"] = int(instant.timestamp() * 1000)
if ss.s_event_id.strip():
    body["event_id"] = ss.s_event_id.strip()

problems = model.validate_body(body)
for p in problems:
    st.error(md_escape(str(p)), icon=":material/block:")
if not problems:
    st.success("The event passes every LangWatch rule.", icon=":material/check:")

p1, p2 = st.columns(2)
with p1:
    st.caption("Request body")
    st.code(json.dumps(body, indent=2, ensure_ascii=False), language="json")
with p2:
    reveal = st.toggle(
        "Show the key in the curl command",
        key="s_reveal",
        help="Off: the command reads the key from $LANGWATCH_API_KEY.",
    )
    command = traces.curl(
        body,
        target.endpoint,
        path=target.path,
        auth=target.auth,
        key=target.key if reveal else None,
    )
    st.caption("As curl")
    st.code(command, language="bash")

s1, s2 = st.columns([3, 1])
template_name = s1.text_input(
    "Save this event's shape as a template", key="s_template_name", placeholder="a name"
)
if s2.button("Save template", disabled=not template_name.strip(), key="s_template_save"):
    shape = {k: v for k, v in body.items() if k not in ("timestamp", "event_id")}
    history.save_template(store, template_name.strip(), shape)
    st.toast(f"Saved template {template_name.strip()}")

with guarded("sending"):
    if st.button("Send", type="primary", disabled=bool(problems), key="s_send"):
        with st.spinner("Sending…"):
            result = client.send_event(body, target)
        history.record(store, target, body, result)
        ss.s_last = last_send(result, target.url, body, now=when == "now", from_history=False)
    if last := ss.get("s_last"):
        same = form.same_event(last["body"], last["now"], body, when == "now")
        show_answer(last, current=same and not problems)

# -- many from a file ---------------------------------------------------------------------------

with st.expander("Send many events from a small file"), guarded("the bulk send"):
    upload = st.file_uploader(
        "JSONL, JSON, CSV or Parquet of events (read as ingest reads exports; up to 1,000)",
        key="s_bulk_file",
    )
    if upload is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(upload.name).name
            path.write_bytes(upload.getbuffer())
            bodies, unreadable = history.bodies_from_file(str(path))
        for problem in unreadable[:10]:
            st.warning(md_escape(problem))
        to_send = counted(len(bodies), "event")
        st.caption(f"{to_send} to send to {md_escape(target.url)}, one after another.")
        if st.button(f"Send {to_send}", disabled=not bodies, key="s_bulk_send"):
            progress = st.progress(0.0, text="Sending…")
            results = []
            with httpx.Client(timeout=client.DEFAULT_TIMEOUT) as http:
                for n, one in enumerate(bodies, start=1):
                    result = client.send_event(one, target, client=http)
                    history.record(store, target, one, result)
                    results.append(
                        {
                            "row": n,
                            "trace_id": one.get("trace_id"),
                            "event_type": one.get("event_type"),
                            "outcome": result.outcome,
                            "status": result.status,
                            "latency_ms": result.latency_ms,
                            "message": result.message,
                        }
                    )
                    progress.progress(n / len(bodies), text=f"Sent {n:,} of {len(bodies):,}")
            ss.s_bulk_results = results
        if results := ss.get("s_bulk_results"):
            frame = pd.DataFrame(results)
            counts = frame["outcome"].value_counts().to_dict()
            st.caption(", ".join(f"{k}: {v}" for k, v in counts.items()))
            st.dataframe(frame, hide_index=True, width="stretch")

# -- history --------------------------------------------------------------------------------------

st.subheader("History", anchor=False)
with guarded("the history"):
    past = history.recent(store)
    if past.empty:
        st.caption("Nothing sent yet.")
    else:
        picked_row = st.dataframe(
            past.drop(columns=["body", "response"]),
            key="s_history",
            on_select="rerun",
            selection_mode="single-row",
            hide_index=True,
            width="stretch",
        )
        chosen = picked_row.selection.rows if picked_row else []
        if chosen:
            entry = past.iloc[chosen[0]]
            old = json.loads(entry["body"])
            st.code(json.dumps(old, indent=2, ensure_ascii=False), language="json")
            h1, h2 = st.columns(2)
            if h1.button("Load into the form", key="s_load_btn"):
                ss.s_load = old
                st.rerun()
            retry_word = "Retry" if entry["outcome"] != "accepted" else "Send again"
            if h2.button(f"{retry_word} to {entry['endpoint']}", key="s_resend"):
                base, route = split_url(entry["endpoint"])
                again = client.Target(base, target.key, target.key_source, target.auth, route)
                result = client.send_event(old, again)
                history.record(store, again, old, result)
                ss.s_last = last_send(result, again.url, old, now=False, from_history=True)
                st.rerun()
