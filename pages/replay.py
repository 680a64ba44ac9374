"""Replay: send a dataset or an uploaded export to an endpoint, paced and resumable."""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from eventlens import replay
from eventlens.analytics import SeriesQuery
from eventlens.ui import cache
from eventlens.ui.errors import guarded
from eventlens.ui.format import md_escape
from eventlens.ui.replays import registry
from eventlens.ui.state import get_replay_store, get_store, require_router
from eventlens.ui.tables import COUNT, counts_config
from eventlens.ui.target import KEY_SOURCE_WORDS, embedded_url, target_for, target_picker
from eventlens.words import counted

require_router()
events = get_store()  # the datasets to replay from
store = get_replay_store()  # the runs' journal and plans: the same store but on ClickHouse
ss = st.session_state
runs = registry()

st.title("Replay")
st.caption(
    "Send a dataset, or an uploaded export, to a track_event endpoint: paced, retried and "
    "journalled, so a stopped or crashed run resumes without losing or repeating an event."
)

# Traces' "Replay this trace" arrives with ?trace=...&dataset=... : fill the form once.
if (trace := st.query_params.get("trace")) and ss.get("r_prefilled") != trace:
    ss.r_prefilled = trace
    ss.r_source = "A dataset in the store"
    ss.r_traces = trace
    if (dataset := st.query_params.get("dataset")) in events.dataset_names():
        ss.r_datasets = [dataset]
    ss.r_types = []
    ss.r_since = ss.r_until = ""


def parse_time(text: str, name: str, problems: list[str]) -> dt.datetime | None:
    """An ISO date or date-time (UTC unless it has an offset); a bad one is named."""
    text = text.strip()
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        problems.append(f"{name}: {text!r} is not an ISO date or date-time (2025-11-01T12:00Z)")
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def count(n: int) -> str:
    """A count short enough for a metric tile (1,234 or 1.23M)."""
    return f"{n / 1e6:.2f}M" if n >= 1_000_000 else f"{n:,}"


# A table's count column: a number (it sorts by value), drawn with thousands separators.


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


# -- 1. what to send -----------------------------------------------------------------------------

problems: list[str] = []
upload = None
with st.container(border=True):
    st.markdown("**1. What to replay**")
    kind = st.radio(
        "Source",
        ["A dataset in the store", "An uploaded export"],
        key="r_source",
        horizontal=True,
        label_visibility="collapsed",
    )
    names = events.dataset_names()
    if kind == "A dataset in the store":
        f1, f2 = st.columns(2)
        datasets = f1.multiselect("Datasets (none: all)", names, key="r_datasets")
        types = f2.multiselect(
            "Event types (none: all)",
            # With no dataset named, a replay takes every dataset, test data too.
            cache.event_types(cache.version(), tuple(datasets), include_test=True),
            key="r_types",
        )
        f3, f4, f5 = st.columns([1, 1, 2])
        since = parse_time(
            f3.text_input("From (UTC)", key="r_since", placeholder="2025-11-01"), "From", problems
        )
        until = parse_time(
            f4.text_input("Until (UTC, exclusive)", key="r_until", placeholder="2025-11-08"),
            "Until",
            problems,
        )
        trace_text = f5.text_area("Trace ids (one per line; none: all)", key="r_traces", height=68)
        source = replay.Source(
            datasets=tuple(datasets),
            event_types=tuple(types),
            start=since,
            end=until,
            trace_ids=tuple(t.strip() for t in trace_text.splitlines() if t.strip()),
        )
    else:
        upload = st.file_uploader(
            "Export file (JSONL, JSON, CSV, Parquet; gzip is fine)",
            key="r_upload",
            help="Read with the same rules as the Data page: bad records are listed with their"
            " line and reason, and go to the dead-letter file.",
        )
        source = replay.Source(display_name=upload.name if upload else None)
        if upload is None:
            problems.append("choose a file to upload")

# -- 2. how --------------------------------------------------------------------------------------

with st.container(border=True):
    st.markdown("**2. Transforms and pacing**")
    c1, c2, c3 = st.columns(3)
    timestamps = c1.selectbox(
        "Timestamps",
        replay.TIMESTAMPS,
        key="r_timestamps",
        format_func={
            "keep": "keep the originals",
            "shift": "shift: first event now, gaps kept",
            "now": "all set to the send time",
        }.get,
    )
    id_mode = c2.selectbox(
        "Trace ids",
        ["keep", "prefix", "fresh"],
        key="r_ids",
        format_func={
            "keep": "keep",
            "prefix": "add a prefix",
            "fresh": "fresh ids (the same for one trace all run)",
        }.get,
    )
    prefix = c3.text_input("Prefix", key="r_prefix", value="replay-", disabled=id_mode != "prefix")
    if id_mode == "prefix" and not prefix:
        problems.append("Prefix: type the prefix to add to trace ids")
    detail_keys = (
        cache.detail_keys(cache.version(), SeriesQuery(include_test=True))
        if kind != "An uploaded export"
        else []
    )
    redact_known = st.multiselect(
        "Redact these event_details keys (the value becomes [redacted])",
        detail_keys,
        key="r_redact",
    )
    redact_more = st.text_input(
        "More keys to redact (comma separated)", key="r_redact_more", placeholder="email, user_id"
    )
    redact = tuple(
        dict.fromkeys([*redact_known, *(k.strip() for k in redact_more.split(",") if k.strip())])
    )

    # The page starts at 200 events/s, 60x and 64 in flight; the rest is a run's own default.
    defaults = replay.Pacing()
    p1, p2, p3, p4 = st.columns(4)
    pacing_mode = p1.radio(
        "Pacing", ["max rate", "original timing"], key="r_pacing", horizontal=False
    )
    rate = p2.number_input(
        "Max events/s (0: no cap)", min_value=0.0, value=200.0, step=50.0, key="r_rate"
    )
    speed = p3.number_input(
        "Speed factor",
        min_value=0.01,
        value=60.0,
        step=10.0,
        key="r_speed",
        disabled=pacing_mode != "original timing",
        help="60 replays an hour of events in a minute.",
    )
    max_gap = p4.number_input(
        "Longest gap (s)",
        min_value=0.0,
        value=defaults.max_gap_s,
        key="r_max_gap",
        disabled=pacing_mode != "original timing",
        help="Original gaps longer than this count as this long.",
    )
    q1, q2 = st.columns(2)
    concurrency = q1.slider("In flight at once", 1, 256, 64, key="r_concurrency")
    max_retries = q2.slider(
        "Retries per event (5xx, 429, timeouts)", 0, 20, defaults.max_retries, key="r_retries"
    )
    transforms = replay.Transforms(
        timestamps, f"prefix:{prefix}" if id_mode == "prefix" else id_mode, redact
    )
    pacing = replay.Pacing(
        rate=rate or None,
        speed=speed if pacing_mode == "original timing" else None,
        max_gap_s=max_gap,
        concurrency=concurrency,
        max_retries=max_retries,
    )

with st.container(border=True):
    st.markdown("**3. Where to**")
    target = target_picker(
        "r_",
        "The embedded sandbox stores what it accepts as dataset 'sandbox' in this store.",
    )
endpoint = replay.Endpoint(url=target.endpoint, path=target.path, auth=target.auth)

# -- dry run, start -----------------------------------------------------------------------------


def plan_signature() -> str:
    """What the form asks for; a dry run made for another form is stale."""
    upload_id = (upload.name, upload.size) if upload is not None else None
    return json.dumps(
        [source.as_dict(), transforms.__dict__, pacing.__dict__, endpoint.__dict__, upload_id],
        default=str,
    )


def make_plan() -> replay.Run:
    """Stage the form's source as a new run (an upload goes through a temporary file)."""
    if upload is None:
        return replay.plan(store, source, transforms, pacing, endpoint)
    suffix = "".join(Path(upload.name).suffixes)[-20:]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "upload" + suffix)
        with open(path, "wb") as fh:
            fh.write(upload.getbuffer())
        return replay.plan(
            store, replay.Source(path=path, display_name=upload.name), transforms, pacing, endpoint
        )


for problem in problems:
    st.warning(md_escape(problem), icon=":material/rule:")
b1, b2, _ = st.columns([1, 1, 3])
checked = ss.get("r_dry")
fresh = checked is not None and checked["signature"] == plan_signature()
if b1.button(
    "Dry run", disabled=bool(problems), help="Validate, count and estimate; send nothing."
):
    with st.spinner("Reading the source and writing the plan…"), guarded("the dry run"):
        if checked is not None:  # the plan it replaces, unless started by either Start button
            replay.discard_unstarted(store, checked["run_id"], runs.get(checked["run_id"]))
        try:
            planned = make_plan()
            info = replay.dry_run(store, planned)
            ss.r_dry = {
                "signature": plan_signature(),
                "run_id": planned.run_id,
                "state": "planned",
                "info": info,
            }
        except replay.ReplayError as exc:
            ss.r_dry = None
            st.error(md_escape(exc), icon=":material/error:")
        checked = ss.get("r_dry")
        fresh = checked is not None
start = b2.button(
    "Start",
    type="primary",
    disabled=not fresh or checked["state"] != "planned",
    help="Starts the run checked by the dry run." if fresh else "Run the dry run first.",
)

if checked is not None and checked["state"] == "planned":
    info = checked["info"]
    with st.container(border=True):
        st.markdown(f"**Dry run** · run {md_escape(info.run_id)}")
        if not fresh:
            st.info("The form changed since this dry run: run it again to start.")
        m = st.columns(5)
        m[0].metric("Events to send", count(info.events))
        m[1].metric("Traces", count(info.traces))
        m[2].metric("Invalid (dead letters)", count(info.invalid))
        m[3].metric("Repeated in the source", count(info.duplicates))
        m[4].metric(
            "Estimated duration",
            duration(info.estimated_s) if info.estimated_s is not None else "endpoint-bound",
            help="From the rate cap and/or the original timing; with neither, it depends on"
            " how fast the endpoint answers.",
        )
        st.caption(
            f"Source {md_escape(info.source)}, event time {info.first_time or '–'}"
            f" to {info.last_time or '–'}."
        )
        if info.invalid_reasons:
            st.caption("Records that will not be sent")
            st.dataframe(pd.DataFrame(info.invalid_reasons), hide_index=True, width="stretch")
        st.caption("The first bodies as they will be sent")
        st.code(
            "\n".join(json.dumps(b, ensure_ascii=False) for b in info.first_bodies),
            language="json",
        )

if start and fresh:
    with guarded("starting the run"):
        run = replay.get_run(store, checked["run_id"])
        runs.start(store, run, target.key, target.key_source)
        checked["state"] = "started"
        ss.r_open = run.run_id
        st.rerun()

# -- live ---------------------------------------------------------------------------------------


def live_runs() -> None:
    """The runs sending now, redrawn every second without rerunning the page."""
    sessions = runs.live()
    if not sessions:
        if ss.get("r_had_live"):
            ss.r_had_live = False
            st.rerun()  # a run just ended: redraw the past runs with its report
        return
    ss.r_had_live = True
    st.subheader("Running", anchor=False)
    for session in sessions:
        p = session.replay.progress()
        with st.container(border=True):
            st.markdown(f"Run {md_escape(p.run_id)} · **{p.state}**")
            share = p.done / p.planned if p.planned else 1.0
            st.progress(
                min(1.0, share),
                text=f"{p.done:,} of {counted(p.planned, 'event')} done · {p.rate:,.0f} events/s · "
                f"ETA {duration(p.eta_s)}",
            )
            m = st.columns(6)
            m[0].metric("Accepted", count(p.accepted))
            m[1].metric("Dead-lettered", count(p.rejected + p.invalid))
            m[2].metric("Retries", count(p.retried))
            m[3].metric("Failed / unknown", count(p.failed + p.unknown))
            m[4].metric("Requests", count(p.requests))
            m[5].metric("Server pause", f"{p.paused_for_s:.0f} s" if p.paused_for_s else "–")
            if p.message:
                st.warning(md_escape(p.message))
            c1, c2, _ = st.columns([1, 1, 4])
            if p.state == replay.RunState.PAUSED:
                if c1.button("Resume", key=f"r_go_{p.run_id}"):
                    session.replay.resume()
            elif c1.button("Pause", key=f"r_pause_{p.run_id}"):
                session.replay.pause()
            if c2.button("Stop", key=f"r_stop_{p.run_id}"):
                session.replay.stop("stopped from the Replay page; resume it to send the rest")


with guarded("the running replays"):
    # Ticks only while a run is live: an idle tick cost the server about 0.1 s of CPU a second
    # for as long as the page stayed open. A run started here reruns the page (and so starts
    # the ticks); the last tick after a run ends reruns it again (and so stops them).
    st.fragment(run_every=1.0 if runs.live() else None)(live_runs)()

# -- past runs ------------------------------------------------------------------------------------

st.subheader("Runs", anchor=False)
with guarded("the runs", stop=True):
    past = replay.list_runs(store)
    if not past:
        st.caption("No runs yet. A dry run plans one; Start sends it.")
        st.stop()
    rows = []
    for r in past:
        listed = replay.listing(r, runs.get(r.run_id))
        rows.append(
            {
                "run": r.run_id,
                "state": listed.state,
                "source": r.source.label,
                "endpoint": r.endpoint.url,
                "events": listed.events,
                "accepted": listed.accepted,
                "dead-lettered": listed.dead_lettered,
                "events/s": listed.rate_per_s,
                "created": r.created_at,
            }
        )
    # Counts stay numbers (nullable, so a count not there yet is missing, never NaN turned into
    # "nan"): a column then sorts by value, where "2,620" as text sorts before "28". The
    # browser puts the thousands separators in, and draws a missing count as the placeholder.
    table = pd.DataFrame(rows).astype(
        {"events": "Int64", "accepted": "Int64", "dead-lettered": "Int64", "events/s": "Float64"}
    )
    picked = st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key="r_runs_table",
        placeholder="–",
        column_config={
            "events": COUNT,
            "accepted": COUNT,
            "dead-lettered": COUNT,
            "events/s": st.column_config.NumberColumn(format="%,.0f"),
            "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
        },
    )
    chosen = picked.selection.rows
    run_id = table.iloc[chosen[0]]["run"] if chosen else ss.get("r_open", past[0].run_id)
    if run_id not in table["run"].tolist():
        run_id = past[0].run_id

with guarded("the run's report"):
    run = replay.get_run(store, run_id)
    session = runs.get(run_id)
    alive = replay.is_live(session)
    if not alive and table.loc[table["run"] == run_id, "state"].isin(replay.SENDING).any():
        st.rerun()  # it ended since the table was drawn: draw both from the journal again
    report = replay.build_report(store, run) if run.sessions else None
    st.markdown(
        f"**Run {md_escape(run.run_id)}** · {md_escape(run.source.label)} → "
        f"{md_escape(run.endpoint.url + run.endpoint.path)}"
    )
    if session is not None and session.error:
        st.error(md_escape(session.error), icon=":material/error:")
    if run.message:
        st.info(md_escape(run.message))
    if alive:
        st.caption("Sending now: the live progress is above; the report follows when it ends.")
    elif report:
        m = st.columns(7)
        m[0].metric("Events", count(report.events))
        m[1].metric("Accepted", count(report.accepted))
        m[2].metric("Dead-lettered", count(report.dead_lettered))
        m[3].metric("Retried", count(report.retried))
        m[4].metric("Failed / unknown", count(report.failed + report.unknown))
        m[5].metric("Not sent yet", count(report.not_sent))
        m[6].metric("Events/s", f"{report.rate_per_s or 0:,.0f}")
        lat = report.latency_ms
        st.caption(
            f"Latency p50 {lat.p50} ms · p95 {lat.p95} ms · p99 {lat.p99} ms"
            + (" (estimated) ·" if lat.estimated else " ·")
            + f" {counted(report.requests, 'request')} over {duration(report.elapsed_s)}"
            f" in {counted(report.sessions, 'session')} ·"
            f" {counted(report.duplicates_in_source, 'repeated source record')} skipped"
        )
        if report.by_type:
            by_type = pd.DataFrame(report.by_type).T.fillna(0).astype(int)
            st.dataframe(
                by_type.rename_axis("event_type"),
                width="stretch",
                column_config=counts_config(by_type),
            )
    else:
        st.caption(
            f"Planned: {counted(run.planned, 'event')}, {run.invalid:,} invalid; not started."
        )

    a1, a2, a3 = st.columns(3)
    resumable = replay.can_start(run, session)
    if a1.button(
        "Resume" if run.sessions else "Start",
        key="r_resume",
        disabled=not resumable,
        help="Sends only the events without a final outcome, to the run's own endpoint"
        " with the key chosen above (or the sandbox's, for the embedded sandbox).",
    ):
        key_target = (  # the run's own endpoint, with the key chosen above if it is that one
            target
            if replay.same_endpoint(run, target.endpoint)
            else target_for(run.endpoint.url, None, run.endpoint.auth, run.endpoint.path)
        )
        runs.start(store, run, key_target.key, key_target.key_source)
        if ss.get("r_dry") and ss.r_dry["run_id"] == run.run_id:
            ss.r_dry["state"] = "started"  # the form's Start and a new dry run leave it alone
        st.toast(
            f"Resuming with {KEY_SOURCE_WORDS[key_target.key_source]}", icon=":material/replay:"
        )
        st.rerun()
    dead = report.dead_lettered if report else run.invalid
    a2.download_button(
        f"Dead letters ({dead:,}) as JSONL",
        data=lambda: "".join(
            json.dumps(letter, ensure_ascii=False) + "\n"
            for letter in replay.dead_letters(store, run.run_id)
        ),
        file_name=f"{run.run_id}.dead-letter.jsonl",
        mime="application/x-ndjson",
        disabled=not dead,
        help="Each refused event as it was in the source, with a dead_letter key saying why;"
        " fix them and upload the file here to replay them.",
    )
    if a3.button("Delete this run", key="r_delete", disabled=alive):
        replay.delete_run(store, run.run_id)
        ss.pop("r_open", None)
        if ss.get("r_dry") and ss.r_dry["run_id"] == run.run_id:
            ss.r_dry = None
        st.rerun()
    if report:
        with st.expander("Report as JSON"):
            st.code(json.dumps(report.as_dict(), indent=2, ensure_ascii=False), language="json")

st.caption(f"The embedded sandbox answers at {md_escape(embedded_url())}/api/track_event.")
