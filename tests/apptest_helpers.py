"""Shared by the AppTest page tests: no exception, no failed section, plain text, and the clicks
AppTest cannot make (a row of a dataframe, points on a Plotly chart)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def run_app(params: dict[str, str] | None = None, page: str | None = None) -> AppTest:
    """The app after its first run, as a browser opening a URL with these query parameters (on
    this page, e.g. "pages/traces.py") gets it; EVENTLENS_DB names the store."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    for name, value in (params or {}).items():
        at.query_params[name] = value
    if page:
        at.switch_page(page)
    return at.run()


def metric(at: AppTest, label: str) -> str:
    """The value of the first metric with this label (a headline's, a dry run's, a live run's
    come before any report's)."""
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no {label!r} metric in {[m.label for m in at.metric]}"
    return found[0]


def errors(at: AppTest) -> list[str]:
    """Each exception as 'Type: message (the last frame in this project)'."""
    out = []
    for e in at.exception:
        ours = [f for f in e.stack_trace if str(ROOT) in f and ".venv" not in f] or ["?"]
        out.append(f"{e.proto.type.rsplit('.', 1)[-1]}: {e.message} ({ours[-1]})")
    return out


def ok(at: AppTest) -> None:
    """No exception and no section that failed to draw (pytest.fail, not an AssertionError)."""
    if at.exception:
        pytest.fail(f"the page raised: {errors(at)}")
    if at.error:
        pytest.fail(f"the page showed errors: {[e.value for e in at.error]}")


def plain(text: str) -> str:
    """A message without the Markdown escapes the page adds (md_escape)."""
    return text.replace("\\", "")


def _send(at: AppTest, state: WidgetState) -> AppTest:
    """Rerun with one more widget state, as the browser sends it, through AppTest's private _run."""
    if not hasattr(at, "_run"):
        pytest.skip("this Streamlit's AppTest has no _run to send a selection through")
    states = at._tree.get_widget_states()
    states.widgets.append(state)
    return at._run(states)


def select_row(at: AppTest, element, row: int) -> AppTest:
    """Rerun as the browser does after a click on a row of a dataframe with on_select."""
    selection = {"selection": {"rows": [row], "columns": [], "cells": []}}
    return _send(at, WidgetState(id=element.proto.id, string_value=json.dumps(selection)))


def select_points(at: AppTest, element, points: list[dict]) -> AppTest:
    """Rerun as the browser does after a click or a box selection on a Plotly chart (the
    frontend sends the selection as a JSON string)."""
    selection = {"points": points, "point_indices": [], "box": [], "lasso": []}
    value = json.dumps(json.dumps({"selection": selection}))
    return _send(at, WidgetState(id=element.proto.id, json_value=value))


def one_dataframe(at: AppTest, matches: Callable[[str], bool], what: str):
    """The one st.dataframe whose element id `matches` (ids carry the widget key); `what` names
    it in the failure."""
    found = [d for d in at.dataframe if matches(d.proto.id)]
    assert len(found) == 1, f"no {what} on the page"
    return found[0]
