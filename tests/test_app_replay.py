"""The Replay page, driven through Streamlit's AppTest (no browser).

AppTest has no server on `server.port`, so there is no embedded sandbox: each test serves a
sandbox of its own on loopback (tests/sandbox_server.py, with its own store file, so what it
received is counted apart from the app's store) and points the page at it, either as the
"other" endpoint with a typed key, or by setting `server.port` to its port so that the page's
embedded target *is* that sandbox (its own key, as in `eventlens ui`).

Runs go on in the background (ui.replays' process-wide registry); a test polls the page with
`at.run()` until its run's thread has ended, and every test leaves no run sending behind it.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from apptest_helpers import metric, ok, one_dataframe, plain
from replay_helpers import report_with
from sandbox_server import Live, live_sandbox
from streamlit import config
from streamlit.testing.v1 import AppTest

from eventlens import client, replay
from eventlens.replay import journal as rp_journal
from eventlens.replay import report as rp_report
from eventlens.sandbox import DEFAULT_KEY
from eventlens.ui.replays import registry
from eventlens.ui.state import open_store

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/replay.py"
SECRET = "lw-REPLAY-SECRET-key-0123456789abcdef"
STORE_SOURCE = "A dataset in the store"
UPLOAD_SOURCE = "An uploaded export"
BAD_LINES = ROOT / "sample_data" / "formats" / "bad_lines.jsonl"

pytestmark = pytest.mark.usefixtures("app_error_details")


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def db(sample_copy) -> str:
    """The module's copy of the sample store, as the app's first start makes it."""
    return str(sample_copy)


@pytest.fixture
def env(db, monkeypatch):
    """The app's store, and no key or endpoint from the environment."""
    monkeypatch.setenv("EVENTLENS_DB", db)
    for name in ("LANGWATCH_API_KEY", "LANGWATCH_ENDPOINT", "EVENTLENS_SANDBOX_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def open_page(env) -> Iterator:
    """Open /replay (optionally with query parameters), as a browser's first request would."""

    def open_(params: dict[str, str] | None = None) -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        for name, value in (params or {}).items():
            at.query_params[name] = value
        at.switch_page(PAGE)
        at.run()
        ok(at)
        return at

    yield open_


@pytest.fixture
def page(open_page) -> AppTest:
    return open_page()


@pytest.fixture
def store(page, db):
    """The app's own Store (the one open_store cached for the page's process)."""
    return open_store(db)


@pytest.fixture
def ticks(monkeypatch) -> list[float]:
    """The intervals of the fragment timers the page's runs set (st.fragment's run_every): the
    browser asks the server for a fragment rerun at each one."""
    from streamlit.runtime.forward_msg_queue import ForwardMsgQueue

    seen: list[float] = []
    enqueue = ForwardMsgQueue.enqueue

    def recording(queue: ForwardMsgQueue, msg: Any) -> None:
        if msg.HasField("auto_rerun"):
            seen.append(msg.auto_rerun.interval)
        enqueue(queue, msg)

    monkeypatch.setattr(ForwardMsgQueue, "enqueue", recording)
    return seen


@pytest.fixture
def box(tmp_path) -> Iterator[Live]:
    """A sandbox of this test's own, answering with SECRET as its key."""
    with live_sandbox(tmp_path / "sandbox.duckdb", SECRET) as live:
        yield live


@pytest.fixture
def embedded(tmp_path) -> Iterator[Live]:
    """A sandbox on `server.port`, so the page's embedded target is it (with its own key)."""
    with live_sandbox(tmp_path / "embedded.duckdb", DEFAULT_KEY) as live:
        before = config.get_option("server.port")
        config.set_option("server.port", int(live.url.rsplit(":", 1)[1]))
        try:
            yield live
        finally:
            config.set_option("server.port", before)


class Hold:
    """Sessions wait at their start, before the journal says "running", until `go` is set: as a
    slow start would, when the page draws the runs table right after Start."""

    def __init__(self) -> None:
        self.reached = threading.Event()  # a session is waiting (it has read the journal)
        self.go = threading.Event()


@pytest.fixture
def held_at_start(monkeypatch) -> Iterator[Hold]:
    hold = Hold()
    check = client.check_target

    def held(target):
        # A session checks its target there, in its own thread (planning does too, in the page's).
        if threading.current_thread().name.startswith("replay-"):
            hold.reached.set()
            assert hold.go.wait(30), "the test did not let the run go on"
        return check(target)

    monkeypatch.setattr(client, "check_target", held)
    yield hold
    hold.go.set()  # before no_run_left_sending stops the session


@pytest.fixture(autouse=True)
def no_run_left_sending():
    """A test's runs end with it: the registry is process-wide and the page lists every live run."""
    yield
    for session in registry().live():
        session.replay.stop("the test ended")
        session.thread.join(timeout=30)


# -- helpers -----------------------------------------------------------------------------------


def button(at: AppTest, label: str):
    found = [b for b in at.button if b.label == label and not b.key]
    assert len(found) == 1, f"no single {label!r} button in {[b.label for b in at.button]}"
    return found[0]


def number(text: str) -> int:
    return int(text.replace(",", ""))


def report_metric(at: AppTest, label: str) -> int:
    """A metric of the run report (the last one with this label on the page)."""
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no {label!r} metric in {[m.label for m in at.metric]}"
    return number(found[-1])


def aim(at: AppTest, live: Live, key: str = SECRET) -> AppTest:
    """Point the page's target at a served sandbox, as the 'other' endpoint with a typed key."""
    at.selectbox(key="r_endpoint_choice").select("other").run()  # enables the endpoint field
    at.text_input(key="r_endpoint_other").input(live.url)
    at.text_input(key="r_key").input(key).run()  # both fields in one rerun
    ok(at)
    return at


def choose(
    at: AppTest,
    *,
    datasets: list[str] | None = None,
    types: list[str] | None = None,
    traces: list[str] | None = None,
    since: str | None = None,
    until: str | None = None,
) -> AppTest:
    """Fill in the source's filters, all in one rerun (the fields are there and enabled)."""
    if datasets is not None:
        at.multiselect(key="r_datasets").set_value(datasets)
    if types is not None:
        at.multiselect(key="r_types").set_value(types)
    if traces is not None:
        at.text_area(key="r_traces").input("\n".join(traces))
    if since is not None:
        at.text_input(key="r_since").input(since)
    if until is not None:
        at.text_input(key="r_until").input(until)
    at.run()
    ok(at)
    return at


def dry_run(at: AppTest) -> dict:
    button(at, "Dry run").click().run()
    ok(at)
    checked = at.session_state["r_dry"]
    assert checked is not None and checked["state"] == "planned"
    return checked


def start(at: AppTest) -> str:
    run_id = at.session_state["r_dry"]["run_id"]
    go = button(at, "Start")
    assert not go.disabled
    go.click().run()
    ok(at)
    assert at.session_state["r_dry"]["state"] == "started"
    assert registry().get(run_id) is not None
    return run_id


def wait_until_ended(at: AppTest, run_id: str, timeout: float = 60) -> AppTest:
    """Rerun the page every second while the run's thread lives, as its live fragment
    (run_every=1.0) is in a browser, then once more when it has ended."""
    deadline = time.monotonic() + timeout
    while True:
        session = registry().get(run_id)
        assert session is not None, f"run {run_id} has no session"
        session.thread.join(timeout=1.0)  # back as soon as it ends
        if not session.alive:
            break
        assert time.monotonic() < deadline, f"run {run_id} still sending after {timeout} s"
        at.run()
        ok(at)
    at.run()  # the page draws the ended run's report
    ok(at)
    return at


def runs_table_element(at: AppTest):
    return one_dataframe(at, lambda id_: "r_runs_table" in id_, "Runs table")


def runs_table(at: AppTest) -> pd.DataFrame:
    return runs_table_element(at).value


def drawn_runs_table(at: AppTest) -> pd.DataFrame:
    """The Runs table as the browser draws its cells: a number in its column's printf format
    ("%,d" draws 2620 as "2,620", as Python's ",d" does), a missing value as the table's
    placeholder, anything else as text."""
    element = runs_table_element(at)
    formats = {
        name: config.get("type_config", {}).get("format")
        for name, config in json.loads(element.proto.columns or "{}").items()
    }

    def drawn(value, form: str | None) -> str:
        if not isinstance(value, str) and pd.isna(value):
            return element.proto.placeholder or "None"  # Streamlit's own default
        if form and form.startswith("%"):
            return format(value, form[1:])
        return str(value)

    table = element.value
    return pd.DataFrame({c: [drawn(v, formats.get(c)) for v in table[c]] for c in table.columns})


def drawn_row(at: AppTest, run_id: str) -> dict[str, str]:
    table = drawn_runs_table(at)
    rows = table[table["run"] == run_id]
    assert len(rows) == 1, f"run {run_id} is not in the Runs table: {table['run'].tolist()}"
    return rows.iloc[0].to_dict()


def run_row(at: AppTest, run_id: str) -> pd.Series:
    table = runs_table(at)
    rows = table[table["run"] == run_id]
    assert len(rows) == 1, f"run {run_id} is not in the Runs table: {table['run'].tolist()}"
    return rows.iloc[0]


def dead_letters_button(at: AppTest):
    found = [d for d in at.download_button if d.label.startswith("Dead letters")]
    assert len(found) == 1, "no dead-letters download button"
    return found[0]


def bodies_shown(at: AppTest) -> list[dict]:
    """The dry run's 'first bodies' block: one JSON body a line."""
    for code in at.code:
        lines = code.value.splitlines()
        try:
            bodies = [json.loads(line) for line in lines]
        except ValueError:
            continue
        if bodies and all(isinstance(b, dict) and "event_type" in b for b in bodies):
            return bodies
    pytest.fail(f"no first bodies among {[c.value[:80] for c in at.code]}")


def received(live: Live) -> list[tuple[str, str]]:
    """(trace_id, event_id) of every event the sandbox stored, repeats included."""
    live.sandbox.flush()
    return live.store.rows("SELECT trace_id, event_id FROM events ORDER BY 1, 2")


def expected(store, where: str, params: list) -> list[tuple]:
    """(trace_id, event_id, event_type, epoch ms) of the store's events that match, in replay
    order (timestamp, then source order)."""
    return store.rows(
        "SELECT trace_id, event_id, event_type, epoch_ms(timestamp) FROM events"
        f" WHERE {where} ORDER BY timestamp NULLS LAST, dataset, source_file, source_line,"
        " event_key",
        params,
    )


def big_traces(store, n: int, skip: int = 0) -> list[str]:
    """n traces of the sample with many events, a different slice per test."""
    rows = store.rows(
        "SELECT trace_id FROM events WHERE dataset = 'sample' GROUP BY 1"
        " ORDER BY count(*) DESC, 1 LIMIT ? OFFSET ?",
        [n, skip],
    )
    return [r[0] for r in rows]


def all_text(at: AppTest) -> str:
    """Every rendered element's protobuf and value as text, except the key's password field."""
    parts = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None and getattr(node, "key", None) != "r_key":
            parts.append(str(proto))
            try:
                value = node.value  # a widget's current value, a table's cells
            except Exception:  # noqa: BLE001 - elements without one
                value = None
            if isinstance(value, pd.DataFrame):
                value = value.to_csv()
            parts.append(str(value))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(parts)


def day_filter(event_type: str, since: str, until: str) -> tuple[str, list]:
    """The SQL for the sample's events of one type in [since, until)."""
    return (
        "dataset = 'sample' AND event_type = ? AND timestamp >= ? AND timestamp < ?",
        [
            event_type,
            *(dt.datetime.fromisoformat(d).replace(tzinfo=dt.UTC) for d in (since, until)),
        ],
    )


def window(at: AppTest, event_type: str, since: str, until: str) -> AppTest:
    """The form's source: the sample's events of one type in [since, until)."""
    return choose(at, datasets=["sample"], types=[event_type], since=since, until=until)


def live_progress(at: AppTest, run_id: str) -> tuple[int, str]:
    """(events done, state) from the live section of the page."""
    marks = [
        m for m in map(plain, (m.value for m in at.markdown)) if m.startswith(f"Run {run_id} ·")
    ]
    assert marks, f"run {run_id} is not in the live section"
    state = marks[0].rsplit("**", 2)[-2]
    bars = [p.text for p in at.progress]
    assert len(bars) == 1, bars
    return number(bars[0].split(" of ", 1)[0]), state


def sending(live: Live, at_least: int = 3, timeout: float = 20) -> None:
    """Wait until the run is sending (mid-run, as a person would press Pause)."""
    deadline = time.monotonic() + timeout
    while live.total_requests() < at_least:
        assert time.monotonic() < deadline, "the run did not start sending"
        time.sleep(0.02)


def quiet_for(live: Live, seconds: float = 1.0, grace: float = 0.5) -> tuple[int, int]:
    """Requests the sandbox got after `grace` (answers in flight) and `seconds` later."""
    time.sleep(grace)
    before = live.total_requests()
    time.sleep(seconds)
    return before, live.total_requests()


def paced_checkouts(at: AppTest, concurrency: int, until: str) -> None:
    """The sample's checkout events from 1 Nov until `until`, at 20 events/s."""
    at.number_input(key="r_rate").set_value(20.0)
    at.slider(key="r_concurrency").set_value(concurrency)
    window(at, "checkout", "2025-11-01", until)  # one rerun takes the pacing along


# -- tests -------------------------------------------------------------------------------------


def test_the_page_renders_with_the_sample_store(page):
    assert [t.value for t in page.title] == ["Replay"]
    assert page.radio(key="r_source").value == STORE_SOURCE
    assert "sample" in page.multiselect(key="r_datasets").options
    assert "llm_call" in page.multiselect(key="r_types").options
    assert button(page, "Dry run").disabled is False
    assert button(page, "Start").disabled is True  # nothing checked yet
    captions = [plain(c.value) for c in page.caption]
    assert any("with the sandbox's own key" in c for c in captions), captions


def test_the_nav_lists_replay(env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    ok(at)
    pages = {info.get("page_name"): info for info in at._registered_pages.values()}
    assert "Replay" in pages, list(pages)
    assert Path(str(pages["Replay"]["script_path"])).resolve() == ROOT / PAGE
    at.switch_page(PAGE).run()
    ok(at)
    assert [t.value for t in at.title] == ["Replay"]


def test_a_dry_run_counts_what_the_filters_match_and_sends_nothing(page, store, box):
    trace = big_traces(store, 1)[0]
    kinds = store.rows(
        "SELECT event_type FROM events WHERE trace_id = ? GROUP BY 1 ORDER BY count(*) DESC",
        [trace],
    )
    event_type = kinds[0][0]
    want = expected(
        store,
        "dataset = 'sample' AND event_type = ? AND trace_id = ?",
        [event_type, trace],
    )
    whole_trace = store.scalar("SELECT count(*) FROM events WHERE trace_id = ?", [trace])
    assert 1 < len(want) < whole_trace  # the type filter matters

    aim(page, box)
    choose(page, datasets=["sample"], types=[event_type], traces=[trace])
    assert button(page, "Start").disabled
    checked = dry_run(page)
    info = checked["info"]
    assert number(metric(page, "Events to send")) == len(want) == info.events
    assert number(metric(page, "Traces")) == 1
    assert number(metric(page, "Invalid (dead letters)")) == 0
    bodies = bodies_shown(page)
    assert [(b["trace_id"], b["event_id"], b["event_type"], b["timestamp"]) for b in bodies] == [
        tuple(r) for r in want[:5]
    ]
    # Nothing was sent; the planned run is listed, not started.
    assert box.total_requests() == 0 and received(box) == []
    row = run_row(page, checked["run_id"])
    assert row["state"] == "planned" and row["events"] == len(want)
    assert drawn_row(page, checked["run_id"])["accepted"] == "–"
    assert not button(page, "Start").disabled

    # A changed form makes the dry run stale: Start is off again, and the page says why.
    page.number_input(key="r_rate").set_value(100.0).run()
    ok(page)
    assert button(page, "Start").disabled
    assert any("form changed" in plain(i.value) for i in page.info), [i.value for i in page.info]
    page.number_input(key="r_rate").set_value(200.0).run()  # back as it was: fresh again
    assert not button(page, "Start").disabled
    # A new dry run replaces the unstarted plan (it is not left behind in the Runs table).
    page.number_input(key="r_rate").set_value(100.0).run()
    again = dry_run(page)
    assert again["run_id"] != checked["run_id"] and again["info"].events == len(want)
    assert checked["run_id"] not in runs_table(page)["run"].tolist()
    assert not button(page, "Start").disabled
    assert box.total_requests() == 0


def test_start_sends_every_planned_event_once_and_reports(page, store, box):
    want = expected(store, *day_filter("checkout", "2025-11-04", "2025-11-06"))
    aim(page, box)
    window(page, "checkout", "2025-11-04", "2025-11-06")
    assert dry_run(page)["info"].events == len(want) == 63
    run_id = start(page)
    wait_until_ended(page, run_id)

    assert received(box) == sorted((t, e) for t, e, _, _ in want)
    assert box.total_requests() == len(want)  # no retry, no repeat
    assert box.sandbox.counts["duplicate"] == 0 and box.sandbox.counts["accepted"] == len(want)
    row = run_row(page, run_id)
    assert row["state"] == "finished", row.to_dict()
    assert row["accepted"] == len(want) and row["dead-lettered"] == 0
    assert report_metric(page, "Events") == len(want)
    assert report_metric(page, "Accepted") == len(want)
    assert report_metric(page, "Dead-lettered") == 0
    assert report_metric(page, "Not sent yet") == 0
    letters = dead_letters_button(page)
    assert letters.disabled and "(0)" in letters.label
    assert page.button(key="r_resume").disabled


def test_a_bad_from_time_is_named_and_blocks_the_dry_run(page):
    page.text_input(key="r_since").input("yesterday").run()
    ok(page)
    warnings = [plain(w.value) for w in page.warning]
    assert any("From" in w and "'yesterday'" in w for w in warnings), warnings
    assert button(page, "Dry run").disabled
    page.text_input(key="r_since").input("2025-11-02").run()
    assert not [w for w in page.warning if "yesterday" in w.value]
    assert not button(page, "Dry run").disabled


def test_a_trace_link_prefills_the_form(open_page, db):
    store = open_store(db)
    trace = big_traces(store, 1, skip=5)[0]
    at = open_page({"trace": trace, "dataset": "sample"})
    assert at.radio(key="r_source").value == STORE_SOURCE
    assert at.text_area(key="r_traces").value == trace
    assert at.multiselect(key="r_datasets").value == ["sample"]
    assert at.multiselect(key="r_types").value == []
    # The prefill happens once: an edit afterwards is kept across reruns.
    at.text_area(key="r_traces").input("trace_other").run()
    at.run()
    assert at.text_area(key="r_traces").value == "trace_other"


def test_replay_this_trace_on_traces_opens_the_prefilled_replay(env, db):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    trace = big_traces(open_store(db), 1, skip=6)[0]
    at.query_params["trace"] = trace
    at.switch_page("pages/traces.py").run()
    ok(at)
    at.button(key="t_replay").click().run()
    ok(at)
    assert [t.value for t in at.title] == ["Replay"]
    assert at.text_area(key="r_traces").value == trace
    assert at.multiselect(key="r_datasets").value == ["sample"]


def test_an_uploaded_export_is_checked_sent_and_dead_lettered(page, box):
    page.radio(key="r_source").set_value(UPLOAD_SOURCE).run()
    ok(page)
    assert any("choose a file" in plain(w.value) for w in page.warning)
    assert button(page, "Dry run").disabled
    page.file_uploader(key="r_upload").set_value(
        (BAD_LINES.name, BAD_LINES.read_bytes(), "application/x-ndjson")
    ).run()
    ok(page)
    aim(page, box)
    checked = dry_run(page)
    assert number(metric(page, "Events to send")) == 20
    assert number(metric(page, "Invalid (dead letters)")) == 8
    reasons = [d.value for d in page.dataframe if list(d.value.columns) == ["line", "reason"]]
    assert len(reasons) == 1 and len(reasons[0]) == 8, reasons
    assert reasons[0]["reason"].map(bool).all()
    assert box.total_requests() == 0
    run_id = start(page)
    wait_until_ended(page, run_id)
    row = run_row(page, run_id)
    assert row["state"] == "finished" and row["source"] == BAD_LINES.name, row.to_dict()
    assert (row["events"], row["accepted"], row["dead-lettered"]) == (28, 20, 8)
    assert box.total_requests() == 20 and len(received(box)) == 20
    letters = dead_letters_button(page)
    assert not letters.disabled and "(8)" in letters.label
    assert checked["run_id"] == run_id


def test_pause_resume_stop_then_resume_sends_each_event_once(page, store, box):
    want = expected(store, *day_filter("checkout", "2025-11-01", "2025-11-03"))
    aim(page, box)
    paced_checkouts(page, concurrency=2, until="2025-11-03")
    assert dry_run(page)["info"].events == len(want) == 44
    run_id = start(page)
    sending(box)
    page.button(key=f"r_pause_{run_id}").click().run()
    ok(page)
    assert registry().get(run_id).replay.progress().state == "paused"
    before, after = quiet_for(box)
    assert before == after < len(want), "events were sent while paused"
    page.run()
    done, state = live_progress(page, run_id)
    assert state == "paused" and done < len(want)
    assert page.button(key=f"r_go_{run_id}")  # Resume in place of Pause

    page.button(key=f"r_go_{run_id}").click().run()
    ok(page)
    time.sleep(0.5)
    page.run()
    resumed, state = live_progress(page, run_id)
    assert state == "running" and resumed >= done
    assert box.total_requests() > after, "nothing was sent after Resume"

    page.button(key=f"r_stop_{run_id}").click().run()
    wait_until_ended(page, run_id)
    row = run_row(page, run_id)
    assert row["state"] == "stopped", row.to_dict()
    sent = box.total_requests()
    assert 0 < sent < len(want)
    assert any("stopped from the Replay page" in plain(i.value) for i in page.info)
    assert report_metric(page, "Not sent yet") == len(want) - sent
    resume = page.button(key="r_resume")
    assert resume.label == "Resume" and not resume.disabled

    resume.click().run()
    ok(page)
    wait_until_ended(page, run_id)
    row = run_row(page, run_id)
    assert row["state"] == "finished", row.to_dict()
    assert row["accepted"] == len(want)
    assert received(box) == sorted((t, e) for t, e, _, _ in want)
    assert box.total_requests() == len(want)  # each event sent once, over both sessions
    assert box.sandbox.counts["duplicate"] == 0
    assert report_metric(page, "Accepted") == len(want)
    assert page.button(key="r_resume").disabled


def test_pause_stops_sending_at_the_default_concurrency(page, box):
    aim(page, box)
    paced_checkouts(page, concurrency=64, until="2025-11-04")
    assert dry_run(page)["info"].events == 84
    run_id = start(page)
    sending(box)
    page.button(key=f"r_pause_{run_id}").click().run()
    ok(page)
    before, after = quiet_for(box)
    assert after < 84, "the run ended before it could be paused"
    assert before == after, f"{after - before} events were sent in the second after Pause"


def test_the_typed_key_is_never_shown_kept_or_put_in_the_url(page, store, box, caplog):
    """A wrong key (401: the run stops), then the right one for Resume: neither shows up."""
    wrong = "lw-WRONG-key-9876543210fedcba"
    caplog.set_level("DEBUG")
    aim(page, box, key=wrong)
    window(page, "error", "2025-11-10", "2025-11-11")
    dry_run(page)
    run_id = start(page)
    wait_until_ended(page, run_id)
    row = run_row(page, run_id)
    assert row["state"] == "stopped", row.to_dict()
    assert box.sandbox.counts["unauthorized"] >= 1 and received(box) == []
    assert any("LANGWATCH_API_KEY" in plain(i.value) for i in page.info), [
        i.value for i in page.info
    ]

    page.text_input(key="r_key").input(SECRET).run()
    page.button(key="r_resume").click().run()
    ok(page)
    wait_until_ended(page, run_id)
    assert run_row(page, run_id)["state"] == "finished"
    assert len(received(box)) == len(
        expected(store, *day_filter("error", "2025-11-10", "2025-11-11"))
    )

    shown = all_text(page)
    journal = json.dumps(
        [store.rows("SELECT * FROM replay_runs"), store.rows("SELECT * FROM replay_outcomes")],
        default=str,
    )
    url = json.dumps({k: page.query_params[k] for k in page.query_params})
    assert "Not sent yet" in shown and "r_runs_table" in shown  # nested elements are in it
    kept = json.dumps(page.session_state["r_dry"], default=str)
    for key in (wrong, SECRET):
        assert key not in kept
        assert key not in shown
        assert key not in journal
        assert key not in url
        assert key not in caplog.text
    assert page.text_input(key="r_key").value == SECRET  # the field itself keeps it


def test_an_interrupted_run_is_listed_as_such_and_resumes(open_page, db, embedded, monkeypatch):
    """A run the journal says is running, with no live session (its process died)."""
    monkeypatch.setattr(rp_report, "EXACT_QUANTILES", 2)  # 3 accepted: shown as estimated
    store = open_store(db)
    day = dt.datetime(2025, 11, 12, tzinfo=dt.UTC)
    run = replay.plan(
        store,
        replay.Source(
            datasets=("sample",), event_types=("error",), start=day, end=day + dt.timedelta(1)
        ),
        endpoint=replay.Endpoint(url=embedded.url),
    )
    # The dead process had sent the first 3 events and was sending when it stopped.
    sent_before = [p for chunk in replay.read_plan(run.plan_path) for p in chunk][:3]
    rows = [
        {
            "run_id": run.run_id,
            "session": 1,
            "seq": p.seq,
            "event_type": p.event_type,
            "outcome": "accepted",
            "status": 200,
            "attempts": 1,
            "latency_ms": 5.0,
            "message": None,
            "record": None,
            "line": p.line,
            "logged_at": dt.datetime.now(dt.UTC),
        }
        for p in sent_before
    ]
    run.state, run.sessions, run.anchor_ms = "running", 1, int(time.time() * 1000)
    with store.write_lock:
        rp_journal.append_outcomes(store, rows)
        rp_journal.save_run(store, run)

    at = open_page()
    assert registry().get(run.run_id) is None
    row = run_row(at, run.run_id)
    assert row["state"] == "interrupted", row.to_dict()
    resume = at.button(key="r_resume")
    assert resume.label == "Resume" and not resume.disabled
    assert report_metric(at, "Not sent yet") == run.planned - 3
    captions = [plain(c.value) for c in at.caption]
    assert any("p99 5.0 ms (estimated)" in c for c in captions), captions

    resume.click().run()
    ok(at)
    toasts = [plain(t.value) for t in at.toast]
    assert any("the sandbox's own key" in t for t in toasts), toasts
    wait_until_ended(at, run.run_id)
    row = run_row(at, run.run_id)
    assert row["state"] == "finished", row.to_dict()
    assert row["accepted"] == run.planned
    # The embedded sandbox (its own key) got the other events, each once, and not the 3.
    got = received(embedded)
    assert len(got) == embedded.total_requests() == run.planned - 3
    assert not {(p.send_trace_id, p.send_event_id) for p in sent_before} & set(got)


def test_a_run_that_ends_while_the_page_draws_is_not_listed_running_above_its_report(
    open_page, db, embedded, monkeypatch
):
    """The runs table is drawn, then the run ends, then its report section is drawn: the page
    draws itself again rather than show a "running" row above a final report (a race that a
    browser test hit under load)."""
    store = open_store(db)
    day = dt.datetime(2025, 11, 13, tzinfo=dt.UTC)
    run = replay.plan(
        store,
        replay.Source(datasets=("sample",), start=day, end=day + dt.timedelta(hours=6)),
        endpoint=replay.Endpoint(url=embedded.url),
    )
    run.state, run.sessions = "running", 1
    with store.write_lock:
        rp_journal.save_run(store, run)
    release = threading.Event()
    thread = threading.Thread(target=release.wait, daemon=True)
    thread.start()
    registry().sessions[run.run_id] = replay.Session(replay.Replay(store, run, "k"), thread)
    real_get_run = replay.get_run

    def get_run(s, run_id):  # the report section reads the run: this is when it ends
        if run_id == run.run_id and thread.is_alive():
            ended = real_get_run(s, run_id)
            ended.state = "stopped"
            with s.write_lock:
                rp_journal.save_run(s, ended)
            release.set()
            thread.join()
        return real_get_run(s, run_id)

    monkeypatch.setattr(replay, "get_run", get_run)
    at = open_page()
    assert not thread.is_alive()
    assert run_row(at, run.run_id)["state"] == "stopped"
    assert report_metric(at, "Not sent yet") == run.planned


def test_a_new_dry_run_keeps_a_run_started_from_the_runs_list(page, box):
    aim(page, box)
    window(page, "error", "2025-11-14", "2025-11-15")
    run_id = dry_run(page)["run_id"]
    go = page.button(key="r_resume")
    assert go.label == "Start" and not go.disabled  # a planned run's own Start
    go.click().run()
    ok(page)
    wait_until_ended(page, run_id)
    assert run_row(page, run_id)["state"] == "finished"
    sent = box.total_requests()
    assert sent > 0

    page.text_input(key="r_until").input("2025-11-16").run()  # plan something else
    button(page, "Dry run").click().run()
    ok(page)
    assert run_id in runs_table(page)["run"].tolist(), "the finished run was deleted"
    assert run_row(page, run_id)["state"] == "finished"


def test_deleting_the_dry_runs_plan_lets_a_new_dry_run_be_made(page, box):
    aim(page, box)
    window(page, "error", "2025-11-15", "2025-11-16")
    run_id = dry_run(page)["run_id"]
    assert run_row(page, run_id)["state"] == "planned"
    page.button(key="r_delete").click().run()
    ok(page)
    assert run_id not in runs_table(page)["run"].tolist()

    page.text_input(key="r_until").input("2025-11-17").run()
    button(page, "Dry run").click().run()
    errors_shown = [plain(e.value) for e in page.error]
    assert not errors_shown, errors_shown
    assert page.session_state["r_dry"]["run_id"] != run_id
    assert not button(page, "Start").disabled
    assert box.total_requests() == 0


COUNTS = ("events", "accepted", "dead-lettered", "events/s")  # the Runs table's number columns


def journalled_run(store, day: str, **fields) -> replay.Run:
    """A run planned from one day of the sample's errors, with its journal row then set to
    `fields` (its state, counts and report, as the Runs table reads them; nothing is sent)."""
    start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    run = replay.plan(
        store,
        replay.Source(
            datasets=("sample",), event_types=("error",), start=start, end=start + dt.timedelta(1)
        ),
        endpoint=replay.Endpoint(url="http://127.0.0.1:9"),
    )
    for name, value in fields.items():
        setattr(run, name, value)
    with store.write_lock:
        rp_journal.save_run(store, run)
    return run


def test_a_planned_run_is_listed_with_dashes_not_nan(open_page, db):
    """Listed with a run that has counts, a never-started run's missing counts once read "nan"
    (pandas makes a None in a numeric column NaN)."""
    store = open_store(db)
    report = report_with(accepted=5, dead_lettered=1, rate_per_s=12.0)
    journalled_run(store, "2025-11-16", state="finished", sessions=1, report=report)
    planned = journalled_run(store, "2025-11-17")
    at = open_page()
    row = drawn_row(at, planned.run_id)
    assert row["state"] == "planned" and [row[c] for c in COUNTS[1:]] == ["–", "–", "–"], row
    drawn = drawn_runs_table(at)
    assert not drawn.isin(["nan", "NaN", "None", "<NA>"]).any().any(), drawn.to_dict("records")


def test_every_number_in_the_runs_table_has_thousands_separators_and_sorts_as_a_number(
    open_page, db
):
    store = open_store(db)
    report = report_with(accepted=2600, dead_lettered=1020, rate_per_s=1234.4)
    run = journalled_run(
        store, "2025-11-18", state="finished", sessions=1, planned=2617, invalid=3, report=report
    )
    at = open_page()
    row = drawn_row(at, run.run_id)
    assert [row[c] for c in COUNTS] == ["2,620", "2,600", "1,020", "1,234"], row
    table = runs_table(at)
    for column in COUNTS:
        assert pd.api.types.is_numeric_dtype(table[column]), (column, table[column].dtype)


def test_an_idle_page_sets_no_timer(page, ticks):
    """With no run sending, the live section does not tick: each tick cost the server about
    0.1 s of CPU a second for as long as the page stayed open in a browser."""
    page.run()
    ok(page)
    assert ticks == []


def test_a_started_run_is_listed_running_then_paused_with_its_live_counts(
    page, store, box, held_at_start, ticks
):
    aim(page, box)
    paced_checkouts(page, concurrency=2, until="2025-11-03")
    dry_run(page)
    run_id = start(page)
    assert held_at_start.reached.wait(20), "the session did not start"
    page.run()
    ok(page)
    # Held before its first journal write (the journal still says planned): listed running.
    assert replay.get_run(store, run_id).state == "planned"
    row = drawn_row(page, run_id)
    assert (row["state"], row["accepted"], row["dead-lettered"]) == ("running", "0", "0"), row

    held_at_start.go.set()
    session = registry().get(run_id)
    deadline = time.monotonic() + 20
    while session.replay.progress().accepted < 3:
        assert time.monotonic() < deadline, "the run did not start sending"
        time.sleep(0.02)
    before = session.replay.progress()
    ticks.clear()
    page.run()
    ok(page)
    assert ticks == [1.0]  # while it sends, the live section is redrawn every second
    after = session.replay.progress()
    row = run_row(page, run_id)
    assert row["state"] == "running", row.to_dict()
    assert before.accepted <= row["accepted"] <= after.accepted, (before, row.to_dict(), after)
    assert row["dead-lettered"] == 0 and row["events/s"] > 0, row.to_dict()

    page.button(key=f"r_pause_{run_id}").click().run()
    ok(page)
    row = run_row(page, run_id)
    assert row["state"] == "paused", row.to_dict()
    assert row["accepted"] >= after.accepted, row.to_dict()


def one_event(store) -> tuple[str, str]:
    """A trace of the sample and an event type it has exactly one event of."""
    return tuple(
        store.rows(
            "SELECT trace_id, event_type FROM events WHERE dataset = 'sample' GROUP BY ALL"
            " HAVING count(*) = 1 ORDER BY ALL LIMIT 1"
        )[0]
    )


def test_one_of_anything_reads_in_the_singular(page, store, box, held_at_start):
    trace, event_type = one_event(store)
    aim(page, box)
    choose(page, datasets=["sample"], types=[event_type], traces=[trace])
    assert dry_run(page)["info"].events == 1
    captions = [plain(c.value) for c in page.caption]
    assert "Planned: 1 event, 0 invalid; not started." in captions, captions

    run_id = start(page)
    bars = [b.text for b in page.progress]
    assert len(bars) == 1 and bars[0].startswith("0 of 1 event done · "), bars
    held_at_start.go.set()
    wait_until_ended(page, run_id)
    captions = [plain(c.value) for c in page.caption]
    said = [c for c in captions if c.startswith("Latency p50")]
    assert len(said) == 1, captions
    assert " · 1 request over " in said[0], said
    assert said[0].endswith(" in 1 session · 0 repeated source records skipped"), said
