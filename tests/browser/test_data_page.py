"""The Data page in a real headless Chromium: what only a browser shows."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

FORMATS = Path(__file__).resolve().parents[2] / "sample_data" / "formats"


@pytest.fixture
def data_page(page, app_url, wait_for_app):
    """The Data page (Explore is the app's default page)."""
    page.goto(f"{app_url}/data")
    wait_for_app(page)
    return page


def test_data_page_renders_the_sample_data(data_page, tmp_path):
    page = data_page
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()
    events = page.locator('[data-testid="stMetric"]').filter(has_text="Events").first
    expect(events).to_contain_text("50,000")
    # The datasets, profile and metric tables are drawn (canvas grids).
    expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible()
    assert page.locator('[data-testid="stDataFrame"]').count() >= 3
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(tmp_path / "data.png"), full_page=True)


def test_uploading_a_bad_file_and_a_non_export(data_page, tmp_path, wait_for_app):
    page = data_page
    junk = tmp_path / "notes.txt"
    junk.write_text("just some notes\nnothing else\n")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        [str(FORMATS / "bad_lines.jsonl"), str(junk)]
    )
    page.get_by_role("button", name="Load uploaded files").click()
    alert = page.locator('[data-testid="stAlert"]')
    expect(alert.filter(has_text="8 rejected")).to_be_visible(timeout=30_000)
    expect(alert.filter(has_text="not an event export")).to_be_visible()
    wait_for_app(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    rejected = page.locator('[data-testid="stMetric"]').filter(has_text="Rejected rows").first
    expect(rejected).to_contain_text("8")
    page.screenshot(path=str(Path(tmp_path) / "upload.png"), full_page=True)
