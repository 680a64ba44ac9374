"""The "Include test data" control that Explore and Traces share, and the sentence that says
what "all datasets" leaves out (store.LEFT_OUT_DATASETS is the rule)."""

from __future__ import annotations

import streamlit as st

from eventlens.ui.format import md_escape
from eventlens.ui.state import get_store
from eventlens.words import counted

TEST_DATA_HELP = (
    "Test data is what Submit and Replay send to the embedded sandbox (dataset 'sandbox'), and "
    "any dataset marked as test data on the Data page. With no dataset picked it is left out, "
    "so that it does not mix with the data you analyse."
)


def test_data_checkbox(key: str, datasets_named: bool) -> None:
    """'Include test data' at session-state `key`; it has no say when datasets are picked."""
    st.checkbox(
        "Include test data",
        key=key,
        disabled=datasets_named or not get_store().left_out_datasets(),
        help=TEST_DATA_HELP,
    )


def left_out_note(key: str, datasets_named: bool, where: str) -> None:
    """A caption naming the test data that "all datasets" leaves out now, and how to count it
    (`where` says where the checkbox is, e.g. "under Filters")."""
    store = get_store()
    test = store.test_datasets()
    if datasets_named or not test:
        return
    names = ", ".join(md_escape(n) for n in test)
    left_out = store.left_out_datasets()
    if not left_out:
        st.caption(f"The store holds only test data ({names}), so it is shown.")
    elif not st.session_state.get(key):
        events = counted(sum(left_out.values()), "event")
        st.caption(
            f"Test data left out: {names} ({events}, from Submit and Replay or marked as test "
            f"data on the Data page). Tick Include test data {where}, or pick the dataset, to "
            "count it."
        )
