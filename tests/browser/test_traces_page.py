"""The Traces page in a real headless Chromium: a shared trace link, and a row picked in the list.

The link test comes first in this file: run on its own (`pytest tests/browser/test_traces_page.py`)
it is the server's first page request, the case `ui.state.require_router()` exists for. With
the other browser tests it may not be, since the app server is shared by the session.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

from playwright.sync_api import expect

from browser.app_utils import (
    click_first_row,
    click_point,
    dataframe_after,
    nav_labels,
    no_errors,
    open_trace,
    promptly,
    sample_trace_id,
    traces_caption,
)

NAV = ["Explore", "Traces", "Submit", "Replay", "Data"]
TRACE_HEADING = re.compile(r"^Trace trace_[0-9a-f]+$")


def test_a_shared_trace_link_opens_through_the_router(page, app_url, wait_for_app):
    trace_id = sample_trace_id()
    open_trace(page, app_url, trace_id)
    # The router's menu (app.py's st.navigation), not the pages/ folder's "app" entry.
    assert nav_labels(page) == NAV
    expect(page.get_by_role("heading", name="Traces", exact=True)).to_be_visible()
    # The events table follows the trace heading, the URL still names the trace.
    expect(dataframe_after(page, f"Trace {trace_id}")).to_be_visible()
    assert parse_qs(urlparse(page.url).query).get("trace") == [trace_id]
    assert urlparse(page.url).path.rstrip("/").endswith("/traces")
    expect(
        page.locator('[data-testid="stCode"]').filter(has_text="$LANGWATCH_API_KEY")
    ).to_be_attached()
    no_errors(page)


def test_clicking_a_row_in_the_list_opens_the_trace(page, app_url, wait_for_app):
    page.goto(f"{app_url}/traces")
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Traces", exact=True)).to_be_visible()
    caption = page.locator('[data-testid="stCaptionContainer"]').filter(has_text="traces match")
    promptly(expect(caption).to_be_visible, timeout_s=30)
    assert re.match(r"^[\d,]+ traces match; page 1 of", caption.inner_text())
    assert page.get_by_role("heading", name=TRACE_HEADING).count() == 0
    assert nav_labels(page) == NAV

    grid = dataframe_after(page)
    expect(grid).to_be_visible()
    click_first_row(page, grid)

    heading = page.get_by_role("heading", name=TRACE_HEADING)
    promptly(expect(heading).to_be_visible)
    wait_for_app(page)
    trace_id = heading.inner_text().removeprefix("Trace ").strip()
    assert parse_qs(urlparse(page.url).query).get("trace") == [trace_id]
    # Four headline metrics and the events table below the heading.
    for label in ("Events", "Span", "Event types"):
        expect(
            page.locator('[data-testid="stMetric"]').filter(has_text=label).first
        ).to_be_visible()
    events = dataframe_after(page, f"Trace {trace_id}")
    expect(events).to_be_visible()
    assert page.locator('[data-testid="stDataFrame"]').count() >= 2
    no_errors(page)


def test_explores_trace_link_opens_the_trace_in_the_same_session(page, app_url, wait_for_app):
    """Explore in Amsterdam: click a point, pick a trace, follow its link: Traces opens that
    trace in that zone (it used to open in UTC)."""
    page.goto(f"{app_url}/?tz=Europe%2FAmsterdam")
    wait_for_app(page)
    chart = page.locator('[data-testid="stPlotlyChart"]')
    promptly(expect(chart.locator("svg.main-svg").first).to_be_visible, timeout_s=30)
    click_point(page)
    caption = traces_caption(page)
    promptly(expect(caption).to_be_visible)
    wait_for_app(page)

    click_first_row(page, dataframe_after(page, "Traces behind the selection"))
    link = page.locator('[data-testid="stPageLink"] a').filter(has_text="Open it on the Traces")
    promptly(expect(link).to_be_visible)
    wait_for_app(page)
    picked = page.get_by_text(re.compile(r"^Events of trace trace_[0-9a-f]+")).first
    trace_id = re.search(r"trace_[0-9a-f]+", picked.inner_text()).group(0)

    link.click()
    heading = page.get_by_role("heading", name=f"Trace {trace_id}", exact=True)
    promptly(expect(heading).to_be_visible)
    wait_for_app(page)
    assert urlparse(page.url).path.rstrip("/").endswith("/traces")
    query = parse_qs(urlparse(page.url).query)
    assert query.get("trace") == [trace_id]
    assert query.get("tz") == ["Europe/Amsterdam"]
    expect(page.get_by_role("combobox", name="Time zone")).to_have_value("Europe/Amsterdam")
    expect(page.get_by_text(re.compile(r"\(Europe/Amsterdam\)\. "))).to_be_visible()
    expect(dataframe_after(page, f"Trace {trace_id}")).to_be_visible()
    no_errors(page)


def test_the_next_trace_button_fills_in_the_comparison(page, app_url, wait_for_app):
    trace_id = sample_trace_id()
    open_trace(page, app_url, trace_id)
    page.get_by_role("button", name="Use the next trace in the list").click()
    compared = page.get_by_text(re.compile(r"^A = trace_"))
    failed = page.locator('[data-testid="stException"]')
    promptly(expect(compared.or_(failed).first).to_be_visible, timeout_s=30)
    wait_for_app(page)
    no_errors(page)
    expect(compared).to_be_visible()
    assert "compare" in parse_qs(urlparse(page.url).query)
