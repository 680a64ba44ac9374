"""The Replay page in a real headless Chromium: an uploaded export sent to a sandbox, and the way
in from Traces' "Replay this trace".

The app server of these tests is `streamlit run app.py` (conftest.py), which serves no embedded
sandbox, so the run goes to a sandbox served by this test process on loopback (with a store
file of its own: the app server's store belongs to its process), chosen as the "other" endpoint
with its key typed in.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect
from sandbox_server import live_sandbox

from browser.app_utils import eventually, no_errors, open_trace, promptly, sample_trace_id

ROOT = Path(__file__).resolve().parents[2]
FORMATS = ROOT / "sample_data" / "formats"
KEY = "lw-BROWSER-replay-key-0123456789"


def metric(page, label: str, nth: int = 0):
    """The value of the nth metric with this label."""
    box = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(f"^{label}$"))
    )
    return box.nth(nth).locator('[data-testid="stMetricValue"]')


def grid_rows(frame) -> list[dict[str, str]]:
    """The rows of an st.dataframe, read from the accessible table Glide keeps beside its canvas
    (the rows drawn on screen)."""
    table = frame.locator('table[role="grid"]')
    expect(table).to_be_attached()
    header = [t.strip() for t in table.locator("thead th").all_inner_texts()]
    rows = []
    for row in table.locator("tbody tr").all():
        cells = [t.strip() for t in row.locator("td").all_text_contents()]
        rows.append(dict(zip(header, cells, strict=False)))
    return rows


def frame_after(page, text: str):
    """The first st.dataframe after the element with this exact text."""
    anchor = page.get_by_text(text, exact=True).first
    return anchor.locator('xpath=following::*[@data-testid="stDataFrame"][1]')


@pytest.fixture
def sandbox(tmp_path):
    with live_sandbox(tmp_path / "sandbox.duckdb", KEY) as live:
        yield live


@pytest.fixture
def replay_page(page, app_url, wait_for_app):
    page.goto(f"{app_url}/replay")
    promptly(expect(page.get_by_role("heading", name="Replay", exact=True)).to_be_visible)
    wait_for_app(page)
    return page


def choose_option(page, label: str, option: str) -> None:
    """Pick an option of the st.selectbox with this label."""
    page.get_by_role("combobox", name=label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()


def type_into(page, label: str, text: str) -> None:
    """Fill an st.text_input and commit it (Enter), as a person would."""
    field = page.get_by_label(label, exact=True)
    field.fill(text)
    field.press("Enter")


def test_an_uploaded_export_is_dry_run_then_sent(replay_page, sandbox, wait_for_app):
    page = replay_page
    page.get_by_text("An uploaded export", exact=True).click()
    uploader = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    promptly(expect(uploader).to_be_attached, timeout_s=30)
    uploader.set_input_files(str(FORMATS / "bad_lines.jsonl"))
    promptly(expect(page.get_by_text("bad_lines.jsonl").first).to_be_visible, timeout_s=30)
    wait_for_app(page)
    choose_option(page, "Endpoint", "other")
    wait_for_app(page)
    type_into(page, "Other endpoint", sandbox.url)
    wait_for_app(page)
    type_into(page, "API key (leave empty to use LANGWATCH_API_KEY or Streamlit secrets)", KEY)
    wait_for_app(page)
    aimed = re.compile(r"^Sending to .* with the key typed above\.$")
    promptly(expect(page.get_by_text(aimed)).to_be_visible)

    page.get_by_role("button", name="Dry run", exact=True).click()
    promptly(expect(metric(page, "Events to send")).to_have_text, "20")
    wait_for_app(page)
    expect(metric(page, "Invalid \\(dead letters\\)")).to_have_text("8")
    heading = page.get_by_text(re.compile(r"^Dry run · run \S+$"))
    run_id = heading.inner_text().rsplit(" ", 1)[-1]
    reasons = grid_rows(frame_after(page, "Records that will not be sent"))
    assert len(reasons) == 8 and all(r["reason"] for r in reasons), reasons
    assert sandbox.total_requests() == 0
    no_errors(page)

    # The form's Start (primary); the run's own button below is also "Start" until it starts.
    page.get_by_role("button", name="Start", exact=True).and_(
        page.locator('[data-testid="stBaseButton-primary"]')
    ).click()
    # The report replaces the live progress once the run has ended.
    promptly(expect(page.get_by_text("Latency p50")).to_be_visible)
    wait_for_app(page)
    expect(metric(page, "Accepted", -1)).to_have_text("20")
    expect(metric(page, "Dead-lettered", -1)).to_have_text("8")
    expect(metric(page, "Not sent yet", -1)).to_have_text("0")

    def finished_run() -> dict[str, str]:
        runs = [r for r in grid_rows(frame_after(page, "Runs")) if r.get("run") == run_id]
        assert len(runs) == 1, runs
        assert runs[0]["state"] == "finished" and runs[0]["source"] == "bad_lines.jsonl", runs
        return runs[0]

    runs = [eventually(page, finished_run)]
    assert (runs[0]["events"], runs[0]["accepted"], runs[0]["dead-lettered"]) == ("28", "20", "8")
    expect(page.get_by_role("button", name="Dead letters (8) as JSONL")).to_be_enabled()
    assert sandbox.total_requests() == 20 and sandbox.sandbox.counts["accepted"] == 20
    # The typed key is nowhere on the page (the password field keeps it as its value only).
    assert KEY not in page.inner_text("body") and KEY not in page.url
    no_errors(page)


def test_replay_this_trace_opens_replay_with_the_trace(page, app_url, wait_for_app):
    trace_id = sample_trace_id()
    open_trace(page, app_url, trace_id)
    page.get_by_role("button", name="Replay this trace").click()
    promptly(expect(page.get_by_role("heading", name="Replay", exact=True)).to_be_visible)
    wait_for_app(page)
    assert urlparse(page.url).path.rstrip("/").endswith("/replay")
    assert parse_qs(urlparse(page.url).query).get("trace") == [trace_id]
    traces = page.get_by_label("Trace ids (one per line; none: all)")
    expect(traces).to_have_value(trace_id)
    datasets = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Datasets (none: all)")
    expect(datasets).to_contain_text("sample")
    no_errors(page)
