"""eventlens: the Streamlit entry point. Routes the pages (menu along the top), names the store."""

import streamlit as st

from eventlens.store import StoreError
from eventlens.ui.format import md_escape
from eventlens.ui.state import get_store
from eventlens.words import counted

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
# The menu goes along the top: a sidebar kept 300 px of an 800 px window for five links and cut
# the controls' labels ("events (c", "Previo…").
page = st.navigation(pages, position="top")
st.caption(f"eventlens · store {md_escape(store.path)} · {counted(store.event_count(), 'event')}")
page.run()
