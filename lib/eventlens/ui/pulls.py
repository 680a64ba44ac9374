"""The pulls from LangWatch running in this server process (cache_resource), and the Data page's
"From LangWatch" section that starts and shows them.

Pulls and schedules run in daemon threads of the server (eventlens.sync.background), so they
outlive reruns, page switches and closed tabs; a restart stops them. The key is held by their
Target in memory only: never in session state (other than its own password field), the store,
the URL or a message.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pandas as pd
import streamlit as st

from eventlens import sync
from eventlens.store import Store
from eventlens.sync import Progress, PullError, PullResult, PullSpec
from eventlens.sync.background import Pulls, PullSession, ScheduleStatus, busy_sentence
from eventlens.ui.format import md_escape
from eventlens.ui.tables import counts_config
from eventlens.ui.target import source_picker
from eventlens.words import counted

ENDPOINT_HELP = (
    "The LangWatch to read from (POST /api/traces/search). The embedded sandbox is this app's "
    "own, with its own key: events sent to it on the Submit page can be pulled back here."
)
SINCE_HELP = (
    "Empty: go on where the last pull of this endpoint and dataset stopped (or from the "
    "beginning). A date reads every trace updated since then again (UTC midnight)."
)
RESTART_NOTE = (
    "Pulls and schedules run in this app's server process and hold the key in memory only: "
    "restarting the app stops them (a pull cut short shows as interrupted below; pulling "
    "again goes on from its last page)."
)


@st.cache_resource(show_spinner=False)
def registry() -> Pulls:
    """One registry of pulls and schedules per server process."""
    return Pulls()


def sentence(text: str) -> str:
    """Text as a sentence: its first letter upper case, a full stop at the end."""
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


def since_ms(day: dt.date | None) -> int | None:
    """UTC midnight of a date, in epoch ms."""
    if day is None:
        return None
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)


def clock_text(seconds: float | None) -> str:
    """An epoch time as the page shows it: UTC, to the second."""
    if seconds is None:
        return "–"
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def minutes_text(every_s: float) -> str:
    minutes = every_s / 60
    return counted(int(minutes), "minute") if minutes == int(minutes) else f"{minutes:g} minutes"


def progress_text(p: Progress) -> str:
    of = f" of {p.total_hits:,}" if p.total_hits is not None else ""
    return (
        f"{p.traces:,}{of} traces · {counted(p.events, 'event')} · {counted(p.pages, 'page')}"
        f" · {p.events_per_s:,.0f} events/s"
    )


def result_text(r: PullResult) -> str:
    through = r.as_dict()["updated_through"] or "–"
    return (
        f"Pulled {counted(r.traces, 'trace')} into dataset {r.dataset} "
        f"({counted(r.events, 'event')}: {r.added:,} added, {r.removed:,} removed, "
        f"{r.rejected:,} rejected) in {counted(r.pages, 'page')}; the next pull starts at "
        f"{through}."
    )


def pair_key(endpoint: str, dataset: str) -> str:
    """A widget key for an (endpoint, dataset): short, and the same on every run."""
    return hashlib.md5(f"{endpoint}\0{dataset}".encode()).hexdigest()[:10]  # noqa: S324


def draw_progress(session: PullSession, label: str) -> None:
    p = session.progress()
    share = min(1.0, p.traces / p.total_hits) if p.total_hits else 0.0
    st.markdown(
        f"{label}: **{md_escape(session.spec.dataset)}** from {md_escape(session.spec.endpoint)}"
    )
    st.progress(share, text=progress_text(p) if p.pages or p.note else "Asking for the first page…")
    if p.note:
        st.caption(f"Retrying: {md_escape(p.note)}")


def draw_schedule(status: ScheduleStatus, scheduled: Pulls) -> None:
    with st.container(border=True):
        c1, c2 = st.columns([5, 1])
        c1.markdown(
            f"Every {minutes_text(status.every_s)}: **{md_escape(status.dataset)}** from "
            f"{md_escape(status.endpoint)}"
        )
        if c2.button("Stop", key=f"pl_stop_{pair_key(status.endpoint, status.dataset)}"):
            scheduled.stop_schedule((status.endpoint, status.dataset))
            st.rerun(scope="app")
        parts = []
        if status.last_at is not None:
            parts.append(f"Last pull {clock_text(status.last_at)} ({status.last_outcome})")
        if status.pulling:
            parts.append("pulling now" if parts else "First pull under way")
        elif status.next_at is not None:
            parts.append(f"next {clock_text(status.next_at)}")
        else:
            parts.append("stopped")
        done = f" {counted(status.pulls, 'pull')} so far." if status.pulls else ""
        st.caption("; ".join(parts) + "." + done)
        if status.last_result is not None:
            st.caption(md_escape(result_text(status.last_result)))
        if status.last_error:
            st.warning(
                f"Last error: {md_escape(status.last_error)}", icon=":material/sync_problem:"
            )


def draw_live(store: Store, pulls: Pulls) -> None:
    """Running pulls with their progress, this tab's last result, the schedules; when a pull
    ends, the whole page runs again so its counts and tables include the new data."""
    ss = st.session_state
    live = pulls.live()
    live_ids = {s.id for s in live}
    if set(ss.get("pl_watching", ())) - live_ids:
        ss.pl_watching = sorted(live_ids)
        st.rerun(scope="app")  # a pull just ended: counts, datasets and past pulls change
    ss.pl_watching = sorted(live_ids)
    for session in live:
        draw_progress(session, "Pulling" if session.id == ss.get("pl_session") else "Running")
    mine = pulls.session(ss.get("pl_session", "")) if ss.get("pl_session") else None
    if mine is not None and not mine.alive:
        if mine.result is not None:
            st.success(md_escape(result_text(mine.result)), icon=":material/cloud_done:")
        elif mine.error is not None:
            st.error(f"The pull failed: {md_escape(mine.error)}", icon=":material/cloud_off:")
    for schedule in pulls.schedule_list():
        draw_schedule(schedule.status(), pulls)


def past_table(store: Store) -> None:
    past = sync.past_pulls(store)
    if past.empty:
        st.caption("No pulls yet.")
        return
    shown = pd.DataFrame(
        {
            "when": past["started_at"],
            "endpoint": past["endpoint"],
            "dataset": past["dataset"],
            "outcome": past["outcome"],
            "traces": past["traces"].astype("int64"),
            "events": past["events"].astype("int64"),
            "added": past["added"].astype("int64"),
            "removed": past["removed"].astype("int64"),
            "rejects": past["rejected"].astype("int64"),
            "pages": past["pages"].astype("int64"),
            "updated through": pd.to_datetime(past["updated_through_ms"], unit="ms", utc=True),
            "message": past["message"].fillna(""),
        }
    )
    st.dataframe(
        shown,
        key="pl_past",
        hide_index=True,
        width="stretch",
        column_config=counts_config(
            shown,
            when=st.column_config.DatetimeColumn("when", format="YYYY-MM-DD HH:mm:ss z"),
            **{
                "updated through": st.column_config.DatetimeColumn(
                    "updated through",
                    format="YYYY-MM-DD HH:mm:ss z",
                    help="Where the next pull of this endpoint and dataset starts.",
                )
            },
            message=st.column_config.TextColumn("message", width="large"),
        ),
    )


def section(store: Store) -> None:
    """The Data page's "From LangWatch": where from, into which dataset, Pull now, keep in sync,
    live progress and the past pulls."""
    pulls = registry()
    ss = st.session_state
    st.subheader("From LangWatch", anchor=False)
    st.caption(
        "Pull a LangWatch project's events into a dataset. Each pull reads the traces updated "
        "since the last pull of the same endpoint and dataset, and replaces those traces' "
        "events, so the dataset ends with exactly what LangWatch holds."
    )
    target = source_picker("pl_", ENDPOINT_HELP)
    d1, d2 = st.columns(2)
    dataset = d1.text_input("Dataset", value=sync.DEFAULT_DATASET, key="pl_dataset").strip()
    since = d2.date_input(
        "Since (optional)", value=None, key="pl_since", help=SINCE_HELP, format="YYYY-MM-DD"
    )
    endpoint = target.endpoint.rstrip("/")
    busy = pulls.lanes.busy((endpoint, dataset))
    b1, b2, b3 = st.columns([1, 1, 2], vertical_alignment="bottom")
    pull_now = b1.button("Pull now", type="primary", key="pl_pull", disabled=busy)
    every = b2.number_input(
        "Keep in sync every N minutes", min_value=1, max_value=1440, value=15, key="pl_every"
    )
    keep = b3.button("Keep in sync", key="pl_keep", icon=":material/sync:")
    if busy:
        st.caption(md_escape(sentence(busy_sentence((endpoint, dataset)))))
    if pull_now or keep:
        try:
            spec = PullSpec(
                endpoint=endpoint,
                dataset=dataset,
                since_ms=since_ms(since if isinstance(since, dt.date) else None),
            )
            if pull_now:
                ss.pl_session = pulls.pull_now(store, spec, target).id
            else:
                pulls.keep_in_sync(store, spec, target, float(every))
        except PullError as exc:
            st.error(md_escape(sentence(target.scrub(str(exc)))), icon=":material/block:")
        else:
            st.rerun()  # draw the live part with its timer on
    st.caption(RESTART_NOTE)
    active = bool(pulls.live() or pulls.schedule_list())
    st.fragment(run_every=1.0 if active else None)(draw_live)(store, pulls)
    st.markdown("**Past pulls**")
    past_table(store)
