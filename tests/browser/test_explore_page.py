"""The Explore page in a real headless Chromium: the Plotly chart and a box selection on it."""

from __future__ import annotations

import re

from playwright.sync_api import expect

TRACES_HEADING = "Traces behind the selection"
BOARD_HEADING = "Top detail values"

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


def no_errors(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0


def test_explore_is_the_default_page_and_draws_the_chart(page, tmp_path):
    expect(page.get_by_role("heading", name="Explore", exact=True)).to_be_visible()
    # The sample's 50,000 events, or more when another browser test loaded a file first.
    events = page.locator('[data-testid="stMetric"]').filter(has_text="Events").first
    expect(events).to_contain_text(re.compile(r"\d\d,\d{3}"))
    chart = page.locator('[data-testid="stPlotlyChart"]')
    expect(chart).to_have_count(1)
    expect(chart.locator("svg.main-svg").first).to_be_visible(timeout=30_000)
    # One line per series: the sample has ten event types.
    expect(chart.locator(".scatterlayer .trace").first).to_be_attached()
    assert chart.locator(".scatterlayer .trace").count() >= 10
    no_errors(page)
    page.screenshot(path=str(tmp_path / "explore.png"), full_page=True)


def test_box_select_on_the_chart_lists_the_traces_behind_it(page, tmp_path, wait_for_app):
    chart = page.locator('[data-testid="stPlotlyChart"]')
    expect(chart.locator("svg.main-svg").first).to_be_visible(timeout=30_000)
    hint = "Click a point or drag a box on the chart to list the traces behind it."
    expect(page.get_by_text(hint, exact=True)).to_be_visible()
    drag = chart.locator(".nsewdrag").first
    expect(drag).to_be_visible()
    drag.scroll_into_view_if_needed()
    box = drag.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 100

    # Drag a box over a slice of the time axis, top to bottom: every series has points there.
    x0, x1 = box["x"] + box["width"] * 0.40, box["x"] + box["width"] * 0.55
    y0, y1 = box["y"] + 3, box["y"] + box["height"] - 3
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
    page.mouse.move(x1, y1, steps=10)
    page.mouse.up()

    caption = page.locator('[data-testid="stCaptionContainer"]').filter(
        has_text="traces with events"
    )
    expect(caption).to_be_visible(timeout=60_000)
    wait_for_app(page)
    expect(caption).to_contain_text("traces with events of")
    page.wait_for_function(DATAFRAME_BETWEEN, arg=[TRACES_HEADING, BOARD_HEADING], timeout=30_000)
    assert page.evaluate(DATAFRAME_BETWEEN, [TRACES_HEADING, BOARD_HEADING])
    assert not caption.inner_text().startswith("0 traces")
    no_errors(page)
    page.screenshot(path=str(tmp_path / "explore-selection.png"), full_page=True)
