"""Replay with a ClickHouse store (chDB in this process): runs are journalled in a local DuckDB
file (location.replay_journal), "the store's events" are read from ClickHouse, and a plan is the
same, event for event and id for id, as the plan of the same events in DuckDB. The command and
the Replay page both run on it."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from replay_helpers import write_jsonl
from sandbox_server import live_sandbox
from test_cli_replay import INVALID, KEY, first_run_id, last_json, make_events, replay
from test_cli_replay import env as env  # noqa: PLC0414 (the fixture)

from eventlens import replay as rp
from eventlens import stores
from eventlens.location import parse, replay_journal, sandbox_state
from eventlens.sandbox import DATASET
from eventlens.store import Store

pytest.importorskip("clickhouse_connect", reason="ClickHouse support is not installed")
pytest.importorskip("chdb", reason="chDB (ClickHouse in process) is not installed")

from eventlens.clickhouse.store import ClickHouseStore  # noqa: E402

_numbers = itertools.count()


def write_export(folder: Path) -> Path:
    """60 events over 12 traces (half without an event_id), and three invalid lines."""
    events = make_events(60, traces=12)
    return write_jsonl(folder / "export.jsonl", [*events[:30], *INVALID, *events[30:]])


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    """This test's folder for the replay journal (EVENTLENS_STATE_DIR)."""
    monkeypatch.setenv("EVENTLENS_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def url(chdb_url, state) -> str:
    """A fresh chDB database, its replay journal in this test's folder."""
    return chdb_url(f"replay{next(_numbers)}")


@pytest.fixture
def export(tmp_path) -> Path:
    return write_export(tmp_path)


@pytest.fixture(scope="module")
def web(chdb_url, tmp_path_factory) -> Iterator[tuple[str, ClickHouseStore]]:
    """A chDB database holding the export as dataset "web", and the store open on it: the
    tests that replay from it only read it (replay journals and plans in local files)."""
    url, export = chdb_url("replay_web"), write_export(tmp_path_factory.mktemp("web"))
    with stores.open_store(url) as house:
        assert stores.load(house, [export], "web").loaded == 60
        yield url, house


def planned(store: Store, run: rp.Run) -> list[tuple]:
    return [
        (p.seq, p.send_trace_id, p.send_event_id, p.event_type, p.ts, p.metrics, p.event_details)
        for chunk in rp.read_plan(run.plan_path)
        for p in chunk
    ]


def test_a_plan_from_clickhouse_is_the_plan_from_duckdb(web, state, export, tmp_path):
    """The same events, filtered the same way, give the same plan: order, ids, bodies."""
    source = rp.Source(datasets=("web",))  # half without an event_id: ids made from the key
    transforms = rp.Transforms(trace_ids="fresh")
    _, house = web
    with Store(tmp_path / "duck.duckdb") as duck:
        assert stores.load(duck, [export], "web").loaded == 60
        journal = stores.replay_store(house)
        assert journal.path == str(state / "journal.duckdb")
        try:
            a = rp.plan(duck, source, transforms, run_id="r1")
            b = rp.plan(journal, source, transforms, run_id="r1")
            assert b.planned == a.planned == 60
            assert planned(journal, b) == planned(duck, a)
            assert Path(b.plan_path).parent == Path(journal.path + ".replays")
            narrow = rp.Source(trace_ids=("trace_0001",))
            assert rp.plan(journal, narrow).planned == rp.plan(duck, narrow).planned == 5
            typed = rp.Source(event_types=("llm_call",))
            assert rp.plan(journal, typed).planned == rp.plan(duck, typed).planned == 30
            with pytest.raises(rp.ReplayError, match="no events match"):
                rp.plan(journal, rp.Source(datasets=("nowhere",)))
        finally:
            journal.close()


def test_the_command_replays_a_clickhouse_store_once_and_resumes(env, web, state):
    url, house = web
    wanted = house.rows("SELECT trace_id FROM events WHERE event_type = 'search'")
    with live_sandbox(key=KEY) as box:
        args = ["store", "--db", url, "--type", "search", "--endpoint", box.url, "--json"]
        result = replay(env, *args)
        assert result.exit_code == 0, result.output
        sent = box.keys(DATASET)[2]  # (trace_id, event_id): search events get replay_ ids
        assert sorted(t for t, _ in sent) == sorted(t for (t,) in wanted)
        assert len(sent) == 30 and all(e.startswith("replay_") for _, e in sent)
        report = last_json(result.stdout)
        assert report["accepted"] == report["planned"] == len(wanted) == 30
        # The run is journalled locally: a resume finds it finished and sends nothing more.
        run_id = first_run_id(result.stdout)
        again = replay(env, "--resume", run_id, "--db", url, "--endpoint", box.url)
        assert again.exit_code == 0, again.output
        assert "has finished" in again.output
        assert box.total_requests() == 30
    journal = state / "journal.duckdb"
    assert journal.is_file()
    assert KEY not in journal.read_bytes().decode("latin-1")


def test_a_file_replayed_with_a_clickhouse_store_journals_its_rejects_locally(env, url, export):
    with live_sandbox(key=KEY) as box:
        result = replay(env, export, "--db", url, "--endpoint", box.url, "--json")
    assert result.exit_code == 0, result.output  # every valid event accepted
    report = last_json(result.stdout)
    assert (report["accepted"], report["invalid"]) == (60, 3)
    with Store(os.path.join(os.environ["EVENTLENS_STATE_DIR"], "journal.duckdb")) as journal:
        (run,) = rp.list_runs(journal)
        assert run.invalid == 3 and len(rp.invalid_reasons(journal, run.run_id)) == 3
    with ClickHouseStore(parse(url)) as house:
        assert house.event_count() == 0  # replaying a file does not load it


def test_the_local_files_sit_beside_a_chdb_folder_or_under_the_state_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("EVENTLENS_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    beside = parse(f"chdb://{tmp_path}/ch?database=prod")
    assert replay_journal(beside) == str(tmp_path / "ch.prod.eventlens" / "journal.duckdb")
    assert sandbox_state(beside) == str(tmp_path / "ch.prod.eventlens" / "sandbox.duckdb")
    server = replay_journal(parse("clickhouse://ana:s3cret@ch.internal:8123/events"))
    state = tmp_path / "state" / "eventlens" / "ch.internal-8123-events"
    assert server == str(state / "journal.duckdb")
    assert "s3cret" not in server and "ana" not in server
    monkeypatch.setenv("EVENTLENS_STATE_DIR", str(tmp_path / "mine"))
    assert replay_journal(parse("chdb:///x")) == str(tmp_path / "mine" / "journal.duckdb")


def test_the_replay_page_sends_a_clickhouse_dataset(web, state, monkeypatch):
    """The page on a chDB store: its datasets offered, a dry run, Start, every event once."""
    from apptest_helpers import ok, run_app
    from test_app_replay import aim, choose, dry_run, received, start, wait_until_ended

    monkeypatch.setenv("EVENTLENS_DB", web[0])
    monkeypatch.delenv("LANGWATCH_API_KEY", raising=False)
    monkeypatch.delenv("LANGWATCH_ENDPOINT", raising=False)
    page = run_app(page="pages/replay.py")
    ok(page)
    assert "web" in page.multiselect(key="r_datasets").options
    with live_sandbox(key="page-key") as box:
        aim(page, box, key="page-key")
        choose(page, datasets=["web"], types=["llm_call"])
        assert dry_run(page)["info"].events == 30
        run_id = start(page)
        wait_until_ended(page, run_id)
        assert len(received(box)) == 30 and box.total_requests() == 30
