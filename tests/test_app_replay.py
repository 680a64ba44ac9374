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
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sandbox_server import Live, live_sandbox
from streamlit import config
from streamlit.testing.v1 import AppTest

from eventlens import replay
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
def db(tmp_path_factory) -> str:
    """A store file that does not exist yet: the first run of the module loads the sample."""
    return str(tmp_path_factory.mktemp("replay") / "app.duckdb")


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


@pytest.fixture(autouse=True)
def no_run_left_sending():
    """A test's runs end with it: the registry is process-wide and the page lists every live run."""
    yield
    for session in registry().live():
        session.replay.stop("the test ended")
        session.thread.join(timeout=30)


# -- helpers -----------------------------------------------------------------------------------


def errors(at: AppTest) -> list[str]:
    """Each exception as 'Type: message (the last frame in this project)'."""
    out = []
    for e in at.exception:
        ours = [f for f in e.stack_trace if str(ROOT) in f and ".venv" not in f] or ["?"]
        out.append(f"{e.proto.type.rsplit('.', 1)[-1]}: {e.message} ({ours[-1]})")
    return out


def ok(at: AppTest) -> None:
    """No exception and no section that failed to draw (pytest.fail, not an AssertionError)."""
    if at.exception:
        pytest.fail(f"the page raised: {errors(at)}")
    if at.error:
        pytest.fail(f"the page showed errors: {[e.value for e in at.error]}")


def plain(text: str) -> str:
    """A message without the Markdown escapes the page adds."""
    return text.replace("\\", "")


def button(at: AppTest, label: str):
    found = [b for b in at.button if b.label == label and not b.key]
    assert len(found) == 1, f"no single {label!r} button in {[b.label for b in at.button]}"
    return found[0]


def metric(at: AppTest, label: str) -> str:
    """The first metric with this label (the dry run's or the live run's come before the report)."""
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no {label!r} metric in {[m.label for m in at.metric]}"
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
    at.selectbox(key="r_endpoint_choice").select("other").run()
    at.text_input(key="r_endpoint_other").input(live.url).run()
    at.text_input(key="r_key").input(key).run()
    ok(at)
    return at


def choose(
    at: AppTest,
    *,
    datasets: list[str] | None = None,
    types: list[str] | None = None,
    traces: list[str] | None = None,
) -> AppTest:
    if datasets is not None:
        at.multiselect(key="r_datasets").set_value(datasets).run()
    if types is not None:
        at.multiselect(key="r_types").set_value(types).run()
    if traces is not None:
        at.text_area(key="r_traces").input("\n".join(traces)).run()
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
    """Rerun the page (its live fragment) until the run's thread ends, then once more."""
    deadline = time.monotonic() + timeout
    while True:
        session = registry().get(run_id)
        assert session is not None, f"run {run_id} has no session"
        if not session.alive:
            break
        assert time.monotonic() < deadline, f"run {run_id} still sending after {timeout} s"
        at.run()
        ok(at)
        time.sleep(0.2)
    at.run()  # the page draws the ended run's report
    ok(at)
    return at


def runs_table(at: AppTest) -> pd.DataFrame:
    found = [d for d in at.dataframe if "r_runs_table" in d.proto.id]
    assert len(found) == 1, "no Runs table on the page"
    return found[0].value


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
    """Every rendered element's protobuf as text, except the key's own password field."""
    parts = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None and getattr(node, "key", None) != "r_key":
            parts.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(parts)


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
    assert number(metric(page, "Events to send")) == len(want) == info["events"]
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
    assert row["accepted"] == "–"
    assert not button(page, "Start").disabled

    # A changed form makes the dry run stale: Start is off again, and the page says why.
    page.number_input(key="r_rate").set_value(100.0).run()
    ok(page)
    assert button(page, "Start").disabled
    assert any("form changed" in plain(i.value) for i in page.info), [i.value for i in page.info]
    page.number_input(key="r_rate").set_value(200.0).run()  # back as it was: fresh again
    assert not button(page, "Start").disabled
    assert box.total_requests() == 0


def test_start_sends_every_planned_event_once_and_reports(page, store, box):
    traces = big_traces(store, 2, skip=1)
    want = expected(store, "dataset = 'sample' AND list_contains(?, trace_id)", [traces])
    aim(page, box)
    choose(page, datasets=["sample"], traces=traces)
    dry_run(page)
    run_id = start(page)
    wait_until_ended(page, run_id)

    assert received(box) == sorted((t, e) for t, e, _, _ in want)
    assert box.total_requests() == len(want)  # no retry, no repeat
    assert box.sandbox.counts["duplicate"] == 0 and box.sandbox.counts["accepted"] == len(want)
    row = run_row(page, run_id)
    assert row["state"] == "finished", row.to_dict()
    assert row["accepted"] == f"{len(want):,}" and row["dead-lettered"] == "0"
    assert report_metric(page, "Events") == len(want)
    assert report_metric(page, "Accepted") == len(want)
    assert report_metric(page, "Dead-lettered") == 0
    assert report_metric(page, "Not sent yet") == 0
    letters = dead_letters_button(page)
    assert letters.disabled and "(0)" in letters.label
    assert not page.button(key="r_resume").disabled is False  # a finished run has no resume
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
