"""The Data page in a real headless Chromium: what only a browser shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from langwatch_fake import KEY, FakeLangWatch, asgi_app, event
from playwright.sync_api import expect
from sandbox_server import serve_in_thread

from browser.app_utils import promptly

FORMATS = Path(__file__).resolve().parents[2] / "sample_data" / "formats"


@pytest.fixture
def data_page(page, app_url, wait_for_app):
    """A tab on the Data page."""
    page.goto(f"{app_url}/data")
    wait_for_app(page)
    return page


def test_data_page_renders_the_sample_data(data_page):
    page = data_page
    # The server's first page: its script runs twice (ui.state.require_router), and the first
    # run's end is what wait_for_app may have seen.
    promptly(expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible)
    events = page.locator('[data-testid="stMetric"]').filter(has_text="Events").first
    promptly(expect(events).to_contain_text, "50,000")
    # The datasets, profile and metric tables are drawn (canvas grids).
    promptly(expect(page.locator('[data-testid="stDataFrame"]').nth(2)).to_be_visible)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_uploading_a_bad_file_and_a_non_export(data_page, tmp_path, wait_for_app):
    page = data_page
    junk = tmp_path / "notes.txt"
    junk.write_text("just some notes\nnothing else\n")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        [str(FORMATS / "bad_lines.jsonl"), str(junk)]
    )
    page.get_by_role("button", name="Load uploaded files").click()
    alert = page.locator('[data-testid="stAlert"]')
    promptly(expect(alert.filter(has_text="8 rejected")).to_be_visible, timeout_s=30)
    expect(alert.filter(has_text="not an event export")).to_be_visible()
    wait_for_app(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    rejected = page.locator('[data-testid="stMetric"]').filter(has_text="Rejected rows").first
    expect(rejected).to_contain_text("8")


def test_a_removed_file_chosen_again_loads_again(data_page, tmp_path, wait_for_app):
    """Upload, Load, remove it with its x, choose the same file again, Load: an answer each time.

    Streamlit's file input used to keep the removed file as its value, so choosing it again
    changed nothing: no change event, no file listed, Load disabled, and no word on the page.
    """
    page = data_page
    export = tmp_path / "chosen-twice.jsonl"
    export.write_text(
        "".join(
            f'{{"trace_id": "t-twice", "event_id": "e{i}", "event_type": "click",'
            f' "metrics": {{"n": {i}}}}}\n'
            for i in range(3)
        )
    )
    uploader = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    chosen = page.locator('[data-testid="stFileChip"]').filter(has_text=export.name)
    load = page.get_by_role("button", name="Load uploaded files")
    alert = page.locator('[data-testid="stAlert"]')

    uploader.set_input_files(str(export))
    promptly(expect(load).to_be_enabled)
    load.click()
    loaded = alert.filter(has_text="chosen-twice: 3 loaded, 0 rejected, 0 duplicates.")
    promptly(expect(loaded).to_be_visible, timeout_s=30)
    wait_for_app(page)

    chosen.locator('[data-testid="stFileChipDeleteBtn"] button').click()
    expect(chosen).to_have_count(0)
    promptly(expect(load).to_be_disabled)
    wait_for_app(page)

    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(export))
    promptly(expect(chosen).to_be_visible)
    promptly(expect(load).to_be_enabled)
    load.click()
    again = alert.filter(has_text="chosen-twice: 0 loaded, 0 rejected, 3 duplicates.")
    nothing_new = "Nothing new was added: those events were already in the store."
    promptly(expect(again).to_contain_text, nothing_new, timeout_s=30)
    wait_for_app(page)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_pull_now_from_a_langwatch_reached_over_loopback(data_page, wait_for_app):
    """Pull now against a LangWatch stand-in served by this test process (the app's server is
    another process): the form, the live part, the result, the counts and the past pulls."""
    page = data_page
    fake = FakeLangWatch(now=2_000_000_000_000)
    # Inside the sample's month (November 2025): a worker may run the Explore tests on this
    # app server after this one, and their chart's range must stay the sample's.
    for i in range(5):
        fake.put(f"browser-pull-{i}", [event(ts=1_763_000_000_000 + i)], 1_763_000_100_000 + i)
    section = page.get_by_role("heading", name="From LangWatch").locator(
        "xpath=ancestor::div[@data-testid='stVerticalBlock'][1]"
    )
    events = page.locator('[data-testid="stMetric"]').filter(has_text="Events").first
    before = int(re.sub(r"\D", "", events.inner_text()))
    with serve_in_thread(asgi_app(fake)) as url:
        section.get_by_label("Endpoint", exact=True).click()
        page.get_by_role("option", name="other").click()
        wait_for_app(page)
        other = section.get_by_label("Other endpoint")
        other.fill(url)
        other.press("Enter")
        wait_for_app(page)
        key = section.get_by_label(re.compile("^API key"))
        key.fill(KEY)
        key.press("Enter")
        wait_for_app(page)
        promptly(expect(section).to_contain_text, f"Pulling from {url} with the key typed above.")
        section.get_by_label("Dataset", exact=True).fill("browser-pulled")
        section.get_by_label("Dataset", exact=True).press("Enter")
        wait_for_app(page)
        section.get_by_role("button", name="Pull now").click()
        done = section.locator('[data-testid="stAlert"]').filter(has_text="Pulled 5 traces")
        promptly(expect(done).to_contain_text, "into dataset browser-pulled (5 events: 5 added")
        wait_for_app(page)
    assert fake.requests, "the app's server never asked the stand-in"
    expect(events).to_contain_text(f"{before + 5:,}")
    past = section.locator('[data-testid="stDataFrame"]')
    expect(past).to_be_visible()
    # The key is in its own password field and nowhere else in the page (text, attributes).
    elsewhere = page.evaluate(
        """() => { const copy = document.documentElement.cloneNode(true);
            copy.querySelectorAll('input[type=password]').forEach(i => i.remove());
            return copy.outerHTML; }"""
    )
    assert KEY in page.content() and KEY not in elsewhere
    assert page.locator('[data-testid="stException"]').count() == 0
