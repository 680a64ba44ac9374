"""A page section that fails shows one plain sentence, never a traceback; the log has details."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

log = logging.getLogger("eventlens")


@contextmanager
def guarded(what: str, *, stop: bool = False) -> Iterator[None]:
    """Run a page section; an unexpected error becomes a short message naming the section.

    With stop, the rest of the page (which needs this section) is skipped after the message.
    st.stop() and st.rerun() raise BaseExceptions, which pass through untouched.
    """
    try:
        yield
    except Exception as exc:
        log.exception("%s failed", what)
        st.error(
            f"Drawing {what} failed ({type(exc).__name__}). The rest of the page still works; "
            "the server log has the details.",
            icon=":material/error:",
        )
        if stop:
            st.stop()
