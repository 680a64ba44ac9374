"""The Submit page through AppTest, against a sandbox served on loopback as the app would."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import urlparse

import pytest
from apptest_helpers import plain
from sandbox_server import live_sandbox
from streamlit import config
from streamlit.testing.v1 import AppTest

from eventlens import sandbox

ROOT = Path(__file__).resolve().parents[1]
SECRET = "lw-SECRET-key-0123456789abcdef"

pytestmark = pytest.mark.usefixtures("app_error_details")


@pytest.fixture(scope="module")
def db(sample_copy) -> str:
    """This module's copy of the sample store (made once per session, as a first start does)."""
    return str(sample_copy)


@pytest.fixture(scope="module")
def served(db):
    """The sandbox on a free loopback port, storing into the app's database file."""
    with live_sandbox(db, sandbox.DEFAULT_KEY) as live:
        yield urlparse(live.url).port, live.sandbox, live.store


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
    page.selectbox(key="s_type_choice").select("other").run()
    page.text_input(key="s_type_text").input("thumbs_up_down").run()  # add_to_cart's rows, no vote
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


def table(at: AppTest, key: str) -> dict:
    """A key/value editor's rows as the page last filled them in (AppTest shows no cell edits)."""
    return dict(at.data_editor(key=key).value.itertuples(index=False))


def edit(at: AppTest, key: str, edited: dict | None = None, added: list | None = None) -> None:
    """Edit a key/value editor's cells as a browser would, then rerun."""
    change = {"edited_rows": edited or {}, "added_rows": added or [], "deleted_rows": []}
    at.session_state[key] = change
    at.run()


def shown_body(at: AppTest) -> dict:
    return json.loads(at.code[0].value)


def passes(at: AppTest) -> bool:
    return not at.error and any("passes every LangWatch rule" in s.value for s in at.success)


def test_switching_to_a_predefined_type_offers_its_rule_keys(page):
    page.selectbox(key="s_type_choice").select("thumbs_up_down").run()
    assert table(page, "s_metrics") == {"vote": 1}
    assert table(page, "s_details") == {"feedback": "great answer"}
    body = shown_body(page)
    assert body["metrics"] == {"vote": 1} and body["event_details"] == {"feedback": "great answer"}
    assert passes(page), [e.value for e in page.error]
    page.selectbox(key="s_type_choice").select("waited_to_finish").run()
    assert table(page, "s_metrics") == {"finished": 1} and table(page, "s_details") == {}
    assert "event_details" not in shown_body(page) and passes(page)


def test_switching_to_a_type_in_the_store_offers_its_keys_and_typical_values(page):
    page.selectbox(key="s_type_choice").select("llm_call").run()
    metrics, details = table(page, "s_metrics"), table(page, "s_details")
    assert list(metrics) == ["completion_tokens", "cost_usd", "latency_ms", "prompt_tokens"]
    assert metrics["completion_tokens"] == 242  # the sample's median
    assert set(details) == {"country", "model", "plan", "release", "session_id", "user_id"}
    assert details["model"] == "gpt-4o-mini"  # the most common value
    assert shown_body(page)["metrics"] == metrics and passes(page)
    assert any("Filled in for llm_call" in plain(c.value) for c in page.caption)


def test_rows_the_user_wrote_stay_when_the_type_changes(page):
    edit(page, "s_metrics", edited={0: {"value": 20.0}})  # amount: 17.5 -> 20
    edit(page, "s_details", added=[{"detail": "note", "value": "mine"}])
    page.selectbox(key="s_type_choice").select("thumbs_up_down").run()
    assert table(page, "s_metrics") == {"vote": 1, "amount": 20}
    # product_id was still as the form filled it in: it gives way to the new type's detail.
    assert table(page, "s_details") == {"feedback": "great answer", "note": "mine"}
    notes = [plain(c.value) for c in page.caption]
    assert any("Kept 2 rows you wrote: metrics.amount, event_details.note" in n for n in notes)
    # Untouched, the offer itself gives way on the next switch; the user's rows stay again.
    page.selectbox(key="s_type_choice").select("selected_text").run()
    assert table(page, "s_metrics") == {"text_length": 27, "amount": 20}
    assert table(page, "s_details") == {
        "selected_text": "the words the user selected",
        "note": "mine",
    }
    assert passes(page)


def test_the_free_text_type_is_empty_unless_other_is_chosen(page):
    free = page.text_input(key="s_type_text")
    assert page.selectbox(key="s_type_choice").value == "add_to_cart"
    assert free.value == "" and free.disabled and "choose 'other'" in free.placeholder
    page.selectbox(key="s_type_choice").select("thumbs_up_down").run()
    free = page.text_input(key="s_type_text")
    assert free.value == "" and free.disabled
    page.selectbox(key="s_type_choice").select("other").run()
    free = page.text_input(key="s_type_text")
    assert free.value == "thumbs_up_down" and not free.disabled
    assert shown_body(page)["event_type"] == "thumbs_up_down"


def test_an_answer_shows_under_send_only_while_the_form_holds_that_event(page):
    trace_id = page.text_input(key="s_trace").value
    send = next(b for b in page.button if b.label == "Send")
    send.click().run()

    def accepted_box() -> bool:
        return any("accepted" in plain(s.value) for s in page.success)

    assert accepted_box()
    page.text_input(key="s_trace").input("").run()  # a different event (and still a valid one)
    assert not accepted_box()
    stale = "Last send (before your edits): accepted, HTTP 200 — see History below."
    assert any(stale in plain(c.value) for c in page.caption)
    page.text_input(key="s_trace").input(trace_id).run()  # the same event again: a new "now" only
    assert accepted_box()
    edit(page, "s_metrics", edited={0: {"value": None}})  # breaks a rule: Send is disabled
    assert next(b for b in page.button if b.label == "Send").disabled
    assert not accepted_box() and any(stale in plain(c.value) for c in page.caption)


def test_the_bulk_send_counts_one_event_in_the_singular(page):
    line = json.dumps({"trace_id": "t_bulk", "event_type": "search", "metrics": {"results": 3}})
    page.file_uploader(key="s_bulk_file").set_value(("one.jsonl", line.encode(), "text/plain"))
    page.run()
    assert any(c.value.startswith("1 event to send to ") for c in page.caption)
    assert any(b.label == "Send 1 event" for b in page.button)


def test_a_send_again_from_the_history_is_not_shown_as_the_forms_answer(page):
    next(b for b in page.button if b.label == "Send").click().run()
    page.session_state["s_history"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    page.run()
    next(b for b in page.button if b.label.startswith("Send again to ")).click().run()
    assert not any("accepted" in plain(s.value) for s in page.success)  # its fixed timestamp
    again = "Last send (from the history): accepted, HTTP 200 — see History below."
    assert any(again in plain(c.value) for c in page.caption), [c.value for c in page.caption]
