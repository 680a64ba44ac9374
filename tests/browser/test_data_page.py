"""The Data page in a real headless Chromium: what only a browser shows."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

FORMATS = Path(__file__).resolve().parents[2] / "sample_data" / "formats"


@pytest.fixture
def data_page(page, app_url, wait_for_app):
    """A tab on the Data page."""
    page.goto(f"{app_url}/data")
    wait_for_app(page)
    return page


def test_data_page_renders_the_sample_data(data_page, tmp_path):
    page = data_page
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()
    events = page.locator('[data-testid="stMetric"]').filter(has_text="Events").first
    expect(events).to_contain_text("50,000")
    # The datasets, profile and metric tables are drawn (canvas grids).
    expect(page.locator('[data-testid="stDataFrame"]').nth(2)).to_be_visible()
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
    expect(load).to_be_enabled()
    load.click()
    expect(
        alert.filter(has_text="chosen-twice: 3 loaded, 0 rejected, 0 duplicates.")
    ).to_be_visible(timeout=30_000)
    wait_for_app(page)

    chosen.locator('[data-testid="stFileChipDeleteBtn"] button').click()
    expect(chosen).to_have_count(0)
    expect(load).to_be_disabled()
    wait_for_app(page)

    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(export))
    expect(chosen).to_be_visible()
    expect(load).to_be_enabled()
    load.click()
    expect(
        alert.filter(has_text="chosen-twice: 0 loaded, 0 rejected, 3 duplicates.")
    ).to_contain_text(
        "Nothing new was added: those events were already in the store.", timeout=30_000
    )
    wait_for_app(page)
    assert page.locator('[data-testid="stException"]').count() == 0
