"""What the browser tests do and check more than once: page-level checks, tables, the chart."""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from playwright.sync_api import expect

# Text the page cuts short (an ellipsis or a clipped box), outside charts, tables and code.
CLIPPED_TEXT = """() => {
    const out = [];
    for (const el of document.querySelectorAll('[data-testid="stMain"] *')) {
        if (!el.textContent.trim()) continue;
        if (el.closest('[data-testid="stPlotlyChart"], [data-testid="stDataFrame"],'
                       + ' [data-testid="stCode"]')) continue;
        const style = getComputedStyle(el);
        if (['auto', 'scroll'].includes(style.overflowX)) continue;
        const cut = style.overflowX === 'hidden' || style.textOverflow === 'ellipsis';
        if (cut && el.scrollWidth > el.clientWidth + 1) out.push(el.textContent.trim());
    }
    return out;
}"""

# One point of the chart as the page drew it: its centre on the screen, its customdata and name.
# Plotly's calcdata holds a marker's x and y, or a bar's centre x and its ends s0 and s1.
POINT = """([curve, index]) => {
    const plot = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
    const pt = plot.calcdata[curve][index];
    const xa = plot._fullLayout.xaxis, ya = plot._fullLayout.yaxis;
    const area = plot.querySelector('.nsewdrag').getBoundingClientRect();
    const y = pt.s1 !== undefined ? (pt.s0 + pt.s1) / 2 : pt.y;
    return {
        x: area.left + xa.c2p(pt.x),
        y: area.top + ya.c2p(y),
        customdata: plot.data[curve].customdata[index],
        name: plot.data[curve].name,
    };
}"""

# The (curve, index) of the chart's highest point: on a line chart no other series is near it.
HIGHEST = """() => {
    const plot = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
    let best = [0, 0], top = -Infinity;
    plot.calcdata.forEach((trace, curve) => {
        if (!plot.data[curve].customdata) return;  // a previous period: nothing to list
        trace.forEach((pt, index) => {
            const y = pt.s1 !== undefined ? pt.s1 : pt.y;
            if (y > top) { top = y; best = [curve, index]; }
        });
    });
    return best;
}"""


SCRIPT_DONE = """() => document.querySelector(
    '[data-testid="stApp"][data-test-script-state="notRunning"]') !== null"""


WAIT_POLL_MS = 50


def wait_for_script(page, timeout: float = 60_000) -> None:
    """Wait until the app's script has finished running, as Streamlit's own e2e tests do.
    Checked in the page every 50 ms: wait_for_selector checks every 500 ms once it has waited
    0.27 s, so it returned a quarter of a second late on average; checking on every animation
    frame made the renderer draw frames while it waited (0.3 CPU-s in 4 s of waiting)."""
    page.wait_for_function(SCRIPT_DONE, polling=WAIT_POLL_MS, timeout=timeout)


def promptly(assertion: Callable[..., None], *args: object, timeout_s: float = 60.0) -> None:
    """Check assertion(*args), a method of expect(...), in calls of 2 s until it passes or
    timeout_s is over. Within a call Playwright checks again after 20, 50 and 100 ms, then every
    500 ms, but at least every fifth of the call's timeout: every 100 ms in a 2-s call. For what
    the app and the browser take a second or more to draw, where one long call returned a
    quarter of a second late on average."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            assertion(*args, timeout=2_000)
            return
        except AssertionError:
            if time.monotonic() >= deadline:
                raise


def resize(page, size: dict[str, int]) -> None:
    """Give the tab this size, leaving the page it shows first: resized, the last test's page
    would be laid out and its chart drawn again (about 0.4 s of Chromium's CPU) for nothing."""
    if page.viewport_size != size:
        page.goto("about:blank")
        page.set_viewport_size(size)


def no_errors(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0


def nav_labels(page) -> list[str]:
    """The router's menu, along the top of the page."""
    links = page.locator('[data-testid="stTopNav"] [data-testid="stTopNavLink"]')
    expect(links.first).to_be_visible(timeout=30_000)
    # Each link's text is its Material icon's name, then its label.
    return [t.strip().splitlines()[-1].strip() for t in links.all_inner_texts()]


def dataframe_after(page, heading_text: str | None = None):
    """The first stDataFrame, or the first one after the heading with this text."""
    frames = page.locator('[data-testid="stDataFrame"]')
    if heading_text is None:
        return frames.first
    heading = page.get_by_role("heading", name=heading_text, exact=True)
    return heading.locator('xpath=following::*[@data-testid="stDataFrame"][1]')


def click_first_row(page, grid) -> None:
    """Tick the row-selection checkbox of a canvas grid's first data row (Glide's grid: a
    35 px header row, then 35 px rows; the checkbox column is the leftmost one)."""
    grid.scroll_into_view_if_needed()
    canvas = grid.locator("canvas").first
    expect(canvas).to_be_visible()
    box = canvas.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 60
    page.mouse.click(box["x"] + 16, box["y"] + 35 + 17)


def the_chart(page):
    chart = page.locator('[data-testid="stPlotlyChart"]')
    promptly(expect(chart.locator("svg.main-svg").first).to_be_visible)
    chart.scroll_into_view_if_needed()
    return chart


def click_point(page, curve: int | None = None, index: int = 0) -> dict:
    """Click one point (a line's marker, a bar) of the chart, the highest one unless told;
    returns its customdata and name."""
    if curve is None:
        curve, index = page.evaluate(HIGHEST)
    point = page.evaluate(POINT, [curve, index])
    page.mouse.move(point["x"], point["y"])
    page.mouse.click(point["x"], point["y"])
    return point


def box_select(page, chart, left: float, right: float) -> None:
    """Pick Box Select in the chart's toolbar, then drag across [left, right] of its width,
    top to bottom (fractions of the plot area)."""
    chart.hover()
    chart.locator('.modebar-btn[data-title="Box Select"]').click()
    drag = chart.locator(".nsewdrag").first
    box = drag.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 100
    x0, x1 = box["x"] + box["width"] * left, box["x"] + box["width"] * right
    y0, y1 = box["y"] + 3, box["y"] + box["height"] - 3
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
    page.mouse.move(x1, y1, steps=10)
    page.mouse.up()


def traces_caption(page):
    """The caption over the traces behind a chart selection."""
    return page.locator('[data-testid="stCaptionContainer"]').filter(
        has_text=re.compile(r"^[\d,]+ traces? with events of ")
    )


SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "events.jsonl.gz"


def sample_trace_id() -> str:
    """A trace of the sample data, which a fresh store loads on its first start."""
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as fh:
        return json.loads(fh.readline())["trace_id"]


def open_trace(page, app_url: str, trace_id: str) -> None:
    """Open /traces?trace=<id> in the tab and wait until the trace is shown and the script done."""
    page.goto(f"{app_url}/traces?trace={trace_id}")
    heading = page.get_by_role("heading", name=f"Trace {trace_id}", exact=True)
    promptly(expect(heading).to_be_visible, timeout_s=90)  # a fresh store loads the sample first
    wait_for_script(page)


T = TypeVar("T")


def eventually(page, check: Callable[[], T], timeout_s: float = 30.0) -> T:
    """check()'s value once it stops failing an assertion (the last failure after timeout_s):
    for what Playwright's expect cannot wait on, such as a grid's cells read back as rows. A
    rerun the page starts by itself can land after the script state last read notRunning."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            page.wait_for_timeout(100)
