"""The Data page's "From LangWatch" section through AppTest, pulling from a LangWatch stand-in
served over loopback (tests/langwatch_fake.py): Pull now, the past pulls, keep in sync, the
sentences for what cannot run, and the key kept out of everything but its own field."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from apptest_helpers import metric, plain, run_app
from langwatch_fake import KEY, FakeLangWatch, asgi_app, event
from sandbox_server import serve_in_thread
from streamlit.testing.v1 import AppTest

from eventlens.store import Store
from eventlens.sync.background import PullSession
from eventlens.ui import target as ui_target
from eventlens.ui.pulls import registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeLangWatch, str]]:
    """Seven traces of two events (one with metadata), served on a free loopback port."""
    server = FakeLangWatch(now=2_000_000_000_000)
    for i in range(7):
        server.put(
            f"pulled-{i}",
            [event(ts=1_700_000_000_000 + i), event("thumbs", ts=1_700_000_000_500 + i)],
            1_700_000_100_000 + i,
            **({"user_id": "u-7", "labels": ["beta"]} if i == 0 else {}),
        )
    with serve_in_thread(asgi_app(server)) as url:
        yield server, url


@pytest.fixture
def app(sample_store_file, tmp_path, monkeypatch) -> Iterator[AppTest]:
    """The Data page on a copy of the sample store, with no key in the environment."""
    shutil.copyfile(sample_store_file, tmp_path / "app.duckdb")
    monkeypatch.setenv("EVENTLENS_DB", str(tmp_path / "app.duckdb"))
    monkeypatch.delenv("LANGWATCH_API_KEY", raising=False)
    monkeypatch.delenv("LANGWATCH_ENDPOINT", raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.switch_page("pages/data.py").run()
    assert not at.exception, [e.value for e in at.exception]
    yield at
    pulls = registry()
    for schedule in pulls.schedule_list():
        pulls.stop_schedule(schedule.pair)
        schedule.stop(timeout=30)
    for session in list(pulls.sessions.values()):
        session.join(30)


def fill(at: AppTest, endpoint: str, key: str | None = None, dataset: str | None = None) -> None:
    at.selectbox(key="pl_endpoint_choice").select("other").run()  # enables "Other endpoint"
    # The three fields are drawn whatever they hold: typed in, then one run for all of them.
    at.text_input(key="pl_endpoint_other").input(endpoint)
    if key is not None:
        at.text_input(key="pl_key").input(key)
    if dataset is not None:
        at.text_input(key="pl_dataset").input(dataset)
    at.run()


def pull_now(at: AppTest) -> PullSession | None:
    """Press Pull now; the session it started, run to its end, and the page after it."""
    at.button(key="pl_pull").click().run()
    session_id = at.session_state["pl_session"] if "pl_session" in at.session_state else None
    session = registry().session(session_id) if session_id else None
    if session is not None:
        session.join(30)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return session


def db(at: AppTest) -> Store:
    from eventlens.ui.state import get_store

    return get_store()


def past_pulls(at: AppTest) -> pd.DataFrame:
    found = [d.value for d in at.dataframe if "updated through" in d.value.columns]
    assert len(found) == 1, "no past pulls table on the page"
    return found[0]


def errors(at: AppTest) -> list[str]:
    return [plain(e.value) for e in at.error]


def test_the_section_offers_this_apps_sandbox_with_its_own_key(app):
    choice = app.selectbox(key="pl_endpoint_choice")
    assert choice.value == ui_target.EMBEDDED
    captions = [plain(c.value) for c in app.caption]
    assert any(
        c.startswith("Pulling from http://127.0.0.1:") and "the sandbox's own key" in c
        for c in captions
    ), captions
    assert "No pulls yet." in captions
    assert any("restarting the app stops them" in c for c in captions)
    assert app.text_input(key="pl_dataset").value == "langwatch"
    assert not errors(app)


@pytest.mark.parametrize(
    ("endpoint", "key", "words"),
    [
        ("langwatch.example.com", KEY, "needs to start with http:// or https://"),
        ("", KEY, "No endpoint was given"),
        (None, None, "No API key"),
    ],
)
def test_what_cannot_run_is_a_sentence_and_nothing_runs(app, fake, endpoint, key, words):
    server, url = fake
    asked = len(server.requests)
    fill(app, url if endpoint is None else endpoint, key)
    for button in ("pl_pull", "pl_keep"):
        app.button(key=button).click().run()
        assert not app.exception
        assert len(app.error) == 1 and words in plain(app.error[0].value), errors(app)
    assert "pl_session" not in app.session_state
    assert registry().schedule_list() == []
    assert len(server.requests) == asked
    assert db(app).scalar("SELECT count(*) FROM pulls") == 0


def test_a_pull_lands_and_the_page_shows_it(app, fake):
    _, url = fake
    assert metric(app, "Events") == "50,000"
    fill(app, url, KEY)
    session = pull_now(app)
    assert session is not None and session.outcome == "done", session and session.error
    successes = [plain(s.value) for s in app.success]
    assert any(
        s.startswith("Pulled 7 traces into dataset langwatch (14 events: 14 added")
        for s in successes
    ), successes
    # The rest of the page follows: counts and datasets include the pulled events.
    assert metric(app, "Events") == "50,014"
    datasets = next(d.value for d in app.dataframe if "test" in d.value.columns)
    assert set(datasets["dataset"]) == {"sample", "langwatch"}
    past = past_pulls(app)
    row = past.iloc[0]
    assert row["outcome"] == "done" and row["endpoint"] == url and row["dataset"] == "langwatch"
    assert (row["traces"], row["events"], row["added"], row["removed"], row["rejects"]) == (
        7,
        14,
        14,
        0,
        0,
    )
    assert pd.notna(row["updated through"])  # the server's updatedThrough: where the next starts
    # A second pull has nothing new: one page, nothing changed; both are listed.
    session = pull_now(app)
    assert session is not None and session.result is not None and session.result.added == 0
    past = past_pulls(app)
    assert past["outcome"].tolist() == ["done", "done"]
    assert metric(app, "Events") == "50,014"


def test_a_refused_key_is_one_sentence_and_the_key_is_nowhere(app, fake, caplog):
    _, url = fake
    caplog.set_level(logging.DEBUG)
    wrong = "lw-WRONG-key-feedface" + KEY[-6:]
    fill(app, url, wrong, dataset="lw-wrong")
    session = pull_now(app)
    assert session is not None and session.outcome == "failed"
    assert len(app.error) == 1
    message = errors(app)[0]
    assert message.startswith("The pull failed: ") and "refused the key (401)" in message
    assert "Traceback" not in message
    # Then the right key: it lands, and neither key is anywhere but the password field.
    app.text_input(key="pl_key").input(KEY)
    app.text_input(key="pl_dataset").input("langwatch").run()
    assert pull_now(app).outcome == "done"  # type: ignore[union-attr]
    shown = json.dumps(
        [str(e.proto) for e in app.main] + [m.value for m in app.markdown], default=str
    )
    kept = json.dumps(
        {k: app.session_state[k] for k in app.session_state if k != "pl_key"}, default=str
    )
    url_params = json.dumps({k: app.query_params[k] for k in app.query_params})
    store = db(app)
    stored = json.dumps(
        [
            store.rows(f"SELECT * FROM {table}")  # noqa: S608 - fixed table names
            for table in ("pulls", "pull_cursors", "trace_metadata", "rejects", "datasets")
        ],
        default=str,
    )
    for key in (wrong, KEY):
        assert key not in shown
        assert key not in kept
        assert key not in url_params
        assert key not in stored
        assert key not in caplog.text
    assert "refused the key" in shown  # the check above looked at the page's text
    assert app.text_input(key="pl_key").value == KEY  # the field itself keeps it


def test_keep_in_sync_pulls_shows_its_last_and_next_pull_and_stops(app, fake):
    _, url = fake
    fill(app, url, KEY, dataset="kept")
    app.number_input(key="pl_every").set_value(30).run()
    app.button(key="pl_keep").click().run()
    assert not app.exception and not errors(app)
    (schedule,) = registry().schedule_list()
    done = threading.Event()
    for _ in range(600):  # the schedule's first pull runs in its own thread
        if schedule.status().pulls:
            done.set()
            break
        done.wait(0.05)
    assert done.is_set(), "the schedule's first pull did not end"
    app.run()
    markdown = [plain(m.value) for m in app.markdown]
    assert any(m.startswith("Every 30 minutes: **kept** from") for m in markdown), markdown
    captions = [plain(c.value) for c in app.caption]
    assert any("Last pull" in c and "(done); next" in c and "1 pull so far" in c for c in captions)
    assert metric(app, "Events") == "50,014"
    stop = next(b for b in app.button if b.key and b.key.startswith("pl_stop_"))
    stop.click().run()
    assert registry().schedule_list() == []
    assert not any(plain(m.value).startswith("Every 30 minutes") for m in app.markdown)
    assert schedule.stopped


def test_a_pull_whose_process_died_is_listed_as_interrupted(app):
    from eventlens.sync import journal

    store = db(app)
    pull_id = journal.start(store, "https://lw.example", "langwatch", 0, 1)
    with store.write_lock:  # a process id no process has: the pull's server died mid-pull
        store.execute("UPDATE pulls SET pid = 2147483646 WHERE pull_id = ?", [pull_id])
    app.run()
    assert past_pulls(app)["outcome"].tolist() == ["interrupted"]


def test_the_traces_page_shows_a_pulled_traces_metadata(app, fake, monkeypatch):
    _, url = fake
    fill(app, url, KEY)
    assert pull_now(app).outcome == "done"  # type: ignore[union-attr]
    traces = run_app({"trace": "pulled-0"}, "pages/traces.py")
    assert not traces.exception, [e.value for e in traces.exception]
    lines = [plain(m.value) for m in traces.markdown if "From LangWatch" in m.value]
    assert lines and lines[0].startswith("**From LangWatch:** user_id **u-7** · labels **beta**")
    assert " · updated " in lines[0]
    # A trace that was loaded, not pulled, says nothing of LangWatch.
    sample = db(app).scalar("SELECT trace_id FROM trace_summary WHERE dataset = 'sample' LIMIT 1")
    other = run_app({"trace": str(sample)}, "pages/traces.py")
    assert not [m for m in other.markdown if "From LangWatch" in m.value]
