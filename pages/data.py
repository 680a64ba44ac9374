"""Data: load exports, pull from LangWatch, see and delete datasets, profile event types, read
the rejects."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from eventlens import analytics, stores
from eventlens.export import safe_csv
from eventlens.ingest import LoadResult, default_dataset_name
from eventlens.ui import cache, pulls
from eventlens.ui.errors import guarded
from eventlens.ui.format import human_bytes, md_escape
from eventlens.ui.scope import TEST_DATA_HELP
from eventlens.ui.state import get_store, require_router
from eventlens.ui.tables import counts_config
from eventlens.words import counted

FORMATS_HELP = (
    "JSONL / NDJSON or a JSON array of track_event bodies, LangWatch stored events, trace "
    "documents (GET /api/traces/{id}), search responses, CSV (flat `metrics.<key>` columns or "
    "JSON-text columns), Parquet; gzip-compressed too. The format is read from the content."
)

require_router()
store = get_store()
st.title("Data")
st.caption("Load LangWatch event exports into the store and check what arrived.")
everything = analytics.overview(store)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Events", f"{everything['events']:,}")
c2.metric("Traces", f"{everything['traces']:,}")
c3.metric("Event types", everything["event_types"])
c4.metric("Rejected rows", f"{everything['rejects']:,}")


def show_load_result(result: LoadResult) -> None:
    """Each file that failed, in its own words, first; then the counts of the files read."""
    for f in result.failed_files:
        st.error(md_escape(f.error), icon=":material/block:")
    if len(result.failed_files) == len(result.files):
        return  # nothing was read: a "0 loaded, 0 rejected" box would only hide the reason
    rows = [
        {
            "file": f.path,
            "format": f.format or "?",
            "loaded": f.loaded,
            "rejected": f.rejected,
            "duplicates": f.duplicates,
            "first event": f.first_event,
            "last event": f.last_event,
            "problem": f.error or "",
        }
        for f in result.files
    ]
    summary = (
        f"Dataset **{md_escape(result.dataset)}**: {result.loaded:,} loaded, "
        f"{result.rejected:,} rejected, {counted(result.duplicates, 'duplicate')}."
    )
    if result.failed_files:
        summary += f" {counted(len(result.failed_files), 'file')} not loaded (see above)."
    if not result.loaded and result.duplicates:
        # Loading a file again is allowed; say plainly why it added nothing.
        those = "that event was" if result.duplicates == 1 else "those events were"
        summary += f" Nothing new was added: {those} already in the store."
    if result.failed_files or result.rejected:
        st.warning(summary)
    elif not result.loaded:
        st.info(summary)
    else:
        st.success(summary)
    files = pd.DataFrame(rows)
    st.dataframe(files, hide_index=True, width="stretch", column_config=counts_config(files))
    reasons = [(f.path, r, n) for f in result.files for r, n in f.top_reasons]
    if reasons:
        st.caption("Most common reject reasons (all rejects are listed below under Rejects):")
        top = pd.DataFrame(reasons, columns=["file", "reason", "rows"])
        st.dataframe(top, hide_index=True, width="stretch", column_config=counts_config(top))


def profile_table(title: str, frame: pd.DataFrame, empty: str) -> None:
    """One profile table under a bold title, or a caption when there is nothing to show."""
    st.markdown(f"**{title}**")
    if frame.empty:
        st.caption(empty)
    else:
        frame = frame.rename(columns=lambda c: c.replace("_", " "))
        st.dataframe(frame, hide_index=True, width="stretch", column_config=counts_config(frame))


def fresh_uploader_once_emptied(uploader_key: str) -> None:
    """Give the uploader a new key, so a new file input, when its last file was removed.

    Streamlit's file input keeps the removed files as its value. Choosing the same file again
    without its Upload button's reset (a drop-in file list, as Playwright's set_input_files
    gives) changes nothing, so the browser fires no change event and the choice is silently
    ignored: no file shown, Load disabled. A new key draws an empty input instead.
    """
    if not st.session_state.get(uploader_key):
        st.session_state["uploader_generation"] += 1


# -- loading ------------------------------------------------------------------------------------

limit = human_bytes(st.get_option("server.maxUploadSize") * 1024 * 1024)
with st.container(border=True):
    st.subheader("Load files")
    upload_tab, path_tab = st.tabs(["Upload", "From a path on the server"])
    with upload_tab:
        uploader_key = f"uploads_{st.session_state.setdefault('uploader_generation', 0)}"
        uploads = st.file_uploader(
            f"Event exports (several at once; up to {limit} each)",
            accept_multiple_files=True,
            help=FORMATS_HELP,
            key=uploader_key,
            on_change=fresh_uploader_once_emptied,
            args=(uploader_key,),
        )
        upload_dataset = st.text_input(
            "Dataset name",
            key="upload_dataset",
            placeholder="default: the first export's file name",
            help="Files loaded under the same name form one dataset.",
        )
        if st.button("Load uploaded files", type="primary", disabled=not uploads):
            with (
                tempfile.TemporaryDirectory() as tmp,
                st.spinner(f"Loading {counted(len(uploads), 'file')}…"),
            ):
                paths = []
                for i, up in enumerate(uploads):
                    # Index prefix: two uploads may share a name; the name is never a path.
                    path = Path(tmp) / f"{i}-{Path(up.name).name}"
                    path.write_bytes(up.getbuffer())
                    paths.append(path)
                # No name given: load_files names it after the first file that is an export.
                result = stores.load(store, paths, upload_dataset, [u.name for u in uploads])
            st.session_state["last_load"] = result
            st.rerun()  # so every count on the page includes the new rows
    with path_tab:
        server_path = st.text_input(
            "File or folder on the machine running eventlens",
            placeholder="/data/exports/events-2025-11.jsonl.gz",
            help="A folder loads every file directly inside it. " + FORMATS_HELP,
        )
        path_dataset = st.text_input(
            "Dataset name",
            key="path_dataset",
            placeholder="default: the file's or folder's name",
            help="Files loaded under the same name form one dataset.",
        )
        if st.button("Load from path", disabled=not server_path.strip()):
            target = Path(server_path.strip()).expanduser()
            if not target.exists():
                st.error(f"Nothing exists at {md_escape(target)}.")
            else:
                files = (
                    sorted(p for p in target.iterdir() if p.is_file())
                    if target.is_dir()
                    else [target]
                )
                if not files:
                    st.error(f"The folder {md_escape(target)} holds no files.")
                else:
                    with st.spinner(f"Loading {counted(len(files), 'file')}…"):
                        result = stores.load(
                            store, files, path_dataset.strip() or default_dataset_name([target])
                        )
                    st.session_state["last_load"] = result
                    st.rerun()
    if last_load := st.session_state.pop("last_load", None):
        show_load_result(last_load)

# -- from LangWatch ------------------------------------------------------------------------------

with st.container(border=True), guarded("the pulls from LangWatch"):
    pulls.section(store)

# -- datasets -----------------------------------------------------------------------------------

st.subheader("Datasets")
datasets = store.datasets()
if datasets.empty:
    st.info("No datasets yet. Load an export above.")
else:
    shown = datasets.rename(
        columns={
            "event_types": "event types",
            "first_event": "first event",
            "last_event": "last event",
            "loaded_at": "loaded at",
        }
    ).drop(columns=["content_hash"])
    shown["files"] = shown["files"].map(lambda f: ", ".join(f))
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_config=counts_config(
            shown, test=st.column_config.CheckboxColumn("test data", help=TEST_DATA_HELP)
        ),
    )
    with st.expander("Mark a dataset as test data, or as data to analyse"):
        st.caption(TEST_DATA_HELP)
        m1, m2 = st.columns([2, 1])
        marked = m1.selectbox("Dataset", datasets["dataset"].tolist(), key="mark_choice")
        is_test = bool(datasets.loc[datasets["dataset"] == marked, "test"].iloc[0])
        if m2.button("Analyse it again" if is_test else "Mark as test data", key="mark_button"):
            store.mark_test_data(marked, not is_test)
            st.session_state["dataset_done"] = (
                f"{marked} is {'data to analyse' if is_test else 'test data'} now."
            )
            st.rerun()
    with st.expander("Delete a dataset"):
        doomed = st.selectbox("Dataset", datasets["dataset"].tolist(), key="delete_choice")
        sure = st.checkbox(
            "I understand this removes its events and rejects from the store", key="delete_sure"
        )
        if st.button("Delete dataset", disabled=not sure, type="secondary"):
            removed = store.delete_dataset(doomed)
            st.session_state["dataset_done"] = (
                f"Deleted {doomed}: {counted(removed, 'event')} removed."
            )
            st.session_state.pop("delete_sure", None)
            st.rerun()
if msg := st.session_state.pop("dataset_done", None):
    st.success(md_escape(msg))

# -- profile ------------------------------------------------------------------------------------

st.subheader("Profile by event type")
names = datasets["dataset"].tolist() if not datasets.empty else []
scope = st.selectbox("Dataset", ["All datasets", *names], key="profile_dataset")
dataset = None if scope == "All datasets" else scope
totals = analytics.overview(store, dataset) if dataset else everything
version = cache.version()
profile = cache.event_type_profile(version, dataset)
if profile.empty:
    st.info("No events in this selection.")
else:
    profile["metric_keys"] = profile["metric_keys"].map(", ".join)
    profile["detail_keys"] = profile["detail_keys"].map(", ".join)
    by_type = profile.rename(columns=lambda c: c.replace("_", " "))
    st.dataframe(by_type, hide_index=True, width="stretch", column_config=counts_config(by_type))
    event_type = st.selectbox(
        "Event type to profile", profile["event_type"].tolist(), key="profile_type"
    )
    left, right = st.columns(2)
    with left:
        profile_table(
            "Metrics",
            cache.metric_profile(version, event_type, dataset),
            "This event type carries no metrics.",
        )
    with right:
        profile_table(
            "Event details",
            cache.detail_profile(version, event_type, dataset),
            "This event type carries no details.",
        )

# -- rejects ------------------------------------------------------------------------------------

st.subheader("Rejects")
if not totals["rejects"]:
    st.caption("No rejected rows" + (" in this dataset." if dataset else "."))
else:
    st.caption(
        f"{counted(totals['rejects'], 'row')} did not pass LangWatch's rules"
        + (f" in {md_escape(dataset)}" if dataset else "")
        + ". The other rows of the same files loaded."
    )
    f1, f2 = st.columns(2)
    file_choice = f1.selectbox(
        "File", ["All files", *store.reject_files(dataset)], key="reject_file"
    )
    words = f2.text_input("Reason contains", key="reject_words", placeholder="e.g. metrics.vote")
    rejects = store.rejects(
        dataset,
        None if file_choice == "All files" else file_choice,
        words.strip() or None,
    )
    if rejects.empty:
        st.caption("No rejected rows match.")
    else:
        shown = len(rejects)
        st.dataframe(
            rejects.drop(columns=["line"]),
            hide_index=True,
            width="stretch",
            column_config={"raw": st.column_config.TextColumn("raw record", width="large")},
        )
        st.download_button(
            f"Download {'this reject' if shown == 1 else f'these {shown:,} rejects'} as CSV"
            + (" (the newest 10,000)" if shown == 10_000 else ""),
            data=safe_csv(rejects),
            file_name="eventlens-rejects.csv",
            mime="text/csv",
        )
