"""The Submit page through AppTest, against a sandbox served on loopback as the app would."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from apptest_helpers import plain
from streamlit import config
from streamlit.testing.v1 import AppTest

from eventlens import sandbox
from eventlens.store import Store

ROOT = Path(__file__).resolve().parents[1]
SECRET = "lw-SECRET-key-0123456789abcdef"

pytestmark = pytest.mark.usefixtures("app_error_details")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("submit") / "app.duckdb")


@pytest.fixture(scope="module")
def served(db):
    """The sandbox on a free loopback port, storing into the app's database file."""
    store = Store(db)
    box = sandbox.Sandbox(store)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(sandbox.app(box), host="127.0.0.1", port=port, log_level="critical")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/sandbox/health", timeout=1).is_success:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield port, box, store
    server.should_exit = True
    thread.join(timeout=10)
    store.close()


@pytest.fixture
def page(db, served, monkeypatch):
    """The Submit page, whose embedded target is the sandbox above (same port)."""
    port, _, _ = served
    monkeypatch.setenv("EVENTLENS_DB", db)
    monkeypatch.delenv("LANGWATCH_API_KEY", raising=False)
    monkeypatch.delenv("LANGWATCH_ENDPOINT", raising=False)
    before = config.get_option("server.port")
    config.set_option("server.port", port)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("pages/submit.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    yield at
    config.set_option("server.port", before)


def sandbox_events(served, trace_id: str) -> int:
    _, _, store = served
    return int(store.scalar("SELECT count(*) FROM events WHERE trace_id = ?", [trace_id]))


def test_the_form_starts_valid_and_shows_body_and_curl(page):
    assert any("passes every LangWatch rule" in s.value for s in page.success)
    body = json.loads(page.code[0].value)
    assert body["event_type"] == "add_to_cart" and body["trace_id"].startswith("trace_")
    assert '"X-Auth-Token: $LANGWATCH_API_KEY"' in page.code[1].value


def test_a_predefined_rule_violation_is_named_and_nothing_is_sent(page, served):
    _, box, _ = served
    before = dict(box.counts)
    page.selectbox(key="s_type_choice").select("thumbs_up_down").run()
    errors = [plain(e.value) for e in page.error]
    assert any("metrics.vote" in e and "thumbs_up_down" in e for e in errors), errors
    send = next(b for b in page.button if b.label == "Send")
    assert send.disabled  # AppTest, like a browser, cannot press it
    page.run()
    assert box.counts == before
    assert "s_last" not in page.session_state


def test_a_valid_send_lands_in_history_and_in_the_sandbox_dataset(page, served):
    trace_id = page.text_input(key="s_trace").value
    next(b for b in page.button if b.label == "Send").click().run()
    assert not page.exception
    assert any("accepted" in plain(s.value) for s in page.success), [s.value for s in page.success]
    past = page.dataframe[-1].value
    assert past.iloc[0]["outcome"] == "accepted" and past.iloc[0]["status"] == 200
    assert sandbox_events(served, trace_id) == 1
    _, _, store = served
    assert store.scalar("SELECT dataset FROM events WHERE trace_id = ?", [trace_id]) == "sandbox"
    assert store.scalar("SELECT count(*) FROM trace_summary WHERE trace_id = ?", [trace_id]) == 1


def test_the_key_is_never_kept_shown_or_logged(page, served, monkeypatch, caplog):
    """A typed key: used for the request, absent from history, curl, URL and logs."""
    port, box, _ = served
    caplog.set_level(logging.DEBUG)
    page.selectbox(key="s_endpoint_choice").select("other").run()
    page.text_input(key="s_endpoint_other").input(f"http://127.0.0.1:{port}").run()
    page.text_input(key="s_key").input(SECRET).run()
    next(b for b in page.button if b.label == "Send").click().run()
    # The sandbox's key differs: a 401 answer, shown as such.
    assert any("unauthorized" in plain(e.value) for e in page.error), [e.value for e in page.error]
    _, _, store = served
    stored = json.dumps(store.rows("SELECT * FROM submissions"), default=str)
    assert SECRET not in stored
    shown = [c.value for c in page.code] + [e.value for e in page.error]
    shown += [m.value for m in page.markdown] + [c.value for c in page.caption]
    assert not any(SECRET in plain(text) for text in shown)
    assert SECRET not in json.dumps(dict(page.query_params))
    assert SECRET not in caplog.text
    # Revealed on request only, in the curl command.
    page.toggle(key="s_reveal").set_value(True).run()
    assert SECRET in page.code[1].value
    assert box.counts["unauthorized"] >= 1


def test_load_into_the_form_and_templates(page, served):
    page.text_input(key="s_trace").input("trace_template_test").run()
    page.text_input(key="s_template_name").input("cart").run()
    next(b for b in page.button if b.label == "Save template").click().run()
    page.text_input(key="s_trace").input("trace_other").run()
    page.selectbox(key="s_template").select("cart").run()
    next(b for b in page.button if b.label == "Load template").click().run()
    assert page.text_input(key="s_trace").value == "trace_template_test"
    body = json.loads(page.code[0].value)
    assert body["metrics"] == {"amount": 17.5}
