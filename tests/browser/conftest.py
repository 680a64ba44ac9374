"""A real app server and headless Chromium for the browser tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect
from sandbox_server import free_port

from browser.app_utils import resize, wait_for_script

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# A page on a busy 2-core machine can take longer than Playwright's 5 s to draw what its script
# sent; waiting longer costs nothing when it is quick.
expect.set_options(timeout=20_000)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder is a browser test, skipped with a reason without Chromium."""
    skip = pytest.mark.skip(reason=f"no Chromium at {CHROMIUM} (CI installs Debian's chromium)")
    for item in items:
        if Path(item.fspath).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.browser)
            if not os.access(CHROMIUM, os.X_OK):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def app_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The app run by `streamlit run` on a free port, on a copy of the sample store (as a first
    start leaves it; tests/test_app_data.py checks the first start itself), once it answers."""
    port = free_port()
    db = tmp_path_factory.mktemp("db") / "browser.duckdb"
    env = dict(os.environ, EVENTLENS_DB=str(db))
    log = tmp_path_factory.mktemp("log") / "streamlit.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(ROOT / "app.py"),
                "--server.port",
                str(port),
                "--server.headless",
                "true",
                "--server.address",
                "127.0.0.1",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        # The server opens the store on its first page request, not before: it starts (imports
        # Streamlit) while the sample store is built, where this worker is the first to ask.
        shutil.copyfile(request.getfixturevalue("sample_store_file"), db)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the app did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


# Package scope, not session: between its calls Playwright's sync API marks its event loop as
# running in this thread, so a later test's asyncio.run() on the same xdist worker would fail.
# The package (hence tests/browser/__init__.py) ends it when the worker moves on to other tests.
@pytest.fixture(scope="package")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


VIEWPORT = {"width": 1400, "height": 2400}


@pytest.fixture(scope="package")
def context(browser):
    """One browser context for the browser tests: its cache keeps Streamlit's and Plotly's scripts,
    which each new context would fetch and compile again."""
    context = browser.new_context(viewport=VIEWPORT)
    yield context
    context.close()


@pytest.fixture(scope="package")
def _tab(context):
    page = context.new_page()
    yield page
    page.close()


SHOTS = pytest.StashKey[pytest.TempPathFactory]()


@pytest.fixture
def page(_tab, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The session's one tab, at the default size; a test goes where it starts (see goto), and
    each page load is a new app session. One tab rather than one per test: its renderer keeps
    the app's compiled scripts, which made a page load about a fifth cheaper in CPU."""
    request.node.stash[SHOTS] = tmp_path_factory  # for a screenshot if the test fails
    resize(_tab, VIEWPORT)
    return _tab


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    """A screenshot of the tab when a browser test fails, named in the report: the page as the
    failed check saw it."""
    report = yield
    tab = getattr(item, "funcargs", {}).get("_tab")
    if report.when == "call" and report.failed and tab is not None and SHOTS in item.stash:
        name = re.sub(r"[^\w.-]+", "_", item.name)[:80]  # parameters may hold a "/"
        path = item.stash[SHOTS].mktemp("failed") / f"{name}.png"
        try:
            tab.screenshot(path=str(path), full_page=True)
            report.sections.append(("screenshot", str(path)))
        except Exception as exc:  # a closed tab or a crashed renderer: the failure says enough
            report.sections.append(("screenshot", f"none: {exc}"))
    return report


@pytest.fixture
def explore(page, app_url):
    """A tab on the app's default page, Explore, once its script has run."""
    goto(page, app_url)
    return page


def goto(page, url: str) -> None:
    """Open a URL in the tab and wait for the app's script to finish."""
    page.goto(url)
    wait_for_script(page)


@pytest.fixture
def wait_for_app():
    """The explicit wait to use after an interaction."""
    return wait_for_script
