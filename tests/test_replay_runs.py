"""The run rules that `eventlens replay` and the Replay page share (lib/eventlens/replay/runs.py):
options left out, where a resume sends, which dry-run plans are discarded, whether a run may
start. The runs list's state and counts are tested in test_replay.py."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from replay_helpers import session_of, write_jsonl

from eventlens import client, replay
from eventlens.cli import main
from eventlens.replay.journal import save_run
from eventlens.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "journal.duckdb") as store:
        yield store


def planned_run(store: Store, tmp_path: Path, url: str = "http://127.0.0.1:9") -> replay.Run:
    source = write_jsonl(
        tmp_path / "e.jsonl", [{"trace_id": "t", "event_type": "x", "metrics": {}}]
    )
    return replay.plan(store, replay.Source(path=str(source)), endpoint=replay.Endpoint(url))


@pytest.fixture(scope="module")
def planned(tmp_path_factory) -> Iterator[tuple[Store, replay.Run]]:
    """One planned run and its journal, for the tests that only read them (a test's own state
    goes on a copy of the Run)."""
    folder = tmp_path_factory.mktemp("planned")
    with Store(folder / "journal.duckdb") as store:
        yield store, planned_run(store, folder)


# -- options left out ---------------------------------------------------------------------------


def test_options_left_out_are_a_new_runs_defaults():
    nothing = dict(rate=None, speed=None, max_gap_s=None, concurrency=None, max_retries=None)
    assert replay.given(replay.Pacing(), **nothing) == replay.Pacing()
    assert replay.given(replay.Transforms(), timestamps=None, trace_ids="", redact=()) == (
        replay.Transforms()
    )
    endpoint = replay.given(replay.Endpoint(), url=None, path=None, auth=None, key_env="")
    assert endpoint == replay.Endpoint()
    assert (endpoint.url, endpoint.path, endpoint.key_env) == (
        client.DEFAULT_ENDPOINT,
        "/api/track_event",
        client.KEY_ENV,
    )


def test_a_zero_is_given_and_a_resume_keeps_the_runs_other_settings():
    assert replay.given(replay.Pacing(), max_gap_s=0.0, max_retries=0) == replay.Pacing(
        max_gap_s=0.0, max_retries=0
    )
    run_pacing = replay.Pacing(rate=50.0, concurrency=4, max_retries=3)
    resumed = replay.given(run_pacing, rate=None, concurrency=None, max_retries=1)
    assert resumed == replay.Pacing(rate=50.0, concurrency=4, max_retries=1)


def test_the_cli_help_states_the_defaults_a_run_gets():
    """The help texts name the defaults; the values come from the specs (the CLI does not import
    replay to draw its help, which would load aiohttp for every command)."""
    text = " ".join(CliRunner().invoke(main, ["replay", "--help"]).output.split())
    defaults = replay.Pacing()
    assert f"In flight ({defaults.concurrency})." in text
    assert f"Per event ({defaults.max_retries})." in text
    assert f"count as this long ({defaults.max_gap_s:g})." in text
    assert f"Trace ids ({replay.Transforms().trace_ids})." in text
    assert f"[{'|'.join(replay.TIMESTAMPS)}]" in text
    assert f"[{'|'.join(client.PATHS)}]" in text
    assert f"(default {replay.Endpoint().path})" in text
    assert f"(default {replay.Endpoint().key_env})" in text


# -- where a resume sends -----------------------------------------------------------------------


def test_a_resume_sends_to_the_runs_own_endpoint(store, tmp_path):
    run = planned_run(store, tmp_path, "http://127.0.0.1:9/")
    assert replay.same_endpoint(run, "http://127.0.0.1:9")
    assert not replay.same_endpoint(run, "http://127.0.0.1:10")
    replay.check_resume_endpoint(run, None)  # none asked for: the run's own
    replay.check_resume_endpoint(run, "http://127.0.0.1:9")
    said = f"run {run.run_id} sends to http://127.0.0.1:9/; a resume must send to the same place"
    with pytest.raises(replay.ReplayError, match=re.escape(said)):
        replay.check_resume_endpoint(run, "https://app.langwatch.ai")


# -- whether a run may start --------------------------------------------------------------------


@pytest.mark.parametrize(
    "state, alive, may",
    [
        ("planned", None, True),
        ("stopped", None, True),
        ("failed", None, True),
        ("running", False, True),  # interrupted: its session has ended
        ("running", True, False),  # a session of this process is at it
        ("finished", None, False),  # nothing left to send
    ],
)
def test_a_run_may_start_unless_finished_or_at_work_here(planned, state, alive, may):
    store, run = planned
    run = dataclasses.replace(run, state=replay.RunState(state))
    if alive is None:
        assert replay.can_start(run, None) is may
        return
    with session_of(store, run, alive=alive) as session:
        assert replay.is_live(session) is alive
        assert replay.can_start(run, session) is may


# -- dry-run plans ------------------------------------------------------------------------------


def test_a_dry_runs_plan_never_started_is_discarded(store, tmp_path):
    run = planned_run(store, tmp_path)
    assert Path(run.plan_path).exists()
    replay.discard_unstarted(store, run.run_id, None)
    assert replay.list_runs(store) == [] and not Path(run.plan_path).exists()
    replay.discard_unstarted(store, run.run_id, None)  # already gone: nothing to do


def test_a_started_run_is_never_discarded(store, tmp_path):
    journalled = planned_run(store, tmp_path)  # started by a session that has ended
    journalled.sessions, journalled.state = 1, replay.RunState.STOPPED
    with store.write_lock:
        save_run(store, journalled)
    replay.discard_unstarted(store, journalled.run_id, None)
    starting = planned_run(store, tmp_path)  # a live session that has not written yet
    with session_of(store, starting, alive=True) as session:
        replay.discard_unstarted(store, starting.run_id, session)
    refused = planned_run(store, tmp_path)  # its session ended before writing (a bad key)
    with session_of(store, refused, alive=False) as session:
        replay.discard_unstarted(store, refused.run_id, session)
    kept = {r.run_id for r in replay.list_runs(store)}
    assert kept == {journalled.run_id, starting.run_id, refused.run_id}
