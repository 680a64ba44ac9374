"""The Explore page in a real headless Chromium: the Plotly chart, a click on a point (line and
bar), a box selection, and a narrow window."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from browser.app_utils import (
    CLIPPED_TEXT,
    WAIT_POLL_MS,
    box_select,
    click_point,
    nav_labels,
    no_errors,
    promptly,
    resize,
    the_chart,
    traces_caption,
)

TRACES_HEADING = "Traces behind the selection"
BOARD_HEADING = "Top detail values"
NAV = ["Explore", "Traces", "Submit", "Replay", "Data"]

# Whether a stDataFrame lies between the two section headings, in document order.
DATAFRAME_BETWEEN = """([first, second]) => {
    const heading = (text) => [...document.querySelectorAll('[data-testid="stHeading"]')]
        .find((h) => h.textContent.includes(text));
    const a = heading(first), b = heading(second);
    if (!a || !b) return false;
    return [...document.querySelectorAll('[data-testid="stDataFrame"]')].some((df) =>
        (a.compareDocumentPosition(df) & Node.DOCUMENT_POSITION_FOLLOWING) &&
        (df.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING));
}"""


def expect_traces_listed(page, wait_for_app) -> str:
    """Wait for the traces behind a selection; returns their caption."""
    caption = traces_caption(page)
    promptly(expect(caption).to_be_visible)
    wait_for_app(page)
    page.wait_for_function(
        DATAFRAME_BETWEEN,
        arg=[TRACES_HEADING, BOARD_HEADING],
        polling=WAIT_POLL_MS,
        timeout=30_000,
    )
    text = caption.inner_text()
    assert not text.startswith("0 traces")
    return text


def test_explore_is_the_default_page_and_draws_the_chart(explore):
    page = explore
    expect(page.get_by_role("heading", name="Explore", exact=True)).to_be_visible()
    assert nav_labels(page) == NAV
    # The sample's 50,000 events, or more when another browser test loaded a file first.
    events = page.locator('[data-testid="stMetric"]').filter(has_text="Events").first
    expect(events).to_contain_text(re.compile(r"\d\d,\d{3}"))
    chart = the_chart(page)
    # One line per series: the sample has ten event types.
    expect(chart.locator(".scatterlayer .trace").first).to_be_attached()
    assert chart.locator(".scatterlayer .trace").count() >= 10
    no_errors(page)


@pytest.mark.parametrize("chart_kind", ["line", "bar"])
def test_a_click_on_a_point_lists_the_traces_of_its_bucket_and_series(
    page, app_url, wait_for_app, chart_kind
):
    page.goto(f"{app_url}/?chart={chart_kind}&tz=Europe%2FAmsterdam")
    wait_for_app(page)
    the_chart(page)
    point = click_point(page)
    text = expect_traces_listed(page, wait_for_app)
    start, end, series = point["customdata"]
    shown = [dt.datetime.fromisoformat(t).strftime("%Y-%m-%d %H:%M") for t in (start, end)]
    assert re.fullmatch(
        rf"[\d,]+ traces? with events of {re.escape(series)} from {shown[0]} to"
        rf" {shown[1]} \(Europe/Amsterdam\)",
        text,
    ), text
    no_errors(page)


def test_box_select_on_the_chart_lists_the_traces_behind_it(explore, wait_for_app):
    page = explore
    chart = the_chart(page)
    hint = (
        "Click a point on the chart to list the traces behind it (or pick Box Select in the"
        " chart's toolbar and drag across a span of time)."
    )
    expect(page.get_by_text(hint, exact=True)).to_be_visible()
    # A slice of the time axis, top to bottom: every series has points there.
    box_select(page, chart, 0.40, 0.55)
    text = expect_traces_listed(page, wait_for_app)
    assert " with events of " in text
    no_errors(page)


@pytest.mark.parametrize("path", ["/", "/?agg=p95&metric=latency_ms&by=detail%3Amodel", "/traces"])
def test_an_800_pixel_window_cuts_no_label(page, app_url, wait_for_app, path):
    """The menu runs along the top, so the page keeps the whole width for its controls."""
    resize(page, {"width": 800, "height": 1600})
    page.goto(app_url + path)
    wait_for_app(page)
    expect(page.locator('[data-testid="stMain"] h1')).to_be_visible(timeout=60_000)
    assert page.locator('[data-testid="stSidebar"]').count() == 0
    assert nav_labels(page) == NAV
    assert page.evaluate(CLIPPED_TEXT) == []
