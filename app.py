"""eventlens: the Streamlit entry point. Routes the pages and draws the shared sidebar."""

import streamlit as st

from eventlens.store import StoreError
from eventlens.ui.format import md_escape
from eventlens.ui.state import get_store

st.set_page_config(page_title="eventlens", page_icon=":material/insights:", layout="wide")

try:
    with st.spinner("Opening the event store (a new store loads the sample data first)…"):
        store = get_store()
except StoreError as exc:
    st.error(md_escape(exc))
    st.stop()

pages = [
    st.Page("pages/explore.py", title="Explore", icon=":material/monitoring:", default=True),
    st.Page("pages/traces.py", title="Traces", icon=":material/timeline:"),
    st.Page("pages/submit.py", title="Submit", icon=":material/send:"),
    st.Page("pages/replay.py", title="Replay", icon=":material/replay:"),
    st.Page("pages/data.py", title="Data", icon=":material/database:"),
]
page = st.navigation(pages)

with st.sidebar:
    st.caption("eventlens · LangWatch custom events")
    st.text(f"store: {store.path}\nevents: {store.event_count():,}")

page.run()
